"""The loaded generator behind one interface: uint8 faces in, translated uint8 faces out.

    out = translator.translate(faces_uint8, target_ids)     # [N, H, W, C] uint8
    grid = translator.translate_all(faces_uint8)            # [N, K, H, W, C] uint8

One Translator per saved form of G (a Keras model, a SavedModel, a .tflite); inference.py
finds and loads them. All take and return uint8 pixels; the [-1, 1] float range the
networks use stays in here (`to_model_range` / `to_uint8`), so callers never convert by
hand and every form rounds the same way.
"""

import abc
from collections.abc import Sequence

import numpy as np

from faceexpr_tf import errors
from faceexpr_tf.data import emotions as emotions_lib

TRANSLATE_SIGNATURE = "translate_ids"
METADATA_SIGNATURE = "metadata"
# Images per forward pass: bounds memory for big inputs without slowing small ones.
_BATCH = 64


class ModelLoadError(errors.UserError):
  """A --model path that is missing, of an unknown kind, or corrupt; names the path."""


def to_model_range(images: np.ndarray) -> np.ndarray:
  """uint8 pixels [0, 255] -> float32 [-1, 1], as the generator was trained."""
  return np.asarray(images, np.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
  """Float [-1, 1] -> uint8 [0, 255], rounded to nearest and clipped."""
  pixels = (np.asarray(images, np.float32) + 1.0) * 127.5
  return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


class Translator(abc.ABC):
  """A loaded generator: uint8 faces in, the same faces with another expression out.

  Attributes:
    emotions: class names, index = class id.
    image_size: side of the square input the model takes.
    channels: 1 (gray) or 3 (RGB).
    source: human-readable description of what was loaded (kind and path).
    step: training step of the weights, when the saved form records it (else None).
  """

  def __init__(self, emotions: Sequence[str], image_size: int, channels: int, source: str,
               step: int | None = None):
    self.emotions = tuple(emotions)
    self.image_size = int(image_size)
    self.channels = int(channels)
    self.source = source
    self.step = step

  @property
  def num_classes(self) -> int:
    return len(self.emotions)

  def class_ids(self, names: str | Sequence[str]) -> list[int]:
    """'Happy,Sad' or ['happy'] -> class ids; UserError for emotions the model lacks."""
    return [emotions_lib.class_id(n, self.emotions) for n in emotions_lib.parse_emotions(names)]

  @abc.abstractmethod
  def _forward(self, images: np.ndarray, target_ids: np.ndarray) -> np.ndarray:
    """float32 [n, S, S, C] in [-1, 1], int32 [n] -> float [n, S, S, C] in [-1, 1]."""

  # True when G can be fed any label vector (blends of emotions: intensity), not only ids.
  takes_label_vectors = False

  def _forward_labels(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float32 [n, S, S, C] in [-1, 1], float32 [n, K] label vectors -> float [-1, 1]."""
    raise errors.UserError(
        f"{self.source}: this saved form takes class ids only, so it cannot blend "
        "emotions (intensity below 1); use a Keras generator (a run dir, a .keras file "
        "or the shipped one)")

  def translate(self, images: np.ndarray, target_ids) -> np.ndarray:
    """uint8 [N, S, S, C] faces and int [N] target class ids -> uint8 [N, S, S, C]."""
    images = self._check_images(images)
    target_ids = np.asarray(target_ids, np.int32).reshape(-1)
    if len(target_ids) != len(images):
      raise ValueError(f"{len(images)} images but {len(target_ids)} target ids")
    if len(target_ids) and (target_ids.min() < 0 or target_ids.max() >= self.num_classes):
      raise ValueError(f"target ids must be in [0, {self.num_classes}), got "
                       f"{sorted(set(target_ids.tolist()))}")
    return to_uint8(self._chunked(self._forward, to_model_range(images), target_ids))

  def translate_labels(self, images: np.ndarray, labels, gain=None) -> np.ndarray:
    """uint8 [N, S, S, C] faces and float [N, K] label vectors -> uint8 [N, S, S, C].

    A label vector is what G is fed in place of the target's one-hot: a blend
    (1 - a) * source + a * onehot(target) makes the expression change only part way
    (faceexpr_tf/photos/intensity.py). Translators that take class ids only (SavedModel,
    TFLite) accept one-hot rows and raise UserError for anything else. `gain` (float [N],
    Keras generators only) sets each row's factor on G's edit in place of the one its
    label implies (models.Generator's edit_gain; intensity.edit_gain).
    """
    return to_uint8(self.forward_labels(to_model_range(self._check_images(images)), labels,
                                        gain))

  def label_gain(self, labels) -> np.ndarray:
    """float [N]: the factor on G's edit that each label vector implies (1 without an edit
    gain; an export has its gain built in, so 1 here)."""
    return np.ones(len(labels), np.float32)

  def forward_labels(self, images: np.ndarray, labels, gain=None) -> np.ndarray:
    """float32 [N, S, S, C] in [-1, 1] and float [N, K] label vectors (and optionally
    float [N] gains, see translate_labels) -> float32 [-1, 1]."""
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.float32)
    if labels.shape != (len(images), self.num_classes):
      raise ValueError(f"expected labels [{len(images)}, {self.num_classes}], got "
                       f"{list(labels.shape)}")
    if gain is not None and self.takes_label_vectors:
      gain = np.asarray(gain, np.float32).reshape(-1)
      if len(gain) != len(images):
        raise ValueError(f"{len(images)} images but {len(gain)} gains")
      # One array through _chunked: the label vectors, then each row's gain.
      return self._chunked(self._forward_gained, images,
                           np.concatenate([labels, gain[:, None]], axis=1))
    if gain is not None:
      return self._forward_labels(images, labels)  # raises: ids only
    if self.takes_label_vectors:
      return self._chunked(self._forward_labels, images, labels)
    ids = labels.argmax(axis=1).astype(np.int32)
    if not np.array_equal(labels, np.eye(self.num_classes, dtype=np.float32)[ids]):
      return self._forward_labels(images, labels)  # raises: ids only
    return self._chunked(self._forward, images, ids)

  def _chunked(self, forward, images: np.ndarray, conditions: np.ndarray) -> np.ndarray:
    out = np.empty(images.shape, np.float32)
    for start in range(0, len(images), _BATCH):
      stop = start + _BATCH
      fake = forward(images[start:stop], conditions[start:stop])
      if not np.all(np.isfinite(fake)):
        # tanh output is never NaN; casting NaN to uint8 would hide it as random pixels.
        raise errors.UserError(f"{self.source}: the model outputs NaN (a broken or badly "
                               "converted model; re-export it)")
      out[start:stop] = np.reshape(fake, images[start:stop].shape)
    return out

  def translate_all(self, images: np.ndarray, class_ids: Sequence[int] | None = None
                    ) -> np.ndarray:
    """uint8 [N, S, S, C] -> uint8 [N, K, S, S, C]: each face in every class (or class_ids)."""
    images = self._check_images(images)
    ids = np.arange(self.num_classes) if class_ids is None else np.asarray(class_ids)
    repeated = np.repeat(images, len(ids), axis=0)
    out = self.translate(repeated, np.tile(ids, len(images)))
    return out.reshape((len(images), len(ids)) + images.shape[1:])

  def _check_images(self, images) -> np.ndarray:
    images = np.asarray(images)
    want = (self.image_size, self.image_size, self.channels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != want:
      raise ValueError(f"expected uint8 images [N, {want[0]}, {want[1]}, {want[2]}], got "
                       f"{images.dtype} {list(images.shape)}")
    return images

  def __repr__(self):
    return (f"{type(self).__name__}({self.source}, emotions={','.join(self.emotions)}, "
            f"{self.image_size}x{self.image_size}x{self.channels}, step={self.step})")


class KerasTranslator(Translator):
  """The Keras generator from a run dir's checkpoint."""

  def __init__(self, generator, emotions, source, step=None):
    config = generator.config
    super().__init__(emotions, config.image_size, config.channels, source, step)
    self.generator = generator

  takes_label_vectors = True
  _compiled = None
  _compiled_gained = None

  def compile_forward(self):
    """Runs G as one tf.function from now on (traced for the first two batch shapes, then
    for any batch): a server's many small batches run ~10x faster than eagerly."""
    if self._compiled is None:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      generator = self.generator
      self._compiled = tf.function(lambda x, c: generator(x, c, training=False),
                                   reduce_retracing=True)
      self._compiled_gained = tf.function(
          lambda x, c, g: generator(x, c, training=False, gain=g), reduce_retracing=True)
    return self

  def label_gain(self, labels) -> np.ndarray:
    gain = self.generator.edit_gain
    if gain is None:
      return super().label_gain(labels)
    return (np.asarray(labels, np.float32) @ np.asarray(gain, np.float32)).astype(np.float32)

  def _forward_gained(self, images, conditions):
    labels, gain = conditions[:, :-1], conditions[:, -1]
    if self._compiled_gained is not None:
      return self._compiled_gained(images, labels, gain).numpy()
    return np.asarray(self.generator(images, labels, training=False, gain=gain))

  def _forward(self, images, target_ids):
    return self._forward_labels(images, np.eye(self.num_classes, dtype=np.float32)[target_ids])

  def _forward_labels(self, images, labels):
    if self._compiled is not None:
      return self._compiled(images, labels).numpy()
    return np.asarray(self.generator(images, labels, training=False))


class SavedModelTranslator(Translator):
  """An exported SavedModel, through its `translate_ids` and `metadata` signatures."""

  def __init__(self, loaded, path):
    self._loaded = loaded  # keeps the signatures' variables alive
    self._fn = loaded.signatures[TRANSLATE_SIGNATURE]
    meta = {k: v.numpy() for k, v in loaded.signatures[METADATA_SIGNATURE]().items()}
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta["class_names"]]
    step = int(meta["step"]) if "step" in meta else -1
    step = step if step >= 0 else None  # export writes -1 for "unknown"
    super().__init__(names, int(meta["image_size"]), int(meta["channels"]),
                     f"SavedModel {path}", step)
    self.model_version = int(meta["model_version"]) if "model_version" in meta else None

  def _forward(self, images, target_ids):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    out = self._fn(image=tf.constant(images, tf.float32), target=tf.constant(target_ids,
                                                                               tf.int32))
    return out["image"].numpy()


class TFLiteTranslator(Translator):
  """A .tflite converted from `translate_ids`; float or int8-quantized input/output.

  A .tflite carries no class names, so they come from a sidecar labels file next to it,
  or the caller's class_names, or the project's default four emotions.
  """

  def __init__(self, interpreter, path, class_names):
    self._interpreter = interpreter
    self._runner, self._image_in, self._target_in, self._image_out = _tflite_io(
        interpreter, path)
    shape = self._image_in["shape_signature"]
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] <= 0:
      raise ModelLoadError(f"{path}: image input has shape {list(shape)}, expected "
                           "[batch, size, size, channels]")
    # Batch -1 means any batch; a fixed batch (some converters emit 1) is run in chunks.
    self._fixed_batch = int(shape[0]) if shape[0] > 0 else None
    super().__init__(class_names, int(shape[1]), int(shape[3]), f"TFLite {path}")

  def _forward(self, images, target_ids):
    n = len(images)
    if self._fixed_batch is None:
      return self._invoke(images, target_ids)
    b = self._fixed_batch
    outs = []
    for start in range(0, n, b):
      chunk, ids = images[start:start + b], target_ids[start:start + b]
      short = b - len(chunk)
      if short:  # pad the last chunk to the fixed batch, then drop the padding
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])
        ids = np.concatenate([ids, np.repeat(ids[-1:], short)])
      outs.append(self._invoke(chunk, ids)[:b - short])
    return np.concatenate(outs)

  def _invoke(self, images, target_ids):
    image = quantize(images, self._image_in)
    target = target_ids.astype(self._target_in["dtype"])
    if self._runner is not None:
      out = self._runner(**{self._image_in["key"]: image,
                            self._target_in["key"]: target})[self._image_out["key"]]
    else:
      interp = self._interpreter
      interp.resize_tensor_input(self._image_in["index"], image.shape)
      interp.resize_tensor_input(self._target_in["index"], target.shape)
      interp.allocate_tensors()
      interp.set_tensor(self._image_in["index"], image)
      interp.set_tensor(self._target_in["index"], target)
      interp.invoke()
      out = interp.get_tensor(self._image_out["index"])
    return dequantize(out, self._image_out)


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
  """A value -> the input tensor's dtype: through its (scale, zero_point) when it is a
  quantized integer tensor, a plain cast otherwise (floats, and integer class ids)."""
  x = np.asarray(x)
  dtype = np.dtype(detail["dtype"])
  scale, zero_point = detail["quantization"]
  if not (scale and np.issubdtype(dtype, np.integer)):
    return x.astype(dtype)
  info = np.iinfo(dtype)
  return np.clip(np.rint(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
  if not np.issubdtype(np.asarray(x).dtype, np.integer):
    return np.asarray(x, np.float32)
  scale, zero_point = detail["quantization"]
  return (np.asarray(x, np.float32) - zero_point) * scale


def _tflite_io(interpreter, path):
  """(signature runner or None, image input, target input, image output) details.

  Prefers the `translate_ids` signature; falls back to any single signature, then to the
  raw input/output lists, finding inputs by name ('image'/'target') or rank.
  """
  signatures = interpreter.get_signature_list()
  key = (TRANSLATE_SIGNATURE if TRANSLATE_SIGNATURE in signatures
         else next(iter(signatures)) if len(signatures) == 1 else None)
  if key is not None:
    runner = interpreter.get_signature_runner(key)
    inputs = [dict(d, key=k) for k, d in runner.get_input_details().items()]
    outputs = [dict(d, key=k) for k, d in runner.get_output_details().items()]
  else:
    runner = None
    interpreter.allocate_tensors()
    inputs = [dict(d, key=d["name"]) for d in interpreter.get_input_details()]
    outputs = [dict(d, key=d["name"]) for d in interpreter.get_output_details()]
  image_in = _pick(inputs, "image", rank=4)
  target_in = _pick(inputs, "target", rank=1)
  image_out = _pick(outputs, "image", rank=4)
  if image_in is None or target_in is None or image_out is None:
    raise ModelLoadError(
        f"{path}: not a faceexpr-tf model (expected inputs 'image' [N,S,S,C] and 'target' "
        f"[N], found {[(d['key'], list(d['shape'])) for d in inputs]})")
  return runner, image_in, target_in, image_out


def _pick(details: list[dict], name: str, rank: int) -> dict | None:
  for d in details:
    if d["key"] == name:
      return d
  for d in details:  # raw tensor names look like "serving_default_image:0"
    if name in d["key"].lower():
      return d
  by_rank = [d for d in details if len(d["shape"]) == rank]
  return by_rank[0] if len(by_rank) == 1 else None

