"""Model files the package ships or writes: a Keras-native .keras file with a JSON record
(emotions, scores, the command that made it) beside it, `<name>.json`."""

import json
import os

import keras

from faceexpr_tf import errors

# Where the package keeps the files it ships (generator, classifier, their records).
ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")


def record_path(model_path: str) -> str:
  return os.path.splitext(model_path)[0] + ".json"


def read_record(model_path: str) -> dict:
  """The record beside a model file; {} when there is none or it is unreadable."""
  try:
    with open(record_path(model_path)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def load(path: str, what: str, error: type = errors.UserError, missing_hint: str = ""):
  """keras.models.load_model(path) with one-line errors naming the file and `what`."""
  if not os.path.isfile(path):
    raise error(f"{path}: no such {what} file{missing_hint}")
  try:
    return keras.models.load_model(path, compile=False)
  except Exception as e:  # pylint: disable=broad-except
    # Keras raises anything from ValueError to zipfile.BadZipFile for a damaged file.
    lines = str(e).strip().splitlines()
    raise error(f"{path}: corrupt or unreadable {what} "
                f"({(lines[0] if lines else type(e).__name__)[:200]})") from None
