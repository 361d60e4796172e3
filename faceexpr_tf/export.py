"""Ships the generator: a versioned SavedModel for TF Serving, and .tflite for phones.

`python main.py export --run_dir=runs/x` writes

  exports/faceexpr/<version>/        SavedModel (TF Serving's <base>/<name>/<int version>)
  exports/faceexpr_<quant>.tflite    with --format=tflite (the translate_ids signature)
  exports/faceexpr_labels.txt        class names in class-id order, next to the .tflite

The SavedModel's signatures are a fixed contract (inference.py and docs/serving.md use
these names):

  serving_default  image uint8 [N,H,W,C], target string [N] (emotion name, any case)
                   -> image uint8 [N,H,W,C]
  translate_ids    image float32 [N,H,W,C] in [-1,1], target int32 [N] (class id)
                   -> image float32 [N,H,W,C] in [-1,1]   (pure tensor ops: TFLite)
  translate_all    image uint8 [N,H,W,C] -> images uint8 [N,K,H,W,C] (class order)
  translate_bytes  image_bytes string [N] (PNG/JPEG/BMP/GIF, any size, colour or gray),
                   target string [N] -> png_bytes string [N] (PNG of the HxW result)
  metadata         () -> class_names string [K], image_size int32, channels int32,
                   model_version int64, step int64 (-1 when unknown)

The PNG output is named `png_bytes` because TF Serving's REST API base64-encodes (as
{"b64": ...}) exactly the string outputs whose name ends in `_bytes`; any other name
would put raw PNG bytes into JSON. Inputs need no such suffix: TF Serving decodes every
{"b64": ...} value given for a string input.
"""

import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import flags
from absl import logging

from faceexpr_tf import emotions as emotions_lib
from faceexpr_tf import errors
from faceexpr_tf import images as images_lib
from faceexpr_tf import inference
from faceexpr_tf import optional
from faceexpr_tf import pretrained
from faceexpr_tf import runs

SIGNATURES = ("serving_default", "translate_ids", "translate_all", "translate_bytes",
              "metadata")
TFLITE_SIGNATURE = "translate_ids"
QUANTIZE_MODES = ("none", "float16", "dynamic", "int8", "int16x8")
# Modes that calibrate activation ranges on representative images.
CALIBRATED_MODES = ("int8", "int16x8")
CLASS_NAMES_ASSET = "class_names.txt"
# Magic numbers of the formats tf.io.decode_image reads; checked first so a bad upload
# fails with a message naming the format problem instead of a decoder internals error.
_IMAGE_MAGIC = ((b"\x89PNG", 4), (b"\xff\xd8\xff", 3), (b"GIF8", 4), (b"BM", 2))

# allow_override: other modes (train, translate) define --run_dir/--checkpoint too, and a
# process that imports several mode modules (pytest) must not die on the duplicate.
_DEFINE = {"allow_override": True}
_RUN_DIR = flags.DEFINE_string("run_dir", None, "Run directory to export G from.",
                               **_DEFINE)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Checkpoint step number, 'best', 'latest' or .npz path (default: "
    "the run's best when it kept one, else the newest).", **_DEFINE)
_PRETRAINED = flags.DEFINE_bool("pretrained", False, "Export the generator shipped with "
                                "the package (or the .keras file given as --run_dir).",
                                **_DEFINE)
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", "exports", "Base directory; the SavedModel goes to "
    "<export_dir>/<model_name>/<version>/ (what TF Serving's --model_base_path wants).",
    **_DEFINE)
_MODEL_NAME = flags.DEFINE_string("model_name", "faceexpr",
                                  "Model name (TF Serving's MODEL_NAME).", **_DEFINE)
_VERSION = flags.DEFINE_integer(
    "version", None, "Integer model version (default: one more than the largest one "
    "under <export_dir>/<model_name>, starting at 1).", **_DEFINE)
_FORMAT = flags.DEFINE_enum(
    "format", "saved_model", ["saved_model", "tflite"],
    "saved_model: a TF Serving version dir. tflite: <export_dir>/<model_name>_<quant>"
    ".tflite of the translate_ids signature (its SavedModel goes to a temp dir).",
    **_DEFINE)
_QUANTIZE = flags.DEFINE_enum(
    "quantize", "none", list(QUANTIZE_MODES),
    "TFLite quantization: none (float32), float16 (float16 weights), dynamic (int8 "
    "weights, float activations), int8 (full integer), int16x8 (int16 activations, int8 "
    "weights). int8 and int16x8 need --representative_data. See docs/serving.md for "
    "their measured errors.", **_DEFINE)
_REPRESENTATIVE_DATA = flags.DEFINE_string(
    "representative_data", None, "int8 calibration images: 'synthetic', a fer2013 csv "
    "or an image folder (the training split is used).", **_DEFINE)
_REPRESENTATIVE_COUNT = flags.DEFINE_integer(
    "representative_count", 300, "How many calibration images int8/int16x8 use.",
    lower_bound=1,
    **_DEFINE)
# On by default. The .tflite check needs ai-edge-litert (the `mobile` extra); without it
# the default run writes the files, warns in one line and exits 0 (the export itself does
# not need LiteRT), while an explicit --verify makes the missing package an error (exit
# 2, files still written): the user asked for the check.
_VERIFY = flags.DEFINE_bool(
    "verify", True, "Check the export against the Keras generator: the SavedModel "
    "reloaded, a .tflite run with ai-edge-litert (pip install -e \".[mobile]\"; when it "
    "is missing the check is skipped with a warning, or is an error if --verify is "
    "given explicitly).", **_DEFINE)


class ExportError(errors.UserError):
  """An export that cannot be written or converted as asked; one line for the user."""


# ---------------------------------------------------------------------------------------
# Pixel conventions (the same as training: [0, 255] <-> [-1, 1]).


def to_unit_range(images_uint8):
  """uint8 (numpy or tensor) -> float32 in [-1, 1]."""
  if isinstance(images_uint8, np.ndarray):
    return images_uint8.astype(np.float32) / 127.5 - 1.0
  return tf.cast(images_uint8, tf.float32) / 127.5 - 1.0


def to_uint8(images):
  """float in [-1, 1] tensor -> uint8, rounded to the nearest level."""
  return tf.cast(tf.round(tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


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


# ---------------------------------------------------------------------------------------
# The serving module.


def _check_same_batch(a, b, what: str):
  return tf.debugging.assert_equal(
      tf.shape(a)[0], tf.shape(b)[0],
      message=f"{what}: batch sizes differ (each image needs exactly one target)")


def build_serving_module(generator, emotions: Sequence[str], *, version: int = 0,
                         step: int | None = None) -> tf.Module:
  """A tf.Module whose tf.functions are the contract's signatures (see module doc).

  The Keras generator is not an attribute (tf.saved_model would then try to serialise the
  whole Keras object graph); only the tf.Variables its traced functions capture are
  tracked, as keras.export.ExportArchive does.
  """
  config = generator.config
  size, channels, k = config.image_size, config.channels, config.num_classes
  class_names = tuple(emotions_lib.canonical(e) for e in emotions)
  if len(class_names) != k:
    raise ExportError(f"{len(class_names)} emotions ({', '.join(class_names)}) for a "
                      f"generator with {k} classes")
  names_const = tf.constant(class_names)
  lower_names = tf.constant([n.lower() for n in class_names])
  known = ", ".join(class_names)

  module = tf.Module(name="faceexpr")
  # Readable without calling a signature: loaded.class_names.numpy().
  module.class_names = tf.Variable(class_names, trainable=False, name="class_names")

  def translate(images, ids):
    onehot = tf.one_hot(ids, k, dtype=tf.float32)
    return tf.cast(generator(images, onehot, training=False), tf.float32)

  def translate_any(images, ids):
    # G given an empty batch answers [0, size, size, <a hidden width>] on CPU; the
    # server's signatures answer an empty batch with an empty batch of the contract's
    # shape. (Not translate_ids: the .tflite is converted from it, kept free of control
    # flow.)
    return tf.cond(tf.shape(images)[0] > 0, lambda: translate(images, ids),
                   lambda: tf.zeros([0, size, size, channels], tf.float32))

  def checked_ids(ids):
    ok = (ids >= 0) & (ids < k)
    check = tf.debugging.Assert(
        tf.reduce_all(ok),
        [f"target class id out of range [0, {k}) (classes: {known}); bad ids:",
         tf.boolean_mask(ids, ~ok)], summarize=20)
    with tf.control_dependencies([check]):
      return tf.identity(ids)

  def ids_from_names(target):
    match = tf.equal(tf.strings.lower(tf.strings.strip(target))[:, None],
                     lower_names[None, :])
    found = tf.reduce_any(match, axis=1)
    check = tf.debugging.Assert(
        tf.reduce_all(found),
        [f"unknown emotion name in target (this model knows {known}, any case); bad:",
         tf.boolean_mask(target, ~found)], summarize=20)
    with tf.control_dependencies([check]):
      return tf.argmax(tf.cast(match, tf.int32), axis=1, output_type=tf.int32)

  def checked_images(image, what):
    # A loaded signature does not enforce its TensorSpec's shape (TF Serving neither), so
    # a wrong-sized image would otherwise fail deep inside G with a concat shape error.
    check = tf.debugging.assert_equal(
        tf.shape(image)[1:], tf.constant([size, size, channels]),
        message=f"{what}: image must be [N, {size}, {size}, {channels}]")
    with tf.control_dependencies([check]):
      return tf.identity(image)

  def decode_one(data):
    # The same decode as training folders and translate: EXIF orientation applied.
    image = images_lib.decode(data, channels=3)
    if channels == 1:
      image = tf.image.rgb_to_grayscale(image)
    image = tf.cast(image, tf.float32)
    shape = tf.shape(image)
    # Area averaging when shrinking (as faces.py does for training crops); area would
    # be blocky nearest-neighbour when enlarging, so bilinear there.
    shrink = (shape[0] >= size) & (shape[1] >= size)
    image = tf.cond(shrink, lambda: tf.image.resize(image, [size, size], method="area"),
                    lambda: tf.image.resize(image, [size, size], method="bilinear"))
    image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
    return tf.ensure_shape(image, [size, size, channels])

  def decode_all(image_bytes):
    ok = tf.zeros(tf.shape(image_bytes), tf.bool)
    for magic, length in _IMAGE_MAGIC:
      ok |= tf.equal(tf.strings.substr(image_bytes, 0, length), magic)
    check = tf.debugging.Assert(
        tf.reduce_all(ok),
        ["image_bytes: not a PNG, JPEG, BMP or GIF image at batch index",
         tf.where(~ok)[:, 0]], summarize=20)
    with tf.control_dependencies([check]):
      # Decoders allocate what the header announces: refuse a 20000x20000 upload unread.
      pixels = tf.map_fn(images_lib.announced_pixels, image_bytes,
                         fn_output_signature=tf.int64)
      small = pixels <= images_lib.MAX_PIXELS
      size_check = tf.debugging.Assert(
          tf.reduce_all(small),
          [f"image_bytes: image too large to decode (over {images_lib.MAX_PIXELS:,} "
           "pixels) at batch index", tf.where(~small)[:, 0]], summarize=20)
    with tf.control_dependencies([size_check]):
      return tf.map_fn(decode_one, image_bytes,
                       fn_output_signature=tf.TensorSpec([size, size, channels], tf.uint8))

  image_u8 = tf.TensorSpec([None, size, size, channels], tf.uint8, name="image")
  image_f32 = tf.TensorSpec([None, size, size, channels], tf.float32, name="image")
  names = tf.TensorSpec([None], tf.string, name="target")

  @tf.function(input_signature=[image_u8, names])
  def serving_default(image, target):
    image = checked_images(image, "serving_default")
    with tf.control_dependencies([_check_same_batch(image, target, "serving_default")]):
      ids = ids_from_names(target)
    return {"image": to_uint8(translate_any(to_unit_range(image), ids))}

  @tf.function(input_signature=[image_f32, tf.TensorSpec([None], tf.int32, name="target")])
  def translate_ids(image, target):
    image = checked_images(image, "translate_ids")
    with tf.control_dependencies([_check_same_batch(image, target, "translate_ids")]):
      ids = checked_ids(target)
    return {"image": translate(image, ids)}

  @tf.function(input_signature=[image_u8])
  def translate_all(image):
    image = checked_images(image, "translate_all")
    n = tf.shape(image)[0]
    # One generator pass over N*K rows: image i repeated K times, targets 0..K-1 each.
    repeated = tf.repeat(to_unit_range(image), k, axis=0)
    ids = tf.tile(tf.range(k, dtype=tf.int32), [n])
    out = to_uint8(translate_any(repeated, ids))
    return {"images": tf.reshape(out, [n, k, size, size, channels])}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"),
                                names])
  def translate_bytes(image_bytes, target):
    with tf.control_dependencies([_check_same_batch(image_bytes, target,
                                                    "translate_bytes")]):
      ids = ids_from_names(target)
    images = decode_all(image_bytes)
    out = to_uint8(translate_any(to_unit_range(images), ids))
    png = tf.map_fn(tf.io.encode_png, out, fn_output_signature=tf.TensorSpec([], tf.string))
    return {"png_bytes": png}

  @tf.function(input_signature=[])
  def metadata():
    return {"class_names": names_const,
            "image_size": tf.constant(size, tf.int32),
            "channels": tf.constant(channels, tf.int32),
            "model_version": tf.constant(version, tf.int64),
            "step": tf.constant(-1 if step is None else step, tf.int64)}

  module.serving_default = serving_default
  module.translate_ids = translate_ids
  module.translate_all = translate_all
  module.translate_bytes = translate_bytes
  module.metadata = metadata
  # Track the tf.Variables the traces read, not generator.variables: those are Keras
  # wrappers that SavedModel would save as *copies*, leaving the functions reading handles
  # no saved object owns. The TFLite converter then cannot freeze them and emits
  # uninitialised VAR_HANDLE ops (the .tflite outputs NaN).
  captured = {}
  for name in SIGNATURES:
    for var in getattr(module, name).get_concrete_function().variables:
      captured.setdefault(id(var), var)
  module.generator_variables = list(captured.values())
  return module


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
  module = build_serving_module(generator, emotions, version=version, step=step)
  # TF Serving polls the model dir and loads any integer-named dir it sees, so the model is
  # written under a non-numeric name and renamed into place only when complete.
  tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir)
  try:
    labels = os.path.join(tmp, CLASS_NAMES_ASSET)
    with open(labels, "w") as f:
      f.write("".join(f"{name.decode()}\n" for name in module.class_names.numpy()))
    module.class_names_file = tf.saved_model.Asset(labels)
    out = os.path.join(tmp, "model")
    tf.saved_model.save(module, out, signatures={
        name: getattr(module, name).get_concrete_function() for name in SIGNATURES})
    try:
      os.rename(out, final)
    except OSError as e:
      raise ExportError(f"{final}: cannot create the version dir ({e.strerror})") from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  logging.info("Wrote SavedModel %s (signatures: %s)", final, ", ".join(SIGNATURES))
  return final


def read_class_names(saved_model_dir: str) -> list[str]:
  """Class names from an exported SavedModel's asset (no TF load needed)."""
  path = os.path.join(saved_model_dir, "assets", CLASS_NAMES_ASSET)
  try:
    with open(path) as f:
      return [line.strip() for line in f if line.strip()]
  except FileNotFoundError:
    raise ExportError(f"{saved_model_dir}: no assets/{CLASS_NAMES_ASSET}; not a "
                      "faceexpr-tf export") from None


# ---------------------------------------------------------------------------------------
# TFLite.


def _representative_dataset(images_uint8: np.ndarray, num_classes: int, seed: int = 0):
  """Calibration samples for int8: each training image once, with a random target."""
  rng = np.random.default_rng(seed)

  def gen():
    for image in images_uint8:
      yield {"image": to_unit_range(image[None]),
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
    raise ExportError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got "
                      f"{quantize!r}")
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                       signature_keys=[TFLITE_SIGNATURE])
  if quantize != "none":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == "float16":
    converter.target_spec.supported_types = [tf.float16]
  if quantize in CALIBRATED_MODES:
    if representative_images is None or len(representative_images) == 0:
      raise ExportError(f"{quantize} quantization needs representative images "
                        "(--representative_data)")
    num_classes = len(read_class_names(saved_model_dir))
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
  out = runner(**{name: inference.quantize(value, inputs[name])
                  for name, value in feed.items()})
  return inference.dequantize(out["image"], runner.get_output_details()["image"])


def compare_tflite(tflite_path: str, generator, images_uint8: np.ndarray,
                   targets) -> dict:
  """The .tflite against the Keras generator on the same inputs, in [-1, 1] units.

  Returns:
    {"max_abs": float, "mean_abs": float, "size_bytes": int}.
  """
  images = to_unit_range(np.asarray(images_uint8))
  ids = np.asarray(targets, np.int32).reshape(-1)
  expected = np.asarray(generator(images, tf.one_hot(ids, generator.config.num_classes)))
  diff = np.abs(run_tflite(tflite_path, images, ids) - expected)
  return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
          "size_bytes": os.path.getsize(tflite_path)}


# ---------------------------------------------------------------------------------------
# Command line.


def load_representative_images(source: str, emotions: Sequence[str], count: int,
                               image_size: int = 48, seed: int = 0) -> np.ndarray:
  """Up to `count` training images (uint8 [N, H, W, C]) from a data source string."""
  from faceexpr_tf import data  # pylint: disable=g-import-not-at-top
  faces = data.load_faces(source, emotions, split="train", image_size=image_size)
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
  images = to_unit_range(np.asarray(images_uint8))
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
  tflite = _FORMAT.value == "tflite"
  if not tflite and _QUANTIZE.value != "none":
    raise ExportError("--quantize applies to --format=tflite only")
  if tflite and _QUANTIZE.value in CALIBRATED_MODES and not _REPRESENTATIVE_DATA.value:
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
  if _FORMAT.value == "tflite" and _QUANTIZE.value in CALIBRATED_MODES:
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
    convert_tflite(version_dir, out_path, _QUANTIZE.value, representative)
  labels = os.path.join(_EXPORT_DIR.value, f"{_MODEL_NAME.value}_labels.txt")
  with open(labels, "w") as f:
    f.write("".join(f"{name}\n" for name in config.emotions))
  logging.info("Wrote %s and %s", out_path, labels)
  if not _VERIFY.value:
    return 0
  try:
    optional.require("ai_edge_litert.interpreter", "to check the .tflite against Keras")
  except optional.MissingPackageError as e:
    if flags.FLAGS["verify"].present:
      raise  # asked for explicitly: main.py prints it and exits 2 (the files are written)
    logging.warning("%s (the .tflite is written but not checked; --noverify skips the "
                    "check)", e)
    return 0
  stats = compare_tflite(out_path, generator, check_images, check_ids)
  logging.info("Compared %s with Keras on %d images: max abs diff %.3g, mean %.3g "
               "(in [-1, 1] units), %.2f MB", out_path, len(check_images),
               stats["max_abs"], stats["mean_abs"], stats["size_bytes"] / 1e6)
  return 0
