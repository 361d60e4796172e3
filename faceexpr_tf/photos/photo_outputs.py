"""What one edited photo leaves on disk: a photo per emotion, a before/after strip, and
an animation of each face from intensity 0 to 1 and back.

    <out>/<stem>_<Emotion><ext>   the photo edited toward each emotion: the input's size
                                  and format (JPEG stays JPEG, PNG stays PNG), provenance
                                  inside (photo_files.py)
    <out>/<stem>_strip<ext>       before | each emotion, cut around the largest edited face
                                  (at full resolution up to STRIP_HEIGHT px tall)
    <out>/<stem>_face<i>.gif      face i going 0 -> 1 -> 0 toward each emotion in turn
"""

import os

import cv2
import numpy as np
import PIL.Image

from faceexpr_tf.photos import align
from faceexpr_tf.photos import editor as editor_lib
from faceexpr_tf.photos import photo_files

STRIP_HEIGHT = 480            # most pixels tall a strip cell is
ANIMATION_SIDE = 256          # most pixels across an animation frame is
ANIMATION_STEPS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
FRAME_MS = 90
HOLD_MS = 600                 # on the full expression (and the input) before turning
_TITLE_H = 30
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def face_region(face: editor_lib.PhotoFace, shape, grow: float = 1.25
                ) -> tuple[int, int, int, int]:
  """(x0, y0, x1, y1): the face's frame in the photo, grown about its centre, clipped."""
  size = face.face.shape[0]
  corners = align.apply(align.invert(face.to_face), [(0, 0), (size, 0), (0, size),
                                                      (size, size)])
  (cx, cy), half = corners.mean(axis=0), grow * np.ptp(corners, axis=0).max() / 2
  height, width = shape[:2]
  x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
  x1, y1 = min(width, int(np.ceil(cx + half))), min(height, int(np.ceil(cy + half)))
  return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _rgb(pixels: np.ndarray) -> np.ndarray:
  if pixels.ndim == 2:
    return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
  return np.ascontiguousarray(pixels[..., :3])


def _fit(image: np.ndarray, height: int | None = None, side: int | None = None
         ) -> np.ndarray:
  h, w = image.shape[:2]
  ratio = min(1.0, height / h if height else side / max(h, w))
  if ratio >= 1.0:
    return image
  return cv2.resize(image, (max(1, round(w * ratio)), max(1, round(h * ratio))),
                    interpolation=cv2.INTER_AREA)


def titled(image: np.ndarray, title: str) -> np.ndarray:
  canvas = np.full((image.shape[0] + _TITLE_H, image.shape[1], 3), 255, np.uint8)
  canvas[_TITLE_H:] = image
  scale = min(0.7, 0.9 * image.shape[1] / max(1, cv2.getTextSize(title, _FONT, 1, 1)[0][0]))
  (tw, th), _ = cv2.getTextSize(title, _FONT, scale, 1)
  cv2.putText(canvas, title, ((image.shape[1] - tw) // 2, (_TITLE_H + th) // 2), _FONT,
              scale, (0, 0, 0), 1, cv2.LINE_AA)
  return canvas


def strip(before: np.ndarray, edits: editor_lib.PhotoEdits) -> np.ndarray | None:
  """RGB uint8: before | each emotion, around the largest edited face; None if none."""
  if not edits.edited:
    return None
  x0, y0, x1, y1 = face_region(edits.edited[0], before.shape)
  cells = [("before", before)] + list(edits.photos.items())
  gap = 6
  tiles = [titled(_fit(_rgb(p[y0:y1, x0:x1]), height=STRIP_HEIGHT), name)
           for name, p in cells]
  height = tiles[0].shape[0]
  canvas = np.full((height, sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1), 3),
                   255, np.uint8)
  x = 0
  for tile in tiles:
    canvas[:, x:x + tile.shape[1]] = tile
    x += tile.shape[1] + gap
  return canvas


def animation_frames(editor: editor_lib.PhotoEditor, photo: np.ndarray,
                     face: editor_lib.PhotoFace, emotions) -> tuple[list, list]:
  """(RGB frames, durations in ms): the face's region going 0 -> 1 -> 0 toward each
  emotion in turn; the edit is computed on the region only."""
  x0, y0, x1, y1 = face_region(face, photo.shape)
  region = np.ascontiguousarray(photo[y0:y1, x0:x1])
  moved = editor_lib.PhotoFace(face.index, face.detection,
                               align.shifted(face.to_face, x0, y0), face.face, face.aligned)
  frames, durations = [], []
  up = list(ANIMATION_STEPS)
  for name in emotions:
    shots = editor.frames(region, name, up, faces=[moved])
    shots = [titled(_fit(_rgb(s), side=ANIMATION_SIDE), f"{name} {a:.1f}")
             for s, a in zip(shots, up)]
    sequence = shots + shots[-2:0:-1]                  # up, then back down (not the ends)
    frames.extend(sequence)
    durations.extend([HOLD_MS] + [FRAME_MS] * (len(up) - 2) + [HOLD_MS]
                     + [FRAME_MS] * (len(up) - 2))
  return frames, durations


def write_gif(path: str, frames, durations, record: dict):
  """An endless GIF loop; its comment carries the provenance record."""
  images = [PIL.Image.fromarray(f) for f in frames]
  partial = f"{path}.partial"
  images[0].save(partial, "GIF", save_all=True, append_images=images[1:],
                 duration=durations, loop=0, optimize=False, disposal=1,
                 comment=photo_files.provenance_text(record).encode("utf-8"))
  os.replace(partial, path)


def write_all(editor: editor_lib.PhotoEditor, photo: photo_files.Photo,
              edits: editor_lib.PhotoEdits, out_dir: str, stem: str, model: str,
              strip_too: bool = True, animations: bool = True) -> list[str]:
  """Writes one photo's outputs; returns their paths (per-emotion photos first)."""
  written = []
  count = len(edits.edited)
  for name, pixels in edits.photos.items():
    path = os.path.join(out_dir, f"{stem}_{name}{photo.extension}")
    photo_files.write_photo(path, pixels, photo,
                            photo_files.provenance(model, name, edits.intensity, count))
    written.append(path)
  if strip_too and (image := strip(photo.pixels, edits)) is not None:
    path = os.path.join(out_dir, f"{stem}_strip{photo.extension}")
    rgb = photo_files.Photo(image, photo.format, photo.extension, photo.name)
    photo_files.write_photo(path, image, rgb, photo_files.provenance(
        model, ",".join(edits.photos), edits.intensity, count))
    written.append(path)
  if animations:
    for face in edits.edited:
      frames, durations = animation_frames(editor, photo.pixels, face, list(edits.photos))
      path = os.path.join(out_dir, f"{stem}_face{face.index}.gif")
      write_gif(path, frames, durations, photo_files.provenance(
          model, ",".join(edits.photos), "0 to 1", count))
      written.append(path)
  return written
