"""One writer per run dir: an OS lock on run_dir/.lock, held until the process ends.

fcntl.flock locks belong to the open file: the kernel drops them when the process exits,
however it exits (SIGKILL included), so a killed run never leaves a stale lock behind.
"""

import errno
import os

from faceexpr_tf import errors

LOCK_FILE = ".lock"
_held = {}  # real path of a locked dir -> its open lock file (kept open: the lock lives on)


class LockedError(errors.UserError):
  """Another process holds the directory's lock."""


def lock_dir(directory: str, what: str = "run directory") -> str:
  """Locks `directory` (which must exist) for this process; idempotent within it.

  Raises LockedError naming the holder's pid when another process has it, and a
  UserError when the directory cannot be written (read-only, no permission, disk full).
  """
  try:
    import fcntl  # pylint: disable=g-import-not-at-top  (POSIX only)
  except ImportError:
    return ""  # Windows has no flock: no lock there (one writer is then up to the user)
  key = os.path.realpath(directory)
  if key in _held:
    return os.path.join(directory, LOCK_FILE)
  path = os.path.join(directory, LOCK_FILE)
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise errors.UserError(f"{directory}: cannot write to this {what} "
                           f"({os.strerror(e.errno)})") from None
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    holder = _read_pid(fd)
    os.close(fd)
    if e.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
      raise LockedError(
          f"{directory} is in use by another process{f' (pid {holder})' if holder else ''}; "
          f"two writers would corrupt it: wait for that run to end or pick another "
          f"{what}") from None
    raise errors.UserError(f"{directory}: cannot lock {path} ({os.strerror(e.errno)})"
                           ) from None
  try:  # the holder's pid, for the message above (best effort: a full disk still locks)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
  except OSError:
    pass
  _held[key] = fd
  return path


def _read_pid(fd: int) -> int | None:
  try:
    text = os.pread(fd, 32, 0).decode().strip()
    return int(text) if text.isdigit() else None
  except (OSError, ValueError):
    return None


def unlock_dir(directory: str):
  """Releases this process's lock on `directory` (tests; a process's exit does it too)."""
  fd = _held.pop(os.path.realpath(directory), None)
  if fd is not None:
    os.close(fd)
