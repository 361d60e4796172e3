"""`python main.py benchmark`: training and inference speed, printed and appended to a table.

Times fit() on in-memory batches (no input pipeline cost) for named model sizes, and G's
inference, on whatever device this process sees. Compare numbers only side by side on one
machine (see ../shared/bench for the PyTorch anchor); the table records date, machine and
settings with every row.
"""

import datetime
import os
import platform
import resource
import time

import keras
import numpy as np
import tensorflow as tf
from absl import flags
from absl import logging

from faceexpr_tf import devices
from faceexpr_tf import models
from faceexpr_tf import stargan

_D = {"allow_override": True}
_CONFIGS = flags.DEFINE_list("bench_configs", ["official", "cpu", "demo"],
                             "Model sizes to time: " + ", ".join(
                                 ["official", "cpu", "demo"]), **_D)
_PRECISIONS = flags.DEFINE_list("bench_precisions", ["auto"], "Precisions to time "
                                "(auto, float32, mixed_bfloat16, ...).", **_D)
_STEPS = flags.DEFINE_integer("bench_steps", 20, "Timed training steps per row.", **_D)
_TABLE = flags.DEFINE_string("bench_table", "docs/benchmarks.md", "Markdown file the rows "
                             "are appended to ('' = print only).", **_D)

# name -> (ModelConfig overrides, batch size, n_critic/gan_loss)
CONFIGS = {
    "official": (dict(), 8, "log"),
    "official-wgan": (dict(), 16, "wgan-gp"),
    "cpu": (dict(g_conv_dim=32), 8, "log"),
    "demo": (dict(g_conv_dim=16, g_repeat_num=2, d_conv_dim=16, upsample="resize",
                  g_output="residual"), 32, "log"),
}


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


def _time_training(name, precision, steps):
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
  t0 = time.perf_counter()
  model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
  train_rate = steps * batch / (time.perf_counter() - t0)

  xi = np.repeat(x, 64 // batch, axis=0)
  onehot = np.eye(4, dtype=np.float32)[np.arange(len(xi)) % 4]
  infer = tf.function(lambda a, b: g(a, b, training=False), jit_compile=plan.jit_compile)
  infer(xi, onehot)
  t0, n = time.perf_counter(), 0
  while time.perf_counter() - t0 < 3:
    infer(xi, onehot).numpy()
    n += len(xi)
  infer_rate = n / (time.perf_counter() - t0)
  gflop = generator_flops(config) / 1e9
  return {"config": name, "batch": batch, "loss": gan_loss, "precision": plan.precision,
          "jit": plan.jit_compile, "train_img_s": train_rate, "infer_img_s": infer_rate,
          "g_gflop": gflop, "infer_gflop_s": infer_rate * gflop,
          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def machine() -> str:
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


def run():
  rows = []
  for name in _CONFIGS.value:
    if name not in CONFIGS:
      from faceexpr_tf import errors  # pylint: disable=g-import-not-at-top
      raise errors.UserError(f"--bench_configs: unknown {name!r} (know {', '.join(CONFIGS)})")
    for precision in _PRECISIONS.value:
      row = _time_training(name, precision, _STEPS.value)
      logging.info("%s", row)
      rows.append(row)
      keras.backend.clear_session()
  header = ("| date | machine | TF | oneDNN | config | batch | loss | precision | jit | "
            "train img/s | G infer img/s | G GFLOP/img | G infer GFLOP/s | peak RSS MB |")
  lines = []
  for r in rows:
    lines.append(
        f"| {datetime.date.today()} | {machine()} | {tf.__version__} | "
        f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')} | {r['config']} | "
        f"{r['batch']} | {r['loss']} | {r['precision']} | {r['jit']} | "
        f"{r['train_img_s']:.1f} | {r['infer_img_s']:.0f} | {r['g_gflop']:.2f} | "
        f"{r['infer_gflop_s']:.0f} | {r['peak_rss_mb']:.0f} |")
  print(header)
  print("\n".join(lines))
  if _TABLE.value:
    new = not os.path.exists(_TABLE.value)
    os.makedirs(os.path.dirname(_TABLE.value) or ".", exist_ok=True)
    with open(_TABLE.value, "a") as f:
      if new:
        f.write("# Benchmarks\n\n`python main.py benchmark` appends rows here.\n\n")
        f.write(header + "\n" + "|---" * (header.count("|") - 1) + "|\n")
      f.write("\n".join(lines) + "\n")
  return 0
