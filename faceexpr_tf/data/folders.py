"""Image folders (root/<emotion>/*.png, any size or colour) -> FaceSet of gray squares."""

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.data import faceset
from faceexpr_tf.data import images as images_lib

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


# Image folders


def load_image_folder(root, emotions: Sequence[str] = emotions_lib.DEFAULT_EMOTIONS, *,
                      image_size: int = faceset.FER_SIZE) -> faceset.FaceSet:
  """Loads `root/<emotion>/*.{png,jpg,jpeg,bmp,gif}` as gray faces.

  Emotion folder names match case-insensitively; folders of emotions not
  asked for (or not emotions at all) are ignored, and an asked-for emotion
  without a folder is fine as long as some image is found. Images of any size
  and colour become gray `image_size` squares (no cropping: non-square images
  are squeezed).

  Raises:
    faceset.DataError: missing root, an unreadable image (naming the file), or no
      images at all.
  """
  root = os.fspath(root)
  names = emotions_lib.parse_emotions(emotions)
  if not os.path.isdir(root):
    raise faceset.DataError(f"{root}: no such directory")
  files, labels = [], []
  for entry in sorted(os.scandir(root), key=lambda e: e.name.lower()):
    if not entry.is_dir():
      continue
    try:
      name = emotions_lib.canonical(entry.name)
    except emotions_lib.UnknownEmotionError:
      continue
    if name not in names:
      continue
    found = sorted(f.path for f in os.scandir(entry.path)
                   if f.is_file()
                   and f.name.lower().endswith(IMAGE_EXTENSIONS))
    files += found
    labels += [names.index(name)] * len(found)
  if not files:
    raise faceset.DataError(
        f"{root}: no images found for {', '.join(names)} (expected "
        f"sub-folders named after the emotions, e.g. {root}/{names[0]}/*.png)")
  images = np.stack([_read_image(path, image_size) for path in files])
  faces = faceset.FaceSet(images=images, labels=np.asarray(labels, np.int32),
                  emotions=names, source=f"{root} (image folder)")
  logging.info("Loaded %d images from %s: %s", len(faces), faces.source,
               faces.class_counts())
  return faces


def _read_image(path: str, image_size: int) -> np.ndarray:
  """One image file -> uint8 [image_size, image_size, 1]."""
  try:
    images_lib.check_size(path, images_lib.read_head(path))
    # channels=0: GIF and BMP decoders refuse channels=1, so convert below. EXIF
    # orientation applied, as translate (OpenCV) and the SavedModel's bytes signature do.
    image = images_lib.decode(tf.io.read_file(path), channels=0)
  except images_lib.ImageTooLargeError as e:
    raise faceset.DataError(str(e)) from None
  except OSError as e:
    raise faceset.DataError(f"{path}: cannot read image ({os.strerror(e.errno) if e.errno else e})"
                    ) from None
  except tf.errors.OpError as e:
    raise faceset.DataError(f"{path}: cannot read image ({_tf_reason(e)})") from None
  channels = image.shape[-1]
  if channels >= 3:
    image = tf.image.rgb_to_grayscale(image[..., :3])
  elif channels == 2:  # Gray + alpha.
    image = image[..., :1]
  if image.shape[0] == image_size and image.shape[1] == image_size:
    return image.numpy()
  resized = tf.image.resize(tf.cast(image, tf.float32),
                            [image_size, image_size], antialias=True)
  return np.clip(np.rint(resized.numpy()), 0, 255).astype(np.uint8)


def _tf_reason(error: tf.errors.OpError) -> str:
  """The human part of a TF error: no "{{function_node ...}}" or "[Op:...]"."""
  lines = (error.message or "").strip().splitlines()
  text = lines[0] if lines else ""
  if "}}" in text:
    text = text.split("}}", 1)[1]
  return text.split(" [Op:", 1)[0].strip() or type(error).__name__


# ---------------------------------------------------------------------------
