"""A quiet start: drop TensorFlow's start-up lines that are not errors, keep the rest.

On a CPU-only machine every command printed, before any of its own output:

  WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
  I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not ...
  I0000 ... port.cc:153] oneDNN custom operations are on. ...
  E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ... (303)

and training added Grappler's "remapper failed" E-lines (an optional graph rewrite
skipped; the graph runs unchanged). Users read E-lines as failures. TF_CPP_MIN_LOG_LEVEL
cannot help: the I-lines come before TensorFlow reads it, and level 3 would also hide real
errors. So `install()` (main.py calls it before TensorFlow loads) routes the process's
stderr through a small forked filter that drops exactly these lines, and the cuInit one
only where no NVIDIA driver is installed (/proc/driver/nvidia absent): on a GPU machine a
failing cuInit is a real error and stays. Every other byte passes through unchanged. The
filter ignores SIGINT/SIGTERM and ends when the command's stderr closes, so a crash, a kill
or Ctrl-C loses no line of the command's own output. FACEEXPR_TF_LOGS=all turns it off.

Kept on purpose: libjpeg's "Premature end of JPEG file", printed by OpenCV's decoder.
faces.read_image refuses a JPEG without its end marker before decoding it (one line naming
the file), so translate no longer provokes it; elsewhere it may be the only sign that a
picture was decoded with rows missing.
"""

import atexit
import os
import re
import signal
import sys
import time

_BENIGN = [re.compile(p) for p in (
    rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    rb"STDERR\s*$",
    rb"^I\d{4} [^\]]* cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine",
    rb"^I\d{4} [^\]]* port\.cc:\d+\] oneDNN custom operations are on",
    rb"^I\d{4} [^\]]* cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
    rb"^To enable the following instructions: .* rebuild TensorFlow with the appropriate "
    rb"compiler flags\.\s*$",
    rb"^[EW]\d{4} [^\]]* meta_optimizer\.cc:\d+\] remapper failed: ",
)]
# Benign only where the machine has no NVIDIA driver at all.
_NO_DRIVER = [re.compile(p) for p in (
    rb"^E\d{4} [^\]]* cuda_platform\.cc:\d+\] failed call to cuInit: .*\(303\)\s*$",
    rb"^E\d{4} [^\]]* cuda_executor\.cc:\d+\] failed call to cuInit: .*\(303\)\s*$",
)]
# A partial line starting like this may become a dropped line: wait for its end.
_HOLD_PREFIXES = (b"W", b"I", b"E", b"To enable")
OFF_ENV = "FACEEXPR_TF_LOGS"


def no_gpu_driver() -> bool:
  return not os.path.exists("/proc/driver/nvidia")


def is_benign(line: bytes, no_driver: bool) -> bool:
  """Whether a stderr line is start-up noise (see the module doc)."""
  line = line.rstrip(b"\r\n")
  if any(p.search(line) for p in _BENIGN):
    return True
  return no_driver and any(p.search(line) for p in _NO_DRIVER)


def pump(read_fd: int, write_fd: int, no_driver: bool):
  """Copies read_fd to write_fd until EOF, dropping benign lines."""
  pending = b""
  while True:
    try:
      chunk = os.read(read_fd, 65536)
    except InterruptedError:
      continue
    if not chunk:
      break
    pending += chunk
    *lines, pending = pending.split(b"\n")
    out = b"".join(line + b"\n" for line in lines if not is_benign(line, no_driver))
    if pending and not pending.startswith(_HOLD_PREFIXES):
      out, pending = out + pending, b""   # progress text without a newline: show it now
    _write_all(write_fd, out)
  if pending and not is_benign(pending, no_driver):
    _write_all(write_fd, pending)


def _write_all(fd: int, data: bytes):
  while data:
    try:
      data = data[os.write(fd, data):]
    except InterruptedError:
      continue
    except OSError:
      return  # the reader went away (e.g. `| head`): nothing left to show


def install():
  """Routes fd 2 through the filter (a forked child). Call before TensorFlow loads."""
  if os.environ.get(OFF_ENV) == "all" or not hasattr(os, "fork"):
    return
  sys.stdout.flush()
  sys.stderr.flush()
  read_fd, write_fd = os.pipe()
  pid = os.fork()
  if pid == 0:  # the filter: it must outlive the command to pass on its last words
    try:
      os.close(write_fd)
      for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
      pump(read_fd, 2, no_gpu_driver())
    finally:
      os._exit(0)
  os.close(read_fd)
  os.dup2(write_fd, 2)
  os.close(write_fd)
  atexit.register(_drain, pid)


def _drain(pid: int, timeout_s: float = 2.0):
  """At a normal exit: close our end and let the filter write its last lines first, so
  they come before the shell's next prompt."""
  try:
    sys.stderr.flush()
  except (OSError, ValueError):
    pass
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  os.close(devnull)
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    try:
      if os.waitpid(pid, os.WNOHANG)[0]:
        return
    except ChildProcessError:
      return
    time.sleep(0.01)
