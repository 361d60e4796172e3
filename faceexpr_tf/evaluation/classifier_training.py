"""`python main.py train_classifier`: train the expression classifier (the judge).

Same data sources and emotion selection as StarGAN training. Writes into --run_dir:
  classifier.keras / classifier.json  the best epoch's model (by validation accuracy) and
                                      its record: accuracy per class, command, data sha256
  report.md, confusion.png            validation accuracy per class, confusion matrix
  checkpoints/best.keras, backup/     best-so-far model; epoch backup (rerun resumes)

Interrupted runs: rerunning the same command resumes from the last finished epoch (the
epoch in progress is trained again; SIGTERM and Ctrl-C stop it with exit 130). Every file
is written under a temporary name and renamed into place, so a kill never leaves a
half-written best.keras, backup or classifier.keras, and the best validation accuracy
reached before the kill still decides which epoch is kept.
  logs/                               TensorBoard
--augment_with=<generator> adds translated training faces so every class has as many
faces as the largest (the augmentation-utility experiment).
"""

import dataclasses
import json
import os
import signal
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import flags
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.data import data_flags
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.data import faceset
from faceexpr_tf.data import loader
from faceexpr_tf.data import visualize
from faceexpr_tf.evaluation import classifier as classifier_lib
from faceexpr_tf.serving import inference
from faceexpr_tf.serving import translators
from faceexpr_tf.store import keras_files

# This mode's flags, apart from every other mode's: main.py parses them only when
# the mode runs, so their defaults never depend on what else was imported.
FLAGS = flags.FlagValues()
_SOURCE = data_flags.define_source_flags(FLAGS)
_LABELS = data_flags.define_label_flags(FLAGS)
_RUN_DIR = flags.DEFINE_string("run_dir", "runs/classifier", "Output folder; rerun to "
                               "resume.", flag_values=FLAGS)
_ARCH = flags.DEFINE_enum("arch", "vgg", list(classifier_lib.ARCHS), "vgg (conv pairs) or "
                          "xception (mini-Xception separable residual blocks).", flag_values=FLAGS)
_WIDTH = flags.DEFINE_integer("width", 32, "First block's width (doubles per block).",
                              flag_values=FLAGS)
_DROPOUT = flags.DEFINE_float("dropout", 0.4, "Dropout before the class layer.", flag_values=FLAGS)
_AUGMENT = flags.DEFINE_bool("augment", True, "Random flip/shift/rotation/zoom/contrast.",
                             flag_values=FLAGS)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per step.", flag_values=FLAGS)
_EPOCHS = flags.DEFINE_integer("epochs", 60, "Most epochs.", flag_values=FLAGS)
_STEPS_PER_EPOCH = flags.DEFINE_integer("steps_per_epoch", 0, "Steps between validations "
                                        "(0 = one pass over the training faces). Fixes the "
                                        "compute of a run whatever its data size, e.g. to "
                                        "compare with and without --augment_with.",
                                        flag_values=FLAGS)
_LR = flags.DEFINE_float("lr", 2e-3, "AdamW learning rate (halved on plateaus).", flag_values=FLAGS)
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 1e-4, "AdamW weight decay.", flag_values=FLAGS)
_LABEL_SMOOTHING = flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing.", flag_values=FLAGS)
_PATIENCE = flags.DEFINE_integer("patience", 8, "Stop after this many epochs without a "
                                 "better validation accuracy.", flag_values=FLAGS)
_MAX_MINUTES = flags.DEFINE_float("max_minutes", 20, "Stop after this much training time "
                                  "(0 = none); the best epoch is kept.", flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of weights, order and augmentation.",
                             flag_values=FLAGS)
_INIT_FROM = flags.DEFINE_string("init_from", None, "Start from this classifier's weights "
                                 "(.keras of the same architecture), e.g. to train a "
                                 "time-limited run further with a lower --lr.", flag_values=FLAGS)
_AUGMENT_WITH = flags.DEFINE_string("augment_with", None, "A generator (run dir, "
                                    "SavedModel, .tflite, or 'pretrained'): add translated "
                                    "training faces until every class has as many as the "
                                    "largest.", flag_values=FLAGS)


def _check_flags():
  for name, value in (("batch_size", _BATCH_SIZE.value), ("epochs", _EPOCHS.value),
                      ("width", _WIDTH.value), ("patience", _PATIENCE.value)):
    if value < 1:
      raise errors.UserError(f"--{name}={value}: must be at least 1")
  if _STEPS_PER_EPOCH.value < 0:
    raise errors.UserError(f"--steps_per_epoch={_STEPS_PER_EPOCH.value}: must be >= 0")
  if _LR.value <= 0:
    raise errors.UserError(f"--lr={_LR.value}: must be positive")
  if _MAX_MINUTES.value < 0:
    raise errors.UserError(f"--max_minutes={_MAX_MINUTES.value}: must be >= 0")
  if not 0 <= _DROPOUT.value < 1:
    raise errors.UserError(f"--dropout={_DROPOUT.value}: must be in [0, 1)")


class _TimeLimit(keras.callbacks.Callback):

  def __init__(self, seconds):
    super().__init__()
    self.seconds, self.t0, self.hit = seconds, None, False

  def on_train_begin(self, logs=None):
    self.t0 = time.time()

  def on_epoch_end(self, epoch, logs=None):
    if self.seconds and time.time() - self.t0 > self.seconds:
      logging.warning("Time limit reached after epoch %d; keeping the best epoch.", epoch + 1)
      self.hit = True
      self.model.stop_training = True


def _replace_json(path: str, value):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _save_keras(model, path: str, **kwargs):
  """model.save / save_weights to path, atomically: a kill leaves the old file or the new."""
  stem, name = os.path.split(path)
  tmp = os.path.join(stem, ".tmp-" + name)  # Keras wants the .keras / .weights.h5 suffix
  try:
    if path.endswith(".weights.h5"):
      model.save_weights(tmp, overwrite=True)
    else:
      model.save(tmp, **kwargs)
    with open(tmp, "rb+") as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


class _Backup(keras.callbacks.BackupAndRestore):
  """Keras' epoch backup, written atomically (Keras writes in place: a kill during the
  write left a truncated file or an empty training_metadata.json that stopped the rerun).
  Weights first, then the epoch: a kill between the two trains that epoch again."""

  def _save_model(self):
    os.makedirs(self.backup_dir, exist_ok=True)
    _save_keras(self.model, self._weights_path)
    _replace_json(self._training_metadata_path,
                  {"epoch": self._current_epoch, "batch": self._last_batch_seen})


def resume_epoch(run_dir: str) -> int:
  """The epoch a rerun starts at (0: a fresh run), from the backup's record."""
  try:
    with open(os.path.join(run_dir, "backup", "training_metadata.json")) as f:
      return int(json.load(f)["epoch"])
  except (OSError, ValueError, KeyError, TypeError):
    return 0


class _KeepBest(keras.callbacks.Callback):
  """checkpoints/best.keras whenever validation accuracy beats the best so far, written
  atomically; the best so far survives a restart (checkpoints/best.json), so a rerun
  never replaces the kept model by a worse one."""

  def __init__(self, path: str):
    super().__init__()
    self.path = path
    self.record = os.path.splitext(path)[0] + ".json"
    self.best, self.best_epoch = -1.0, None

  def on_train_begin(self, logs=None):
    if os.path.isfile(self.path):
      try:
        with open(self.record) as f:
          record = json.load(f)
        self.best, self.best_epoch = float(record["val_accuracy"]), int(record["epoch"])
      except (OSError, ValueError, KeyError, TypeError):
        self.best, self.best_epoch = -1.0, None

  def on_epoch_end(self, epoch, logs=None):
    value = (logs or {}).get("val_accuracy")
    if value is None or float(value) <= self.best:
      return
    self.best, self.best_epoch = float(value), epoch + 1
    _save_keras(self.model, self.path)
    _replace_json(self.record, {"val_accuracy": self.best, "epoch": epoch + 1})


def balance_with_generator(faces: faceset.FaceSet, translator, seed: int = 0
                           ) -> faceset.FaceSet:
  """Adds translated faces so every class has as many as the largest class.

  Each added face of class c is G(x, c) for a face x of another class, drawn without
  replacement where possible. Returns the original faces followed by the added ones.
  """
  rng = np.random.default_rng(seed)
  counts = np.bincount(faces.labels, minlength=len(faces.emotions))
  images, labels = [faces.images], [faces.labels]
  for c, count in enumerate(counts):
    need = int(counts.max() - count)
    if not need:
      continue
    others = np.flatnonzero(faces.labels != c)
    pick = rng.choice(others, size=need, replace=need > len(others))
    images.append(translator.translate(faces.images[pick], np.full(need, c)))
    labels.append(np.full(need, c, np.int32))
  return faceset.FaceSet(np.concatenate(images), np.concatenate(labels).astype(np.int32),
                         faces.emotions, faces.source + " + translated")


def make_dataset(faces: faceset.FaceSet, batch_size: int, shuffle_seed=None, repeat=False):
  ds = tf.data.Dataset.from_tensor_slices((faces.images, faces.labels.astype(np.int32)))
  if shuffle_seed is not None:
    ds = ds.shuffle(len(faces), seed=shuffle_seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32) / 127.5 - 1.0, y),
                                num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)


def score(model, faces: faceset.FaceSet) -> dict:
  """Accuracy overall and per class, and the confusion matrix, on `faces`."""
  logits = classifier_lib.predict_logits(model, translators.to_model_range(faces.images))
  matrix = classifier_lib.confusion_matrix(faces.labels, logits.argmax(-1),
                                           len(faces.emotions))
  per_class = classifier_lib.per_class_accuracy(matrix)
  return {"images": len(faces), "accuracy": float(np.trace(matrix) / max(len(faces), 1)),
          "balanced_accuracy": float(per_class.mean()),
          "per_class": {e: float(a) for e, a in zip(faces.emotions, per_class)},
          "confusion": matrix.tolist()}


def train_classifier(data_source: str, run_dir: str, *, emotions, train_usage="Training",
                     val_usage="PublicTest", arch="vgg", width=32, dropout=0.4,
                     augment=True, batch_size=64, epochs=60, steps_per_epoch=0, lr=2e-3,
                     weight_decay=1e-4,
                     label_smoothing=0.1, patience=8, max_minutes=20.0, seed=0,
                     synthetic_identities=200, augment_with=None, init_from=None,
                     command=None, labels="fer2013", ferplus=None,
                     ferplus_scheme="majority") -> dict:
  """Trains, keeps the best epoch by validation accuracy, writes the report; returns the
  record (also saved as classifier.json beside classifier.keras)."""
  t0 = time.time()
  common = dict(emotions=emotions, synthetic_identities=synthetic_identities, seed=seed,
                labels=labels, ferplus=ferplus, ferplus_scheme=ferplus_scheme)
  train = loader.load_faces(data_source, split="train", usage=train_usage.split(","), **common)
  val = loader.load_faces(data_source, split="validation", usage=val_usage.split(","),
                          **common)
  logging.info("Training: %s, %d images %s; validation: %d images %s", train.source,
               len(train), train.class_counts(), len(val), val.class_counts())
  if augment_with:
    translator = inference.load_translator(augment_with)  # also "pretrained"
    if tuple(translator.emotions) != tuple(train.emotions):
      raise errors.UserError(f"--augment_with={augment_with}: its emotions "
                             f"{','.join(translator.emotions)} differ from "
                             f"{','.join(train.emotions)}")
    train = balance_with_generator(train, translator, seed)
    logging.info("Balanced with %s: %d images %s", translator.source, len(train),
                 train.class_counts())

  os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)
  config = classifier_lib.ClassifierConfig(
      num_classes=len(train.emotions), image_size=train.images.shape[1], arch=arch,
      width=width, dropout=dropout, augment=augment)
  keras.utils.set_random_seed(seed)
  model = classifier_lib.build_classifier(config, seed)
  if init_from:
    start = classifier_lib.load_classifier(init_from)[0]
    try:
      model.set_weights(start.get_weights())
    except ValueError as e:
      raise errors.UserError(f"--init_from={init_from}: another architecture than "
                             f"--arch={arch} --width={width} ({e})") from None
    logging.info("Starting from the weights of %s", init_from)
  model.compile(
      optimizer=keras.optimizers.AdamW(lr, weight_decay=weight_decay),
      loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                label_smoothing=label_smoothing),
      metrics=["accuracy"])
  best_path = os.path.join(run_dir, "checkpoints", "best.keras")
  limit = _TimeLimit(max_minutes * 60)
  keep_best = _KeepBest(best_path)
  callbacks = [
      # Kept after the run (delete_checkpoint=False): rerunning a time-limited run with a
      # larger --max_minutes or --epochs continues from its last epoch.
      _Backup(os.path.join(run_dir, "backup"), delete_checkpoint=False),
      keep_best,
      keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=patience),
      keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", mode="max", factor=0.5,
                                        patience=max(2, patience // 3), min_lr=lr / 32),
      keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), update_freq="epoch"),
      limit,
  ]
  start = resume_epoch(run_dir)
  logging.info("%s at epoch %d of %d", "Resuming" if start else "Starting", start, epochs)
  num_classes = len(train.emotions)
  to_onehot = lambda x, y: (x, tf.one_hot(y, num_classes))
  history = model.fit(
      make_dataset(train, batch_size, shuffle_seed=seed,
                   repeat=bool(steps_per_epoch)).map(to_onehot),
      steps_per_epoch=steps_per_epoch or None,
      validation_data=make_dataset(val, 256).map(to_onehot), epochs=epochs,
      callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2)
  best = classifier_lib.load_classifier(best_path)[0]
  scores = score(best, val)
  final_path = os.path.join(run_dir, "classifier.keras")
  _save_keras(best, final_path)  # loaded without its optimizer: the shipped file is small
  val_acc = history.history.get("val_accuracy", [])
  record = {
      "config": dataclasses.asdict(config),
      "emotions": list(train.emotions), "seed": seed,
      "data": os.path.basename(data_source),
      "data_sha256": (classifier_lib.file_sha256(data_source)
                      if os.path.isfile(data_source) else None),
      "train_usage": train_usage, "val_usage": val_usage, "train_images": len(train),
      "labels": labels if labels == "fer2013" else f"ferplus ({ferplus_scheme})",
      "augment_with": augment_with, "init_from": init_from,
      # Counted from the run's first epoch, across reruns that resumed it.
      "epochs_run": start + len(val_acc), "steps_per_epoch": steps_per_epoch or None,
      "best_epoch": keep_best.best_epoch,
      "stopped_by": "time_limit" if limit.hit else "early_stopping_or_epochs",
      "seconds": round(time.time() - t0, 1), "params": int(model.count_params()),
      "validation": scores, "command": command}
  _replace_json(keras_files.record_path(final_path), record)
  write_report(run_dir, record)
  logging.info("Classifier: %.1f%% on %s; per class %s -> %s",
               100 * scores["accuracy"], val.source,
               {k: round(100 * v, 1) for k, v in scores["per_class"].items()}, final_path)
  return record


def write_report(run_dir: str, record: dict):
  scores, names = record["validation"], record["emotions"]
  visualize.write_png(os.path.join(run_dir, "confusion.png"), visualize.confusion_image(
      np.asarray(scores["confusion"]), names,
      f"{record['val_usage']}: {100 * scores['accuracy']:.1f}% of {scores['images']}"))
  lines = [f"# Expression classifier: {record['config']['arch']} width "
           f"{record['config']['width']}", "",
           f"Validation ({record['val_usage']}, {scores['images']} faces): accuracy "
           f"**{100 * scores['accuracy']:.1f}%**, balanced "
           f"{100 * scores['balanced_accuracy']:.1f}%.", "",
           "| class | accuracy | faces |", "|---|---|---|"]
  matrix = np.asarray(scores["confusion"])
  for i, name in enumerate(names):
    lines.append(f"| {name} | {100 * scores['per_class'][name]:.1f}% | "
                 f"{int(matrix[i].sum())} |")
  lines += ["", f"Best epoch {record['best_epoch']} of {record['epochs_run']} "
            f"({record['stopped_by']}), {record['seconds']:.0f} s, {record['params']:,} "
            "parameters.", "", f"Command: `{record['command']}`", "",
            "![confusion](confusion.png)", ""]
  with open(os.path.join(run_dir, "report.md"), "w") as f:
    f.write("\n".join(lines))


def _stop_on_sigterm(signum, frame):
  del signum, frame
  raise KeyboardInterrupt  # main.py: "interrupted", exit 130; the rerun resumes


def run():
  _check_flags()
  signal.signal(signal.SIGTERM, _stop_on_sigterm)
  source = _SOURCE
  train_classifier(
      source.data.value, _RUN_DIR.value,
      emotions=emotions_lib.parse_emotions(source.emotions.value),
      train_usage=source.train_usage.value, val_usage=source.val_usage.value,
      arch=_ARCH.value, width=_WIDTH.value, dropout=_DROPOUT.value, augment=_AUGMENT.value,
      batch_size=_BATCH_SIZE.value, epochs=_EPOCHS.value,
      steps_per_epoch=_STEPS_PER_EPOCH.value, lr=_LR.value,
      weight_decay=_WEIGHT_DECAY.value, label_smoothing=_LABEL_SMOOTHING.value,
      patience=_PATIENCE.value, max_minutes=_MAX_MINUTES.value, seed=_SEED.value,
      synthetic_identities=source.synthetic_identities.value,
      augment_with=_AUGMENT_WITH.value,
      init_from=_INIT_FROM.value,
      command="python main.py " + " ".join(sys.argv[1:]), **_LABELS.loader_args())
  return 0
