"""Finding faces in photos and cutting them out the way the model saw faces in training.

FER2013 faces are tight, roughly centred, square, grayscale 48x48 crops; the helpers here
turn an arbitrary photo into that: detect (OpenCV's frontal-face Haar cascade, bundled with
opencv-python, so nothing is downloaded), square crop with a margin, gray, area resize.
"""

import functools
import os

import cv2
import numpy as np

from faceexpr_tf import errors
from faceexpr_tf.data import images

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# Extensions we expect OpenCV to decode; used only to word the error for other files.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm",
                    ".ppm", ".pbm", ".pnm", ".jp2", ".gif")
# Detection runs on a copy no larger than this: the cascade's cost grows with the pixel
# count, and faces worth translating to 48x48 stay well above its 24 px minimum.
_DETECT_MAX_SIDE = 1024


class ImageReadError(errors.UserError):
  """An input file that is missing or not a decodable image; the message names it."""


def read_image(path: str, color: bool = False) -> np.ndarray:
  """Reads an image file as gray uint8 [H, W] (or RGB uint8 [H, W, 3] with color=True).

  Raises ImageReadError naming the path for a missing, unreadable or unsupported file.
  """
  if not os.path.exists(path):
    raise ImageReadError(f"{path}: no such file")
  if os.path.isdir(path):
    raise ImageReadError(f"{path}: is a directory, not an image")
  try:
    head = images.read_head(path)
    images.check_size(path, head)  # before a decoder allocates it all
    if head.startswith(b"\xff\xd8") and not _jpeg_ends(path):
      # OpenCV would decode what is there, with the missing rows gray, and only libjpeg's
      # unnamed "Premature end of JPEG file" on stderr would tell.
      raise ImageReadError(f"{path}: truncated JPEG (no end-of-image marker): the rest of "
                           "the picture is missing")
  except OSError as e:
    raise ImageReadError(f"{path}: cannot read ({os.strerror(e.errno) if e.errno else e})"
                         ) from None
  except images.ImageTooLargeError as e:
    raise ImageReadError(str(e)) from None
  # cv2.imread returns None rather than raising; it also honours EXIF orientation, so
  # phone photos come out upright (as images.decode does for training folders and the
  # SavedModel's bytes signature).
  flags = cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE
  image = cv2.imread(path, flags)
  if image is None or image.size == 0:
    ext = os.path.splitext(path)[1].lower()
    why = ("corrupt or truncated image" if ext in IMAGE_EXTENSIONS
           else "unsupported format (not an image OpenCV can decode)")
    raise ImageReadError(f"{path}: {why}")
  if color:
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
  return image


def _jpeg_ends(path: str, tail: int = 4096) -> bool:
  """Does the JPEG file carry its end-of-image marker (FFD9) near its end? (Encoders may
  pad after it; inside the compressed data FF is always escaped, so no false marker.)"""
  with open(path, "rb") as f:
    f.seek(max(0, os.path.getsize(path) - tail))
    return b"\xff\xd9" in f.read()


def to_gray(image: np.ndarray) -> np.ndarray:
  """uint8 [H, W], [H, W, 1] or RGB [H, W, 3] -> gray uint8 [H, W]."""
  if image.ndim == 2:
    return image
  if image.shape[-1] == 1:
    return image[..., 0]
  return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


@functools.cache
def _cascade() -> cv2.CascadeClassifier:
  path = os.path.join(cv2.data.haarcascades, CASCADE_FILE)
  cascade = cv2.CascadeClassifier(path)
  if cascade.empty():
    raise errors.UserError(f"{path}: cannot load OpenCV's face detector; reinstall "
                           "opencv-python-headless")
  return cascade


def detect_faces(gray: np.ndarray, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size: int | None = None) -> list[tuple[int, int, int, int]]:
  """Frontal faces in a gray uint8 image [H, W]: [(x, y, w, h)], largest first.

  min_size defaults to 1/20 of the shorter side (at least 24 px): smaller detections in a
  photo are mostly false positives, and too few pixels to be worth translating anyway.
  """
  gray = to_gray(np.asarray(gray))
  height, width = gray.shape
  scale = min(1.0, _DETECT_MAX_SIDE / max(height, width))
  small = gray if scale == 1.0 else cv2.resize(
      gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
  if min_size is None:
    min_size = max(24, min(small.shape) // 20)
  # Equalising first makes the cascade less sensitive to dim or washed-out photos.
  boxes = _cascade().detectMultiScale(cv2.equalizeHist(small), scaleFactor=scale_factor,
                                      minNeighbors=min_neighbors,
                                      minSize=(min_size, min_size))
  faces = [tuple(int(round(v / scale)) for v in box) for box in np.reshape(boxes, (-1, 4))]
  return sorted(faces, key=lambda b: (-b[2] * b[3], b[0], b[1]))


def square_box(box: tuple[int, int, int, int], margin: float = 0.2
               ) -> tuple[int, int, int]:
  """(x, y, w, h) -> (left, top, side) of the square centred on it, `margin` wider per side.

  margin is a fraction of the box's longer side added on each side, so 0.2 makes the
  square 1.4x the face.
  """
  x, y, w, h = box
  if margin < 0:
    raise ValueError(f"margin must be >= 0, got {margin}")
  side = max(1, int(round(max(w, h) * (1 + 2 * margin))))
  left = int(round(x + w / 2 - side / 2))
  top = int(round(y + h / 2 - side / 2))
  return left, top, side


def crop_square(image: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.2
                ) -> np.ndarray:
  """Square crop around box with a margin; [side, side(, C)] of image's dtype.

  Where the square leaves the image the edge pixels are repeated, not black: a black bar
  next to a face is far from anything in the training data, a smeared edge is closer.
  """
  left, top, side = square_box(box, margin)
  height, width = image.shape[:2]
  pad_top, pad_left = max(0, -top), max(0, -left)
  pad_bottom, pad_right = max(0, top + side - height), max(0, left + side - width)
  inside = image[max(0, top):min(height, top + side), max(0, left):min(width, left + side)]
  if not (pad_top or pad_left or pad_bottom or pad_right):
    return inside.copy()
  pads = [(pad_top, pad_bottom), (pad_left, pad_right)] + [(0, 0)] * (image.ndim - 2)
  return np.pad(inside, pads, mode="edge")


def to_model_input(crop: np.ndarray, image_size: int = 48, channels: int = 1) -> np.ndarray:
  """A face crop (gray or RGB uint8) -> uint8 [image_size, image_size, channels].

  Area interpolation when shrinking (it averages, so no aliasing); linear when a tiny
  crop has to grow.
  """
  crop = np.asarray(crop)
  if crop.ndim == 3 and crop.shape[-1] == 1:
    crop = crop[..., 0]
  if channels == 1:
    crop = to_gray(crop)
  elif channels == 3:
    crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB) if crop.ndim == 2 else crop[..., :3]
  else:
    raise ValueError(f"channels must be 1 or 3, got {channels}")
  shrinking = crop.shape[0] >= image_size and crop.shape[1] >= image_size
  resized = cv2.resize(crop, (image_size, image_size),
                       interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
  return resized.reshape(image_size, image_size, channels).astype(np.uint8)
