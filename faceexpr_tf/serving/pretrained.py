"""The generator that ships with the package: a Keras-native .keras file.

`faceexpr_tf/assets/generator.keras` opens with plain `keras.models.load_model` once
faceexpr_tf.modeling.models is imported (G and its layers are registered serializable);
`generator.json` beside it records the emotions, the training command and the scores
(docs/MODEL_CARD.md). `translate`, `export --pretrained` and `evaluate` use it when no
model is named.
"""

import json
import os

import numpy as np

from faceexpr_tf import errors
from faceexpr_tf.modeling import models
from faceexpr_tf.store import keras_files

ASSETS = keras_files.ASSETS
SHIPPED_GENERATOR = os.path.join(ASSETS, "generator.keras")
NAME = "pretrained"


class PretrainedError(errors.UserError):
  """A shipped or named .keras generator that cannot be used; one line."""


def save_generator(generator: models.Generator, path: str, record: dict) -> str:
  """Writes G as a .keras file and its record (emotions first) beside it."""
  if "emotions" not in record:
    raise ValueError("the record must name the emotions (class-id order)")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  generator.save(path)
  with open(keras_files.record_path(path), "w") as f:
    json.dump(record, f, indent=2)
  return path


def load_generator(path: str | None = None) -> tuple[models.Generator, dict]:
  """(G, record) from a .keras file (None: the shipped one); errors are one line."""
  path = path or SHIPPED_GENERATOR
  generator = keras_files.load(
      path, ".keras generator", PretrainedError,
      " (the shipped generator is missing: reinstall faceexpr-tf, or pass --model)"
      if path == SHIPPED_GENERATOR else "")
  if not isinstance(generator, models.Generator):
    raise PretrainedError(f"{path}: holds a {type(generator).__name__}, not a faceexpr-tf "
                          "generator")
  record = keras_files.read_record(path)
  emotions = record.get("emotions")
  if not isinstance(emotions, list):
    raise PretrainedError(f"{keras_files.record_path(path)}: missing or unreadable record "
                          "of the generator's emotions")
  if len(emotions) != generator.config.num_classes:
    raise PretrainedError(f"{keras_files.record_path(path)}: names {len(emotions)} "
                          f"emotions, the generator has {generator.config.num_classes} "
                          "classes")
  return generator, record


def reference_output(generator: models.Generator, seed: int = 0) -> np.ndarray:
  """G on fixed pseudo-random faces, one per class: what tests compare with the stored
  reference to prove the shipped weights load unchanged."""
  cfg = generator.config
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, (cfg.num_classes, cfg.image_size, cfg.image_size, cfg.channels))
  onehot = np.eye(cfg.num_classes, dtype=np.float32)
  return np.asarray(generator(x.astype(np.float32), onehot, training=False))
