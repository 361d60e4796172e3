"""`python main.py evaluate`: how good is a generator?

On synthetic faces the true translation is known (every identity is rendered in every
expression), so G(x, c) is scored against the true rendering of the same held-out identity
with expression c, next to the "do nothing" baseline L1(x, truth).

On real faces (a fer2013 csv or an image folder) an independent expression classifier,
the judge (default: the one shipped in the package), reads every translation of every
test face to every other emotion: target accuracy next to the judge's accuracy on the
real faces, identity (SSIM, L1, PSNR, pixel correlation, cycle L1) and realism (Frechet
distance and KID on the judge's features, with the real-vs-real floor); see scoring.py.
`--classifier=discriminator` gives the older report judged by the run's own D.

Writes <out>/{metrics.json, report.md, samples.png[, worst.png, pairs.csv]}; <out> is
<run_dir>/report by default.
"""

import json
import os

import keras
import numpy as np
import pandas as pd
from absl import flags
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.data import data_flags
from faceexpr_tf.data import loader
from faceexpr_tf.data import synthetic
from faceexpr_tf.data import visualize
from faceexpr_tf.evaluation import scoring
from faceexpr_tf.modeling import models
from faceexpr_tf.serving import inference
from faceexpr_tf.serving import translators
from faceexpr_tf.store import runs

# This mode's flags, apart from every other mode's: main.py parses them only when
# the mode runs, so their defaults never depend on what else was imported.
FLAGS = flags.FlagValues()
_RUN_DIR = flags.DEFINE_string("run_dir", None, "The run to evaluate (same as --model).",
                               flag_values=FLAGS)
_MODEL = flags.DEFINE_string("model", None, "Generator: a run dir, SavedModel, .tflite, "
                             ".keras or 'pretrained' (the shipped one; the default when "
                             "neither --model nor --run_dir is given).", flag_values=FLAGS)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Run dirs: a step, 'best' or "
                                  "'latest' (default: best when kept, else newest).",
                                  flag_values=FLAGS)
_DATA = data_flags.define_data(FLAGS)
_LABELS = data_flags.define_label_flags(FLAGS)
_EVAL_USAGE = flags.DEFINE_string("eval_usage", "PublicTest", "csv Usage to evaluate on.",
                                  flag_values=FLAGS)
_CLASSIFIER = flags.DEFINE_string("classifier", "shipped", "The judge on real faces: "
                                  "'shipped', a .keras from train_classifier, or "
                                  "'discriminator' (the run's own D).", flag_values=FLAGS)
_SCORE_EMOTIONS = flags.DEFINE_list(
    "score_emotions", None, "Score only these of the model's emotions, as sources and "
    "targets (default: all the judge knows), e.g. Angry,Happy,Sad,Surprise for a "
    "five-class G beside a four-class one.", flag_values=FLAGS)
_EVAL_FACES = flags.DEFINE_integer("eval_faces", 0, "Score only this many faces, "
                                   "class-balanced (0 = all).", flag_values=FLAGS)
_OUT = flags.DEFINE_string("out", None, "Report folder (default: <run_dir>/report, or "
                           "reports/<model name>).", flag_values=FLAGS)
_IDENTITIES = flags.DEFINE_integer("eval_identities", 100, "Held-out synthetic identities.",
                                   flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "The run's seed (held-out identities derive from "
                             "it).", flag_values=FLAGS)

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
    x = translators.to_model_range(truth[:, s])
    for t in range(k):
      y = _translate(generator, x, np.full(n, t), k)
      outputs[:, s, t] = translators.to_uint8(y)
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


def judged_report(run_dir, source, usage="PublicTest", checkpoint=None, batch=64,
                  labels: dict | None = None):
  """Real data: D's accuracy on real images and on G(x, c) for every target, cycle L1.

  labels: loader.load_faces's label arguments (labels, ferplus, ferplus_scheme)."""
  generator, discriminator, config, step = runs.load_models(run_dir, checkpoint)
  faces = loader.load_faces(source, config.emotions, split="validation", usage=usage.split(","),
                            image_size=config.model.image_size, **(labels or {}))
  k = len(config.emotions)
  x = translators.to_model_range(faces.images)
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
  cells = translators.to_uint8(cells)
  visualize.write_png(os.path.join(out_dir, "samples.png"),
                      visualize.make_grid(cells, ["input", *config.emotions], scale=2))
  logging.info("Report (%s, %d images): %s -> %s", faces.source, len(x), metrics, out_dir)
  return metrics


def real_report(translator, source: str, out_dir: str, *, usage="PublicTest",
                judge: scoring.Judge | None = None, max_faces: int = 0, seed: int = 0,
                show_progress: bool = True, labels: dict | None = None,
                score_emotions=None) -> dict:
  """Scores `translator` (translators.Translator) on real faces with the judge; writes
  metrics.json, report.md, pairs.csv, samples.png and worst.png (and masks.png: where an
  attention G edits) into out_dir.

  labels: loader.load_faces's label arguments (labels, ferplus, ferplus_scheme): which
  faces count as which emotion (the sources' and pairs' labels).
  score_emotions: names of the model's emotions to score (None: all the judge knows)."""
  judge = judge or scoring.load_judge()
  only = None if score_emotions is None else translator.class_ids(list(score_emotions))
  judged = scoring.judged_classes(judge, translator, only)   # bad emotions: before the data
  faces = loader.load_faces(source, translator.emotions, split="validation",
                            usage=usage.split(","), image_size=translator.image_size,
                            **(labels or {}))
  if max_faces and max_faces < len(faces):
    faces = faces.subset(scoring.balanced_pick(faces.labels, max_faces, seed))
  k, all_names = translator.num_classes, translator.emotions
  names = [all_names[c] for c in judged]   # the emotions scored: those the judge knows
  if len(judged) < k:
    logging.info("Not scored (faces and targets): %s",
                 ", ".join(e for e in all_names if e not in names))
  scored = int(np.isin(faces.labels, judged).sum())
  count = scored * (len(judged) - 1)
  logging.info("Scoring %s on %d faces of %s (%d translations) with %s", translator.source,
               scored, faces.source, count, judge.path)
  bar = keras.utils.Progbar(count, unit_name="translation", verbose=1 if show_progress else 0)
  scores, arrays = scoring.score(translator, judge, faces.images, faces.labels,
                                 progress=lambda done, total: bar.update(done), seed=seed,
                                 only=only)
  tr = arrays["translations"]
  names_of = lambda ids: [all_names[i] for i in ids]
  pairs = pd.crosstab(pd.Categorical(names_of(tr.source_label), names),
                      pd.Categorical(names_of(tr.target), names),
                      values=arrays["hit"].astype(float), aggfunc="mean", dropna=False)
  pairs.index.name, pairs.columns.name = "source", "target"
  scores["target_accuracy_by_pair"] = {
      f"{s}->{t}": float(pairs.loc[s, t]) for s in names for t in names if s != t}
  for key in ("target_accuracy_by_target", "judge_real_accuracy_by_class",
              "target_prob_median_by_target", "real_prob_median_by_class"):
    scores[key] = {all_names[c]: v for c, v in scores[key].items()}
  scores["judged_emotions"] = names_of(scores.pop("judged_classes"))
  scores.update(model=translator.source, step=translator.step, data=faces.source,
                judge=judge.path, judge_record_accuracy=judge.record.get(
                    "validation", {}).get("accuracy"))
  os.makedirs(out_dir, exist_ok=True)
  pairs.to_csv(os.path.join(out_dir, "pairs.csv"), float_format="%.4f")
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(scores, f, indent=2)
  picks = scoring.balanced_pick(faces.labels, 2 * k, seed)
  cells = np.concatenate([faces.images[picks][:, None],
                          translator.translate_all(faces.images[picks])], axis=1)
  visualize.write_png(os.path.join(out_dir, "samples.png"),
                      visualize.make_grid(cells, ["input", *all_names], scale=2))
  generator = getattr(translator, "generator", None)  # Keras Gs: an attention G's masks
  masks = None if generator is None else models.edit_masks(
      generator, translators.to_model_range(faces.images[picks]), k)
  if masks is not None:
    shown = translators.to_uint8(np.asarray(masks) * 2.0 - 1.0)
    visualize.write_png(os.path.join(out_dir, "masks.png"), visualize.make_grid(
        np.concatenate([faces.images[picks][:, None], shown], axis=1),
        ["input", *[f"edit: {n}" for n in all_names]], scale=2))
  visualize.write_png(os.path.join(out_dir, "worst.png"),
                      worst_figure(faces.images, arrays, names))
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write(real_report_markdown(scores, pairs, names))
  logging.info("Report: target accuracy %.3f (judge on real faces %.3f, do nothing %.3f), "
               "SSIM %.3f, pixel correlation %.2f, FD %.3g (floor %.3g), KID %.3g (floor "
               "%.3g) -> %s", scores["target_accuracy"], scores["judge_real_accuracy"],
               scores["do_nothing_target_accuracy"], scores["ssim"],
               scores["pixel_correlation"], scores["fd"], scores["fd_floor"],
               scores["kid"], scores["kid_floor"], out_dir)
  return scores


def worst_figure(images, arrays, names, count=8):
  """Two rows of (input, translation) pairs: the lowest judge probability of the target,
  and the lowest SSIM."""
  tr = arrays["translations"]
  rows = []
  for order in (np.argsort(arrays["target_prob"]), np.argsort(arrays["ssim"])):
    pick = order[:count]
    rows.append(np.stack([np.concatenate([images[tr.source[i]], tr.images[i]], axis=1)
                          for i in pick]))
  cells = np.stack(rows)  # [2, count, S, 2S, 1] -> cells must be square: split
  side = images.shape[1]
  cells = cells.reshape(2, count, side, 2, side, 1).transpose(0, 1, 3, 2, 4, 5).reshape(
      2, 2 * count, side, side, 1)
  titles = []
  for i in range(count):
    titles += ["in", "out"]
  return visualize.make_grid(cells, titles, scale=2, separator_after=0)


def real_report_markdown(s: dict, pairs, names) -> str:
  pct = lambda v: f"{100 * v:.1f}%"
  lines = [f"# Real-face report: {s['model']} (step {s['step']})", "",
           f"{s['faces']} faces of {s['data']}, each translated to every other emotion "
           f"({s['translations']} translations), judged by `{s['judge']}`.", "",
           "| question | measure | value | reference |", "|---|---|---|---|",
           f"| expression | target accuracy (judge reads the target) | "
           f"**{pct(s['target_accuracy'])}** | judge on real faces "
           f"{pct(s['judge_real_accuracy'])}; do nothing {pct(s['do_nothing_target_accuracy'])} |",
           f"| | target accuracy / judge's real accuracy | "
           f"{s['target_accuracy_vs_real']:.2f} | aim >= 0.90 |",
           f"| identity | SSIM with the input | {s['ssim']:.3f} | 1 = unchanged; aim >= 0.7 |",
           f"| | pixel correlation with the input | {s['pixel_correlation']:.3f} | "
           f"-1 = inverted ({pct(s['inverted_share'])} of translations below 0) |",
           f"| | L1 / PSNR | {s['l1']:.4f} / {s['psnr']:.1f} dB | |",
           f"| | cycle L1, G(G(x, c), c_org) vs x | {s.get('cycle_l1', float('nan')):.4f} | |",
           f"| realism | Frechet distance (judge features) | {s['fd']:.4g} | real vs real "
           f"{s['fd_floor']:.4g} (ratio {s['fd'] / max(s['fd_floor'], 1e-12):.2f}) |",
           f"| | KID (judge features) | {s['kid']:.4g} +- {s['kid_std']:.2g} | real vs real "
           f"{s['kid_floor']:.4g} |",
           f"| own emotion | G(x, c_org), each face toward the emotion it shows: SSIM / FD | "
           f"{s['own_emotion_ssim']:.3f} / {s['own_emotion_fd']:.4g} (ratio "
           f"{s['own_emotion_fd'] / max(s['fd_floor'], 1e-12):.2f}) | unchanged: 1 / the "
           f"floor (ratio 1) |",
           f"| | judge reads c_org in G(x, c_org) | {pct(s['own_emotion_accuracy'])} | "
           f"judge on the faces themselves {pct(s['judge_real_accuracy'])} |", "",
           "FD and KID use the judge's penultimate features, not Inception's (no Inception "
           "weights can be downloaded here): compare them only with the floor beside them "
           "and with other reports from the same judge. They compare the real faces of one "
           f"half with {s.get('realism_translations', '?')} translations of the other half's "
           "faces, drawn so that their target emotions come in the real faces' mix "
           "(scoring.matched_mix).", "",
           "Target accuracy by source (rows) and target (columns):", "",
           "| source \\ target | " + " | ".join(names) + " | judge on real |",
           "|---" * (len(names) + 2) + "|"]
  for src in names:
    cells = ["-" if src == t else pct(pairs.loc[src, t]) for t in names]
    lines.append(f"| {src} | " + " | ".join(cells) +
                 f" | {pct(s['judge_real_accuracy_by_class'][src])} |")
  lines += ["", "How strongly each emotion reads: the judge's median probability of it in "
            "translations toward it and in real faces of it (translations below the real "
            "faces: an under-made expression; above: a caricature).", "",
            "| emotion | translations toward it | real faces of it |", "|---|---|---|"]
  lines += [f"| {n} | {s['target_prob_median_by_target'][n]:.3f} | "
            f"{s['real_prob_median_by_class'][n]:.3f} |" for n in names]
  lines += ["", "![samples: input, then each emotion](samples.png)", "",
            "Worst cases (input, output): top row lowest judge probability of the target, "
            "bottom row lowest SSIM.", "", "![worst cases](worst.png)", ""]
  return "\n".join(lines)


def _model_path() -> str:
  if _MODEL.value and _RUN_DIR.value and _MODEL.value != _RUN_DIR.value:
    raise errors.UserError("give --model or --run_dir, not both")
  return _MODEL.value or _RUN_DIR.value or "pretrained"


def default_out(path: str, folder: str = "report", suffix: str = "") -> str:
  """Where a mode writes about model `path`: <run dir>/<folder>, else reports/<name><suffix>."""
  if os.path.isdir(path) and os.path.isfile(os.path.join(path, runs.CONFIG_FILE)):
    return os.path.join(path, folder)
  name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or "model"
  return os.path.join("reports", name + suffix)


def run():
  path = _model_path()
  out_dir = _OUT.value or default_out(path)
  if _DATA.value == "synthetic":
    if not os.path.isdir(path):
      raise errors.UserError(f"--data=synthetic scores a run dir against ground truth; "
                             f"{path} is not a run directory")
    seed = _SEED.value if FLAGS["seed"].present else None  # default: the run's own
    synthetic_report(path, _CHECKPOINT.value, _IDENTITIES.value, seed)
  elif _CLASSIFIER.value == "discriminator":
    if not os.path.isdir(path):
      raise errors.UserError(f"--classifier=discriminator needs a run dir; {path} is not one")
    judged_report(path, _DATA.value, _EVAL_USAGE.value, _CHECKPOINT.value,
                  labels=_LABELS.loader_args())
  else:
    translator = inference.load_translator(path, _CHECKPOINT.value)
    judge = scoring.load_judge(None if _CLASSIFIER.value == "shipped" else _CLASSIFIER.value)
    real_report(translator, _DATA.value, out_dir, usage=_EVAL_USAGE.value, judge=judge,
                max_faces=_EVAL_FACES.value, seed=_SEED.value, labels=_LABELS.loader_args(),
                score_emotions=_SCORE_EMOTIONS.value)
  return 0
