"""Face detectors behind one interface: boxes and, where the detector gives them, eye centres.

    detector = load_detector("auto")       # MTCNN when installed, else Haar (one line says so)
    for face in detector.detect(rgb):      # uint8 [H, W, 3] (or gray [H, W])
      face.box, face.left_eye, face.right_eye, face.score

- "mtcnn": MTCNN (the `mtcnn` wheel, MIT; its weights ship inside the wheel, nothing is
  downloaded) on the TensorFlow we already use: a box and 5 keypoints per face, of which
  the eye centres align the face (align.py). Finds faces tilted by +-20 degrees and more.
- "haar": OpenCV's frontal-face cascade (bundled with opencv-python): boxes only, upright
  faces only; faces it finds are cut square, unrotated, as translate always did.

Both look at a copy of the photo no larger than max_side (the cost grows with the pixel
count, the edit is pasted at full resolution) and answer in the photo's own pixels,
largest face first. A detector is any object with `name` and `detect(image)`.
"""

import dataclasses
import functools
import importlib.util
from typing import Protocol

import cv2
import numpy as np
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.photos import faces as faces_lib

NAMES = ("auto", "mtcnn", "haar")


@dataclasses.dataclass(frozen=True)
class Detection:
  """One face in a photo, in the photo's pixels."""
  box: tuple[int, int, int, int]                 # x, y, width, height
  score: float = 1.0
  left_eye: tuple[float, float] | None = None    # the eye on the image's left
  right_eye: tuple[float, float] | None = None

  @property
  def has_eyes(self) -> bool:
    return self.left_eye is not None and self.right_eye is not None


class Detector(Protocol):
  name: str

  def detect(self, image: np.ndarray) -> list[Detection]:
    ...


def _downscaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
  height, width = image.shape[:2]
  scale = min(1.0, max_side / max(height, width))
  if scale == 1.0:
    return image, 1.0
  size = (max(1, round(width * scale)), max(1, round(height * scale)))
  return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _rgb(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 2:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
  if image.shape[-1] == 1:
    return cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2RGB)
  return np.ascontiguousarray(image[..., :3])


def _largest_first(found: list[Detection]) -> list[Detection]:
  return sorted(found, key=lambda d: (-d.box[2] * d.box[3], d.box[0], d.box[1]))


class HaarDetector:
  """OpenCV's frontal-face Haar cascade: boxes, no landmarks."""
  name = "haar"

  def __init__(self, max_side: int = 1024):
    self.max_side = max_side

  def detect(self, image: np.ndarray) -> list[Detection]:
    gray = faces_lib.to_gray(np.asarray(image))
    small, scale = _downscaled(gray, self.max_side)
    boxes = faces_lib.detect_faces(small)   # it would downscale again past 1024
    return _largest_first([
        Detection(tuple(int(round(v / scale)) for v in box)) for box in boxes])


class MtcnnDetector:
  """MTCNN (mtcnn 1.x): boxes, scores and the eye centres."""
  name = "mtcnn"

  # mtcnn 1.0.0 builds its image pyramid as if min_face_size were 20 whatever it is
  # given (utils/images.py build_scale_pyramid), so a larger value loses every face;
  # the detection copy's size (max_side) is what bounds the cost instead.
  MIN_FACE = 20

  def __init__(self, max_side: int = 1024, min_score: float = 0.9):
    self._model = _mtcnn_model()     # ImportError when mtcnn is not installed
    self.max_side, self.min_score = max_side, min_score

  def detect(self, image: np.ndarray) -> list[Detection]:
    small, scale = _downscaled(_rgb(image), self.max_side)
    if min(small.shape[:2]) < self.MIN_FACE:
      return []
    found = self._model.detect_faces(small)
    out = []
    for face in found or ():
      score = float(face["confidence"])
      if score < self.min_score:
        continue
      x, y, w, h = (float(v) / scale for v in face["box"])
      # mtcnn's keypoints are whole pixels of the copy it saw; +0.5 centres them there.
      left, right = (tuple((float(v) + 0.5) / scale - 0.5 for v in face["keypoints"][name])
                     for name in ("left_eye", "right_eye"))
      out.append(Detection((round(x), round(y), round(w), round(h)), score, left, right))
    return _largest_first(out)


@functools.cache
def _mtcnn_model():
  """One MTCNN per process (its three networks load once)."""
  import mtcnn  # pylint: disable=g-import-not-at-top  (optional)
  return mtcnn.MTCNN(device="CPU:0")


def mtcnn_available() -> bool:
  return importlib.util.find_spec("mtcnn") is not None


def load_detector(name: str = "auto", max_side: int = 1024) -> Detector:
  """"auto" (MTCNN when installed, else Haar with one line saying so), "mtcnn" or "haar"."""
  name = (name or "auto").lower()
  if name not in NAMES:
    raise errors.UserError(f"unknown face detector {name!r}: choose one of "
                           f"{', '.join(NAMES)}")
  if name == "haar":
    return HaarDetector(max_side)
  if not mtcnn_available():
    if name == "mtcnn":
      raise errors.UserError("the mtcnn detector is not installed: pip install 'mtcnn>=1,<2' "
                             "(or choose --detector=haar)")
    _warn_fallback()
    return HaarDetector(max_side)
  return MtcnnDetector(max_side)


@functools.cache
def _warn_fallback():
  logging.warning("mtcnn is not installed: faces are found by OpenCV's Haar cascade, "
                  "upright faces only and without eye landmarks, so faces are not "
                  "aligned (pip install 'mtcnn>=1,<2')")
