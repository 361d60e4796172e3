"""`calibrate --rule=aims`: the edit gain that meets stated aims, the most real first.

calibrate's realism rule picks each emotion's factor on its own, as the one whose
translations sit closest to real faces of it. Aims such as "SSIM at least 0.9" or "no pair
of emotions below 70%" are properties of all the factors together, and they pull against
realism: a fuller smile is more real and moves more pixels (SSIM falls), a gentler frown is
more real and is read as angry less often (a pair falls). This module translates each
emotion's faces once, measures every factor of the grid on them, and scores every
combination of factors from those measurements exactly as `evaluate` scores the generator
that carries them (same faces, same judge, same halves and mix of emotions for realism):

  target accuracy, lowest pair  the judge's hits per (source, target) pair; the pairs
                                toward an emotion depend on its own factor only
  SSIM                          the mean over all translations (one per face and target)
  realism (FD / floor)          evaluate's realism set (one half's translations, drawn in the
                                other half's mix of emotions) from each (emotion, factor)'s
                                feature sums: moments add, so no combination is re-judged

Among the combinations that meet every aim, the lowest FD wins; between equals, the one
nearest factor 1. FD's mean term alone is a lower bound of it, and a cheap one (dot
products of the sums), so combinations are judged in the order of that bound and the
search stops once the bound passes the best FD found. When none meets them all,
`frontier` says how far each aim gets with the others met.
"""

import dataclasses
import itertools

import numpy as np
from absl import logging

from faceexpr_tf.evaluation import metrics
from faceexpr_tf.evaluation import scoring
from faceexpr_tf.serving import translators

# At most this many combinations get their FD computed per question (each is one
# eigendecomposition of the judge's feature size), in the order of the lower bound.
MAX_FD_EVALUATIONS = 20000


def scale_edit(images_f32: np.ndarray, translated_f32: np.ndarray, gain: float) -> np.ndarray:
  """x + gain (G(x, c) - x) as uint8, exactly as models.Generator applies edit_gain."""
  return translators.to_uint8(np.clip(images_f32 + gain * (translated_f32 - images_f32),
                                      -1.0, 1.0))


@dataclasses.dataclass(frozen=True)
class Aims:
  """What a calibrated G must reach on the calibration faces (issue 21's aims by default):
  target accuracy at least `min_accuracy_vs_real` times the judge's accuracy on the real
  faces, mean SSIM, the lowest (source, target) pair's target accuracy, FD over the
  real-vs-real floor."""
  min_ssim: float = 0.9
  min_pair_accuracy: float = 0.7
  max_fd_ratio: float = 3.0
  min_accuracy_vs_real: float = 1.0

  def describe(self) -> str:
    return (f"SSIM >= {self.min_ssim:g}, no pair below {100 * self.min_pair_accuracy:g}%, "
            f"FD <= {self.max_fd_ratio:g}x the floor, target accuracy >= "
            f"{self.min_accuracy_vs_real:g}x the judge's on real faces")


@dataclasses.dataclass
class Measured:
  """Every (emotion, factor) measured once; `classes` index G's class ids (judged ones)."""
  grid: tuple            # the factors, [F]
  num_classes: int       # G's
  classes: np.ndarray    # G class ids of the judged emotions, [K]
  hits: np.ndarray       # [K target, F, K source] translations the judge reads as the target
  counts: np.ndarray     # [K target, K source] translations (0 on the diagonal)
  ssim_sum: np.ndarray   # [K target, F] sum of SSIM with the input
  feature_sum: np.ndarray    # [K target, F, D] over the target's translations in the realism set
  feature_outer: np.ndarray  # [K target, F, D, D] sum of outer products, the same ones
  realism_count: np.ndarray  # [K target] translations of the realism set toward it
  real_mean: np.ndarray      # [D] of the real half the realism set is compared with
  real_cov: np.ndarray       # [D, D]
  floor: float               # FD between two halves of the real faces (scoring.real_floor)
  judge_real_accuracy: float


def measure(translator, judge, images: np.ndarray, labels: np.ndarray, grid,
            seed: int = 0, progress=None) -> Measured:
  """Translates every face toward each other judged emotion and measures each factor.

  `translator` is a Keras one without an edit gain (scale_edit applies the factor as the
  gained G would); faces, halves and realism picks are scoring.score's."""
  to_judge = scoring._to_judge(judge, translator)
  classes = scoring._judged(to_judge)
  kept = np.flatnonzero(np.isin(labels, classes))
  images, labels = images[kept], labels[kept]
  feats_real, logits_real = judge(images)
  k, f = len(classes), len(grid)
  position = np.searchsorted(classes, labels)   # the face's emotion among `classes`
  # scoring.score's realism set, as (target position, face) marks.
  idx, target = scoring.every_other_pairs(labels, classes)
  half_a, _, picks = scoring.realism_set(idx, target, labels, seed)
  in_realism = np.zeros((k, len(images)), bool)
  in_realism[np.searchsorted(classes, target[picks]), idx[picks]] = True
  d = feats_real.shape[1]
  out = Measured(
      grid=tuple(grid), num_classes=translator.num_classes, classes=classes,
      hits=np.zeros((k, f, k), np.int64), counts=np.zeros((k, k), np.int64),
      ssim_sum=np.zeros((k, f)),
      feature_sum=np.zeros((k, f, d)), feature_outer=np.zeros((k, f, d, d)),
      realism_count=in_realism.sum(1), real_mean=feats_real[half_a].mean(0),
      real_cov=np.cov(feats_real[half_a], rowvar=False),
      floor=max(scoring.real_floor(feats_real, seed)["fd"], 1e-12),
      judge_real_accuracy=float((logits_real.argmax(-1) == to_judge[labels]).mean()))
  onehot = np.eye(translator.num_classes, dtype=np.float32)
  for t, c in enumerate(classes):
    src = np.flatnonzero(position != t)
    out.counts[t] = np.bincount(position[src], minlength=k)
    x = translators.to_model_range(images[src])
    moved = np.concatenate([translator.forward_labels(x[i:i + 256], onehot[np.full(
        len(x[i:i + 256]), c)]) for i in range(0, len(x), 256)] or [x[:0]])
    picked = in_realism[t, src]
    for j, g in enumerate(grid):
      scaled = scale_edit(x, moved, g)
      feats, logits = judge(scaled)
      hit = logits.argmax(-1) == to_judge[c]
      out.hits[t, j] = np.bincount(position[src][hit], minlength=k)
      out.ssim_sum[t, j] = metrics.ssim(images[src], scaled).sum()
      chosen = feats[picked]
      out.feature_sum[t, j] = chosen.sum(0)
      out.feature_outer[t, j] = chosen.T @ chosen
      if progress is not None:
        progress(t * f + j + 1, k * f)
  return out


def _pair_minimum(m: Measured) -> np.ndarray:
  """[K target, F]: the lowest target accuracy over the sources translated toward it."""
  with np.errstate(invalid="ignore", divide="ignore"):
    rate = m.hits / m.counts[:, None, :]
  return np.nanmin(np.where(m.counts[:, None, :] > 0, rate, np.nan), axis=-1)


class _Realism:
  """FD / floor of a combination (one factor index per target) from the moments, and a
  lower bound of it for many combinations at once (the mean term of FD)."""

  def __init__(self, m: Measured):
    self.m = m
    self.root = metrics.sqrtm_psd(m.real_cov)
    self.n = m.realism_count.sum()
    self.cache = {}
    k, f, d = m.feature_sum.shape
    sums = m.feature_sum.reshape(k * f, d)
    self.gram = (sums @ sums.T).reshape(k, f, k, f)     # S[t, j] . S[u, l]
    self.with_real = (sums @ m.real_mean).reshape(k, f)  # S[t, j] . mu_real

  def __call__(self, combo) -> float:
    combo = tuple(int(j) for j in combo)
    if combo not in self.cache:
      m, t = self.m, np.arange(len(combo))
      mean = m.feature_sum[t, combo].sum(0) / self.n
      cov = (m.feature_outer[t, combo].sum(0) - self.n * np.outer(mean, mean)) / (self.n - 1)
      self.cache[combo] = metrics.frechet_distance_moments(
          m.real_mean, m.real_cov, mean, cov, root_a=self.root) / m.floor
    return self.cache[combo]

  def lower_bound(self, combos: np.ndarray) -> np.ndarray:
    """|mu_real - mu|^2 / floor for combinations [M, K] (FD's trace term is >= 0)."""
    k = combos.shape[1]
    square = sum(self.gram[t, combos[:, t], u, combos[:, u]] for t in range(k)
                 for u in range(k)) / self.n ** 2
    cross = sum(self.with_real[t, combos[:, t]] for t in range(k)) / self.n
    return np.maximum(self.m.real_mean @ self.m.real_mean - 2 * cross + square, 0.0) / (
        self.m.floor)


def scores(m: Measured, gains) -> dict:
  """What `evaluate` reports on these faces for a G with `gains` (one per G class; those
  of unjudged classes are ignored), from the measurements."""
  combo = [_grid_index(m, gains[c]) for c in m.classes]
  return _combo_scores(m, np.asarray(combo), _Realism(m))


def _grid_index(m: Measured, gain: float) -> int:
  close = np.flatnonzero(np.isclose(m.grid, gain))
  if not len(close):
    raise ValueError(f"factor {gain} is not among the measured {m.grid}")
  return int(close[0])


def _combo_scores(m: Measured, combo: np.ndarray, realism: _Realism) -> dict:
  t = np.arange(len(combo))
  n = m.counts.sum()
  rate = np.where(m.counts > 0, m.hits[t, combo] / np.maximum(m.counts, 1), np.inf)
  target, source = np.unravel_index(np.argmin(rate), rate.shape)
  gains = [1.0] * m.num_classes   # an emotion the judge cannot score keeps G's own edit
  for c, j in zip(m.classes, combo):
    gains[c] = float(m.grid[j])
  return {"gains": gains,
          "target_accuracy": float(m.hits[t, combo].sum() / n),
          "judge_real_accuracy": m.judge_real_accuracy,
          "ssim": float(m.ssim_sum[t, combo].sum() / n),
          "lowest_pair": float(rate[target, source]),
          "lowest_pair_classes": [int(m.classes[source]), int(m.classes[target])],
          "fd_ratio": float(realism(combo))}


def search(m: Measured, aims: Aims) -> dict:
  """The combination of factors that meets every aim with the lowest FD.

  Returns {"gains": [one per G class] or None when none meets the aims, "scores": its
  scores, "candidates": how many met the aims before realism, "frontier": when none met
  them all, per aim the best value reachable with the other aims met (its scores; None
  where even that is out of reach)}."""
  k, f = len(m.classes), len(m.grid)
  combos = np.asarray(list(itertools.product(range(f), repeat=k)), np.int64)
  t = np.arange(k)
  n = m.counts.sum()
  accuracy = m.hits.sum(-1)[t, combos].sum(1) / n
  ssim = m.ssim_sum[t, combos].sum(1) / n
  pair = _pair_minimum(m)[t, combos].min(1)
  # Between equals: the least change to G's own edit.
  change = np.abs(np.asarray(m.grid)[combos] - 1.0).sum(1)
  real = aims.min_accuracy_vs_real * m.judge_real_accuracy
  value = {"accuracy": accuracy / max(m.judge_real_accuracy, 1e-12), "ssim": ssim,
           "pair": pair}
  met = {"accuracy": accuracy >= real - 1e-12, "ssim": ssim >= aims.min_ssim - 1e-12,
         "pair": pair >= aims.min_pair_accuracy - 1e-12}
  realism = _Realism(m)
  bound = realism.lower_bound(combos)
  cheap = met["accuracy"] & met["ssim"] & met["pair"]
  best = _most_real(combos, np.flatnonzero(cheap), change, bound, realism, aims.max_fd_ratio)
  out = {"aims": dataclasses.asdict(aims), "candidates": int(cheap.sum()),
         "gains": None, "scores": None, "frontier": None}
  if best is not None:
    out["scores"] = _combo_scores(m, combos[best], realism)
    out["gains"] = out["scores"]["gains"]
    logging.info("%d of %d combinations meet the aims before realism; the lowest FD %.2fx "
                 "(%d FDs computed)", cheap.sum(), len(combos), out["scores"]["fd_ratio"],
                 len(realism.cache))
    return out
  # None meets every aim: how far each one gets with the others met.
  frontier = {}
  for aim in ("ssim", "pair", "accuracy"):
    others = np.ones(len(combos), bool)
    for name, ok in met.items():
      if name != aim:
        others &= ok
    ranked = np.flatnonzero(others & (bound <= aims.max_fd_ratio + 1e-12))
    ranked = ranked[np.lexsort((change[ranked], -value[aim][ranked]))][:MAX_FD_EVALUATIONS]
    hit = next((i for i in ranked if realism(combos[i]) <= aims.max_fd_ratio + 1e-12), None)
    frontier[aim] = None if hit is None else _combo_scores(m, combos[hit], realism)
  lowest = _most_real(combos, np.flatnonzero(cheap), change, bound, realism, np.inf)
  frontier["fd"] = None if lowest is None else _combo_scores(m, combos[lowest], realism)
  out["frontier"] = frontier
  return out


def _most_real(combos, candidates, change, bound, realism, max_ratio):
  """The candidate with the lowest FD at most max_ratio (nearest factor 1 between equals):
  judged in the order of the lower bound, until it passes the best FD found."""
  order = candidates[np.lexsort((change[candidates], bound[candidates]))]
  best = None
  for i in order[:MAX_FD_EVALUATIONS]:
    if bound[i] > max_ratio + 1e-12 or (best is not None and bound[i] > best[0][0]):
      break
    ratio = realism(combos[i])
    if ratio <= max_ratio + 1e-12 and (best is None or (ratio, change[i]) < best[0]):
      best = ((ratio, change[i]), i)
  return None if best is None else best[1]
