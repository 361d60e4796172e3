"""One interface over every saved form of the generator: run dir, SavedModel, .tflite.

    translator = inference.load_translator("runs/fer")      # or exports/faceexpr, x.tflite
    out = translator.translate(faces_uint8, target_ids)     # [N, H, W, C] uint8
    grid = translator.translate_all(faces_uint8)            # [N, K, H, W, C] uint8

Each form loads as a translators.Translator, which takes and returns uint8 pixels.
"""

import json
import os
import re
from collections.abc import Sequence

from absl import logging

from faceexpr_tf import errors
from faceexpr_tf import optional
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.serving import pretrained
from faceexpr_tf.serving import translators
from faceexpr_tf.store import runs

SAVED_MODEL_FILE = "saved_model.pb"
_VERSION_RE = re.compile(r"^\d+$")
# export.py names a .tflite `<model_name>_<quant>.tflite` and its labels
# `<model_name>_labels.txt`.
_QUANT_SUFFIX_RE = re.compile(r"_(float32|float16|dynamic|int8|int16x8|none)$")


def tflite_sidecar_names(tflite_path: str) -> tuple[str, ...] | None:
  """Class names from a labels file next to a .tflite, or None if there is none.

  export.py writes `<name>_labels.txt` next to `<name>_<quant>.tflite`; also accepted are
  `<file>.json` / `<stem>.json` ({"class_names": [...]}), `<stem>.labels.txt`,
  `<stem>_labels.txt` and `labels.txt` (one name per line).
  """
  stem = os.path.splitext(tflite_path)[0]
  folder = os.path.dirname(tflite_path)
  for candidate in (tflite_path + ".json", stem + ".json"):
    if os.path.isfile(candidate):
      try:
        with open(candidate) as f:
          raw = json.load(f)
        names = raw.get("class_names") or raw.get("emotions")
      except (OSError, ValueError, AttributeError) as e:
        raise translators.ModelLoadError(f"{candidate}: unreadable labels sidecar ({e})") from None
      if names:
        return _sidecar(candidate, names)
  model_name = _QUANT_SUFFIX_RE.sub("", stem)
  for candidate in (stem + ".labels.txt", stem + "_labels.txt", model_name + "_labels.txt",
                    os.path.join(folder, "labels.txt")):
    if os.path.isfile(candidate):
      with open(candidate) as f:
        return _sidecar(candidate, [line for line in f if line.strip()])
  return None


def _sidecar(path: str, names) -> tuple[str, ...]:
  try:
    names = emotions_lib.parse_emotions(names)
  except errors.UserError as e:
    raise translators.ModelLoadError(f"{path}: bad labels sidecar ({e})") from None
  logging.info("Class names from %s: %s", path, ",".join(names))
  return names


def find_saved_model(path: str) -> str | None:
  """The SavedModel dir at path: itself, or the highest version under a TF Serving base.

  Handles `<path>/saved_model.pb`, `<path>/<version>/saved_model.pb` and
  `<path>/<model_name>/<version>/saved_model.pb` (one model name only).
  """
  if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
    return path
  latest = _latest_version(path)
  if latest is not None:
    return latest
  models = {name: v for name in sorted(os.listdir(path))
            if os.path.isdir(os.path.join(path, name))
            and (v := _latest_version(os.path.join(path, name))) is not None}
  if len(models) > 1:
    raise translators.ModelLoadError(
        f"{path}: holds several models ({', '.join(models)}); pass one of them, e.g. "
        f"{os.path.join(path, next(iter(models)))}")
  return next(iter(models.values()), None)


def _latest_version(base: str) -> str | None:
  versions = [int(name) for name in os.listdir(base) if _VERSION_RE.match(name)
              and os.path.isfile(os.path.join(base, name, SAVED_MODEL_FILE))]
  return os.path.join(base, str(max(versions))) if versions else None


def load_translator(path: str, checkpoint: str | int | None = None,
                    class_names: Sequence[str] | str | None = None
                    ) -> translators.Translator:
  """Loads a generator from a run dir, a SavedModel (or TF Serving base) or a .tflite.

  Args:
    path: run dir (has config.json), checkpoint .npz inside one, SavedModel dir, TF Serving
      model base dir (highest version wins), .tflite file, .keras generator, or
      "pretrained" (the generator shipped in the package).
    checkpoint: run dirs only: step number or .npz path (default: newest readable).
    class_names: .tflite only: the model's emotions in class-id order, when no labels
      sidecar sits next to the file (default: emotions.DEFAULT_EMOTIONS).

  Raises:
    translators.ModelLoadError / runs.RunDirError (both UserError), one line naming the path.
  """
  path = os.fspath(path)
  if path in (pretrained.NAME, "") or path.lower().endswith(".keras"):
    _ignored(checkpoint, "checkpoint", path)
    generator, record = pretrained.load_generator(None if path in (pretrained.NAME, "")
                                                  else path)
    return translators.KerasTranslator(generator, record["emotions"],
                                       f"{'shipped ' if path in (pretrained.NAME, '') else ''}"
                                       f".keras generator {path or pretrained.NAME}",
                                       record.get("step"))
  if not os.path.exists(path):
    raise translators.ModelLoadError(f"{path}: no such file or directory")
  if os.path.isfile(path):
    if path.lower().endswith(".tflite"):
      _ignored(checkpoint, "checkpoint", path)
      return _load_tflite(path, class_names)
    if path.lower().endswith(".npz") and os.path.basename(
        os.path.dirname(path)) == runs.CHECKPOINT_DIR:
      return _load_run_dir(os.path.dirname(os.path.dirname(path)) or ".", path)
    raise translators.ModelLoadError(f"{path}: not a model file (expected a .tflite file, a run "
                                     "directory or a SavedModel directory)")
  if os.path.isfile(os.path.join(path, runs.CONFIG_FILE)):
    return _load_run_dir(path, checkpoint)
  saved_model = find_saved_model(path)
  if saved_model is not None:
    _ignored(checkpoint, "checkpoint", saved_model)
    _ignored(class_names, "class names", saved_model)
    return _load_saved_model(saved_model)
  raise translators.ModelLoadError(
      f"{path}: not a run directory (no {runs.CONFIG_FILE}), SavedModel (no "
      f"{SAVED_MODEL_FILE}) or TF Serving model base (no <version>/{SAVED_MODEL_FILE})")


def _ignored(value, what: str, path: str):
  # Not an error: the model still loads, but the user should know the flag did nothing.
  if value is not None:
    logging.warning("%s: ignoring the %s (%s); it only applies to %s", path, what, value,
                    "run dirs" if what == "checkpoint" else ".tflite files")


def _load_run_dir(run_dir, checkpoint):
  generator, config, step = runs.load_generator(run_dir, checkpoint)
  return translators.KerasTranslator(generator, config.emotions, f"run dir {run_dir}", step)


def _load_saved_model(path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    loaded = tf.saved_model.load(path)
  except Exception as e:  # pylint: disable=broad-except
    # TF raises anything from OSError to protobuf's DecodeError for a damaged export.
    raise translators.ModelLoadError(f"{path}: corrupt or unreadable SavedModel "
                                     f"({type(e).__name__}: {_first_line(e)})") from None
  missing = [s for s in (translators.TRANSLATE_SIGNATURE, translators.METADATA_SIGNATURE)
             if s not in loaded.signatures]
  if missing:
    raise translators.ModelLoadError(f"{path}: not a faceexpr-tf export (no {', '.join(missing)} "
                                     f"signature; has {', '.join(loaded.signatures) or 'none'})")
  try:
    return translators.SavedModelTranslator(loaded, path)
  except (KeyError, ValueError, TypeError) as e:
    raise translators.ModelLoadError(f"{path}: unreadable metadata signature ({e})") from None


def _load_tflite(path, class_names):
  litert = optional.require("ai_edge_litert.interpreter", f"to run {path}")
  try:
    interpreter = litert.Interpreter(model_path=path)
  except (ValueError, RuntimeError, OSError) as e:
    raise translators.ModelLoadError(f"{path}: corrupt or unreadable .tflite ({_first_line(e)})"
                                     ) from None
  sidecar = tflite_sidecar_names(path)
  if class_names:
    names = emotions_lib.parse_emotions(class_names)
  elif sidecar:
    names = sidecar
  else:
    names = emotions_lib.DEFAULT_EMOTIONS
    logging.warning("%s: a .tflite holds no class names and no labels file was found next "
                    "to it; assuming %s (pass --class_names if it was trained on others)",
                    path, ",".join(names))
  try:
    return translators.TFLiteTranslator(interpreter, path, names)
  except (ValueError, RuntimeError) as e:
    raise translators.ModelLoadError(f"{path}: unusable .tflite ({_first_line(e)})") from None


def _first_line(e: Exception) -> str:
  lines = str(e).strip().splitlines()
  return lines[0] if lines else type(e).__name__
