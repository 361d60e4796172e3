"""The README's picture: skimage's astronaut, edited in place by the shipped generator.

    python tools/make_photo_example.py docs/photo_example.jpg

Top: a crop around her face at the photo's own resolution, before and toward each emotion
(translate's <stem>_strip). Below: the whole photo, small, before and Happy.
"""

import os
import sys

import cv2
import numpy as np
import PIL.Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import faceexpr_tf  # pylint: disable=wrong-import-position
from faceexpr_tf.photos import photo_outputs  # pylint: disable=wrong-import-position


def main(path: str):
  from skimage import data as skdata  # pylint: disable=g-import-not-at-top  (test extra)
  photo = skdata.astronaut()
  editor = faceexpr_tf.load()
  edits = editor.edit_all(photo)
  strip = photo_outputs.strip(photo, edits)
  side = 260
  small = [cv2.resize(p, (side, side), interpolation=cv2.INTER_AREA)
           for p in (photo, edits.photos["Happy"])]
  small = [photo_outputs.titled(s, t) for s, t in
           zip(small, ("the whole photo, before", "Happy (512x512, same size)"))]
  row = np.concatenate([small[0], np.full((small[0].shape[0], 6, 3), 255, np.uint8),
                        small[1]], axis=1)
  width = max(strip.shape[1], row.shape[1])

  def pad(a):
    return np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0)), constant_values=255)

  canvas = np.concatenate([pad(strip), np.full((10, width, 3), 255, np.uint8), pad(row)])
  PIL.Image.fromarray(canvas).save(path, quality=92)
  print(f"wrote {path} ({canvas.shape[1]}x{canvas.shape[0]})")


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "docs/photo_example.jpg")
