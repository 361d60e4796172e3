"""The training-speed table: fit() and G-inference rates of named model sizes.

Times fit() on in-memory batches (no input pipeline cost) and G's inference for each
config and precision, on whatever device this process sees. Each row names the precision
that ran: "auto" is resolved by training/devices.py exactly as `main.py train` resolves it.
"""

import datetime
import os
import resource
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.benchmark import hardware
from faceexpr_tf.benchmark import tables
from faceexpr_tf.modeling import models
from faceexpr_tf.modeling import stargan
from faceexpr_tf.training import devices

# name -> (ModelConfig overrides, batch size, n_critic/gan_loss)
CONFIGS = {
    "official": (dict(), 8, "log"),
    "official-wgan": (dict(), 16, "wgan-gp"),
    "cpu": (dict(g_conv_dim=32), 8, "log"),
    "demo": (dict(g_conv_dim=16, g_repeat_num=2, d_conv_dim=16, upsample="resize",
                  g_output="residual"), 32, "log"),
    # The shipped G's shape since 2026-12-04 (flags/ferplus_w64*.flags) and before it
    # (flags/fer2013*.flags), at their batch; without the guide and DiffAugment.
    "residual64": (dict(upsample="resize", g_output="residual"), 16, "log"),
    "residual32": (dict(g_conv_dim=32, upsample="resize", g_output="residual"), 16, "log"),
}

HEADER = ("| date | machine | CPU flags | TF | oneDNN | config | batch | loss | precision | "
          "jit | train img/s | G infer img/s | G GFLOP/img | G infer GFLOP/s | peak RSS MB |")


def generator_flops(config: models.ModelConfig) -> float:
  """Forward FLOPs of G per image (2 x multiply-adds of every convolution)."""
  s, d, k, c = config.image_size, config.g_conv_dim, config.num_classes, config.channels
  macs = s * s * (c + k) * d * 49
  macs += (s // 2) ** 2 * d * 2 * d * 16 + (s // 4) ** 2 * 2 * d * 4 * d * 16
  macs += config.g_repeat_num * 2 * (s // 4) ** 2 * (4 * d) ** 2 * 9
  up = 16 if config.upsample == "transpose" else 9
  # A stride-2 transposed conv does k*k/4 multiply-adds per output pixel and channel pair.
  per_out = up / 4 if config.upsample == "transpose" else up
  macs += (s // 2) ** 2 * 4 * d * 2 * d * per_out + s * s * 2 * d * d * per_out
  macs += s * s * d * c * 49
  return 2.0 * macs


def check_config(name: str):
  """A UserError naming the known configs unless `name` is one."""
  if name not in CONFIGS:
    raise errors.UserError(f"--bench_configs: unknown {name!r} (know {', '.join(CONFIGS)})")


def warm_trainer(name: str, precision: str):
  """A compiled StarGAN of config `name`, its in-memory batches, warmed up (traced).

  Args:
    name: a key of CONFIGS.
    precision: auto, float32, mixed_bfloat16 or mixed_float16; devices.plan resolves
      "auto" and sets the global Keras policy before the models are built.

  Returns:
    (model, dataset, one batch of images, the DevicePlan that ran, the ModelConfig).
  """
  overrides, batch, gan_loss = CONFIGS[name]
  plan = devices.plan(precision, "auto", "default")
  config = models.ModelConfig(**overrides)
  g, d = models.build_models(config)
  model = stargan.StarGAN(g, d, gan_loss=gan_loss)
  model.compile(keras.optimizers.Adam(1e-4, 0.5), keras.optimizers.Adam(1e-4, 0.5),
                jit_compile=plan.jit_compile)
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (batch, 48, 48, 1)).astype(np.float32)
  org = rng.integers(0, 4, batch).astype(np.int32)
  ds = tf.data.Dataset.from_tensors((x, org, (org + 1) % 4)).repeat()
  model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)   # trace and warm up
  return model, ds, x, plan, config


def time_training(name: str, precision: str, steps: int, infer_seconds: float = 3.0) -> dict:
  """One row of the table: `steps` timed training steps, then G inference at batch 64.

  Args:
    name: a key of CONFIGS.
    precision: as --bench_precisions gives it ("auto" included).
    steps: timed training steps.
    infer_seconds: how long G's inference is timed.

  Returns:
    The row's values; "precision" is the resolved policy name that ran.
  """
  _, batch, gan_loss = CONFIGS[name]
  model, ds, x, plan, config = warm_trainer(name, precision)
  g = model.generator
  t0 = time.perf_counter()
  model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
  train_rate = steps * batch / (time.perf_counter() - t0)

  xi = np.repeat(x, 64 // batch, axis=0)
  onehot = np.eye(4, dtype=np.float32)[np.arange(len(xi)) % 4]
  infer = tf.function(lambda a, b: g(a, b, training=False), jit_compile=plan.jit_compile)
  infer(xi, onehot)
  t0, n = time.perf_counter(), 0
  while time.perf_counter() - t0 < infer_seconds:
    infer(xi, onehot).numpy()
    n += len(xi)
  infer_rate = n / (time.perf_counter() - t0)
  gflop = generator_flops(config) / 1e9
  return {"config": name, "batch": batch, "loss": gan_loss, "precision": plan.precision,
          "jit": plan.jit_compile, "train_img_s": train_rate, "infer_img_s": infer_rate,
          "g_gflop": gflop, "infer_gflop_s": infer_rate * gflop,
          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def row_line(r: dict, machine: str, flags: str) -> str:
  """A table line (matching HEADER) of one `time_training` row."""
  return (f"| {datetime.date.today()} | {machine} | {flags} | {tf.__version__} | "
          f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')} | {r['config']} | "
          f"{r['batch']} | {r['loss']} | {r['precision']} | {r['jit']} | "
          f"{r['train_img_s']:.1f} | {r['infer_img_s']:.0f} | {r['g_gflop']:.2f} | "
          f"{r['infer_gflop_s']:.0f} | {r['peak_rss_mb']:.0f} |")


def training_table(configs: list[str], precisions: list[str], steps: int, threads: int,
                   table: str) -> int:
  """`benchmark`: a row per config and precision, printed and appended to `table`.

  Args:
    configs: keys of CONFIGS (a UserError on an unknown one).
    precisions: as --bench_precisions gives them.
    steps: timed training steps per row.
    threads: TensorFlow threads (0 = its default).
    table: markdown file the rows are appended to ('' = print only).

  Returns:
    0, the mode's exit status.
  """
  hardware.set_threads(threads)
  rows = []
  for name in configs:
    check_config(name)
    for precision in precisions:
      row = time_training(name, precision, steps)
      logging.info("%s", row)
      rows.append(row)
      keras.backend.clear_session()
  machine, flags = hardware.machine(), hardware.cpu_flags()
  lines = [row_line(r, machine, flags) for r in rows]
  tables.show(HEADER, lines)
  tables.append_rows(table, HEADER, lines)
  return 0
