"""Intensity: how far G takes a face toward the target expression (0: the input, 1: full).

StarGAN feeds G the target's one-hot label. Fed a blend instead,

    label = (1 - a) * source + a * onehot(target),

G changes the face part way: at a = 0 it is asked for the expression the face already
has (G's reconstruction of the input), at a = 1 it is the usual translation. The source
label of a photo is unknown, so it is estimated: the shipped expression classifier's
softmax on the face when the classifier knows the model's emotions (same names, same
order, gray faces of the same size), else uniform over the model's emotions.

Only Keras generators (run dirs, .keras files, the shipped one) take label vectors; the
SavedModel and TFLite forms take class ids, so for them intensity must be 1.
"""

import functools
from collections.abc import Callable, Sequence

import numpy as np

from faceexpr_tf import errors
from faceexpr_tf.serving import translators

# The columns of the strip of intermediate steps.
STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)


class IntensityError(errors.UserError):
  """An intensity outside [0, 1], or one a model cannot do."""


def check_alpha(alpha: float) -> float:
  alpha = float(alpha)
  if not 0.0 <= alpha <= 1.0:  # also rejects NaN
    raise IntensityError(f"intensity must be in [0, 1] (0: the input, 1: the full "
                         f"expression), got {alpha}")
  return alpha


def _rows(alpha) -> np.ndarray:
  """One intensity (a float32 scalar) or one per row (float32 [N]), each checked."""
  alpha = np.asarray(alpha, np.float32)
  if alpha.ndim == 0:
    return np.float32(check_alpha(float(alpha)))
  for a in alpha.reshape(-1):
    check_alpha(a)
  return alpha.reshape(-1)


def blend(source: np.ndarray, target_ids, alpha) -> np.ndarray:
  """Label vectors (1 - a) * source + a * onehot(target): float32 [N, K].

  Args:
    source: float [N, K] (rows are distributions over the emotions) or [K] for all rows.
    target_ids: int [N] class ids.
    alpha: intensity in [0, 1], or one per row.
  """
  alpha = _rows(alpha)
  alpha = alpha[:, None] if alpha.ndim else alpha
  target_ids = np.asarray(target_ids, np.int64).reshape(-1)
  source = np.asarray(source, np.float32)
  k = source.shape[-1]
  source = np.broadcast_to(source, (len(target_ids), k))
  return ((1.0 - alpha) * source + alpha * np.eye(k, dtype=np.float32)[target_ids]
          ).astype(np.float32)


def edit_gain(translator: translators.Translator, target_ids, alpha
              ) -> np.ndarray | None:
  """float32 [N]: each row's factor on G's edit at intensity alpha, 1 + alpha (g_t - 1), for
  a generator with an edit gain g (models.Generator; `main.py calibrate`); None without.

  The gain calibrates the full expression toward t, so it comes in with it: at alpha 0 the
  face is G's own reconstruction, as without a gain (the label's own mix of factors would
  scale the reconstruction by the factor of the emotion the face already shows), and at
  alpha 1 it is exactly translator.translate. alpha: one intensity, or one per row."""
  gain = getattr(getattr(translator, "generator", None), "edit_gain", None)
  if gain is None:
    return None
  target_ids = np.asarray(target_ids, np.int64).reshape(-1)
  alpha = _rows(alpha)
  return (1.0 + alpha * (np.asarray(gain, np.float32)[target_ids] - 1.0)).astype(np.float32)


def edit_gains(translator: translators.Translator, rows) -> np.ndarray | None:
  """edit_gain of each (target ids, alpha) in `rows`, concatenated in order; None without
  an edit gain (forward_labels then uses G's own)."""
  gains = [edit_gain(translator, ids, alpha) for ids, alpha in rows]
  return None if not gains or gains[0] is None else np.concatenate(gains)


def uniform(num_faces: int, num_classes: int) -> np.ndarray:
  return np.full((num_faces, num_classes), 1.0 / num_classes, np.float32)


@functools.cache
def _shipped_classifier():
  from faceexpr_tf.evaluation import classifier  # pylint: disable=g-import-not-at-top
  return classifier.load_classifier(None)


def classifier_reads(translator: translators.Translator) -> bool:
  """Does the shipped classifier read the translator's emotions (the same names in the
  same order, from gray faces of the translator's size)? A five-class G with Neutral:
  no, the shipped classifier knows the paper's four."""
  _, record = _shipped_classifier()
  names = tuple(str(n).lower() for n in record.get("emotions", ()))
  return (names == tuple(n.lower() for n in translator.emotions) and translator.channels == 1
          and record.get("config", {}).get("image_size") == translator.image_size)


def source_estimator(translator: translators.Translator
                     ) -> Callable[[np.ndarray], np.ndarray]:
  """A function uint8 faces [N, S, S, C] -> source label estimates float32 [N, K].

  The shipped classifier's softmax when it reads the translator's emotions from faces
  like the translator's; uniform otherwise (the classifier is then never loaded).
  """
  k = translator.num_classes
  if not classifier_reads(translator):
    return lambda faces: uniform(len(faces), k)
  model, _ = _shipped_classifier()

  def estimate(faces: np.ndarray) -> np.ndarray:
    if not len(faces):
      return uniform(0, k)
    logits = np.asarray(model(translators.to_model_range(faces), training=False), np.float64)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)

  return estimate


def translate(translator: translators.Translator, faces: np.ndarray, target_ids,
              alpha: float, source: np.ndarray | None = None) -> np.ndarray:
  """uint8 faces [N, S, S, C] toward target ids [N] at intensity alpha -> uint8.

  source: label estimates [N, K] (default: source_estimator's); unused at alpha 1, which
  is exactly translator.translate.
  """
  alpha = check_alpha(alpha)
  if alpha == 1.0:
    return translator.translate(faces, target_ids)
  if not translator.takes_label_vectors:
    raise IntensityError(f"{translator.source}: takes class ids only, so only intensity 1 "
                         "works; use a Keras generator (a run dir, a .keras file or the "
                         "shipped one) for other intensities")
  if source is None:
    source = source_estimator(translator)(faces)
  return translator.translate_labels(faces, blend(source, target_ids, alpha),
                                     edit_gain(translator, target_ids, alpha))


def translate_all(translator: translators.Translator, faces: np.ndarray, alpha: float,
                  class_ids: Sequence[int] | None = None,
                  source: np.ndarray | None = None) -> np.ndarray:
  """uint8 [N, S, S, C] -> uint8 [N, K', S, S, C]: each face toward each class at alpha."""
  alpha = check_alpha(alpha)
  if alpha == 1.0:
    return translator.translate_all(faces, class_ids)
  faces = np.asarray(faces)
  ids = np.arange(translator.num_classes) if class_ids is None else np.asarray(class_ids)
  if source is None and translator.takes_label_vectors:
    source = source_estimator(translator)(faces)
  source = None if source is None else np.repeat(source, len(ids), axis=0)
  out = translate(translator, np.repeat(faces, len(ids), axis=0),
                  np.tile(ids, len(faces)), alpha, source)
  return out.reshape((len(faces), len(ids)) + faces.shape[1:])


def steps(translator: translators.Translator, face: np.ndarray,
          class_ids: Sequence[int] | None = None, alphas: Sequence[float] = STEPS,
          source: np.ndarray | None = None) -> np.ndarray:
  """One uint8 face [S, S, C] -> uint8 [K', len(alphas), S, S, C]: rows are emotions,
  columns intensities (one forward pass for the whole strip)."""
  alphas = [check_alpha(a) for a in alphas]
  ids = np.arange(translator.num_classes) if class_ids is None else np.asarray(class_ids)
  face = np.asarray(face)[None]
  if source is None:
    source = source_estimator(translator)(face)
  labels = np.concatenate([blend(source, np.full(1, c), a) for c in ids for a in alphas])
  out = translator.translate_labels(np.repeat(face, len(labels), axis=0), labels, edit_gains(
      translator, [(np.full(1, c), a) for c in ids for a in alphas]))
  return out.reshape((len(ids), len(alphas)) + face.shape[1:])
