"""The SavedModel's serving endpoints, built on keras.export.ExportArchive.

The signatures are a fixed contract (inference.py, rest_api.py and docs/serving.md use
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

Batch size: every signature takes at most MAX_BATCH images per request (translate_all:
MAX_BATCH // K, as it runs G on N*K rows) and refuses more with an InvalidArgumentError
naming the limit, before G runs: a mistaken huge request would otherwise hold G's
activations for all of its faces at once (the full-size G on CPU: peak memory grew 1.4 MB
per face from 32 to 128 faces, so 4096 faces ~6 GB, 100000 ~140 GB) and could take a
serving process down. Clients split larger jobs (inference.py sends 64 at a time).

Variable tracking is ExportArchive's (it lists the variables each endpoint's trace reads
and saves those, which a TensorFlow release keeps working for Keras); this module only
writes the endpoint functions.
"""

import os
import tempfile
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from faceexpr_tf import errors
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.data import images as images_lib

SIGNATURES = ("serving_default", "translate_ids", "translate_all", "translate_bytes",
              "metadata")
CLASS_NAMES_ASSET = "class_names.txt"
# Images per request, every signature (see the module doc).
MAX_BATCH = 1024
# Magic numbers of the formats tf.io.decode_image reads; checked first so a bad upload
# fails with a message naming the format problem instead of a decoder internals error.
_IMAGE_MAGIC = ((b"\x89PNG", 4), (b"\xff\xd8\xff", 3), (b"GIF8", 4), (b"BM", 2))


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
# Checks shared by the endpoints.


def _check_same_batch(a, b, what: str):
  return tf.debugging.assert_equal(
      tf.shape(a)[0], tf.shape(b)[0],
      message=f"{what}: batch sizes differ (each image needs exactly one target)")


def _check_batch_size(x, limit: int, what: str):
  return tf.debugging.assert_less_equal(
      tf.shape(x)[0], limit,
      message=f"{what}: batch too large (at most {limit} images per request; split it)")


class _Endpoints:
  """The contract's endpoint functions for one generator (plain functions of tensors)."""

  def __init__(self, generator, class_names: tuple[str, ...], version: int,
               step: int | None):
    config = generator.config
    self.generator = generator
    self.size, self.channels, self.k = config.image_size, config.channels, config.num_classes
    self.class_names = class_names
    self.known = ", ".join(class_names)
    self.version = version
    self.step = -1 if step is None else step

  # --- pieces ---------------------------------------------------------------------------

  def translate(self, images, ids):
    onehot = tf.one_hot(ids, self.k, dtype=tf.float32)
    return tf.cast(self.generator(images, onehot, training=False), tf.float32)

  def translate_any(self, images, ids):
    # G given an empty batch answers [0, size, size, <a hidden width>] on CPU; the
    # server's signatures answer an empty batch with an empty batch of the contract's
    # shape. (Not translate_ids: the .tflite is converted from it, kept free of control
    # flow.)
    return tf.cond(tf.shape(images)[0] > 0, lambda: self.translate(images, ids),
                   lambda: tf.zeros([0, self.size, self.size, self.channels], tf.float32))

  def checked_ids(self, ids):
    ok = (ids >= 0) & (ids < self.k)
    check = tf.debugging.Assert(
        tf.reduce_all(ok),
        [f"target class id out of range [0, {self.k}) (classes: {self.known}); bad ids:",
         tf.boolean_mask(ids, ~ok)], summarize=20)
    with tf.control_dependencies([check]):
      return tf.identity(ids)

  def ids_from_names(self, target):
    lower_names = tf.constant([n.lower() for n in self.class_names])
    match = tf.equal(tf.strings.lower(tf.strings.strip(target))[:, None],
                     lower_names[None, :])
    found = tf.reduce_any(match, axis=1)
    check = tf.debugging.Assert(
        tf.reduce_all(found),
        [f"unknown emotion name in target (this model knows {self.known}, any case); bad:",
         tf.boolean_mask(target, ~found)], summarize=20)
    with tf.control_dependencies([check]):
      return tf.argmax(tf.cast(match, tf.int32), axis=1, output_type=tf.int32)

  def checked_images(self, image, what, limit=MAX_BATCH):
    # A loaded signature does not enforce its TensorSpec's shape (TF Serving neither), so
    # a wrong-sized image would otherwise fail deep inside G with a concat shape error.
    size, channels = self.size, self.channels
    check = tf.debugging.assert_equal(
        tf.shape(image)[1:], tf.constant([size, size, channels]),
        message=f"{what}: image must be [N, {size}, {size}, {channels}]")
    with tf.control_dependencies([check, _check_batch_size(image, limit, what)]):
      return tf.identity(image)

  def decode_one(self, data):
    size, channels = self.size, self.channels
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

  def decode_all(self, image_bytes):
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
      return tf.map_fn(self.decode_one, image_bytes, fn_output_signature=tf.TensorSpec(
          [self.size, self.size, self.channels], tf.uint8))

  # --- the endpoints --------------------------------------------------------------------

  def serving_default(self, image, target):
    image = self.checked_images(image, "serving_default")
    with tf.control_dependencies([_check_same_batch(image, target, "serving_default")]):
      ids = self.ids_from_names(target)
    return {"image": to_uint8(self.translate_any(to_unit_range(image), ids))}

  def translate_ids(self, image, target):
    image = self.checked_images(image, "translate_ids")
    with tf.control_dependencies([_check_same_batch(image, target, "translate_ids")]):
      ids = self.checked_ids(target)
    return {"image": self.translate(image, ids)}

  def translate_all(self, image):
    k, size, channels = self.k, self.size, self.channels
    image = self.checked_images(image, "translate_all", max(1, MAX_BATCH // k))
    n = tf.shape(image)[0]
    # One generator pass over N*K rows: image i repeated K times, targets 0..K-1 each.
    repeated = tf.repeat(to_unit_range(image), k, axis=0)
    ids = tf.tile(tf.range(k, dtype=tf.int32), [n])
    out = to_uint8(self.translate_any(repeated, ids))
    return {"images": tf.reshape(out, [n, k, size, size, channels])}

  def translate_bytes(self, image_bytes, target):
    with tf.control_dependencies([
        _check_same_batch(image_bytes, target, "translate_bytes"),
        _check_batch_size(image_bytes, MAX_BATCH, "translate_bytes")]):
      ids = self.ids_from_names(target)
    images = self.decode_all(image_bytes)
    out = to_uint8(self.translate_any(to_unit_range(images), ids))
    png = tf.map_fn(tf.io.encode_png, out, fn_output_signature=tf.TensorSpec([], tf.string))
    return {"png_bytes": png}

  def metadata(self):
    return {"class_names": tf.constant(self.class_names),
            "image_size": tf.constant(self.size, tf.int32),
            "channels": tf.constant(self.channels, tf.int32),
            "model_version": tf.constant(self.version, tf.int64),
            "step": tf.constant(self.step, tf.int64)}

  def input_signatures(self) -> dict:
    shape = [None, self.size, self.size, self.channels]
    image_u8 = tf.TensorSpec(shape, tf.uint8, name="image")
    names = tf.TensorSpec([None], tf.string, name="target")
    return {
        "serving_default": [image_u8, names],
        "translate_ids": [tf.TensorSpec(shape, tf.float32, name="image"),
                          tf.TensorSpec([None], tf.int32, name="target")],
        "translate_all": [image_u8],
        "translate_bytes": [tf.TensorSpec([None], tf.string, name="image_bytes"), names],
        "metadata": [],
    }


def build_archive(generator, emotions: Sequence[str], *, version: int = 0,
                  step: int | None = None) -> keras.export.ExportArchive:
  """An ExportArchive of G with the contract's endpoints (see the module doc).

  Args:
    generator: a built models.Generator.
    emotions: class names in class-id order.
    version: reported by the metadata signature.
    step: the training step, reported by the metadata signature (None: -1).

  Raises:
    ExportError: the number of emotions is not G's number of classes.
  """
  k = generator.config.num_classes
  class_names = tuple(emotions_lib.canonical(e) for e in emotions)
  if len(class_names) != k:
    raise ExportError(f"{len(class_names)} emotions ({', '.join(class_names)}) for a "
                      f"generator with {k} classes")
  if not generator.built:
    raise ExportError("the generator is not built; build it (or load weights) first")
  endpoints = _Endpoints(generator, class_names, version, step)
  archive = keras.export.ExportArchive()
  # add_endpoint traces each function, and write_out saves exactly the tf.Variables the
  # traces read. archive.track(generator) is left out on purpose: it would add G's Keras
  # variable wrappers, which SavedModel stores as a second copy of every weight (the file
  # twice as large). G's weights are readable after a load, in G's order, as
  # `generator_variables`: the very tf.Variables the signatures read (not copies).
  for name, spec in endpoints.input_signatures().items():
    archive.add_endpoint(name, getattr(endpoints, name), input_signature=spec)
  archive.add_variable_collection("generator_variables",
                                  [v.value for v in generator.variables])
  return archive


def write_archive(archive, class_names: Sequence[str], path: str):
  """Writes the archive as a SavedModel at path, with the class names beside G.

  The names go in as assets/class_names.txt and as a string variable readable without
  calling a signature (`tf.saved_model.load(d).class_names.numpy()`, docs/serving.md).
  ExportArchive has no public call for a non-G attribute, so these two are attached to
  the object it saves (test_export checks both after a fresh load).
  """
  root = archive._tf_trackable  # pylint: disable=protected-access
  with tempfile.TemporaryDirectory() as tmp:
    labels = os.path.join(tmp, CLASS_NAMES_ASSET)
    with open(labels, "w") as f:
      f.write("".join(f"{name}\n" for name in class_names))
    root.class_names = tf.Variable(list(class_names), trainable=False, name="class_names")
    root.class_names_file = tf.saved_model.Asset(labels)
    archive.write_out(path, verbose=False)


def read_class_names(saved_model_dir: str) -> list[str]:
  """Class names from an exported SavedModel's asset (no TF load needed)."""
  path = os.path.join(saved_model_dir, "assets", CLASS_NAMES_ASSET)
  try:
    with open(path) as f:
      return [line.strip() for line in f if line.strip()]
  except FileNotFoundError:
    raise ExportError(f"{saved_model_dir}: no assets/{CLASS_NAMES_ASSET}; not a "
                      "faceexpr-tf export") from None
