"""What a benchmark ran on: the machine's name and CPU flags, TensorFlow's threads, the
matmul peak.

The peak is the rate a FLOP count is held against ("% of matmul peak"), so it is measured
in the compute dtype of the precision that ran: a bfloat16 matmul when the project ran in
mixed_bfloat16 (native bf16 instructions are 2x or more a float32 matmul), float32 when
it ran in float32.
"""

import os
import platform
import time

import keras
import tensorflow as tf
from absl import logging

from faceexpr_tf.training import devices

# CPU flags that decide how fast TensorFlow (and OpenCV) run here, named in every benchmark
# row when present: the same code trains twice as fast with native bf16 as without.
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def machine() -> str:
  """The GPUs' names, else the CPU's model name and its logical core count."""
  gpus = devices.gpus()
  if gpus:
    return ", ".join(tf.config.experimental.get_device_details(g).get("device_name", g.name)
                     for g in gpus)
  cpu = platform.processor() or "CPU"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return f"{cpu} x{os.cpu_count()}"


def cpu_flags() -> str:
  """The CPU flags of CPU_FEATURES this machine has, space separated ('-' for none)."""
  found = devices.cpu_flags()
  return " ".join(f for f in CPU_FEATURES if f in found) or "-"


def set_threads(threads: int):
  """TensorFlow's intra- and inter-op threads (0 leaves TensorFlow's default).

  TensorFlow fixes its thread pools when it first runs an op, so a second benchmark of the
  same run (--bench_photos, then --bench_tflite) cannot change them: it keeps the first
  one's, says so in one line, and goes on. (A TFLite interpreter's threads are its own.)"""
  if not threads:
    return
  try:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  except RuntimeError:
    logging.warning("TensorFlow's threads stay as an earlier benchmark of this run left "
                    "them (intra-op %s), not %d: they are fixed once TensorFlow has run",
                    tf.config.threading.get_intra_op_parallelism_threads() or "default",
                    threads)


def compute_dtype(precision: str) -> str:
  """The dtype a Keras precision policy computes in: mixed_bfloat16 -> bfloat16.

  Args:
    precision: a resolved policy name (float32, mixed_bfloat16, mixed_float16), not "auto".
  """
  return keras.mixed_precision.Policy(precision).compute_dtype


def peak_gflops(seconds: float = 2.0, n: int = 1024, dtype: str = "float32") -> float:
  """This device's n x n matmul rate (GFLOP/s) in `dtype`: the peak FLOP fractions refer to.

  Args:
    seconds: how long to repeat the matmul (after one untimed call).
    n: the side of the square matrices.
    dtype: the matmul's dtype, e.g. float32 or bfloat16 (see `compute_dtype`).
  """
  a = tf.cast(tf.random.uniform((n, n)), dtype)
  mm = tf.function(lambda x: tf.linalg.matmul(x, x))
  mm(a).numpy()
  t0, reps = time.perf_counter(), 0
  while time.perf_counter() - t0 < seconds:
    mm(a).numpy()
    reps += 1
  return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9
