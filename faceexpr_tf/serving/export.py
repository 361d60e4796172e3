"""The `export` mode: ships the generator as a versioned SavedModel or a .tflite.

`python main.py export --run_dir=runs/x` writes

  exports/faceexpr/<version>/        SavedModel (TF Serving's <base>/<name>/<int version>)
  exports/faceexpr_<quant>.tflite    with --format=tflite (the translate_ids signature)
  exports/faceexpr_labels.txt        class names in class-id order, next to the .tflite

This module owns the version directories (integer names, never overwritten, written
under a hidden name and renamed into place complete) and the command line. The
signatures themselves (their names, inputs and outputs are a fixed contract) are built in
signatures.py on keras.export.ExportArchive; conversion to TFLite is tflite.py.
"""

import os
import re
import shutil
import tempfile
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import flags
from absl import logging

from faceexpr_tf import optional
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.serving import pretrained
from faceexpr_tf.serving import serving_flags
from faceexpr_tf.serving import signatures
from faceexpr_tf.serving import tflite
from faceexpr_tf.store import runs

ExportError = signatures.ExportError  # this mode's user errors

# This mode's flags, apart from every other mode's: main.py parses them only when
# the mode runs, so their defaults never depend on what else was imported.
FLAGS = flags.FlagValues()
_RUN_DIR = flags.DEFINE_string("run_dir", None, "Run directory to export G from.",
                               flag_values=FLAGS)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Checkpoint step number, 'best', 'latest' or .npz path (default: "
    "the run's best when it kept one, else the newest).", flag_values=FLAGS)
_PRETRAINED = flags.DEFINE_bool("pretrained", False, "Export the generator shipped with "
                                "the package (or the .keras file given as --run_dir).",
                                flag_values=FLAGS)
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", "exports", "Base directory; the SavedModel goes to "
    "<export_dir>/<model_name>/<version>/ (what TF Serving's --model_base_path wants).",
    flag_values=FLAGS)
_MODEL_NAME = serving_flags.define_model_name(FLAGS)
_VERSION = flags.DEFINE_integer(
    "version", None, "Integer model version (default: one more than the largest one "
    "under <export_dir>/<model_name>, starting at 1).", flag_values=FLAGS)
_FORMAT = flags.DEFINE_enum(
    "format", "saved_model", ["saved_model", "tflite"],
    "saved_model: a TF Serving version dir. tflite: <export_dir>/<model_name>_<quant>"
    ".tflite of the translate_ids signature (its SavedModel goes to a temp dir).",
    flag_values=FLAGS)
_QUANTIZE = flags.DEFINE_enum(
    "quantize", "none", list(tflite.QUANTIZE_MODES),
    "TFLite quantization: none (float32), float16 (float16 weights), dynamic (int8 "
    "weights, float activations), int8 (full integer), int16x8 (int16 activations, int8 "
    "weights). int8 and int16x8 need --representative_data. See docs/serving.md for "
    "their measured errors.", flag_values=FLAGS)
_REPRESENTATIVE_DATA = flags.DEFINE_string(
    "representative_data", None, "int8 calibration images: 'synthetic', a fer2013 csv "
    "or an image folder (the training split is used).", flag_values=FLAGS)
_REPRESENTATIVE_COUNT = flags.DEFINE_integer(
    "representative_count", 300, "How many calibration images int8/int16x8 use.",
    lower_bound=1,
    flag_values=FLAGS)
# On by default. The .tflite check needs ai-edge-litert (the `mobile` extra); without it
# the default run writes the files, warns in one line and exits 0 (the export itself does
# not need LiteRT), while an explicit --verify makes the missing package an error (exit
# 2, files still written): the user asked for the check.
_VERIFY = flags.DEFINE_bool(
    "verify", True, "Check the export against the Keras generator: the SavedModel "
    "reloaded, a .tflite run with ai-edge-litert (pip install -e \".[mobile]\"; when it "
    "is missing the check is skipped with a warning, or is an error if --verify is "
    "given explicitly).", flag_values=FLAGS)


# ---------------------------------------------------------------------------------------
# Versions.


def existing_versions(model_dir: str) -> list[int]:
  """Integer version dirs under model_dir, ascending (other entries are ignored)."""
  if not os.path.isdir(model_dir):
    return []
  return sorted(int(name) for name in os.listdir(model_dir)
                if name.isdigit() and os.path.isdir(os.path.join(model_dir, name)))


def next_version(model_dir: str) -> int:
  found = existing_versions(model_dir)
  return found[-1] + 1 if found else 1


def _check_model_name(model_name: str):
  # The name becomes a path component and TF Serving's URL segment.
  if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", model_name or ""):
    raise ExportError(f"model name {model_name!r}: use letters, digits, '.', '_' or '-'")


def export_saved_model(generator, emotions: Sequence[str], base_dir: str,
                       model_name: str = "faceexpr", version: int | None = None, *,
                       step: int | None = None) -> str:
  """Writes G as base_dir/model_name/<version>/ with the contract's signatures.

  Args:
    generator: a built models.Generator.
    emotions: class names in class-id order (the run's RunConfig.emotions).
    base_dir: TF Serving's base; the model dir under it holds integer version dirs.
    model_name: the model dir's name (TF Serving's MODEL_NAME).
    version: positive integer; None picks one more than the largest existing version.
    step: the training step, reported by the metadata signature.

  Returns:
    The version dir.

  Raises:
    ExportError: the version exists (versions are never overwritten: a running server
      may have loaded it), or the version/name is invalid.
  """
  _check_model_name(model_name)
  model_dir = os.path.join(base_dir, model_name)
  if version is None:
    version = next_version(model_dir)
  if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
    raise ExportError(f"version must be a positive integer, got {version!r}")
  version = int(version)
  final = os.path.join(model_dir, str(version))
  if os.path.exists(final):
    raise ExportError(f"{final} already exists; versions are never overwritten "
                      f"(omit --version to get {next_version(model_dir)})")
  os.makedirs(model_dir, exist_ok=True)
  archive = signatures.build_archive(generator, emotions, version=version, step=step)
  class_names = [emotions_lib.canonical(e) for e in emotions]
  # TF Serving polls the model dir and loads any integer-named dir it sees, so the model is
  # written under a non-numeric name and renamed into place only when complete.
  tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir)
  try:
    out = os.path.join(tmp, "model")
    signatures.write_archive(archive, class_names, out)
    try:
      os.rename(out, final)
    except OSError as e:
      raise ExportError(f"{final}: cannot create the version dir ({e.strerror})") from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  logging.info("Wrote SavedModel %s (signatures: %s)", final,
               ", ".join(signatures.SIGNATURES))
  return final


# ---------------------------------------------------------------------------------------
# Command line.


def load_representative_images(source: str, emotions: Sequence[str], count: int,
                               image_size: int = 48, seed: int = 0) -> np.ndarray:
  """Up to `count` training images (uint8 [N, H, W, C]) from a data source string."""
  from faceexpr_tf.data import loader  # pylint: disable=g-import-not-at-top
  faces = loader.load_faces(source, emotions, split="train", image_size=image_size)
  images = np.asarray(faces.images)
  if len(images) > count:
    images = images[np.random.default_rng(seed).choice(len(images), count, replace=False)]
  return images


def probe_images(n: int, size: int, channels: int, seed: int = 0) -> np.ndarray:
  """Smooth random uint8 images: a check input when no real data is at hand.

  Low-frequency (upsampled 6x6 noise) rather than white noise, so instance norm and the
  quantised activations see face-like value ranges.
  """
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, size=(n, 6, 6, channels))
  reps = -(-size // 6)
  fine = np.repeat(np.repeat(coarse, reps, axis=1), reps, axis=2)[:, :size, :size]
  return np.clip(fine + rng.normal(0, 8, fine.shape), 0, 255).astype(np.uint8)


def verify_saved_model(version_dir: str, generator, images_uint8: np.ndarray,
                       target_ids, tolerance: float = 1e-5) -> float:
  """Reloads an export and checks translate_ids equals the Keras generator."""
  loaded = tf.saved_model.load(version_dir)
  images = signatures.to_unit_range(np.asarray(images_uint8))
  ids = np.asarray(target_ids, np.int32)
  got = loaded.signatures["translate_ids"](image=tf.constant(images),
                                          target=tf.constant(ids))["image"].numpy()
  expected = np.asarray(generator(images, tf.one_hot(ids, generator.config.num_classes)))
  diff = float(np.abs(got - expected).max())
  if diff > tolerance:
    raise ExportError(f"{version_dir}: reloaded model differs from the checkpoint by "
                      f"{diff:.3g} (> {tolerance:g})")
  return diff


def _check_flags():
  """Flag combinations that cannot work, before any slow loading."""
  if not _RUN_DIR.value and not _PRETRAINED.value:
    raise ExportError("--run_dir is required (the training run to export), or "
                      "--pretrained for the shipped generator")
  _check_model_name(_MODEL_NAME.value)
  to_tflite = _FORMAT.value == "tflite"
  if not to_tflite and _QUANTIZE.value != "none":
    raise ExportError("--quantize applies to --format=tflite only")
  if (to_tflite and _QUANTIZE.value in tflite.CALIBRATED_MODES
      and not _REPRESENTATIVE_DATA.value):
    raise ExportError(f"--quantize={_QUANTIZE.value} needs --representative_data "
                      "('synthetic', a fer2013 csv or an image folder)")


def run() -> int | None:
  _check_flags()
  if _PRETRAINED.value or _RUN_DIR.value.lower().endswith(".keras"):
    generator, record = pretrained.load_generator(_RUN_DIR.value or None)
    config = runs.RunConfig(generator.config, tuple(record["emotions"]))
    step = int(record.get("step") or 0)
  else:
    generator, config, step = runs.load_generator(_RUN_DIR.value, _CHECKPOINT.value)
  model = config.model
  logging.info("Loaded G from %s (step %d)", _RUN_DIR.value or "the shipped generator",
               step)

  representative = None
  if _FORMAT.value == "tflite" and _QUANTIZE.value in tflite.CALIBRATED_MODES:
    representative = load_representative_images(
        _REPRESENTATIVE_DATA.value, config.emotions, _REPRESENTATIVE_COUNT.value,
        model.image_size)
  check_images = (representative[:8] if representative is not None
                  else probe_images(8, model.image_size, model.channels))
  check_ids = np.arange(len(check_images)) % model.num_classes

  if _FORMAT.value == "saved_model":
    version_dir = export_saved_model(generator, config.emotions, _EXPORT_DIR.value,
                                     _MODEL_NAME.value, _VERSION.value, step=step)
    if _VERIFY.value:
      diff = verify_saved_model(version_dir, generator, check_images, check_ids)
      logging.info("Verified: reloaded SavedModel matches Keras (max abs diff %.2g)", diff)
    logging.info("Serve it: docker run -p 8501:8501 -p 8500:8500 --mount type=bind,"
                 "source=%s,target=/models/%s -e MODEL_NAME=%s -t tensorflow/serving",
                 os.path.abspath(os.path.dirname(version_dir)), _MODEL_NAME.value,
                 _MODEL_NAME.value)
    return 0

  if _VERSION.value is not None:
    logging.warning("--version is ignored with --format=tflite")
  quant = "float32" if _QUANTIZE.value == "none" else _QUANTIZE.value
  out_path = os.path.join(_EXPORT_DIR.value, f"{_MODEL_NAME.value}_{quant}.tflite")
  with tempfile.TemporaryDirectory() as tmp:
    version_dir = export_saved_model(generator, config.emotions, tmp, _MODEL_NAME.value,
                                     1, step=step)
    tflite.convert_tflite(version_dir, out_path, _QUANTIZE.value, representative)
  labels = os.path.join(_EXPORT_DIR.value, f"{_MODEL_NAME.value}_labels.txt")
  with open(labels, "w") as f:
    f.write("".join(f"{name}\n" for name in config.emotions))
  logging.info("Wrote %s and %s", out_path, labels)
  if not _VERIFY.value:
    return 0
  try:
    optional.require("ai_edge_litert.interpreter", "to check the .tflite against Keras")
  except optional.MissingPackageError as e:
    if FLAGS["verify"].present:
      raise  # asked for explicitly: main.py prints it and exits 2 (the files are written)
    logging.warning("%s (the .tflite is written but not checked; --noverify skips the "
                    "check)", e)
    return 0
  stats = tflite.compare_tflite(out_path, generator, check_images, check_ids)
  logging.info("Compared %s with Keras on %d images: max abs diff %.3g, mean %.3g "
               "(in [-1, 1] units), %.2f MB", out_path, len(check_images),
               stats["max_abs"], stats["mean_abs"], stats["size_bytes"] / 1e6)
  return 0
