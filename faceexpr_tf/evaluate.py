"""`python main.py evaluate`: how good is a run's generator?

On synthetic faces the true translation is known (every identity is rendered in every
expression), so G(x, c) is scored against the true rendering of the same held-out identity
with expression c, next to the "do nothing" baseline L1(x, truth). On real data (FER2013)
there is no truth: the report gives D's class accuracy on real images, how often D
classifies G(x, c) as c, and the cycle reconstruction L1.

Writes <run_dir>/report/{metrics.json, report.md, samples.png}.
"""

import json
import os

import numpy as np
from absl import flags
from absl import logging

from faceexpr_tf import data
from faceexpr_tf import errors
from faceexpr_tf import inference
from faceexpr_tf import runs
from faceexpr_tf import synthetic
from faceexpr_tf import visualize

_D = {"allow_override": True}
_RUN_DIR = flags.DEFINE_string("run_dir", "runs/default", "The run to evaluate.", **_D)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Step or .npz path (default: "
                                  "newest).", **_D)
_DATA = flags.DEFINE_string("data", "synthetic", "'synthetic' (ground-truth report) or a "
                            "fer2013 csv / image folder (D-judged report).", **_D)
_EVAL_USAGE = flags.DEFINE_string("eval_usage", "PublicTest", "csv Usage to evaluate on.",
                                  **_D)
_IDENTITIES = flags.DEFINE_integer("eval_identities", 100, "Held-out synthetic identities.",
                                   **_D)
_SEED = flags.DEFINE_integer("seed", 0, "The run's seed (held-out identities derive from "
                             "it).", **_D)

# A seed no training or validation split uses: held-out identities for the report.
_REPORT_SEED_OFFSET = 2_000_003


def _translate(generator, images_f32, target_ids, num_classes, batch=64):
  out = []
  for i in range(0, len(images_f32), batch):
    onehot = np.eye(num_classes, dtype=np.float32)[target_ids[i:i + batch]]
    out.append(np.asarray(generator(images_f32[i:i + batch], onehot, training=False)))
  return np.concatenate(out)


def synthetic_scores(generator, emotions, num_identities=100, seed=0, image_size=48):
  """Scores G on held-out synthetic identities against the true renderings.

  L1 is in [0, 1] pixel units (mean absolute difference / 255). For every identity and
  every (source, target) pair with source != target:
    l1          mean |G(x_s, t) - x_t| over the whole image
    baseline    mean |x_s - x_t|: what "return the input" scores
    l1_region / baseline_region: the same over the pixels where x_s and x_t differ (the
      mouth, brows and eyes), where a change of expression has to happen.
  Returns (metrics dict, truth uint8 [n, K, H, W, 1], outputs uint8 [n, K(src), K(trg), ...]).
  """
  ids = synthetic.sample_identities(num_identities, seed + _REPORT_SEED_OFFSET)
  truth = synthetic.render(ids, emotions, image_size)            # [n, K, H, W, 1]
  n, k = truth.shape[:2]
  outputs = np.zeros((n, k, k) + truth.shape[2:], np.uint8)
  sums = {key: 0.0 for key in ("l1", "baseline", "l1_region", "baseline_region")}
  per_target = {}
  for s in range(k):
    x = inference.to_model_range(truth[:, s])
    for t in range(k):
      y = _translate(generator, x, np.full(n, t), k)
      outputs[:, s, t] = inference.to_uint8(y)
      if s == t:
        continue
      target = truth[:, t].astype(np.float32)
      err = np.abs(outputs[:, s, t].astype(np.float32) - target) / 255
      base = np.abs(truth[:, s].astype(np.float32) - target) / 255
      region = truth[:, s] != truth[:, t]
      sums["l1"] += err.mean()
      sums["baseline"] += base.mean()
      sums["l1_region"] += err[region].mean()
      sums["baseline_region"] += base[region].mean()
      per_target.setdefault(emotions[t], []).append(err.mean())
  pairs = k * (k - 1)
  metrics = {key: float(value / pairs) for key, value in sums.items()}
  metrics["ratio"] = metrics["l1"] / metrics["baseline"]
  metrics["ratio_region"] = metrics["l1_region"] / metrics["baseline_region"]
  metrics["l1_by_target"] = {name: float(np.mean(v)) for name, v in per_target.items()}
  metrics["identities"] = n
  return metrics, truth, outputs


def synthetic_figure(truth, outputs, emotions, rows=6, source=0):
  """Rows of held-out identities: input (emotion `source`) | G per emotion | truth per
  emotion."""
  k = len(emotions)
  cells = np.concatenate([truth[:rows, source:source + 1], outputs[:rows, source],
                          truth[:rows]], axis=1)
  titles = [f"in: {emotions[source]}"] + [f"G: {e}" for e in emotions] + [
      f"true {e}" for e in emotions]
  picture = visualize.make_grid(cells, titles, scale=2)
  # A second rule between G's columns and the truth.
  side, gap = truth.shape[2] * 2, visualize._GAP  # pylint: disable=protected-access
  rule = (1 + k) * (side + gap) + gap // 2 - 1
  picture[28:, rule:rule + 2] = 160
  return picture


def synthetic_report(run_dir, checkpoint=None, num_identities=100, seed=None):
  generator, config, step = runs.load_generator(run_dir, checkpoint)
  if seed is None:
    seed = int(config.training.get("seed", 0))
  metrics, truth, outputs = synthetic_scores(generator, config.emotions, num_identities,
                                             seed, config.model.image_size)
  metrics["step"] = step
  out_dir = os.path.join(run_dir, "report")
  os.makedirs(out_dir, exist_ok=True)
  figure = os.path.join(out_dir, "samples.png")
  visualize.write_png(figure, synthetic_figure(truth, outputs, config.emotions))
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2)
  verdict = ("clearly below" if metrics["ratio"] < 0.5 else
             "below" if metrics["ratio"] < 1 else "NOT below")
  lines = [
      f"# Synthetic ground-truth report: {run_dir} (step {step})", "",
      f"{metrics['identities']} held-out identities, every source -> target emotion pair "
      f"({', '.join(config.emotions)}). L1 in [0, 1] pixel units.", "",
      "| | G(x, c) vs truth | do nothing: x vs truth | ratio |", "|---|---|---|---|",
      f"| whole image | {metrics['l1']:.4f} | {metrics['baseline']:.4f} | "
      f"{metrics['ratio']:.2f} |",
      f"| expression pixels | {metrics['l1_region']:.4f} | {metrics['baseline_region']:.4f}"
      f" | {metrics['ratio_region']:.2f} |", "",
      f"G is {verdict} the do-nothing baseline.", "",
      "![samples](samples.png)", ""]
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write("\n".join(lines))
  logging.info("Report: L1(G(x,c), truth) = %.4f vs baseline L1(x, truth) = %.4f "
               "(ratio %.2f; expression pixels %.4f vs %.4f, ratio %.2f) -> %s",
               metrics["l1"], metrics["baseline"], metrics["ratio"], metrics["l1_region"],
               metrics["baseline_region"], metrics["ratio_region"], out_dir)
  return metrics


def judged_report(run_dir, source, usage="PublicTest", checkpoint=None, batch=64):
  """Real data: D's accuracy on real images and on G(x, c) for every target, cycle L1."""
  generator, discriminator, config, step = runs.load_models(run_dir, checkpoint)
  faces = data.load_faces(source, config.emotions, split="validation", usage=usage.split(","),
                          image_size=config.model.image_size)
  k = len(config.emotions)
  x = inference.to_model_range(faces.images)
  real_correct, fake_correct, rec = 0.0, np.zeros(k), 0.0
  for i in range(0, len(x), batch):
    xb, lb = x[i:i + batch], faces.labels[i:i + batch]
    _, cls = discriminator(xb)
    real_correct += float(np.sum(np.argmax(cls, -1) == lb))
    for t in range(k):
      fake = _translate(generator, xb, np.full(len(xb), t), k)
      _, cls = discriminator(fake)
      fake_correct[t] += float(np.sum(np.argmax(cls, -1) == t))
      back = _translate(generator, fake, lb, k)
      rec += float(np.abs(back - xb).mean()) * len(xb) / k
  metrics = {"step": step, "images": len(x),
             "d_real_accuracy": real_correct / len(x),
             "d_fake_accuracy": float(fake_correct.sum() / (k * len(x))),
             "d_fake_accuracy_by_target": {e: float(fake_correct[t] / len(x))
                                           for t, e in enumerate(config.emotions)},
             "cycle_l1": rec / len(x)}
  out_dir = os.path.join(run_dir, "report")
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2)
  sample = x[:8]
  cells = np.stack([sample] + [_translate(generator, sample, np.full(len(sample), t), k)
                               for t in range(k)], axis=1)
  cells = inference.to_uint8(cells)
  visualize.write_png(os.path.join(out_dir, "samples.png"),
                      visualize.make_grid(cells, ["input", *config.emotions], scale=2))
  logging.info("Report (%s, %d images): %s -> %s", faces.source, len(x), metrics, out_dir)
  return metrics


def run():
  if not os.path.isdir(_RUN_DIR.value):
    raise errors.UserError(f"--run_dir={_RUN_DIR.value}: no such run directory")
  if _DATA.value == "synthetic":
    seed = _SEED.value if flags.FLAGS["seed"].present else None  # default: the run's own
    synthetic_report(_RUN_DIR.value, _CHECKPOINT.value, _IDENTITIES.value, seed)
  else:
    judged_report(_RUN_DIR.value, _DATA.value, _EVAL_USAGE.value, _CHECKPOINT.value)
  return 0
