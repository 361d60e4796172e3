"""Side by side with official PyTorch StarGAN: both frameworks timed in interleaved rounds.

tools/torch_anchor.py, run by a Python that has torch (the project itself never imports
torch), times yunjey/stargan's own networks; this project's official-size StarGAN
(WGAN-GP, n_critic 1) is timed between its windows, on as many threads. Each row names
the precision this project ran in (resolved by training/devices.py, as training resolves
it) and holds its FLOP rate against a matmul peak measured in that same precision.
"""

import datetime
import os
import re
import statistics
import subprocess
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.benchmark import hardware
from faceexpr_tf.benchmark import speed
from faceexpr_tf.benchmark import tables
from faceexpr_tf.modeling import models
from faceexpr_tf.modeling import stargan
from faceexpr_tf.training import devices

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HEADER = ("| date | machine | CPU flags | TF | torch | threads | precision | what | "
          "this project img/s | PyTorch img/s | ratio | GFLOP/img | project GFLOP/s | "
          "% of matmul peak (peak GFLOP/s, its dtype) | rounds |")


def parse_anchor(output: str) -> dict:
  """The numbers in tools/torch_anchor.py's output (training or --infer)."""
  out = {}
  m = re.search(r"^torch_anchor img_per_s=([\d.]+) batch=(\d+)", output, re.M)
  if m:
    out["train_img_s"], out["batch"] = float(m.group(1)), int(m.group(2))
  m = re.search(r"FLOPs/img/iter ([\d.e+]+)", output)
  if m:
    out["train_flop_per_img"] = float(m.group(1))
  m = re.search(r"^torch_anchor_infer img_per_s (.*?) norm=", output, re.M)
  if m:
    out["infer_img_s"] = {int(k[len("batch"):]): float(v) for k, v in
                          (item.split("=") for item in m.group(1).split())}
  m = re.search(r"^# torch (\S+),", output, re.M)
  if m:
    out["torch"] = m.group(1).rstrip(",")
  return out


def run_anchor(python: str, stargan_dir: str, script: str | None, args: list[str]) -> dict:
  """Runs the anchor's timing script once and parses its output.

  Args:
    python: an interpreter with torch (--anchor_python).
    stargan_dir: a yunjey/stargan checkout (--anchor_stargan).
    script: the timing script (None = tools/torch_anchor.py of this checkout).
    args: the script's own arguments.
  """
  script = script or os.path.join(REPO, "tools", "torch_anchor.py")
  cmd = [python, script, "--stargan", stargan_dir, *args]
  try:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
  except OSError as e:
    raise errors.UserError(f"--anchor_python={python}: {e}") from None
  if done.returncode:
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    raise errors.UserError(f"the PyTorch anchor failed ({' '.join(cmd)}): {tail[0]}")
  return parse_anchor(done.stdout)


def tf_trainer(batch: int):
  """The official size (WGAN-GP, n_critic 1) in the global policy, warmed up, and a
  function timing `steps` training steps of it (img/s)."""
  g, d = models.build_models(models.ModelConfig())
  model = stargan.StarGAN(g, d, gan_loss="wgan-gp")
  model.compile(keras.optimizers.Adam(1e-4, 0.5), keras.optimizers.Adam(1e-4, 0.5))
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (batch, 48, 48, 1)).astype(np.float32)
  org = rng.integers(0, 4, batch).astype(np.int32)
  ds = tf.data.Dataset.from_tensors((x, org, (org + 1) % 4)).repeat()
  model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)   # trace and warm up

  def window(steps):
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps * batch / (time.perf_counter() - t0)
  return model, window


def tf_inference_rate(g, batch: int = 64, seconds: float = 3.0) -> float:
  """G's inference rate (img/s) at `batch`, timed for `seconds`."""
  x = np.random.default_rng(0).uniform(-1, 1, (batch, 48, 48, 1)).astype(np.float32)
  onehot = np.eye(4, dtype=np.float32)[np.arange(batch) % 4]
  infer = tf.function(lambda a, b: g(a, b, training=False))
  infer(x, onehot).numpy()
  t0, n = time.perf_counter(), 0
  while time.perf_counter() - t0 < seconds:
    infer(x, onehot).numpy()
    n += batch
  return n / (time.perf_counter() - t0)


def check_anchor(python: str | None, stargan_dir: str | None):
  """A UserError unless both the anchor's Python and a stargan checkout are given."""
  if not (python and stargan_dir):
    raise errors.UserError("side by side needs both --anchor_python (a Python with torch) "
                           "and --anchor_stargan (a yunjey/stargan checkout)")
  if not os.path.isfile(os.path.join(stargan_dir, "model.py")):
    raise errors.UserError(f"--anchor_stargan={stargan_dir}: no model.py there "
                           "(a checkout of github.com/yunjey/stargan)")


def row_line(r: dict, machine: str, flags: str, threads: int, peak: float,
             peak_dtype: str) -> str:
  """A table line (matching HEADER) of one side-by-side row."""
  rate = r["ours"] * r["gflop_per_img"]
  return (f"| {datetime.date.today()} | {machine} | {flags} | {tf.__version__} | "
          f"{r['torch']} | {threads} | {r['precision']} | {r['what']} | "
          f"{r['ours']:.2f} | {r['theirs']:.2f} | **{r['ours'] / r['theirs']:.2f}x** | "
          f"{r['gflop_per_img']:.2f} | {rate:.1f} | {100 * rate / peak:.0f}% (peak "
          f"{peak:.0f}, {peak_dtype}) | {r['rounds']} |")


def side_by_side(python: str | None, stargan_dir: str | None, script: str | None,
                 precision: str, threads: int, steps: int, rounds: int, batches: list[int],
                 table: str, command: str) -> int:
  """Official StarGAN (PyTorch) and this project, `threads` each, in interleaved rounds.

  Args:
    python: the anchor's interpreter (--anchor_python).
    stargan_dir: a yunjey/stargan checkout (--anchor_stargan).
    script: the anchor's timing script (None = tools/torch_anchor.py).
    precision: this project's precision, "auto" included (resolved by training/devices.py).
    threads: threads of each framework.
    steps: training steps per window.
    rounds: interleaved rounds (medians reported).
    batches: training batch sizes; G inference is timed after the last.
    table: markdown file the section is written into ('' = print only).
    command: the command line, for the section's title.

  Returns:
    0, the mode's exit status.
  """
  check_anchor(python, stargan_dir)
  hardware.set_threads(threads)
  ran = devices.choose_precision(precision)   # "auto" -> what training would run
  peak_dtype = hardware.compute_dtype(ran)
  peak = hardware.peak_gflops(dtype=peak_dtype)
  logging.info("Precision %s; matmul peak %.1f GFLOP/s in %s", ran, peak, peak_dtype)
  rows = []
  for batch in batches:
    # Per batch: clear_session() below resets the global policy this sets.
    plan = devices.plan(ran, "false", "default")
    model, window = tf_trainer(batch)
    ours, theirs, anchor = [], [], {}
    for r in range(rounds):
      ours.append(window(steps))
      anchor = run_anchor(python, stargan_dir, script, [
          "--batch-size", str(batch), "--n-critic", "1", "--threads", str(threads),
          "--steps", str(steps), "--windows", "1", "--warmup", "2"])
      theirs.append(anchor["train_img_s"])
      logging.info("round %d, batch %d: this project %.2f img/s, PyTorch %.2f img/s", r + 1,
                   batch, ours[-1], theirs[-1])
    flop = anchor.get("train_flop_per_img", 0.0)
    rows.append({"what": f"train b{batch}", "ours": statistics.median(ours),
                 "theirs": statistics.median(theirs), "torch": anchor.get("torch", "?"),
                 "gflop_per_img": flop / 1e9, "rounds": rounds, "precision": plan.precision})
    if batch == batches[-1]:
      ours_i, theirs_i = [], []
      for _ in range(rounds):
        ours_i.append(tf_inference_rate(model.generator))
        theirs_i.append(run_anchor(python, stargan_dir, script, [
            "--infer", "--infer-batches", "64", "--threads", str(threads),
            "--windows", "3"])["infer_img_s"][64])
      rows.append({"what": "G infer b64", "ours": statistics.median(ours_i),
                   "theirs": statistics.median(theirs_i), "torch": anchor.get("torch", "?"),
                   "gflop_per_img": speed.generator_flops(models.ModelConfig()) / 1e9,
                   "rounds": rounds, "precision": plan.precision})
    keras.backend.clear_session()
  machine, flags = hardware.machine(), hardware.cpu_flags()
  lines = [row_line(r, machine, flags, threads, peak, peak_dtype) for r in rows]
  tables.show(HEADER, lines)
  print(f"Matmul peak: {peak:.1f} GFLOP/s, a 1024x1024 {peak_dtype} matmul on {threads} "
        f"thread(s), as this project ran in {ran}.")
  tables.insert_section(table, f"### Side by side with official PyTorch StarGAN "
                        f"(`{command}`)", HEADER, lines)
  return 0
