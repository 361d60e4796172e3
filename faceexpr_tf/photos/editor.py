"""Editing faces in place: a photo back, same size and colour, with a new expression.

    editor = PhotoEditor(translator)                 # any saved G (serving.inference)
    happy = editor.edit(rgb, "Happy", intensity=0.8) # uint8 [H, W, 3] -> the same shape

For each face the detector finds (largest first), the face is aligned to FER2013's frame
(align.py: eyes to their median place in FER2013; without eye landmarks a square crop),
cut out as a 48x48 gray face of the photo's luminance, and G runs on it. Its edit,
delta = G(x, c) - x, goes back through the inverse alignment (bicubic) and is added to
the photo's luminance through a mask that fades to zero at the frame's border
(align.add_luminance: chroma untouched). Pixels outside every face's frame are the
input's, byte for byte. Faces whose frame spans fewer than min_face_px photo pixels are
skipped and named: an edit there is too small to show.

Every face and every emotion asked for goes through G in one call of `run` (default the
translator's own forward pass; the web server passes its batcher's), so a photo costs one
forward pass of faces x emotions images, whatever its resolution. `run(images, labels,
gains)` takes float faces, label vectors and each row's gain on G's edit (None: the ones
the labels imply; intensity.edit_gains), as Translator.forward_labels does.
"""

import dataclasses
import os
from collections.abc import Callable, Sequence

import numpy as np
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.photos import align
from faceexpr_tf.photos import detectors
from faceexpr_tf.photos import intensity as intensity_lib
from faceexpr_tf.serving import translators

# A face whose 48 px frame covers fewer photo pixels across than this is left as it is.
# Measured by the photo round trip (docs/photos.md, "Too-small faces"; 120 PublicTest faces
# turned within +-20 degrees): at 32 px MTCNN still finds 87.5% of them (92-93% at 48 px
# and more), their eyes within 6.5% of the eye distance, and G's edit comes back with a
# correlation of 0.89 to the 48 px one; at 24 px a quarter are missed, the eyes are off by
# 8.5%, and 0.82; at 16 px half, 13% and 0.63.
MIN_FACE_PX = 32
MARGIN = 0.2           # around a box found without eyes, as translate's --margin
# Luminance weights (BT.601, as cv2's RGB2GRAY and YCrCb) for a colour model's edit.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class PhotoError(errors.UserError):
  """A photo the editor cannot take (wrong type, shape or dtype); the message says which."""


@dataclasses.dataclass
class PhotoFace:
  """One face found in a photo, and how the model sees it."""
  index: int                       # 0 = the largest
  detection: detectors.Detection
  to_face: np.ndarray              # photo -> model frame (2x3)
  face: np.ndarray                 # uint8 [S, S, C]: G's input
  aligned: bool                    # by the eyes (else a square crop, upright)
  skipped: str | None = None       # why it is not edited

  @property
  def frame_px(self) -> float:
    """How many photo pixels the model frame spans across."""
    return self.face.shape[0] / align.scale_of(self.to_face)

  def describe(self) -> str:
    x, y, w, h = self.detection.box
    how = (f"aligned by the eyes, {align.rotation_degrees(self.to_face):+.0f} deg"
           if self.aligned else "upright square crop")
    return f"face {self.index} at x={x} y={y} {w}x{h} ({how})"


@dataclasses.dataclass
class PhotoEdits:
  """One photo edited toward each emotion asked for."""
  photos: dict[str, np.ndarray]    # emotion -> the edited photo (the input's shape)
  faces: list[PhotoFace]           # every face found, edited or skipped
  intensity: float

  @property
  def edited(self) -> list[PhotoFace]:
    return [f for f in self.faces if f.skipped is None]


def check_photo(photo) -> np.ndarray:
  """A photo array as the editor takes it: uint8 gray [H, W] or [H, W, 3|4] (RGB, RGBA)."""
  if not isinstance(photo, np.ndarray):
    raise PhotoError(f"a photo must be a numpy array (or a file path), got "
                     f"{type(photo).__name__}")
  if photo.dtype != np.uint8:
    raise PhotoError(f"a photo must be uint8 (0..255), got {photo.dtype}; e.g. "
                     "np.clip(x * 255, 0, 255).astype(np.uint8) for floats in [0, 1]")
  if not (photo.ndim == 2 or (photo.ndim == 3 and photo.shape[-1] in (1, 3, 4))):
    raise PhotoError(f"a photo must be [H, W] (gray), [H, W, 3] (RGB) or [H, W, 4] (RGBA),"
                     f" got shape {list(photo.shape)}")
  if min(photo.shape[:2]) < 1:
    raise PhotoError(f"an empty photo: shape {list(photo.shape)}")
  return photo[..., 0] if photo.ndim == 3 and photo.shape[-1] == 1 else photo


def luminance(photo: np.ndarray) -> np.ndarray:
  """float32 [H, W]: Y of YCrCb (BT.601), the gray FER2013 faces are made of."""
  if photo.ndim == 2:
    return photo.astype(np.float32)
  return photo[..., :3].astype(np.float32) @ _LUMA


def whole_image_transform(shape, size: int) -> np.ndarray:
  """The photo itself as the face (padded to a square): translate's --no_detect."""
  height, width = shape[:2]
  side = max(height, width)
  return align.box_transform((width - side) / 2, (height - side) / 2, side, size)


class PhotoEditor:
  """Finds, aligns and edits the faces of photos with one generator."""

  def __init__(self, translator: translators.Translator,
               detector: detectors.Detector | str = "auto",
               run: Callable[..., np.ndarray] | None = None,
               align_faces: bool = True, detect: bool = True, max_faces: int = 10,
               min_face_px: float = MIN_FACE_PX, margin: float = MARGIN):
    self.translator = translator
    self.detector = (detectors.load_detector(detector) if isinstance(detector, str) and detect
                     else detector)
    self.run = run or translator.forward_labels
    self.align_faces, self.detect = align_faces, detect
    self.max_faces, self.min_face_px, self.margin = max_faces, min_face_px, margin
    self._estimate = None

  @property
  def emotions(self) -> tuple[str, ...]:
    return tuple(self.translator.emotions)

  # -- finding ---------------------------------------------------------------------------

  def find(self, photo: np.ndarray) -> list[PhotoFace]:
    """Every face in the photo (at most max_faces, largest first), cut as G's input."""
    photo = check_photo(photo)
    size = self.translator.image_size
    if not self.detect:
      found = [(detectors.Detection((0, 0, photo.shape[1], photo.shape[0])),
                whole_image_transform(photo.shape, size), False)]
    else:
      found = []
      for detection in self.detector.detect(photo)[:self.max_faces]:
        aligned = self.align_faces and detection.has_eyes
        if aligned and align.eye_distance(detection.left_eye, detection.right_eye) < 1:
          aligned = False
        to_face = (align.eye_transform(detection.left_eye, detection.right_eye, size)
                   if aligned else self._box_transform(detection.box, size))
        found.append((detection, to_face, aligned))
    out = []
    for i, (detection, to_face, aligned) in enumerate(found):
      if self.translator.channels == 1:
        # The luminance of this face's frame only (the whole photo's is 192 MB of float32
        # at 12 MP); align.cut crops the same box, so the face is the same.
        x0, y0, x1, y1 = (align.frame_box(to_face, size, photo.shape)
                          or (0, 0, photo.shape[1], photo.shape[0]))
        gray = luminance(photo[y0:y1, x0:x1])
        face = align.cut(gray, align.shifted(to_face, x0, y0), size)
        face = np.clip(np.rint(face), 0, 255).astype(np.uint8)[..., None]
      else:
        rgb = photo if photo.ndim == 3 else np.repeat(photo[..., None], 3, axis=-1)
        face = align.cut(rgb[..., :3], to_face, size)
      item = PhotoFace(i, detection, to_face, face, aligned)
      if self.detect and item.frame_px < self.min_face_px:
        item.skipped = (f"too small to edit: its face frame spans {item.frame_px:.0f} px "
                        f"(at least {self.min_face_px:g} px)")
      out.append(item)
    return out

  def _box_transform(self, box, size: int) -> np.ndarray:
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * self.margin)
    return align.box_transform(x + w / 2 - side / 2, y + h / 2 - side / 2, side, size)

  # -- G ---------------------------------------------------------------------------------

  def _source(self, faces_u8: np.ndarray) -> np.ndarray:
    if self._estimate is None:
      self._estimate = intensity_lib.source_estimator(self.translator)
    return self._estimate(faces_u8)

  def deltas(self, faces: Sequence[PhotoFace], class_ids: Sequence[int],
             alphas: Sequence[float]) -> np.ndarray:
    """G's edits in gray levels: float32 [F, A, K, S, S] (faces, intensities, emotions)."""
    t = self.translator
    alphas = [intensity_lib.check_alpha(a) for a in alphas]
    ids = np.asarray(class_ids, np.int64)
    size = t.image_size
    if not faces or not len(ids):
      return np.zeros((len(faces), len(alphas), len(ids), size, size), np.float32)
    stack = np.stack([f.face for f in faces])                       # [F, S, S, C]
    if any(a < 1 for a in alphas):
      if not t.takes_label_vectors:
        raise intensity_lib.IntensityError(
            f"{t.source}: takes class ids only, so only intensity 1 works; use a Keras "
            "generator (a run dir, a .keras file or the shipped one) for other intensities")
      source = self._source(stack)
    else:
      source = np.zeros((len(faces), t.num_classes), np.float32)
    labels = np.concatenate([
        intensity_lib.blend(np.repeat(source[i:i + 1], len(ids), axis=0), ids, a)
        for i in range(len(faces)) for a in alphas])
    gains = intensity_lib.edit_gains(t, [(ids, a) for _ in faces for a in alphas])
    images = translators.to_model_range(stack)
    repeated = np.repeat(images, len(alphas) * len(ids), axis=0)
    out = np.asarray(self.run(repeated, labels, gains), np.float32).reshape(repeated.shape)
    delta = (out - repeated) * 127.5                                  # gray levels
    delta = delta[..., 0] if t.channels == 1 else delta @ _LUMA
    return delta.reshape(len(faces), len(alphas), len(ids), size, size)

  # -- the photo -------------------------------------------------------------------------

  @staticmethod
  def apply(photo: np.ndarray, faces: Sequence[PhotoFace], deltas: Sequence[np.ndarray]
            ) -> np.ndarray:
    """The photo with each face's edit (float [S, S] gray levels) added to its luminance:
    a new array (one copy of the photo, however many faces)."""
    out = None
    for face, delta in zip(faces, deltas):
      pasted = align.paste(delta, face.to_face, photo.shape)
      if pasted is not None:
        out = align.add_luminance(photo if out is None else out, *pasted, copy=out is None)
    return photo.copy() if out is None else out

  def edit_all(self, photo, emotions: str | Sequence[str] | None = None,
               intensity: float = 1.0, faces: list[PhotoFace] | None = None) -> PhotoEdits:
    """The photo edited toward each emotion (default: all the model knows)."""
    photo = self._array(photo)
    ids = (self.translator.class_ids(emotions) if emotions is not None
           else list(range(self.translator.num_classes)))
    faces = self.find(photo) if faces is None else faces
    edited = [f for f in faces if f.skipped is None]
    delta = self.deltas(edited, ids, [intensity])
    photos = {self.translator.emotions[c]: self.apply(photo, edited, delta[:, 0, k])
              for k, c in enumerate(ids)}
    return PhotoEdits(photos, faces, float(intensity))

  def edit(self, photo, emotion: str, intensity: float = 1.0) -> np.ndarray:
    """One photo (array or file path) toward one emotion -> an array of the input's shape.

    A photo without a face (or with only faces too small to edit) comes back unchanged,
    with one line in the log saying so.
    """
    result = self.edit_all(photo, [emotion], intensity)
    if not result.edited:
      logging.warning("%s: the photo is returned unchanged", no_edit_reason(result.faces))
    return next(iter(result.photos.values()))

  def frames(self, photo, emotion: str, alphas: Sequence[float], faces=None
             ) -> list[np.ndarray]:
    """The photo at each intensity toward one emotion (an animation's frames).

    Keras generators blend labels (intensity.py); a generator that takes class ids only
    (SavedModel, TFLite) scales its full edit instead: alpha * delta.
    """
    photo = self._array(photo)
    ids = self.translator.class_ids([emotion])
    faces = [f for f in (self.find(photo) if faces is None else faces) if f.skipped is None]
    if self.translator.takes_label_vectors:
      delta = self.deltas(faces, ids, alphas)[:, :, 0]                 # [F, A, S, S]
    else:
      full = self.deltas(faces, ids, [1.0])[:, 0, 0]
      delta = np.stack([full * a for a in alphas], axis=1) if len(faces) else \
          np.zeros((0, len(alphas)) + (self.translator.image_size,) * 2, np.float32)
    return [self.apply(photo, faces, delta[:, j]) for j in range(len(alphas))]

  def _array(self, photo) -> np.ndarray:
    if isinstance(photo, (str, os.PathLike)):
      from faceexpr_tf.photos import photo_files  # pylint: disable=g-import-not-at-top
      return photo_files.read_photo(os.fspath(photo)).pixels
    return check_photo(photo)


def no_edit_reason(faces: Sequence[PhotoFace]) -> str:
  """Why a photo has nothing to edit, in one line."""
  if not faces:
    return ("no face found (try a larger, frontal, well-lit face, or --no_detect if the "
            "image is already a face crop)")
  return "no face large enough to edit (" + "; ".join(
      f"{f.describe()}: {f.skipped}" for f in faces) + ")"


class NoFaceError(errors.UserError):
  """A photo with no face found, or only faces too small to edit."""
