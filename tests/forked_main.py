"""`python main.py ARGS` without paying for the TensorFlow import each time.

A test that runs a command line pays ~10 s (on two busy cores) for a fresh interpreter to
import TensorFlow, Keras and the mode before main.py reads a single flag. The server here
(run as a script) imports main.py and its modes once, then forks a child for every
command: the child sets sys.argv, runs main.main() (flag parsing, the mode, UserError ->
`error: ...` and exit 2, quiet's stderr filter) with its stdout and stderr in files, and
ends as the interpreter would (thread join, atexit, flushed output). Each child starts from
the same just-imported state; nothing a command does reaches the next one. The server
runs no TensorFlow op; the only threads it has besides its own are the BLAS worker pools
that importing numpy and TensorFlow starts, and they stop themselves at a fork (seen here:
3 threads before the first fork, 1 after), so no fork copies a lock another thread holds.
The environment is the test session's when the server starts (at the first command): a
test that needs other environment variables runs its own subprocess.
FACEEXPR_TESTS_FRESH_MAIN=1 runs every command in a fresh interpreter instead.

What a forked child does not repeat is the start-up itself: main.py's imports (and the
lines TensorFlow prints while it loads) happened once, in the server. Tests of start-up
behaviour (test_quiet.py, `--help` listings) run a real `python main.py`.

ForkedMain is the client (conftest.py's session fixture `main_py`).
"""

import atexit
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "main.py")
# Not imported up front (the child imports it): only `serve` needs the web stack, a slow
# import, and a server is started with a Popen of its own, not through here.
_NOT_PRELOADED = ("faceexpr_tf.web.serve",)
# Set (to anything) to run every command in a fresh `python main.py` instead (slow).
FRESH_ENV = "FACEEXPR_TESTS_FRESH_MAIN"


def _child(request: dict, out_fd: int, err_fd: int) -> int:
  """In the forked child: runs main.main() on the request's argv; returns the exit code."""
  devnull = os.open(os.devnull, os.O_RDONLY)
  os.dup2(devnull, 0)
  os.dup2(out_fd, 1)
  os.dup2(err_fd, 2)
  os.chdir(request.get("cwd") or ROOT)
  sys.argv = [MAIN, *request["argv"]]
  import main  # pylint: disable=g-import-not-at-top
  sys.modules["__main__"] = main   # as in `python main.py` (absl's --help shows its doc)
  try:
    main.main()
    code = 0
  except SystemExit as e:  # as the interpreter turns sys.exit(...) into a status
    if e.code is None or isinstance(e.code, int):
      code = e.code or 0
    else:
      print(e.code, file=sys.stderr)
      code = 1
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
    code = 1
  try:  # the interpreter's exit: join threads, atexit (quiet's drain), flush
    threading._shutdown()  # pylint: disable=protected-access
    atexit._run_exitfuncs()  # pylint: disable=protected-access
    sys.stdout.flush()
    sys.stderr.flush()
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
    code = code or 1
  return code


def serve():
  """The server loop: one JSON request a line on stdin, JSON replies on the original
  stdout ({"ready"}, then {"pid"} and {"rc"} per request)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
  sys.path.insert(0, ROOT)
  reply = os.dup(1)
  quiet_fd = os.open(os.devnull, os.O_WRONLY)
  os.dup2(quiet_fd, 1)   # nothing the imports print can garble the replies
  import main  # pylint: disable=g-import-not-at-top
  for name in main.MODES.values():
    if name not in _NOT_PRELOADED:
      try:
        importlib.import_module(name)
      except Exception:  # pylint: disable=broad-except
        pass   # the child meets (and reports) the same error as a fresh process would

  def say(message: dict):
    os.write(reply, (json.dumps(message) + "\n").encode())

  say({"ready": True})
  for line in sys.stdin:
    request = json.loads(line)
    out_fd = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err_fd = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
      code = 1
      try:
        os.close(reply)
        code = _child(request, out_fd, err_fd)
      finally:
        os._exit(code)  # pylint: disable=protected-access
    os.close(out_fd)
    os.close(err_fd)
    say({"pid": pid})
    _, status = os.waitpid(pid, 0)
    say({"rc": os.waitstatus_to_exitcode(status)})


class ForkedMain:
  """Client of the server: call it like subprocess.run on main.py's arguments."""

  def __init__(self, work_dir: str):
    self._work_dir = work_dir
    self._proc = None
    self._buffer = b""
    self._calls = 0

  def _line(self, timeout: float | None) -> dict | None:
    """The next reply, or None when `timeout` seconds pass first."""
    fd = self._proc.stdout.fileno()
    while b"\n" not in self._buffer:
      if not select.select([fd], [], [], timeout)[0]:
        return None
      chunk = os.read(fd, 65536)
      if not chunk:
        raise RuntimeError(f"the main.py fork server died (exit {self._proc.wait()})")
      self._buffer += chunk
    line, self._buffer = self._buffer.split(b"\n", 1)
    return json.loads(line)

  def _start(self):
    self._proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)], cwd=ROOT,
                                  env=dict(os.environ, PYTHONPATH=ROOT),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
    assert self._line(600) == {"ready": True}

  def __call__(self, *args: str, cwd: str | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs `python main.py *args`; its exit status and text output, as subprocess.run
    with capture_output=True, text=True would give them (TimeoutExpired likewise).
    FACEEXPR_TESTS_FRESH_MAIN=1 in the environment runs each in a fresh interpreter."""
    if os.environ.get(FRESH_ENV):
      return subprocess.run([sys.executable, MAIN, *map(str, args)], cwd=cwd or ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                            text=True, timeout=timeout)
    if self._proc is None:
      self._start()
    self._calls += 1
    out = os.path.join(self._work_dir, f"{self._calls}.out")
    err = os.path.join(self._work_dir, f"{self._calls}.err")
    request = {"argv": [str(a) for a in args], "cwd": cwd, "stdout": out, "stderr": err}
    self._proc.stdin.write((json.dumps(request) + "\n").encode())
    self._proc.stdin.flush()
    pid = self._line(60)["pid"]
    done = self._line(timeout)
    if done is None:
      os.kill(pid, signal.SIGKILL)
      self._line(60)
    stdout, stderr = (open(p, encoding="utf-8", errors="replace").read() for p in (out, err))
    cmd = [sys.executable, MAIN, *request["argv"]]
    if done is None:
      raise subprocess.TimeoutExpired(cmd, timeout, stdout, stderr)
    return subprocess.CompletedProcess(cmd, done["rc"], stdout, stderr)

  def close(self):
    """Ends the server (no command is running between calls): a kill, as its interpreter's
    own shutdown with TensorFlow loaded takes seconds and does nothing needed."""
    if self._proc is not None:
      self._proc.kill()
      self._proc.wait()
      self._proc.stdin.close()
      self._proc.stdout.close()
      self._proc = None


if __name__ == "__main__":
  serve()
