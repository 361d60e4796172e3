"""The generator that ships with the package: a Keras-native .keras file.

`faceexpr_tf/assets/generator.keras` opens with plain `keras.models.load_model` once
faceexpr_tf.models is imported (G and its layers are registered serializable);
`generator.json` beside it records the emotions, the training command and the scores
(docs/MODEL_CARD.md). `translate`, `export --pretrained` and `evaluate` use it when no
model is named.
"""

import json
import os

import keras
import numpy as np

from faceexpr_tf import errors
from faceexpr_tf import models

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
SHIPPED_GENERATOR = os.path.join(ASSETS, "generator.keras")
NAME = "pretrained"


class PretrainedError(errors.UserError):
  """A shipped or named .keras generator that cannot be used; one line."""


def record_path(model_path: str) -> str:
  return os.path.splitext(model_path)[0] + ".json"


def save_generator(generator: models.Generator, path: str, record: dict) -> str:
  """Writes G as a .keras file and its record (emotions first) beside it."""
  if "emotions" not in record:
    raise ValueError("the record must name the emotions (class-id order)")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  generator.save(path)
  with open(record_path(path), "w") as f:
    json.dump(record, f, indent=2)
  return path


def load_generator(path: str | None = None) -> tuple[models.Generator, dict]:
  """(G, record) from a .keras file (None: the shipped one); errors are one line."""
  path = path or SHIPPED_GENERATOR
  if not os.path.isfile(path):
    hint = (" (the shipped generator is missing: reinstall faceexpr-tf, or pass --model)"
            if path == SHIPPED_GENERATOR else "")
    raise PretrainedError(f"{path}: no such generator file{hint}")
  try:
    generator = keras.models.load_model(path, compile=False)
  except Exception as e:  # pylint: disable=broad-except
    text = str(e).strip().splitlines()
    raise PretrainedError(f"{path}: corrupt or unreadable .keras generator "
                          f"({(text[0] if text else type(e).__name__)[:200]})") from None
  if not isinstance(generator, models.Generator):
    raise PretrainedError(f"{path}: holds a {type(generator).__name__}, not a faceexpr-tf "
                          "generator")
  try:
    with open(record_path(path)) as f:
      record = json.load(f)
    emotions = tuple(record["emotions"])
  except (OSError, ValueError, KeyError) as e:
    raise PretrainedError(f"{record_path(path)}: missing or unreadable record of the "
                          f"generator's emotions ({type(e).__name__})") from None
  if len(emotions) != generator.config.num_classes:
    raise PretrainedError(f"{record_path(path)}: names {len(emotions)} emotions, the "
                          f"generator has {generator.config.num_classes} classes")
  return generator, record


def reference_output(generator: models.Generator, seed: int = 0) -> np.ndarray:
  """G on fixed pseudo-random faces, one per class: what tests compare with the stored
  reference to prove the shipped weights load unchanged."""
  cfg = generator.config
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, (cfg.num_classes, cfg.image_size, cfg.image_size, cfg.channels))
  onehot = np.eye(cfg.num_classes, dtype=np.float32)
  return np.asarray(generator(x.astype(np.float32), onehot, training=False))
