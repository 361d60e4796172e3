"""Score a generator on real faces with an independent expression classifier (the judge).

Every face is translated to every other emotion. Three questions, each with numbers
(and a fourth on G(x, c_org)):
  expression  does the judge read the target emotion in G(x, c)?  (target accuracy; the
              "do nothing" line is how often it reads c in the untouched input x)
  identity    is it still the same face?  (SSIM, L1, PSNR, pixel correlation with x; an
              inverted face has correlation near -1; cycle L1 of G(G(x, c), c_org))
  realism     do translations look like real faces to the judge's features?  (Frechet
              distance and KID on its penultimate layer, with real-vs-real, two halves
              of the real faces, as the floor: no Inception weights can be downloaded;
              the translations compared are drawn with the real faces' mix of emotions,
              see matched_mix)
  own emotion does G leave a face alone when asked for the emotion it already shows?
              (G(x, c_org): SSIM and FD, doing nothing at the floor; own_emotion_scores)

The judge and the generator meet by emotion name (judge_classes): a judge may know more
emotions than G (a five-class judge with Neutral scoring a four-class G), and a
translation it reads as one of the others is a miss; a judge that knows fewer scores G on
the emotions it knows (a four-class judge scoring a five-class G on the four paper
emotions: faces and targets of the others are left out).

`choose_best` is the rule that keeps a run's best checkpoint (see its docstring).
"""

import dataclasses

import numpy as np

from faceexpr_tf import errors
from faceexpr_tf.evaluation import classifier as classifier_lib
from faceexpr_tf.evaluation import metrics
from faceexpr_tf.serving import translators


class Judge:
  """A classifier's logits and penultimate features for uint8 faces."""

  def __init__(self, model, record=None, path=None):
    self.model = model
    self.record = record or {}
    self.path = path
    self._features = classifier_lib.feature_model(model)

  @property
  def emotions(self) -> list[str] | None:
    """The judge's emotions in class-id order, from its record (None if it names none)."""
    names = self.record.get("emotions")
    return list(names) if isinstance(names, (list, tuple)) else None

  def __call__(self, images_uint8: np.ndarray, batch: int = 256):
    """uint8 [N, S, S, 1] -> (features [N, D], logits [N, K])."""
    feats, logits = [], []
    for i in range(0, len(images_uint8), batch):
      f, l = self._features(translators.to_model_range(images_uint8[i:i + batch]),
                            training=False)
      feats.append(np.asarray(f, np.float64))
      logits.append(np.asarray(l, np.float64))
    if not feats:
      return np.zeros((0, 0)), np.zeros((0, 0))
    return np.concatenate(feats), np.concatenate(logits)


def judge_classes(judge_emotions, emotions, what: str = "the judge") -> np.ndarray:
  """For each of G's class ids (`emotions`, in order), the judge's class id of that emotion,
  -1 where the judge does not know it (those faces and targets are not scored).

  judge_emotions None (a judge whose record names none): the ids are taken as the same.
  Raises UserError when the judge knows fewer than two of G's emotions."""
  if judge_emotions is None:
    return np.arange(len(emotions), dtype=np.int64)
  known = [e for e in emotions if e in judge_emotions]
  if len(known) < 2:
    raise errors.UserError(f"{what} classifies {', '.join(judge_emotions)}: it knows "
                           f"{len(known)} of {', '.join(emotions)}, too few to judge")
  return np.asarray([list(judge_emotions).index(e) if e in judge_emotions else -1
                     for e in emotions], np.int64)


def _to_judge(judge, translator) -> np.ndarray:
  """judge_classes for a translator: G's ids as the judge's own when G names no emotions."""
  names = getattr(translator, "emotions", None)
  if not names:
    return np.arange(translator.num_classes)
  return judge_classes(getattr(judge, "emotions", None), names)


def _judged(to_judge: np.ndarray, only=None) -> np.ndarray:
  judged = np.flatnonzero(to_judge >= 0)
  if only is not None:
    judged = judged[np.isin(judged, np.asarray(only))]
    if len(judged) < 2:
      raise errors.UserError("fewer than two emotions left to score (the judge's and the "
                             "ones asked for)")
  return judged


def judged_classes(judge, translator, only=None) -> np.ndarray:
  """G's class ids that `judge` scores: all of them unless the judge lacks some, and only
  those among `only` (G class ids; None: no limit). Raises UserError if fewer than two."""
  return _judged(_to_judge(judge, translator), only)


def load_judge(path: str | None = None) -> Judge:
  model, record = classifier_lib.load_classifier(path)
  return Judge(model, record, path or classifier_lib.SHIPPED_CLASSIFIER)


@dataclasses.dataclass
class Translations:
  """Every face (index `source`) translated to every other class (`target`)."""
  source: np.ndarray       # int [M] index into the faces
  source_label: np.ndarray  # int [M]
  target: np.ndarray       # int [M]
  images: np.ndarray       # uint8 [M, S, S, 1]
  cycled: np.ndarray | None = None  # uint8 [M, S, S, 1]: G(G(x, c), c_org)


def every_other_pairs(labels: np.ndarray, classes: np.ndarray):
  """(face index [M], target class id [M] int32): each face paired with every other class of
  `classes` (sorted class ids, every label among them), as translate_to_every_other
  translates them."""
  m = len(classes)
  position = np.searchsorted(classes, labels)
  if len(labels) and not np.array_equal(classes[np.minimum(position, m - 1)], labels):
    raise ValueError(f"labels outside the translated classes {classes.tolist()}")
  idx = np.repeat(np.arange(len(labels)), m - 1)
  # The m-1 targets of a face at position p are positions p+1, ..., p+m-1 (mod m).
  shift = np.tile(np.arange(1, m), len(labels))
  return idx, classes[(position[idx] + shift) % m].astype(np.int32)


def realism_set(sources: np.ndarray, targets: np.ndarray, labels: np.ndarray,
                seed: int = 0):
  """(half_a, half_b, picks): the faces split in two halves (fixed by seed), and the
  indices into the translations (face index `sources`, class `targets`) that realism
  compares with the real faces of half a: translations of half b only, so that no real
  face meets its own translation (real_floor compares the same halves), drawn in half
  a's mix of emotions (matched_mix)."""
  order = np.random.default_rng(seed).permutation(len(labels))
  half_a, half_b = order[:len(order) // 2], order[len(order) // 2:]
  from_b = np.flatnonzero(np.isin(sources, half_b))
  return half_a, half_b, from_b[matched_mix(targets[from_b], labels[half_a], seed)]


def translate_to_every_other(translator, images: np.ndarray, labels: np.ndarray,
                             cycle: bool = True, progress=None, classes=None) -> Translations:
  """Each face translated to every other class of `classes` (sorted G class ids, every
  label among them; default all of G's)."""
  classes = np.arange(translator.num_classes) if classes is None else np.asarray(classes)
  idx, target = every_other_pairs(labels, classes)
  out = np.empty((len(idx),) + images.shape[1:], np.uint8)
  back = np.empty_like(out) if cycle else None
  chunk = 256
  for start in range(0, len(idx), chunk):
    sl = slice(start, start + chunk)
    out[sl] = translator.translate(images[idx[sl]], target[sl])
    if cycle:
      back[sl] = translator.translate(out[sl], labels[idx[sl]])
    if progress is not None:
      progress(min(start + chunk, len(idx)), len(idx))
  return Translations(idx, labels[idx], target, out, back)


def balanced_pick(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
  """Up to `count` sorted indices, as equal per class as the classes allow, fixed by seed."""
  rng = np.random.default_rng(seed + 7)
  pools = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
  picks, i = [], 0
  while len(picks) < count and any(i < len(p) for p in pools):
    picks.extend(int(p[i]) for p in pools if i < len(p))
    i += 1
  return np.sort(np.asarray(picks[:count], np.int64))


def matched_mix(targets: np.ndarray, reference_labels: np.ndarray, seed: int = 0) -> np.ndarray:
  """Sorted indices into `targets`: the largest sample, drawn without replacement (fixed by
  seed), whose classes come in the same proportions as `reference_labels`.

  Realism compares translations with real faces on a classifier's features, where the
  classes are far apart: a set of translations with another mix of emotions than the real
  faces is "unrealistic" even when every face is perfect. Translating every face to every
  other emotion makes exactly such a set (the rarest real emotions become the commonest
  targets): on FER2013 PublicTest, real faces of the target emotions in that mix scored FD
  17x the real-vs-real floor. Returns every index when no class of the reference is
  among the targets' classes (nothing to match with)."""
  classes, counts = np.unique(reference_labels, return_counts=True)
  share = counts / counts.sum()
  pools = [np.flatnonzero(targets == c) for c in classes]
  size = min(len(pool) / p for pool, p in zip(pools, share))
  if size < 1:
    return np.arange(len(targets))
  rng = np.random.default_rng(seed + 11)
  picks = [rng.permutation(pool)[:min(len(pool), int(round(p * size)))]
           for pool, p in zip(pools, share)]
  return np.sort(np.concatenate(picks)).astype(np.int64)


def real_floor(features: np.ndarray, seed: int = 0) -> dict:
  """FD and KID between two random halves of the real faces: what 'as real as real'
  scores with this many faces (the floor the translations are compared with)."""
  order = np.random.default_rng(seed).permutation(len(features))
  a, b = features[order[:len(order) // 2]], features[order[len(order) // 2:]]
  return {"fd": metrics.frechet_distance(a, b), "kid": metrics.kid(a, b, seed=seed)[0]}


def score(translator, judge: Judge, images: np.ndarray, labels: np.ndarray, *,
          cycle: bool = True, real=None, progress=None, seed: int = 0,
          only=None) -> tuple[dict, dict]:
  """Scores `translator` on uint8 faces with class `labels`.

  `real` may carry the judge's (features, logits) of `images` computed before (the
  training callback reuses them). `only` (G class ids) limits the faces and targets
  scored to those emotions (judged_classes). Returns (metrics dict, arrays dict with the
  translations and per-translation values for figures).
  """
  k = translator.num_classes
  to_judge = _to_judge(judge, translator)
  judged = _judged(to_judge, only)
  kept = np.flatnonzero(np.isin(labels, judged))  # faces of emotions the judge knows
  images, labels = images[kept], labels[kept]
  if real is not None:
    feats_real, logits_real = real[0][kept], real[1][kept]
  else:
    feats_real, logits_real = judge(images)
  pred_real = logits_real.argmax(-1)
  tr = translate_to_every_other(translator, images, labels, cycle, progress, judged)
  feats_fake, logits_fake = judge(tr.images)
  prob_fake = _softmax(logits_fake)
  pred_fake = prob_fake.argmax(-1)
  hit = pred_fake == to_judge[tr.target]
  do_nothing = pred_real[tr.source] == to_judge[tr.target]
  ssim = metrics.ssim(images[tr.source], tr.images)
  corr = metrics.pixel_correlation(images[tr.source], tr.images)
  l1 = metrics.l1(images[tr.source], tr.images) / 255
  psnr = metrics.psnr(images[tr.source], tr.images)
  floor = real_floor(feats_real, seed)
  half_a, half_b, from_b = realism_set(tr.source, tr.target, labels, seed)
  fd = metrics.frechet_distance(feats_real[half_a], feats_fake[from_b])
  kid, kid_std = metrics.kid(feats_real[half_a], feats_fake[from_b], seed=seed)
  # How strongly each emotion reads: the judge's median probability of it in translations
  # toward it, beside real faces of it (below: under-made; above: a caricature).
  prob_real = _softmax(logits_real)
  strength_fake = {int(t): _median(prob_fake[tr.target == t, to_judge[t]]) for t in judged}
  strength_real = {int(c): _median(prob_real[labels == c, to_judge[c]]) for c in judged}
  real_matrix = classifier_lib.confusion_matrix(   # [true, predicted], the judge's ids
      to_judge[labels], pred_real, max(logits_real.shape[-1], k))
  real_by_class = classifier_lib.per_class_accuracy(real_matrix)[to_judge[judged]]
  out = {
      "faces": int(len(images)), "translations": int(len(tr.images)),
      "target_accuracy": float(hit.mean()),
      "target_accuracy_by_target": {int(t): float(hit[tr.target == t].mean())
                                    for t in judged},
      "do_nothing_target_accuracy": float(do_nothing.mean()),
      "judge_real_accuracy": float((pred_real == to_judge[labels]).mean()),
      "judge_real_accuracy_by_class": {
          int(c): float(a) for c, a in zip(judged, real_by_class)},
      "target_prob_median_by_target": strength_fake,
      "real_prob_median_by_class": strength_real,
      "ssim": float(ssim.mean()), "pixel_correlation": float(corr.mean()),
      "inverted_share": float((corr < 0).mean()),
      "l1": float(l1.mean()), "psnr": float(psnr.mean()),
      "fd": fd, "fd_floor": floor["fd"], "kid": kid, "kid_std": kid_std,
      "kid_floor": floor["kid"], "realism_translations": int(len(from_b)),
      "judged_classes": [int(c) for c in judged],
  }
  out["target_accuracy_vs_real"] = out["target_accuracy"] / max(
      out["judge_real_accuracy"], 1e-9)
  if cycle:
    out["cycle_l1"] = float((metrics.l1(images[tr.source], tr.cycled) / 255).mean())
  out.update(own_emotion_scores(translator, judge, images, labels, feats_real[half_a],
                                half_b, to_judge))
  tr.source = kept[tr.source]  # back to indices into the caller's faces
  arrays = {"translations": tr, "hit": hit, "target_prob": prob_fake[
      np.arange(len(hit)), to_judge[tr.target]], "ssim": ssim, "pixel_correlation": corr}
  return out, arrays


def own_emotion_scores(translator, judge: Judge, images: np.ndarray, labels: np.ndarray,
                       real_features_a: np.ndarray, half_b: np.ndarray,
                       to_judge: np.ndarray) -> dict:
  """G asked for the emotion a face already shows, G(x, c_org): a user's photo of a smiling
  face sent toward Happy. A G that has learnt "make it look c" returns the face; one that
  has learnt "apply the c edit" exaggerates it. Identity (SSIM, L1) on every face; realism
  as FD of half B's outputs against the real half A, so that doing nothing scores exactly
  the floor (real_floor compares the same halves); how often the judge reads c_org in them
  (beside judge_real_accuracy, its rate on the faces themselves)."""
  same = translator.translate(images, labels)
  feats, logits = judge(same)
  return {"own_emotion_ssim": float(metrics.ssim(images, same).mean()),
          "own_emotion_l1": float((metrics.l1(images, same) / 255).mean()),
          "own_emotion_fd": metrics.frechet_distance(real_features_a, feats[half_b]),
          "own_emotion_accuracy": float((logits.argmax(-1) == to_judge[labels]).mean())}


def _median(values: np.ndarray) -> float:
  """The median, NaN for none (an emotion without faces)."""
  return float(np.median(values)) if len(values) else float("nan")


def _softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


# --- choosing a run's best checkpoint -------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BestRule:
  """A checkpoint is eligible when it keeps the face (mean SSIM >= min_ssim and mean pixel
  correlation >= min_correlation: no inverted or scrambled faces), stays realistic (FD at
  most max_fd_ratio x the real-vs-real floor), and changes the expression (target accuracy
  at least min_gain above doing nothing). Among eligible ones the highest target accuracy
  wins; ties go to the earlier one."""
  min_ssim: float = 0.7
  min_correlation: float = 0.5
  max_fd_ratio: float = 3.0
  min_gain: float = 0.10

  def eligible(self, s: dict) -> bool:
    return (s["ssim"] >= self.min_ssim and s["pixel_correlation"] >= self.min_correlation
            and s["fd"] <= self.max_fd_ratio * max(s["fd_floor"], 1e-12)
            and s["target_accuracy"] >= s["do_nothing_target_accuracy"] + self.min_gain)

  def why_not(self, s: dict) -> str:
    reasons = []
    if s["ssim"] < self.min_ssim:
      reasons.append(f"SSIM {s['ssim']:.2f} < {self.min_ssim}")
    if s["pixel_correlation"] < self.min_correlation:
      reasons.append(f"pixel correlation {s['pixel_correlation']:.2f} < "
                     f"{self.min_correlation}")
    if s["fd"] > self.max_fd_ratio * max(s["fd_floor"], 1e-12):
      reasons.append(f"FD {s['fd']:.3g} > {self.max_fd_ratio} x floor {s['fd_floor']:.3g}")
    if s["target_accuracy"] < s["do_nothing_target_accuracy"] + self.min_gain:
      reasons.append(f"target accuracy {s['target_accuracy']:.3f} < do-nothing "
                     f"{s['do_nothing_target_accuracy']:.3f} + {self.min_gain}")
    return "; ".join(reasons) or "eligible"

  def better(self, candidate: dict, best: dict | None) -> bool:
    """Should `candidate` replace the current `best` (None: no best yet)?"""
    if not self.eligible(candidate):
      return False
    return best is None or candidate["target_accuracy"] > best["target_accuracy"]


def choose_best(history: list[dict], rule: BestRule = BestRule()) -> int | None:
  """Index of the best scores in `history` under `rule`, or None if none is eligible."""
  best = None
  for i, s in enumerate(history):
    if rule.better(s, None if best is None else history[best]):
      best = i
  return best
