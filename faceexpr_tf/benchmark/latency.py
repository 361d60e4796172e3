"""TFLite latency: each conversion of G timed at batch 1 on one thread, with its error.

The conversions run in float32 Keras (the policy is set to float32 first), so no row here
depends on the training precision; float16/int8 are the converter's own quantizations.
"""

import datetime
import os
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.benchmark import hardware
from faceexpr_tf.benchmark import tables
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.modeling import models

HEADER = ("| date | machine | CPU flags | TF | G | conversion | batch-1 ms (1 thread) | "
          "max abs diff | mean abs diff | MB |")


def tflite_ms(path: str, image: np.ndarray, seconds: float = 3.0) -> float:
  """Median batch-1 latency (ms) of a .tflite's translate_ids on one thread."""
  from faceexpr_tf import optional  # pylint: disable=g-import-not-at-top
  litert = optional.require("ai_edge_litert.interpreter", "to time a .tflite file")
  from faceexpr_tf.serving import translators  # pylint: disable=g-import-not-at-top
  runner = litert.Interpreter(model_path=path, num_threads=1).get_signature_runner(
      "translate_ids")
  details = runner.get_input_details()
  feed = {"image": translators.quantize(image, details["image"]),
          "target": translators.quantize(np.array([1], np.int32), details["target"])}
  for _ in range(3):
    runner(**feed)
  times, t_end = [], time.perf_counter() + seconds
  while time.perf_counter() < t_end or len(times) < 5:
    t0 = time.perf_counter()
    runner(**feed)
    times.append((time.perf_counter() - t0) * 1000)
  return statistics.median(times)


def tflite_latency(modes: list[str], model: str, threads: int, table: str,
                   command: str, seconds: float = 3.0) -> int:
  """Each conversion's batch-1 latency (one thread) and error against the Keras G.

  Args:
    modes: conversions (tflite.QUANTIZE_MODES; a UserError on an unknown one).
    model: "pretrained" (the shipped G) or "official" (untrained, official size).
    threads: TensorFlow threads for the conversion and reference (0 = 1).
    table: markdown file the section is written into ('' = print only).
    command: the command line, for the section's title.
    seconds: how long each conversion's latency is timed.

  Returns:
    0, the mode's exit status.
  """
  from faceexpr_tf.data import synthetic  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.serving import export  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.serving import pretrained  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.serving import signatures  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.serving import tflite  # pylint: disable=g-import-not-at-top
  for mode in modes:
    if mode not in tflite.QUANTIZE_MODES:
      raise errors.UserError(f"--bench_tflite: unknown {mode!r} (know "
                             f"{', '.join(tflite.QUANTIZE_MODES)})")
  hardware.set_threads(threads or 1)
  keras.mixed_precision.set_global_policy("float32")
  if model == "pretrained":
    g, record = pretrained.load_generator()
    emotions = tuple(record["emotions"])   # the shipped G's own (four or five)
  else:
    keras.utils.set_random_seed(0)
    g = models.build_models(models.ModelConfig())[0]
    emotions = emotions_lib.DEFAULT_EMOTIONS
  faces = synthetic.synthetic_faceset(80, seed=1, emotions=emotions)
  calib, probe = faces.images[:300], faces.images[300:308]
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    saved = export.export_saved_model(g, emotions, tmp, version=1)
    for mode in modes:
      path = os.path.join(tmp, f"g_{mode}.tflite")
      tflite.convert_tflite(saved, path, mode, calib if mode in tflite.CALIBRATED_MODES
                            else None)
      err = tflite.compare_tflite(path, g, probe, np.arange(len(probe)) % len(emotions))
      ms = tflite_ms(path, signatures.to_unit_range(probe[:1]), seconds)
      rows.append({"mode": mode, "ms": ms, **err})
      logging.info("TFLite %s: %.2f ms per face, max abs %.3g, mean abs %.3g, %.2f MB",
                   mode, ms, err["max_abs"], err["mean_abs"], err["size_bytes"] / 1e6)
  machine, flags = hardware.machine(), hardware.cpu_flags()
  lines = [f"| {datetime.date.today()} | {machine} | {flags} | {tf.__version__} | "
           f"{model} | {r['mode']} | {r['ms']:.2f} | {r['max_abs']:.2g} | "
           f"{r['mean_abs']:.2g} | {r['size_bytes'] / 1e6:.2f} |" for r in rows]
  tables.show(HEADER, lines)
  tables.insert_section(
      table, f"### TFLite batch-1 latency and error (`{command}`; differences in [-1, 1] "
      "units against the Keras G on 8 synthetic faces; int8 and int16x8 calibrated on 300)",
      HEADER, lines)
  return 0
