"""The 48 px path of `translate`: each face as the model sees it, in grids.

For --grids (and for fer2013-style csv inputs, whose rows already are faces): each face
is cut square with a margin around its box (OpenCV's Haar cascade, upright faces), made a
48x48 gray face like FER2013's, translated to every emotion asked for, and written as

  <out>/<stem>_face<i>_grid.png        input | one column per emotion, names on top
  <out>/<stem>_face<i>_<Emotion>.png   each translated face, enlarged
  <out>/<stem>_faces.png               the photo with the numbered face boxes

Faces of consecutive files share G's batches (Batcher); every output is what translating
each file on its own writes.
"""

import dataclasses
import os
import time

import numpy as np
from absl import logging

from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.data import visualize
from faceexpr_tf.data.visualize import draw_boxes, enlarge, write_png
from faceexpr_tf.photos import editor as editor_lib
from faceexpr_tf.photos import faces
from faceexpr_tf.photos import inputs
from faceexpr_tf.photos import intensity as intensity_lib

NoFaceError = editor_lib.NoFaceError

@dataclasses.dataclass
class Options:
  """What to do with each face; fixed for one run."""
  out_dir: str
  class_ids: list[int]
  names: list[str]
  detect: bool = True
  margin: float = 0.2
  max_faces: int = 10
  max_rows: int = 100
  scale: int = 4
  face_size: int = 192
  intensity: float = 1.0
  batch_size: int = 64




def face_crops(image: np.ndarray, detect: bool, margin: float, max_faces: int):
  """[(box, square crop)] for a photo, largest face first; the whole image without detect.

  Raises NoFaceError when detection finds nothing.
  """
  height, width = image.shape[:2]
  if not detect:
    box = (0, 0, width, height)
    return [(box, faces.crop_square(image, box, margin=0.0))]
  boxes = faces.detect_faces(faces.to_gray(image))
  if not boxes:
    raise NoFaceError("no face found (try a larger, frontal, well-lit face, or "
                      "--no_detect if the image is already a face crop)")
  return [(box, faces.crop_square(image, box, margin)) for box in boxes[:max_faces]]



# ---------------------------------------------------------------------------------------
# Per input: gather faces (read and detect one file at a time), then translate them in
# batches that cross file boundaries.


@dataclasses.dataclass
class Face:
  """One face waiting for G, and where its outputs go."""
  stem: str
  index: int
  image: np.ndarray            # uint8 [S, S, C]: the model's input
  input_label: str = "input"
  message: str | None = None   # logged once its files are written


@dataclasses.dataclass
class Stats:
  """Counts and seconds of one run, for the progress and summary lines."""
  files: int = 0
  files_done: int = 0
  faces: int = 0
  read_s: float = 0.0
  detect_s: float = 0.0
  translate_s: float = 0.0
  write_s: float = 0.0
  start: float = dataclasses.field(default_factory=time.perf_counter)

  def seconds(self) -> float:
    return time.perf_counter() - self.start

  def line(self) -> str:
    seconds = self.seconds()
    return (f"{self.files_done}/{self.files} files, {self.faces} faces, {seconds:.1f} s, "
            f"{self.faces / max(seconds, 1e-9):.2f} faces/s (read {self.read_s:.1f} s, "
            f"detect {self.detect_s:.1f} s, G {self.translate_s:.1f} s, write "
            f"{self.write_s:.1f} s)")


def write_face(opts: Options, stem: str, index: int, face: np.ndarray,
               translated: np.ndarray, input_label: str = "input") -> str:
  """Writes one face's grid and per-emotion PNGs; returns the grid's path."""
  prefix = os.path.join(opts.out_dir, f"{stem}_face{index}")
  grid_path = prefix + "_grid.png"
  cells = np.concatenate([face[None], translated])[None]
  write_png(grid_path, visualize.make_grid(cells, [input_label, *opts.names], opts.scale))
  for name, out in zip(opts.names, translated):
    write_png(f"{prefix}_{name}.png", enlarge(out, opts.face_size))
  return grid_path


def image_faces(path: str, stem: str, translator, opts: Options, stats: Stats
                ) -> list[Face]:
  """Reads one photo, finds its faces and writes its overview; the photo is then dropped,
  so only the 48x48 faces wait for G."""
  t0 = time.perf_counter()
  # Colour even for a gray model: the overview shows the photo as taken, and
  # to_model_input makes the gray faces.
  photo = faces.read_image(path, color=True)
  t1 = time.perf_counter()
  stats.read_s += t1 - t0
  found = face_crops(photo, opts.detect, opts.margin, opts.max_faces)
  inputs = [faces.to_model_input(crop, translator.image_size, translator.channels)
            for _, crop in found]
  t2 = time.perf_counter()
  stats.detect_s += t2 - t1
  if opts.detect:
    write_png(os.path.join(opts.out_dir, f"{stem}_faces.png"),
              draw_boxes(photo, [box for box, _ in found]))
    stats.write_s += time.perf_counter() - t2
  grid = os.path.join(opts.out_dir, f"{stem}_face{{}}_grid.png")
  return [Face(stem, i, image, message=f"{path}: face {i} at x={x} y={y} {w}x{h} -> "
                                       f"{grid.format(i)}")
          for i, (((x, y, w, h), _), image) in enumerate(zip(found, inputs))]


def csv_faces(path: str, stem: str, translator, opts: Options, stats: Stats):
  """Reads a fer2013-style csv (errors are raised here) and returns an iterator over its
  rows as faces (made one at a time, as the batches take them)."""
  from faceexpr_tf.data import fer2013  # pylint: disable=g-import-not-at-top  (pandas: only here)
  t0 = time.perf_counter()
  rows = fer2013.load_fer2013_csv(path, emotions_lib.FER2013_EMOTIONS, usage=None,
                                  skip_bad_rows=True, image_size=translator.image_size)
  stats.read_s += time.perf_counter() - t0
  count = len(rows) if opts.max_rows == 0 else min(len(rows), opts.max_rows)
  if count < len(rows):
    logging.info("%s: translating the first %d of %d rows (--max_rows)", path, count,
                 len(rows))
  done = (f"{path}: {count} rows -> "
          f"{os.path.join(opts.out_dir, f'{stem}_row*_face0_*.png')}")

  def each():
    for i in range(count):
      image = faces.to_model_input(rows.images[i], translator.image_size,
                                   translator.channels)
      yield Face(f"{stem}_row{i}", 0, image, f"in: {rows.emotions[rows.labels[i]]}",
                 done if i == count - 1 else None)
  return each()


def _per_file_errors():
  """Exceptions that fail one input, not the run (model errors still end the run)."""
  kinds = [faces.ImageReadError, NoFaceError]
  try:
    from faceexpr_tf.data import faceset  # pylint: disable=g-import-not-at-top
    kinds.append(faceset.DataError)
  except ImportError:
    pass
  return tuple(kinds)


def gather(path: str, stem: str, translator, opts: Options, stats: Stats):
  """One input's faces (an iterable); raises the per-file errors before yielding any."""
  if os.path.isdir(path):
    raise inputs.empty_folder_error(path)
  if inputs.is_csv(path):
    if not os.path.isfile(path):
      raise faces.ImageReadError(f"{path}: no such file")
    return csv_faces(path, stem, translator, opts, stats)
  return image_faces(path, stem, translator, opts, stats)


class Batcher:
  """Collects faces from any number of files and translates them batch_size at a time.

  At most batch_size faces wait (48x48 each), however many files they came from.
  """

  def __init__(self, translator, opts: Options, stats: Stats, progress_every: float = 10.0):
    self.translator, self.opts, self.stats = translator, opts, stats
    self.pending: list[Face] = []
    self.progress_every = progress_every
    self._last_progress = time.perf_counter()

  def add(self, face: Face):
    self.pending.append(face)
    if len(self.pending) >= self.opts.batch_size:
      self.flush()

  def flush(self):
    if not self.pending:
      return
    batch, self.pending = self.pending, []
    t0 = time.perf_counter()
    translated = intensity_lib.translate_all(self.translator,
                                             np.stack([f.image for f in batch]),
                                             self.opts.intensity, self.opts.class_ids)
    t1 = time.perf_counter()
    self.stats.translate_s += t1 - t0
    for face, out in zip(batch, translated):
      write_face(self.opts, face.stem, face.index, face.image, out, face.input_label)
      if face.message:
        logging.info("%s", face.message)
    self.stats.write_s += time.perf_counter() - t1
    self.stats.faces += len(batch)
    if time.perf_counter() - self._last_progress >= self.progress_every:
      self._last_progress = time.perf_counter()
      logging.info("translate: %s", self.stats.line())


def translate_inputs(paths, translator, opts: Options) -> tuple[int, list[str]]:
  """Processes every input, reporting failures per file: (faces written, failures).

  Faces of consecutive files share G's batches (opts.batch_size faces each); every
  output is what translating each file on its own writes.
  """
  os.makedirs(opts.out_dir, exist_ok=True)
  per_file = _per_file_errors()
  stats = Stats(files=len(paths))
  batcher = Batcher(translator, opts, stats)
  used, failures = set(), []
  for path in paths:
    try:
      found = gather(path, inputs.unique_stem(path, used), translator, opts, stats)
    except per_file as e:
      message = str(e) if path in str(e) else f"{path}: {e}"
      logging.warning("%s", message)
      failures.append(message)
    else:
      for face in found:
        batcher.add(face)
    stats.files_done += 1
  batcher.flush()
  logging.info("translate: %s", stats.line())
  return stats.faces, failures

