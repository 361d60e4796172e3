"""`python main.py calibrate`: how strongly should G make each emotion?

A trained G can make one emotion weaker than real faces show it and another stronger: the
shipped G's smiles were under-made and its frowns caricatures (the judge's median
probability of Happy in translations toward Happy 0.77 against 0.85 in real happy faces;
of Angry 0.82 against 0.64), and realism paid for both. This mode measures, per emotion c,
the factor g by which G's edit is best scaled, x + g (G(x, c) - x):

  for every g of a grid, the faces of the other emotions are translated toward c and the
  judge's features of those translations are compared with real faces of c (Frechet
  distance, as scoring's realism; half the faces give the real ones and the other half the
  translations, so no face meets its own translation); the g with the lowest distance
  is c's factor.

That is the default rule, `--rule=realism`. `--rule=aims` instead chooses all the factors
together: the combination that meets stated aims (`--min_ssim`, `--min_pair_accuracy`,
`--max_fd_ratio`, `--min_accuracy_vs_real` of the judge's accuracy on real faces) with the lowest
FD, scored as `evaluate` scores it (gain_search); when no combination meets them, it
writes the report with how far each aim gets and says so in one line, no generator.

It writes <out>/generator.keras: the same G with those factors as its `edit_gain`
(models.Generator), which `evaluate`, `translate`, `serve` and `export` take like any
.keras generator; generator.json beside it (the input's record, the factors and how they
were measured), calibration.json (every factor's distance), report.md and gains.png (faces
toward each emotion at factor 1 and at the chosen one).
"""

import dataclasses
import json
import os

import numpy as np
from absl import flags
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.data import data_flags
from faceexpr_tf.data import loader
from faceexpr_tf.data import visualize
from faceexpr_tf.evaluation import evaluate
from faceexpr_tf.evaluation import gain_search
from faceexpr_tf.evaluation import metrics
from faceexpr_tf.evaluation import scoring
from faceexpr_tf.modeling import models
from faceexpr_tf.serving import pretrained
from faceexpr_tf.serving import translators
from faceexpr_tf.store import runs

FLAGS = flags.FlagValues()
_MODEL = flags.DEFINE_string("model", "pretrained", "The Keras generator to calibrate: a run "
                             "dir, a .keras file or 'pretrained' (the shipped one).",
                             flag_values=FLAGS)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "The run dir's checkpoint to calibrate: "
                                  "a step, 'best' or 'latest' (default: best when kept, else "
                                  "newest).", flag_values=FLAGS)
_DATA = data_flags.define_data(FLAGS)
_LABELS = data_flags.define_label_flags(FLAGS)
_USAGE = flags.DEFINE_string("calibration_usage", "PublicTest", "csv Usage whose faces "
                             "calibrate (never the test faces you report on).",
                             flag_values=FLAGS)
_CLASSIFIER = flags.DEFINE_string("classifier", "shipped", "The judge whose features compare "
                                  "translations with real faces: 'shipped' or a .keras from "
                                  "train_classifier.", flag_values=FLAGS)
_OUT = flags.DEFINE_string("out", None, "Output folder (default: <run_dir>/calibrated, or "
                           "reports/<model name>_calibrated).", flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Fixes the halves the faces are split into.",
                             flag_values=FLAGS)
_RULE = flags.DEFINE_enum("rule", "realism", ["realism", "aims"], "How the factors are "
                          "chosen: 'realism', each emotion's closest to real faces of it; "
                          "'aims', the most real combination that meets the aims below.",
                          flag_values=FLAGS)
_MIN_SSIM = flags.DEFINE_float("min_ssim", gain_search.Aims.min_ssim, "--rule=aims: mean "
                               "SSIM of the translations with their inputs at least this.",
                               lower_bound=0.0, upper_bound=1.0, flag_values=FLAGS)
_MIN_PAIR = flags.DEFINE_float("min_pair_accuracy", gain_search.Aims.min_pair_accuracy,
                               "--rule=aims: every (source, target) pair of emotions read as "
                               "the target at least this often.", lower_bound=0.0,
                               upper_bound=1.0, flag_values=FLAGS)
_MAX_FD = flags.DEFINE_float("max_fd_ratio", gain_search.Aims.max_fd_ratio, "--rule=aims: "
                             "FD of the translations at most this many times the "
                             "real-vs-real floor.", lower_bound=0.0, flag_values=FLAGS)
_MIN_VS_REAL = flags.DEFINE_float("min_accuracy_vs_real", gain_search.Aims.min_accuracy_vs_real,
                                  "--rule=aims: target accuracy at least this many times the "
                                  "judge's accuracy on the real faces.", lower_bound=0.0,
                                  flag_values=FLAGS)

# The factors tried: from half the edit to twice it.
GRID = tuple(round(0.5 + 0.1 * i, 1) for i in range(16))
# Fewer real faces of an emotion than this in a half: its factor stays 1 (FD is noise).
MIN_FACES = 10


def measure_gains(translator, judge: scoring.Judge, images: np.ndarray, labels: np.ndarray,
                  grid=GRID, seed: int = 0) -> dict:
  """Per emotion of `translator` (a Keras one, without edit_gain), the edit factor whose
  translations toward it sit closest to real faces of it in the judge's features.

  Returns {"gains": [one per class], "emotions": {name: {"gain", "curve": [[g, FD / floor]],
  "fd_ratio_at_1", "fd_ratio", "real_faces", "translations", "note"}}}, FD / floor being the
  distance over the real-vs-real floor of that emotion's faces (two halves of them)."""
  judged = scoring.judged_classes(judge, translator)
  order = np.random.default_rng(seed).permutation(len(images))
  half_a, half_b = order[:len(order) // 2], order[len(order) // 2:]
  feats_real = judge(images[half_a])[0]
  gains = [1.0] * translator.num_classes
  out = {}
  for c in judged:
    name = translator.emotions[c]
    real = feats_real[labels[half_a] == c]
    src = half_b[(labels[half_b] != c) & np.isin(labels[half_b], judged)]
    row = {"gain": 1.0, "real_faces": int(len(real)), "translations": int(len(src))}
    out[name] = row
    if len(real) < MIN_FACES or len(src) < MIN_FACES:
      row["note"] = f"too few faces (fewer than {MIN_FACES}): factor left at 1"
      continue
    floor = max(metrics.frechet_distance(real[:len(real) // 2], real[len(real) // 2:]), 1e-12)
    x = translators.to_model_range(images[src])
    moved = translator.forward_labels(x, np.eye(translator.num_classes, dtype=np.float32)[
        np.full(len(src), c)])
    curve = [[float(g), metrics.frechet_distance(
        real, judge(gain_search.scale_edit(x, moved, g))[0]) / floor] for g in grid]
    # The lowest distance; between equals, the factor nearest 1 (the least change to G).
    best = min(curve, key=lambda point: (point[1], abs(point[0] - 1.0)))
    at_1 = [r for g, r in curve if g == 1.0]
    if at_1 and at_1[0] <= 1.0:
      # Translations as close to real faces as real faces are to each other: nothing
      # measurable to correct, so G's own edit stays.
      best = [1.0, at_1[0]]
      row["note"] = "within the real-vs-real floor at 1: left at 1"
    row.update(gain=best[0], fd_ratio=best[1], curve=curve,
               fd_ratio_at_1=at_1[0] if at_1 else None)
    gains[c] = best[0]
    logging.info("%s: factor %g (FD %.2fx the floor at 1, %.2fx at it)", name, best[0],
                 row["fd_ratio_at_1"] or float("nan"), best[1])
  return {"gains": gains, "emotions": out}


def report_markdown(result: dict, source: str, data: str, judge_path: str) -> str:
  lines = [f"# Edit gain calibration: {source}", "",
           f"Faces of {data}, judged by `{judge_path}`. Per emotion: the factor g of G's edit "
           "(x + g (G(x, c) - x)) whose translations toward it sit closest to real faces of "
           "it (Frechet distance on the judge's features, over that emotion's real-vs-real "
           "floor).", "",
           "| emotion | factor | FD / floor at 1 | at the factor | real faces | translations "
           "| note |", "|---|---|---|---|---|---|---|"]
  for name, row in result["emotions"].items():
    fmt = lambda v: "-" if v is None else f"{v:.2f}x"
    lines.append(f"| {name} | **{row['gain']:.1f}** | {fmt(row.get('fd_ratio_at_1'))} | "
                 f"{fmt(row.get('fd_ratio'))} | {row['real_faces']} | {row['translations']} "
                 f"| {row.get('note', '')} |")
  lines += ["", "![toward each emotion at factor 1 and at the chosen factor](gains.png)", "",
            "Score the calibrated generator with `python main.py evaluate "
            "--model=<this folder>/generator.keras ...`, on faces it was not calibrated on "
            "where you have them.", ""]
  return "\n".join(lines)


def gains_figure(translator, gained, images: np.ndarray, labels: np.ndarray, seed: int = 0):
  """Faces (two per emotion) | toward each emotion at factor 1 | at the chosen factor."""
  picks = scoring.balanced_pick(labels, 2 * translator.num_classes, seed)
  faces = images[picks]
  cells = np.concatenate([faces[:, None], translator.translate_all(faces),
                          gained.translate_all(faces)], axis=1)
  gains = gained.generator.edit_gain or (1.0,) * translator.num_classes
  titles = (["input"] + [f"{e} x1" for e in translator.emotions]
            + [f"{e} x{g:g}" for e, g in zip(translator.emotions, gains)])
  return visualize.make_grid(cells, titles, scale=2)


def _load(path: str, checkpoint):
  """(G, record, source description) from a run dir, a .keras file or 'pretrained'."""
  if path == pretrained.NAME or path.lower().endswith(".keras"):
    generator, record = pretrained.load_generator(None if path == pretrained.NAME else path)
    return generator, dict(record), f".keras generator {path}"
  if not os.path.isfile(os.path.join(path, runs.CONFIG_FILE)):
    raise errors.UserError(f"--model={path}: calibrate needs a Keras generator (a run dir, a "
                           ".keras file or 'pretrained'); SavedModel and .tflite exports "
                           "cannot take a new edit_gain")
  generator, config, step = runs.load_generator(path, checkpoint)
  return generator, {"emotions": list(config.emotions), "step": step,
                     "model": dataclasses.asdict(config.model)}, f"run dir {path}"


def measure_aims(translator, judge: scoring.Judge, images: np.ndarray, labels: np.ndarray,
                 aims: gain_search.Aims, grid=GRID, seed: int = 0) -> dict:
  """--rule=aims: gain_search's most real combination of factors that meets `aims`, with
  the scores of G's own edit (every factor 1) beside it.

  Returns gain_search.search's dict plus "at_1" and "emotions" (G's names)."""
  def progress(done, total):
    if done % len(grid) == 0:
      logging.info("measured %d of %d emotions at every factor", done // len(grid),
                   total // len(grid))
  measured = gain_search.measure(translator, judge, images, labels, grid, seed, progress)
  found = gain_search.search(measured, aims)
  found.update(at_1=gain_search.scores(measured, [1.0] * translator.num_classes),
               emotions=list(translator.emotions))
  return found


def _row(emotions, label: str, s: dict) -> str:
  source, target = (emotions[c] for c in s["lowest_pair_classes"])
  return (f"| {label} | {', '.join(f'{g:g}' for g in s['gains'])} | "
          f"{100 * s['target_accuracy']:.1f}% ({100 * s['judge_real_accuracy']:.1f}%) | "
          f"{s['ssim']:.4f} | {100 * s['lowest_pair']:.1f}% ({source} -> {target}) | "
          f"{s['fd_ratio']:.2f}x |")


def aims_report_markdown(result: dict, source: str, data: str, judge_path: str) -> str:
  emotions = result["emotions"]
  aims = gain_search.Aims(**result["aims"])
  lines = [f"# Edit gain calibration: {source}", "",
           f"Faces of {data}, judged by `{judge_path}`. Rule `aims`: of every combination "
           f"of factors ({', '.join(emotions)}), the lowest FD among those that meet "
           f"{aims.describe()}; each scored as `evaluate` scores the G that carries it, on "
           "these faces.", "",
           "| factors | " + ", ".join(emotions) + " | target accuracy (judge on real) | "
           "SSIM | lowest pair | FD / floor |", "|---|---|---|---|---|---|",
           _row(emotions, "G's own edit", result["at_1"])]
  if result["gains"] is not None:
    lines.append(_row(emotions, "**chosen**", result["scores"]))
    lines += ["", f"{result['candidates']} combinations meet the aims on expression and "
              "identity; the chosen one is the most real of them.", "",
              "![toward each emotion at factor 1 and at the chosen factor](gains.png)"]
  else:
    what = {"ssim": "the highest SSIM", "pair": "the highest lowest pair",
            "accuracy": "the highest target accuracy", "fd": "the lowest FD"}
    for aim, s in result["frontier"].items():
      if s is not None:
        lines.append(_row(emotions, f"{what[aim]} with the other aims met", s))
    lines += ["", "**No combination meets every aim.** Each row above reaches one aim as far "
              "as it goes while meeting the others (a missing row: not even that); loosen "
              "one aim or calibrate another G."]
  lines += ["", "Score the calibrated generator with `python main.py evaluate "
            "--model=<this folder>/generator.keras ...`, on faces it was not calibrated on "
            "where you have them.", ""]
  return "\n".join(lines)


def _short_of(result: dict) -> str:
  """One line: how far each aim gets with the others met (aims_report_markdown's rows)."""
  aims = gain_search.Aims(**result["aims"])
  parts = []
  for aim, s in result["frontier"].items():
    if s is None:
      continue
    if aim == "ssim":
      parts.append(f"SSIM reaches {s['ssim']:.4f} (aim {aims.min_ssim:g})")
    elif aim == "pair":
      parts.append(f"the lowest pair {100 * s['lowest_pair']:.1f}% (aim "
                   f"{100 * aims.min_pair_accuracy:g}%)")
    elif aim == "fd":
      parts.append(f"FD {s['fd_ratio']:.2f}x (aim {aims.max_fd_ratio:g}x)")
    else:
      parts.append(f"target accuracy {100 * s['target_accuracy']:.1f}% (the judge on real "
                   f"faces {100 * s['judge_real_accuracy']:.1f}%)")
  return "; ".join(parts) or "no three of the aims can be met together"


def run():
  if _DATA.value == "synthetic":
    raise errors.UserError("--data: calibrate needs real faces (a fer2013 csv or an image "
                           "folder), not the synthetic ones")
  generator, record, source = _load(_MODEL.value, _CHECKPOINT.value)
  if generator.edit_gain is not None:
    logging.info("%s has edit_gain %s: calibrating its plain edit, replacing them",
                 source, list(generator.edit_gain))
    generator = models.with_edit_gain(generator, None)
  translator = translators.KerasTranslator(generator, record["emotions"], source,
                                           record.get("step"))
  judge = scoring.load_judge(None if _CLASSIFIER.value == "shipped" else _CLASSIFIER.value)
  scoring.judged_classes(judge, translator)   # a judge that cannot score: before the data
  faces = loader.load_faces(_DATA.value, translator.emotions, split="validation",
                            usage=_USAGE.value.split(","), image_size=translator.image_size,
                            **_LABELS.loader_args())
  logging.info("Calibrating %s on %d faces of %s with %s (%d factors per emotion, rule %s)",
               source, len(faces), faces.source, judge.path, len(GRID), _RULE.value)
  out_dir = _OUT.value or evaluate.default_out(_MODEL.value, "calibrated", "_calibrated")
  if _RULE.value == "aims":
    aims = gain_search.Aims(_MIN_SSIM.value, _MIN_PAIR.value, _MAX_FD.value,
                            _MIN_VS_REAL.value)
    result = measure_aims(translator, judge, faces.images, faces.labels, aims,
                          seed=_SEED.value)
    report = aims_report_markdown(result, source, faces.source, judge.path)
  else:
    result = measure_gains(translator, judge, faces.images, faces.labels, seed=_SEED.value)
    report = report_markdown(result, source, faces.source, judge.path)
  result.update(rule=_RULE.value, model=source, step=record.get("step"), data=faces.source,
                judge=judge.path, usage=_USAGE.value, labels=_LABELS.labels.value,
                seed=_SEED.value)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "calibration.json"), "w") as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write(report)
  if result["gains"] is None:
    raise errors.UserError(
        f"--rule=aims: no edit gain meets {aims.describe()} on these faces: "
        f"{_short_of(result)} ({os.path.join(out_dir, 'report.md')}); loosen one aim or "
        "calibrate another G")
  gained = models.with_edit_gain(generator, result["gains"])
  calibration = {k: result[k] for k in ("model", "data", "usage", "labels", "seed", "rule")}
  if _RULE.value == "aims":
    calibration.update(aims=result["aims"], scores=result["scores"])
  record.update(edit_gain=result["gains"], calibration={
      **calibration, "judge": _CLASSIFIER.value,
      "factors_tried": [GRID[0], GRID[-1], len(GRID)]})
  path = pretrained.save_generator(gained, os.path.join(out_dir, "generator.keras"), record)
  gained_translator = translators.KerasTranslator(gained, record["emotions"], path)
  visualize.write_png(os.path.join(out_dir, "gains.png"), gains_figure(
      translator, gained_translator, faces.images, faces.labels, _SEED.value))
  logging.info("Edit gain %s -> %s (report.md, gains.png)", ", ".join(
      f"{e} {g:g}" for e, g in zip(translator.emotions, result["gains"])), path)
  return 0
