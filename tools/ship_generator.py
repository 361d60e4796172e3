"""Makes a run's chosen checkpoint the package's shipped generator, with its record.

Writes faceexpr_tf/assets/generator.keras (the run's moving-average G when it kept one),
generator.json beside it (emotions, step, model and training flags, the commands, the data's
sha256, the scores the checkpoint was chosen by) and generator_reference.npy (what
tests/test_pretrained.py compares the shipped weights with). docs/MODEL_CARD.md says how
the shipped model was chosen.

  python tools/ship_generator.py --run_dir=runs/ferplus_diffaug --checkpoint=best \
    --data=path/to/fer2013.csv.gz [--ferplus=path/to/fer2013new.csv] --command="python main.py train ..." \
    --guide_command="python main.py train_classifier ..."

A generator that `main.py calibrate` wrote (the shipped one or a run's, with its edit gain
and a record that already says where it came from) ships as it is:

  python tools/ship_generator.py --keras=reports/pretrained_calibrated/generator.keras \
    --selection="..."
"""

import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=wrong-import-position
from absl import flags  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from faceexpr_tf.evaluation import classifier as classifier_lib  # pylint: disable=wrong-import-position
from faceexpr_tf.serving import pretrained  # pylint: disable=wrong-import-position
from faceexpr_tf.store import runs  # pylint: disable=wrong-import-position
from faceexpr_tf.training import callbacks  # pylint: disable=wrong-import-position

_RUN_DIR = flags.DEFINE_string("run_dir", None, "The run to ship from.")
_KERAS = flags.DEFINE_string("keras", None, "Instead of --run_dir: a .keras generator with its "
                             "record (calibrate's output), shipped as it is.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "A step, 'best' (the run's scored "
                                  "best) or a checkpoint .npz path.")
_DATA = flags.DEFINE_string("data", None, "The training data file, for its sha256.")
_FERPLUS = flags.DEFINE_string("ferplus", None, "The FER+ votes file a --labels=ferplus run "
                               "trained on, for its sha256.")
_COMMAND = flags.DEFINE_string("command", "", "The command(s) that trained G.")
_GUIDE_COMMAND = flags.DEFINE_string("guide_command", "", "The command that trained the guide.")
_SELECTION = flags.DEFINE_string("selection", "", "How this checkpoint was chosen.")
_OUT = flags.DEFINE_string("out", pretrained.SHIPPED_GENERATOR, "Where the .keras goes.")
_SET = flags.DEFINE_multi_string(
    "set", [], "key=value (JSON value) for the record's training flags: the step a later "
    "stage continued from (--set=fine_tune_from=3000), or, for a run continued before "
    "config.json recorded each stage's own flags (runs.prepare_run_dir), that stage's "
    "(--set=diffaug='\"color,translation,cutout\"' --set=max_steps=5000).")

# The training flags a reader of the record needs to reproduce or judge the model.
TRAINING_KEYS = ("batch_size", "g_lr", "d_lr", "lambda_cls", "lambda_rec", "lambda_guide",
                 "lambda_mask", "lambda_mask_tv", "g_ema_decay", "lr_decay", "max_steps",
                 "seed", "devices", "diffaug", "labels", "ferplus_scheme")


def scores_at(run_dir: str, step: int) -> dict | None:
  """The scores the run logged at `step` (scores.jsonl), or None."""
  for row in callbacks.read_scores(os.path.join(run_dir, "scores.jsonl")):
    if row.get("step") == step:
      return {k: v for k, v in row.items() if k != "step"}
  return None


def make_record(run_dir: str, step: int) -> dict:
  config = runs.read_config(run_dir)
  record = {"emotions": list(config.emotions), "step": step,
            "model": dataclasses.asdict(config.model), "command": _COMMAND.value,
            "guide_command": _GUIDE_COMMAND.value}
  if _DATA.value:
    record["data_sha256"] = classifier_lib.file_sha256(_DATA.value)
  if _FERPLUS.value:
    record["ferplus_sha256"] = classifier_lib.file_sha256(_FERPLUS.value)
  keys = TRAINING_KEYS if config.model.g_output == "attention" else [
      k for k in TRAINING_KEYS if not k.startswith("lambda_mask")]
  record["training"] = {k: config.training[k] for k in keys if k in config.training}
  for item in _SET.value:
    key, _, value = item.partition("=")
    record["training"][key] = json.loads(value)
  scores = scores_at(run_dir, step)
  if scores is not None:
    record[f"selection_scores_{config.training.get('eval_faces', 400)}_faces"] = scores
  if _SELECTION.value:
    record["selection"] = _SELECTION.value
  return record


def main(argv):
  del argv
  if bool(_RUN_DIR.value) == bool(_KERAS.value):
    raise app.UsageError("give --run_dir or --keras (one of them)")
  if _KERAS.value:
    source = _KERAS.value
    generator, record = pretrained.load_generator(source)
    if _SELECTION.value:
      record["selection"] = _SELECTION.value
    step = record.get("step")
  else:
    source, checkpoint = _RUN_DIR.value, _CHECKPOINT.value
    generator, _, step = runs.load_generator(
        source, None if checkpoint == "best" else
        int(checkpoint) if checkpoint.isdigit() else checkpoint)
    record = make_record(source, step)
  pretrained.save_generator(generator, _OUT.value, record)
  reference = os.path.join(os.path.dirname(os.path.abspath(_OUT.value)),
                           "generator_reference.npy")
  loaded, _ = pretrained.load_generator(_OUT.value)  # the file as users will open it
  np.save(reference, pretrained.reference_output(loaded))
  print(f"Shipped {source} step {step} -> {_OUT.value} "
        f"({os.path.getsize(_OUT.value) / 1e6:.1f} MB), record and {reference}")


if __name__ == "__main__":
  app.run(main)
