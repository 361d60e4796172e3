"""The geometry of a face in a photo: where FER2013 puts the eyes, and the transforms
between a photo and the model's 48x48 frame (pure numpy and OpenCV; no model here).

A face is aligned by the similarity transform (rotation, uniform scale, shift) that takes
its two eye centres to CANONICAL_EYES, the median eye centres of FER2013's own faces: eyes
level, the face centred and sized as FER2013 frames faces. The inverse takes G's edit back
to the face's place, angle and size in the photo. Transforms are 2x3 float64 matrices
acting on (x, y) pixel coordinates (x right, y down, pixel centres at integers), as
cv2.warpAffine reads them.
"""

import math

import cv2
import numpy as np

# Median eye centres (image-left eye, image-right eye) in FER2013's 48x48 frame: MTCNN's
# eye keypoints on 3,000 FER2013 Training faces of the four paper emotions, enlarged 4x
# (tools/canonical_eyes.py, 2026-12-03; both eyes found on 2,506, 83.5%): medians left
# (14.88, 18.38), right (32.38, 18.12), eye distance 17.3 (quartiles 15.5-18.8), roll -0.8
# degrees (quartiles -5.9..3.9); table in docs/photos.md. The target keeps the medians' x
# and sets both eyes level at their mean y.
CANONICAL_EYES = ((14.88, 18.25), (32.38, 18.25))
CANONICAL_SIZE = 48

# G's edit fades to nothing over this fraction of the frame's side at its border, so the
# paste has no seam.
FADE = 0.125


def eye_distance(left_eye, right_eye) -> float:
  return float(math.hypot(right_eye[0] - left_eye[0], right_eye[1] - left_eye[1]))


def similarity(src, dst) -> np.ndarray:
  """The 2x3 similarity transform taking the two points src[0], src[1] to dst[0], dst[1].

  Raises ValueError when src's two points coincide (no scale or angle can be read).
  """
  (sx0, sy0), (sx1, sy1) = np.asarray(src, np.float64)
  (dx0, dy0), (dx1, dy1) = np.asarray(dst, np.float64)
  s = complex(sx1 - sx0, sy1 - sy0)
  d = complex(dx1 - dx0, dy1 - dy0)
  if abs(s) < 1e-9:
    raise ValueError(f"the two source points coincide: {src}")
  z = d / s                                   # rotation and scale as one complex number
  a, b = z.real, z.imag
  shift = complex(dx0, dy0) - z * complex(sx0, sy0)
  return np.array([[a, -b, shift.real], [b, a, shift.imag]], np.float64)


def eye_transform(left_eye, right_eye, size: int = CANONICAL_SIZE,
                  eyes=CANONICAL_EYES) -> np.ndarray:
  """Photo -> model frame [size x size] for a face with these eye centres (photo pixels).

  left_eye is the eye on the image's left (the person's right eye).
  """
  scale = size / CANONICAL_SIZE
  return similarity((left_eye, right_eye), np.asarray(eyes, np.float64) * scale)


def box_transform(left: float, top: float, side: float, size: int = CANONICAL_SIZE
                  ) -> np.ndarray:
  """Photo -> model frame for a square crop (left, top, side): no rotation (a face found
  without landmarks, or an image that already is a face)."""
  # Pixel centres at integers: the square's edges are at left - 0.5 and left + side - 0.5
  # in the photo, and at -0.5 and size - 0.5 in the frame (as cv2.resize maps pixels).
  s = size / side
  return np.array([[s, 0.0, s * (0.5 - left) - 0.5], [0.0, s, s * (0.5 - top) - 0.5]],
                  np.float64)


def invert(matrix: np.ndarray) -> np.ndarray:
  return cv2.invertAffineTransform(np.asarray(matrix, np.float64)).astype(np.float64)


def scale_of(matrix: np.ndarray) -> float:
  """How many output pixels one input pixel becomes (a similarity's uniform scale)."""
  return float(math.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))


def apply(matrix: np.ndarray, points) -> np.ndarray:
  """(x, y) points [N, 2] through a 2x3 transform."""
  points = np.asarray(points, np.float64).reshape(-1, 2)
  return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def frame_box(to_face: np.ndarray, size: int, shape) -> tuple[int, int, int, int] | None:
  """The photo's pixels the model frame covers: (x0, y0, x1, y1), clipped to a photo of
  this shape (x1, y1 exclusive), or None when the frame lies outside the photo."""
  corners = apply(invert(to_face), [(-0.5, -0.5), (size - 0.5, -0.5), (-0.5, size - 0.5),
                                    (size - 0.5, size - 0.5)])
  height, width = shape[:2]
  x0 = max(0, int(math.floor(corners[:, 0].min())))
  y0 = max(0, int(math.floor(corners[:, 1].min())))
  x1 = min(width, int(math.ceil(corners[:, 0].max())) + 1)
  y1 = min(height, int(math.ceil(corners[:, 1].max())) + 1)
  if x1 <= x0 or y1 <= y0:
    return None
  return x0, y0, x1, y1


def shifted(matrix: np.ndarray, dx: float, dy: float) -> np.ndarray:
  """The transform for the same map once its input is cropped at (dx, dy)."""
  out = np.array(matrix, np.float64)
  out[:, 2] += out[:, :2] @ np.array([dx, dy], np.float64)
  return out


def cut(image: np.ndarray, to_face: np.ndarray, size: int = CANONICAL_SIZE) -> np.ndarray:
  """The model frame cut out of an image (gray or colour, any dtype OpenCV warps).

  A face larger than the frame is supersampled: warped (bilinear: rotation, shift, and a
  scale of about 1) into a frame k times the size, then averaged over k x k blocks, so
  every photo pixel counts once and nothing is blurred twice. Where the frame leaves the
  photo the edge pixels repeat (as translate's square crops do).
  """
  image = np.asarray(image)
  box = frame_box(to_face, size, image.shape) or (0, 0, image.shape[1], image.shape[0])
  x0, y0, x1, y1 = box
  matrix = shifted(to_face, x0, y0)
  k = max(1, int(math.ceil(1.0 / scale_of(matrix) - 1e-6)))
  if k > 1:  # frame -> the k-times frame, pixel centres kept: x' = k (x + 0.5) - 0.5
    up = np.array([[k, 0.0, (k - 1) / 2], [0.0, k, (k - 1) / 2]], np.float64)
    big = cv2.warpAffine(image[y0:y1, x0:x1], compose(up, matrix), (size * k, size * k),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
  return cv2.warpAffine(image[y0:y1, x0:x1], matrix, (size, size), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
  """outer o inner as one 2x3 transform (inner applied first)."""
  a = np.vstack([np.asarray(outer, np.float64), [0, 0, 1]])
  b = np.vstack([np.asarray(inner, np.float64), [0, 0, 1]])
  return (a @ b)[:2]


def fade_mask(size: int = CANONICAL_SIZE, fade: float = FADE) -> np.ndarray:
  """float32 [size, size]: 1 inside, falling to 0 at the border along a raised cosine over
  `fade` of the side (the product of two such ramps, so the corners round off)."""
  band = max(1.0, fade * size)
  coords = np.arange(size, dtype=np.float64) + 0.5
  dist = np.minimum(coords, size - coords)                 # to the nearest edge, 0.5 ..
  ramp = np.clip(dist / band, 0.0, 1.0)
  ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
  return np.outer(ramp, ramp).astype(np.float32)


def paste(delta: np.ndarray, to_face: np.ndarray, shape
          ) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
  """G's edit in the model frame, faded at its border, taken back to the photo.

  Args:
    delta: float [size, size]: G's output minus its input, in gray levels.
    to_face: photo -> frame transform of the face.
    shape: the photo's shape.
  Returns:
    (box, edit): the photo region (x0, y0, x1, y1) and float32 [y1-y0, x1-x0] to add to
    its luminance there (zero outside the frame's faded mask), or None when the face's
    frame lies outside the photo. Bicubic: the edit is a smooth field enlarged.
  """
  delta = np.asarray(delta, np.float32)
  size = delta.shape[0]
  box = frame_box(to_face, size, shape)
  if box is None:
    return None
  x0, y0, x1, y1 = box
  to_photo = invert(shifted(to_face, x0, y0))
  masked = delta * fade_mask(size)
  edit = cv2.warpAffine(masked, to_photo, (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
  return box, edit


def add_luminance(photo: np.ndarray, box, edit: np.ndarray, copy: bool = True
                  ) -> np.ndarray:
  """photo (uint8 gray [H, W] or colour [H, W, C>=3]) with `edit` added to its luminance
  in box; a new array (or photo itself, changed, with copy=False), every pixel outside box
  (and where the edit rounds to 0) the input's.

  Adding the same amount to R, G and B changes Y (BT.601, as YCrCb) by that amount and
  leaves R - Y and B - Y, so Cr and Cb, unchanged; only clipping at 0 or 255 can shift a
  pixel's colour. An alpha channel is kept as it is.
  """
  out = np.array(photo, copy=True) if copy else photo
  x0, y0, x1, y1 = box
  region = out[y0:y1, x0:x1]
  channels = region[..., :3] if region.ndim == 3 else region
  shift = edit[..., None] if region.ndim == 3 else edit
  moved = np.clip(np.rint(channels.astype(np.float32) + shift), 0, 255).astype(np.uint8)
  if region.ndim == 3:
    region[..., :3] = moved
  else:
    out[y0:y1, x0:x1] = moved
  return out


def rotation_degrees(matrix: np.ndarray) -> float:
  """The rotation of a similarity transform, in degrees (positive: counter-clockwise on
  screen, y pointing down)."""
  return float(math.degrees(math.atan2(-matrix[1][0], matrix[0][0])))
