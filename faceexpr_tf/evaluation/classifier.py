"""The expression classifier: an independent judge of translated faces.

A small CNN (Keras functional model, Keras layers only) that reads the emotion of a 48x48
gray face in [-1, 1], the range G works in, so G's outputs are scored as they come.
Augmentation (flip, shift, rotation, zoom, contrast) is built in as Keras preprocessing
layers, active only in training. The layer named "features" (global average pool) is
the penultimate representation that realism metrics (Frechet distance, KID) compare.

Two architectures:
  vgg       conv3x3-BN-ReLU pairs, widths w, 2w, 4w, 8w, max-pool between (the judge).
  xception  mini-Xception (Arriaga et al. 2017): separable-conv residual blocks; smaller.

The default judge ships inside the package (faceexpr_tf/assets/classifier.keras).
"""

import dataclasses
import hashlib
import os

import keras
import numpy as np
from keras import layers

from faceexpr_tf import errors
from faceexpr_tf.store import keras_files

ASSETS = keras_files.ASSETS
SHIPPED_CLASSIFIER = os.path.join(ASSETS, "classifier.keras")
FEATURES_LAYER = "features"
ARCHS = ("vgg", "xception")


class ClassifierError(errors.UserError):
  """A classifier file that cannot be used; one line for the user."""


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  num_classes: int = 4
  image_size: int = 48
  arch: str = "vgg"
  width: int = 32
  dropout: float = 0.4
  augment: bool = True

  def __post_init__(self):
    if self.arch not in ARCHS:
      raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")


def _augmentation(seed: int) -> keras.Sequential:
  """Random flip/shift/rotation/zoom/contrast; identity at inference."""
  return keras.Sequential([
      layers.RandomFlip("horizontal", seed=seed),
      layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 1),
      layers.RandomRotation(0.05, fill_mode="nearest", seed=seed + 2),
      layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 3),
      layers.RandomContrast(0.3, value_range=(-1.0, 1.0), seed=seed + 4),
  ], name="augment")


def _conv_bn(h, filters, name, separable=False, strides=1):
  conv = layers.SeparableConv2D if separable else layers.Conv2D
  h = conv(filters, 3, strides=strides, padding="same", use_bias=False, name=name)(h)
  # momentum 0.9: the moving statistics settle within a short run (0.99 took 100s of steps)
  return layers.BatchNormalization(momentum=0.9, name=name + "_bn")(h)


def build_classifier(config: ClassifierConfig = ClassifierConfig(), seed: int = 0
                     ) -> keras.Model:
  """images float [N, S, S, 1] in [-1, 1] -> class logits [N, num_classes]."""
  inputs = keras.Input((config.image_size, config.image_size, 1), name="image")
  h = _augmentation(seed)(inputs) if config.augment else inputs
  w = config.width
  if config.arch == "vgg":
    for i, filters in enumerate((w, 2 * w, 4 * w, 8 * w)):
      for j in range(2):
        h = layers.ReLU()(_conv_bn(h, filters, f"block{i}_conv{j}"))
      if i < 3:
        h = layers.MaxPooling2D(name=f"block{i}_pool")(h)
      h = layers.SpatialDropout2D(0.1 * (i > 0), name=f"block{i}_drop")(h)
  else:
    h = layers.ReLU()(_conv_bn(h, w // 2, "stem0"))
    h = layers.ReLU()(_conv_bn(h, w // 2, "stem1"))
    for i, filters in enumerate((w, 2 * w, 4 * w, 8 * w)):
      shortcut = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False,
                               name=f"block{i}_short")(h)
      shortcut = layers.BatchNormalization(momentum=0.9, name=f"block{i}_short_bn")(shortcut)
      h = layers.ReLU()(_conv_bn(h, filters, f"block{i}_sep0", separable=True))
      h = _conv_bn(h, filters, f"block{i}_sep1", separable=True)
      h = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{i}_pool")(h)
      h = layers.Add(name=f"block{i}_add")([h, shortcut])
  h = layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(h)
  h = layers.Dropout(config.dropout, name="dropout")(h)
  logits = layers.Dense(config.num_classes, dtype="float32", name="logits")(h)
  model = keras.Model(inputs, logits, name=f"expression_{config.arch}")
  return model


def feature_model(classifier: keras.Model) -> keras.Model:
  """images -> (penultimate features, class logits), one pass."""
  return keras.Model(classifier.input,
                     [classifier.get_layer(FEATURES_LAYER).output, classifier.outputs[0]])


def load_classifier(path: str | None = None) -> tuple[keras.Model, dict]:
  """A saved classifier (.keras) and its record (the .json beside it, if any).

  None loads the shipped judge. Errors are one line naming the file.
  """
  path = path or SHIPPED_CLASSIFIER
  model = keras_files.load(
      path, "classifier", ClassifierError,
      " (the shipped classifier is missing from the package: reinstall faceexpr-tf)"
      if path == SHIPPED_CLASSIFIER else "")
  if FEATURES_LAYER not in [layer.name for layer in model.layers]:
    raise ClassifierError(f"{path}: has no '{FEATURES_LAYER}' layer; not a faceexpr-tf "
                          "classifier")
  return model, keras_files.read_record(path)


def predict_logits(model: keras.Model, images_f32: np.ndarray, batch: int = 256
                   ) -> np.ndarray:
  out = [np.asarray(model(images_f32[i:i + batch], training=False))
         for i in range(0, len(images_f32), batch)]
  return np.concatenate(out) if out else np.zeros((0, model.outputs[0].shape[-1]))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int
                     ) -> np.ndarray:
  """counts [true, predicted]."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
  return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
  return np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)


def file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()
