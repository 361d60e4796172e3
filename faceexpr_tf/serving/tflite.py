"""TFLite: converts an export's translate_ids signature, runs a .tflite, compares it to G.

The .tflite is converted from the SavedModel (signatures.py's translate_ids: pure tensor
ops, no control flow), so it holds exactly the variables ExportArchive saved; a
conversion that missed one would output NaN, which compare_tflite reports.
"""

import os
import warnings

import numpy as np
import tensorflow as tf
from absl import logging

from faceexpr_tf import optional
from faceexpr_tf.serving import signatures
from faceexpr_tf.serving import translators

TFLITE_SIGNATURE = "translate_ids"
QUANTIZE_MODES = ("none", "float16", "dynamic", "int8", "int16x8")
# Modes that calibrate activation ranges on representative images.
CALIBRATED_MODES = ("int8", "int16x8")


def _representative_dataset(images_uint8: np.ndarray, num_classes: int, seed: int = 0):
  """Calibration samples for int8: each training image once, with a random target."""
  rng = np.random.default_rng(seed)

  def gen():
    for image in images_uint8:
      yield {"image": signatures.to_unit_range(image[None]),
             "target": rng.integers(0, num_classes, size=(1,), dtype=np.int32)}
  return gen


def _convert(converter) -> bytes:
  with warnings.catch_warnings():
    # The converter's own calibrator still uses tf.lite.Interpreter; not our call.
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
    return converter.convert()


def convert_tflite(saved_model_dir: str, out_path: str, quantize: str = "none",
                   representative_images: np.ndarray | None = None, *,
                   seed: int = 0) -> str:
  """Converts the translate_ids signature of an export to a .tflite file.

  Args:
    saved_model_dir: a version dir written by export_saved_model.
    out_path: the .tflite to write (replaced atomically).
    quantize: "none" (float32); "float16" (weights stored as float16, computed in
      float32 on CPU); "dynamic" (int8 weights, float activations); "int8" (full
      integer: int8 weights and activations wherever TFLite has int8 kernels, float32
      in/out); "int16x8" (int16 activations, int8 weights: far more accurate than int8
      through instance norm, but only reference CPU kernels).
    representative_images: uint8 [N, H, W, C] training images, required for int8 and
      int16x8 (a few hundred; each is used once with a random target id).
    seed: for the calibration targets.

  Returns:
    out_path.
  """
  if quantize not in QUANTIZE_MODES:
    raise signatures.ExportError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got "
                      f"{quantize!r}")
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                       signature_keys=[TFLITE_SIGNATURE])
  if quantize != "none":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == "float16":
    converter.target_spec.supported_types = [tf.float16]
  if quantize in CALIBRATED_MODES:
    if representative_images is None or len(representative_images) == 0:
      raise signatures.ExportError(f"{quantize} quantization needs representative images "
                        "(--representative_data)")
    num_classes = len(signatures.read_class_names(saved_model_dir))
    converter.representative_dataset = _representative_dataset(
        np.asarray(representative_images), num_classes, seed)
  if quantize == "int8":
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  elif quantize == "int16x8":
    # Float builtins allowed for the few ops without a 16x8 kernel.
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS]
  try:
    model = _convert(converter)
  except Exception as e:  # pylint: disable=broad-except
    if quantize != "int8":
      raise
    # Some op without an int8 kernel: keep it in float rather than fail the export.
    logging.warning("Full-integer conversion failed (%s); allowing float fallback ops",
                    str(e).splitlines()[0] if str(e) else type(e).__name__)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    model = _convert(converter)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  tmp = out_path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(model)
  os.replace(tmp, out_path)
  logging.info("Wrote %s (%s, %.2f MB)", out_path, quantize, len(model) / 1e6)
  return out_path


def run_tflite(tflite_path: str, images: np.ndarray, target_ids) -> np.ndarray:
  """Runs a .tflite's translate_ids on float32 [-1, 1] images -> float32 [-1, 1]."""
  litert = optional.require("ai_edge_litert.interpreter", "to run a .tflite file")
  interpreter = litert.Interpreter(model_path=tflite_path)
  runner = interpreter.get_signature_runner(TFLITE_SIGNATURE)
  inputs = runner.get_input_details()
  feed = {"image": np.asarray(images, np.float32),
          "target": np.asarray(target_ids, np.int32).reshape(-1)}
  out = runner(**{name: translators.quantize(value, inputs[name])
                  for name, value in feed.items()})
  return translators.dequantize(out["image"], runner.get_output_details()["image"])


def compare_tflite(tflite_path: str, generator, images_uint8: np.ndarray,
                   targets) -> dict:
  """The .tflite against the Keras generator on the same inputs, in [-1, 1] units.

  Returns:
    {"max_abs": float, "mean_abs": float, "size_bytes": int}.
  """
  images = signatures.to_unit_range(np.asarray(images_uint8))
  ids = np.asarray(targets, np.int32).reshape(-1)
  expected = np.asarray(generator(images, tf.one_hot(ids, generator.config.num_classes)))
  diff = np.abs(run_tflite(tflite_path, images, ids) - expected)
  return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
          "size_bytes": os.path.getsize(tflite_path)}
