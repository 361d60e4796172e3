"""Does G help recognition? Trains the classifier with and without --augment_with.

  python tools/augment_experiment.py --data=data/fer2013.csv --seeds=0,1,2 \
      --augment_with=pretrained --steps_per_epoch=150 --epochs=6 --max_minutes=0

Each seed trains two classifiers with the same recipe and the same number of steps
(--steps_per_epoch fixes the compute, so the augmented arm, with more faces, does not
also get more updates): "real" on the training faces alone, "real + G" with translated
faces added until every class has as many faces as the largest. Every other flag is
train_classifier's. Runs go to --out/<arm>_seed<seed>/ (a finished run is not redone);
the table (mean, sample std and each seed, on --val_usage) is printed and written to
--out/results.md.
"""

import json
import os
import sys

import numpy as np
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from faceexpr_tf import cli  # noqa: E402
from faceexpr_tf.data import emotions as emotions_lib  # noqa: E402
from faceexpr_tf.evaluation import classifier_training  # noqa: E402  (defines the recipe's flags)

_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; each trains both arms.")
_OUT = flags.DEFINE_string("out", "runs/augment_experiment", "Folder of the runs.")
FLAGS = classifier_training.FLAGS  # the recipe's flags, parsed beside the two above
ARMS = ("real", "real + G")


def run_one(arm: str, seed: int, out: str) -> dict:
  run_dir = os.path.join(out, f"{'augmented' if arm != 'real' else 'real'}_seed{seed}")
  record_path = os.path.join(run_dir, "classifier.json")
  if os.path.isfile(record_path):
    with open(record_path) as f:
      return json.load(f)
  return classifier_training.train_classifier(
      FLAGS.data, run_dir, emotions=emotions_lib.parse_emotions(FLAGS.emotions),
      train_usage=FLAGS.train_usage, val_usage=FLAGS.val_usage, arch=FLAGS.arch,
      width=FLAGS.width, dropout=FLAGS.dropout, augment=FLAGS.augment,
      batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
      steps_per_epoch=FLAGS.steps_per_epoch, lr=FLAGS.lr, weight_decay=FLAGS.weight_decay,
      label_smoothing=FLAGS.label_smoothing, patience=FLAGS.patience,
      max_minutes=FLAGS.max_minutes, seed=seed,
      synthetic_identities=FLAGS.synthetic_identities,
      augment_with=FLAGS.augment_with if arm != "real" else None,
      command="python " + " ".join(sys.argv))


def table(records: dict) -> str:
  """records[arm] = list of classifier records (one per seed) -> markdown table."""
  emotions = records[ARMS[0]][0]["emotions"]
  lines = ["| arm | training faces | accuracy, mean ± std | balanced | "
           + " | ".join(emotions) + " | per seed |",
           "|---" * (5 + len(emotions)) + "|"]
  for arm in ARMS:
    recs = records[arm]
    acc = np.array([100 * r["validation"]["accuracy"] for r in recs])
    bal = np.array([100 * r["validation"]["balanced_accuracy"] for r in recs])
    per = [np.mean([100 * r["validation"]["per_class"][e] for r in recs]) for e in emotions]
    std = lambda a: a.std(ddof=1) if len(a) > 1 else 0.0
    lines.append(f"| {arm} | {recs[0]['train_images']:,} | {acc.mean():.1f} ± {std(acc):.1f}"
                 f" | {bal.mean():.1f} ± {std(bal):.1f} | "
                 + " | ".join(f"{p:.1f}" for p in per) + " | "
                 + ", ".join(f"{a:.1f}" for a in acc) + " |")
  gain = np.array([100 * (b["validation"]["accuracy"] - a["validation"]["accuracy"])
                   for a, b in zip(records[ARMS[0]], records[ARMS[1]])])
  lines += ["", f"Gain of real + G over real, paired by seed: {gain.mean():+.1f} points "
            f"(per seed {', '.join(f'{g:+.1f}' for g in gain)})."]
  return "\n".join(lines)


def main(argv):
  del argv
  if not FLAGS.augment_with:
    sys.exit("error: --augment_with=<generator> is required (e.g. pretrained)")
  records = {arm: [] for arm in ARMS}
  for seed in (int(s) for s in _SEEDS.value):
    for arm in ARMS:
      records[arm].append(run_one(arm, seed, _OUT.value))
      print(f"seed {seed} {arm}: {100 * records[arm][-1]['validation']['accuracy']:.1f}%",
            flush=True)
  text = table(records)
  print(text)
  with open(os.path.join(_OUT.value, "results.md"), "w") as f:
    f.write(text + "\n")


if __name__ == "__main__":
  cli.run(FLAGS, main)
