"""A quiet start: TensorFlow's start-up noise is dropped, every real error still shows."""

import os
import subprocess
import sys

from faceexpr_tf import quiet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796005232.602808     588 cudart_stub.cc:31] Could not find cuda drivers "
    b"on your machine, GPU will not be used.",
    b"I0000 00:00:1796005210.824085     538 port.cc:153] oneDNN custom operations are on. "
    b"You may see slightly different numerical results.",
    b"I0000 00:00:1796004645.250279   28137 cpu_feature_guard.cc:227] This TensorFlow binary "
    b"is optimized to use available CPU instructions in performance-critical operations.",
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild "
    b"TensorFlow with the appropriate compiler flags.",
    b"E0000 00:00:1732000000.000000    1234 meta_optimizer.cc:966] remapper failed: "
    b"INVALID_ARGUMENT: Mutation::Apply error: fanout 'x' exist for missing node 'y'.",
]
CUINIT = (b"E0000 00:00:1796005242.816993     588 cuda_platform.cc:52] failed call to cuInit: "
          b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
REAL = [
    b"E0000 00:00:1796005242.816993     588 some_kernel.cc:52] OOM when allocating tensor",
    b"W0000 00:00:1796005242.816993     588 op_level_cost_estimator.cc:699] Error in "
    b"PredictCost() for the op: Conv2D",
    b"error: --batch_size=-1: must be at least 1",
    b"Traceback (most recent call last):",
    # libjpeg via OpenCV: for a JPEG cut inside its data, the only sign (see quiet.py).
    b"Premature end of JPEG file",
    b"Corrupt JPEG data: premature end of data segment",
]


def test_noise_is_benign_and_real_errors_are_not():
  for line in NOISE:
    assert quiet.is_benign(line, no_driver=False), line
  assert quiet.is_benign(CUINIT, no_driver=True)
  assert not quiet.is_benign(CUINIT, no_driver=False)   # a GPU machine: a real error
  for line in REAL:
    assert not quiet.is_benign(line, no_driver=True), line


def test_pump_drops_noise_and_passes_everything_else_in_order():
  read_in, write_in = os.pipe()
  read_out, write_out = os.pipe()
  lines = [NOISE[0], REAL[0], CUINIT, NOISE[1], REAL[2], NOISE[5]]
  os.write(write_in, b"\n".join(lines) + b"\npartial progress")
  os.close(write_in)
  quiet.pump(read_in, write_out, no_driver=True)
  os.close(write_out)
  out = os.read(read_out, 1 << 16)
  assert out == REAL[0] + b"\n" + REAL[2] + b"\npartial progress"


def test_an_installed_filter_outlives_a_killed_command_and_passes_its_last_line():
  code = ("import os, signal; from faceexpr_tf import quiet; quiet.install(); "
          f"os.write(2, {NOISE[1]!r} + b'\\n' + {REAL[0]!r} + b'\\n'); "
          "os.kill(os.getpid(), signal.SIGKILL)")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                        cwd=ROOT)
  assert proc.returncode == -9
  assert proc.stderr == REAL[0] + b"\n"


def test_a_cli_run_starts_quietly_and_still_shows_its_errors(tmp_path):
  env = {**os.environ, "PYTHONPATH": ROOT}
  env.pop(quiet.OFF_ENV, None)
  args = [sys.executable, os.path.join(ROOT, "main.py"), "train",
          f"--flagfile={os.path.join(ROOT, 'flags', 'smoke.flags')}",
          f"--run_dir={tmp_path / 'run'}", "--max_steps=2", "--report=false",
          "--validate=false", "--sample_every=0"]
  # Fresh interpreters (start-up is what is tested), both started at once: each spends
  # most of its time importing TensorFlow, and neither needs the other.
  bad = subprocess.Popen(args + ["--batch_size=-1"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
  proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
  _, bad_stderr = bad.communicate(timeout=300)
  assert proc.returncode == 0, proc.stderr
  for noise in ("E0000", "cuInit", "remapper", "absl::InitializeLog", "cudart_stub",
                "oneDNN custom operations"):
    if noise == "cuInit" and not quiet.no_gpu_driver():
      continue  # with a driver a failing cuInit is a real error and must show
    assert noise not in proc.stderr, proc.stderr
  assert "Training finished at step 2 (of at most 2)" in proc.stderr   # the command's own log lines
  assert bad.returncode == 2
  assert bad_stderr.strip().splitlines()[-1] == "error: --batch_size=-1: must be at least 1"


def test_libjpeg_truncation_warning_is_kept_as_the_only_sign_of_a_cut_jpeg(tmp_path):
  """OpenCV decodes a JPEG cut inside its data (the rest gray) and says so only through
  libjpeg's stderr line: the filter must let it through."""
  import cv2  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  picture = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
  jpeg = cv2.imencode(".jpg", picture)[1].tobytes()
  path = tmp_path / "cut.jpg"
  path.write_bytes(jpeg[:len(jpeg) * 2 // 3])
  code = ("import cv2, sys; from faceexpr_tf import quiet; quiet.install(); "
          f"image = cv2.imread({str(path)!r}); print(image.shape)")
  env = {**os.environ, "PYTHONPATH": ROOT}
  env.pop(quiet.OFF_ENV, None)
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=60, cwd=ROOT, env=env)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == "(64, 64, 3)"         # decoded anyway: no error of ours
  assert "Premature end of JPEG file" in proc.stderr  # the only sign, kept
