"""Builds a folder of photos with faces for timing `main.py translate` (issue 10).

    python tools/make_photo_folder.py --out=/tmp/photos1000 --count=1000

Variants of scikit-image's sample photos (no download): the astronaut cropped around her
face at random shifts and scales, mirrored, brighter or darker, every 10th one two faces
side by side, and every 50th a photo without a face (coffee, the cat), which translate
reports and skips. JPEG and PNG alternate. Deterministic for a given --seed. Write it
outside the repository (the folder is data, not source).
"""

import argparse
import os

import cv2
import numpy as np
from skimage import data as skdata

# The astronaut's face as the project's detector finds it: x, y, w, h in the 512x512 photo.
_FACE = (177, 67, 93, 93)


def _astronaut_crop(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """A crop holding the face with room around it, resized to 160-360 px on its long side."""
  x, y, w, h = _FACE
  side = int(w * rng.uniform(2.0, 3.5))
  left = int(np.clip(x + w / 2 - side * rng.uniform(0.3, 0.7), 0, 512 - side))
  top = int(np.clip(y + h / 2 - side * rng.uniform(0.3, 0.6), 0, 512 - side))
  crop = photo[top:top + side, left:left + side]
  width = int(rng.uniform(160, 360))
  height = int(width * rng.uniform(0.8, 1.3))
  crop = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
  if rng.random() < 0.5:
    crop = crop[:, ::-1]
  gain = rng.uniform(0.75, 1.2)
  return np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def make_photo(index: int, rng: np.random.Generator) -> np.ndarray:
  """RGB uint8 photo number `index`."""
  if index % 50 == 49:
    return (skdata.coffee(), skdata.chelsea())[index // 50 % 2]
  photo = skdata.astronaut()
  face = _astronaut_crop(photo, rng)
  if index % 10 == 9:
    other = cv2.resize(_astronaut_crop(photo, rng), (face.shape[1], face.shape[0]))
    face = np.concatenate([face, other], axis=1)
  return np.ascontiguousarray(face)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="folder to write (created if needed)")
  parser.add_argument("--count", type=int, default=1000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  rng = np.random.default_rng(args.seed)
  for i in range(args.count):
    ext = ".jpg" if i % 2 == 0 else ".png"
    path = os.path.join(args.out, f"photo{i:04d}{ext}")
    if not cv2.imwrite(path, cv2.cvtColor(make_photo(i, rng), cv2.COLOR_RGB2BGR)):
      raise SystemExit(f"could not write {path}")
  print(f"wrote {args.count} photos to {args.out}")


if __name__ == "__main__":
  main()
