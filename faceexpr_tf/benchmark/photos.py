"""The photo path's speed: photos/s of `edit` and `edit_all` on one-face photos, and its split.

Each photo is synthetic and the same every run: the package's astronaut example enlarged
so that her face spans FACE_FRACTION of the photo's short side, on a smooth coloured
background with a little grain (so that the JPEG is about as large as a camera's), stored
as a quality-90 4:2:0 JPEG in memory. One pass is what a photo costs end to end: decode
(photo_files.decode_photo of those bytes), detection (on the detector's downscaled copy),
align (the full-resolution luminance and each face's 48 px cut), G, paste (each emotion's
edit warped back and added to the luminance at full resolution) and encode
(photo_files.encode_photo, as JPEG, once per emotion). The rows give the median of
`repeats` passes per stage and of the pass's total (photos/s = 1000 / total ms), after
one untimed pass, and the peak of the memory one more pass allocates, as tracemalloc sees
it (numpy, OpenCV and Python buffers; not TensorFlow's own allocator).
"""

import datetime
import functools
import io
import os
import statistics
import time
import tracemalloc

import cv2
import numpy as np
import PIL.Image
import tensorflow as tf
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.benchmark import hardware
from faceexpr_tf.benchmark import tables
from faceexpr_tf.photos import detectors
from faceexpr_tf.photos import editor as editor_lib
from faceexpr_tf.photos import photo_files

# Named sizes: (width, height).
SIZES = {"1mp": (1152, 864), "12mp": (4000, 3000)}
EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets",
                       "examples", "astronaut.png")
# The astronaut's face in the 256 px example (the Haar box: 53 px); the part of the
# example that goes into the photo (rows, columns), her face near its top centre.
EXAMPLE_FACE_PX = 53
EXAMPLE_CROP = (slice(0, 192), slice(16, 208))
FACE_FRACTION = 0.25        # of the photo's short side
INPUT_QUALITY = 90          # the input JPEG's (a camera's); outputs are encode_photo's
ONE_EMOTION = "Happy"
STAGES = ("decode", "detect", "align", "g", "paste", "encode")

TITLE = "## Photo path: photos/s"
INTRO = """\
`python main.py benchmark --bench_photos=1mp,12mp` appends rows here
(faceexpr_tf/benchmark/photos.py). A synthetic one-face photo (the astronaut example
enlarged so her face spans 1/4 of the short side, on a smooth background with grain), read
from a quality-90 JPEG in memory, edited by the shipped G (`edit`: one emotion; `edit_all`:
the 4, one forward pass) and written back as JPEG (quality 95, 4:4:4) once per emotion.
photos/s = 1000 / the median total; the split is each stage's median in ms over the
repeats: decode, detect (on the detector's copy of at most 1024 px), align (full-resolution
luminance and the 48 px cut), G, paste (every emotion's edit into the full-resolution
photo), encode (every emotion's file). Peak MB: what one pass allocates at most, as
tracemalloc sees it (not TensorFlow's allocator)."""
HEADER = ("| date | machine | CPU flags | TF | threads | size | JPEG MB | detector | emotions | "
          "faces | photos/s | total ms | decode ms | detect ms | align ms | G ms | paste ms | "
          "encode ms | peak MB | repeats |")


def parse_size(text: str) -> tuple[int, int]:
  """'1mp', '12mp' or 'WxH' -> (width, height); a UserError for anything else."""
  name = text.strip().lower()
  if name in SIZES:
    return SIZES[name]
  try:
    width, height = (int(v) for v in name.split("x"))
  except ValueError:
    width = height = 0
  if width < 64 or height < 64:
    raise errors.UserError(f"--bench_photos: {text!r} is not a size: {', '.join(SIZES)} or "
                           "WxH (e.g. 2048x1536, at least 64x64)")
  return width, height


@functools.cache
def _example() -> np.ndarray:
  with PIL.Image.open(EXAMPLE) as image:
    return np.asarray(image.convert("RGB"))


def synthetic_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
  """uint8 RGB [height, width, 3]: one face (FACE_FRACTION of the short side) on a
  background, the same for the same arguments."""
  rng = np.random.default_rng(seed)
  grid = rng.uniform(40, 215, (6, 8, 3)).astype(np.float32)
  photo = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
  part = _example()[EXAMPLE_CROP]
  scale = min(width, height) * FACE_FRACTION / EXAMPLE_FACE_PX
  side = min(round(part.shape[0] * scale), height, width)
  part = cv2.resize(part, (side, side), interpolation=cv2.INTER_CUBIC)
  top, left = height - side, (width - side) // 3
  photo[top:, left:left + side] = part
  grain = rng.normal(0, 6, (256, 256, 3)).astype(np.float32)
  grain = np.tile(grain, (1, -(-width // 256), 1))[:, :width]
  for y in range(0, height, 256):    # row bands: no full-size copy of the grain
    band = photo[y:y + 256]
    band += grain[:band.shape[0]]
  return np.clip(np.rint(photo), 0, 255).astype(np.uint8)


def jpeg_bytes(photo: np.ndarray, quality: int = INPUT_QUALITY) -> bytes:
  """A camera-like JPEG (4:2:0) of the photo."""
  buffer = io.BytesIO()
  PIL.Image.fromarray(photo).save(buffer, "JPEG", quality=quality)
  return buffer.getvalue()


class _Timer:
  """Seconds per stage, summed over the calls of one pass."""

  def __init__(self):
    self.seconds = dict.fromkeys(STAGES, 0.0)

  def timed(self, stage: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    try:
      return fn(*args, **kwargs)
    finally:
      self.seconds[stage] += time.perf_counter() - t0


class _TimedDetector:
  """A detector whose detect() calls are timed as the "detect" stage."""

  def __init__(self, detector: detectors.Detector, timer: _Timer):
    self.detector, self.timer, self.name = detector, timer, detector.name

  def detect(self, image):
    return self.timer.timed("detect", self.detector.detect, image)


class TimedEditor(editor_lib.PhotoEditor):
  """A PhotoEditor that times its stages: find minus detection is "align", deltas "g",
  apply "paste"; everything else is the editor's own code, unchanged."""

  def __init__(self, translator, detector: detectors.Detector):
    self.timer, self.last = _Timer(), None
    super().__init__(translator, _TimedDetector(detector, self.timer))

  def find(self, photo):
    t0, detect0 = time.perf_counter(), self.timer.seconds["detect"]
    try:
      return super().find(photo)
    finally:
      self.timer.seconds["align"] += (time.perf_counter() - t0
                                      - (self.timer.seconds["detect"] - detect0))

  def deltas(self, faces, class_ids, alphas):
    return self.timer.timed("g", super().deltas, faces, class_ids, alphas)

  def apply(self, photo, faces, deltas):   # pylint: disable=arguments-differ
    return self.timer.timed("paste", super().apply, photo, faces, deltas)

  def edit_all(self, photo, emotions=None, intensity=1.0, faces=None):
    self.last = super().edit_all(photo, emotions, intensity, faces)   # for edit()'s faces
    return self.last


def one_pass(editor: TimedEditor, data: bytes, emotions: list[str] | None) -> dict:
  """Decode, edit and encode one photo: stage seconds, "total" and faces edited.

  Args:
    editor: the timed editor.
    data: the photo's JPEG bytes.
    emotions: None for `edit` of ONE_EMOTION, else `edit_all` of these.
  """
  editor.timer = timer = _Timer()
  editor.detector.timer = timer
  t0 = time.perf_counter()
  photo = timer.timed("decode", photo_files.decode_photo, data, "photo.jpg")
  if emotions is None:
    outputs = {ONE_EMOTION: editor.edit(photo.pixels, ONE_EMOTION)}
  else:
    outputs = editor.edit_all(photo.pixels, emotions).photos
  faces = len(editor.last.edited)
  for emotion, pixels in outputs.items():
    record = photo_files.provenance("benchmark", emotion, 1.0, faces)
    timer.timed("encode", photo_files.encode_photo, pixels, photo, record)
  return {**timer.seconds, "total": time.perf_counter() - t0, "faces": faces}


def peak_mb(editor: TimedEditor, data: bytes, emotions: list[str] | None) -> float:
  """The most memory one pass allocates (MB) beyond what was allocated before it."""
  tracemalloc.start()
  try:
    before = tracemalloc.get_traced_memory()[0]
    one_pass(editor, data, emotions)
    return (tracemalloc.get_traced_memory()[1] - before) / 1e6
  finally:
    tracemalloc.stop()


def time_photos(translator, detector: detectors.Detector, size: tuple[int, int],
                repeats: int, memory: bool = True) -> list[dict]:
  """Rows for one photo size and detector: `edit` (one emotion) and `edit_all` (all).

  Args:
    translator: G (serving.translators.Translator).
    detector: the face detector.
    size: (width, height) of the synthetic photo.
    repeats: timed passes per row (their medians are reported).
    memory: also run one pass under tracemalloc for the peak.

  Returns:
    One dict per row: size, jpeg_mb, detector, emotions, faces, the median ms of each
    stage and of the total, photos_s, peak_mb (None without memory) and repeats.
  """
  width, height = size
  data = jpeg_bytes(synthetic_photo(width, height))
  editor = TimedEditor(translator, detector)
  modes = {1: None, len(translator.emotions): list(translator.emotions)}
  for emotions in modes.values():
    one_pass(editor, data, emotions)                   # warm up: traces G for this batch
  passes = {k: [] for k in modes}
  for _ in range(repeats):                             # interleaved: noise hits both alike
    for k, emotions in modes.items():
      passes[k].append(one_pass(editor, data, emotions))
  rows = []
  for k, emotions in modes.items():
    ms = {s: 1000 * statistics.median(p[s] for p in passes[k]) for s in (*STAGES, "total")}
    faces = min(p["faces"] for p in passes[k])
    if not faces:
      logging.warning("%dx%d, %s: no face edited (the rows time a photo without one)",
                      width, height, detector.name)
    rows.append({"size": size, "jpeg_mb": len(data) / 1e6, "detector": detector.name,
                 "emotions": k, "faces": faces, "ms": ms, "photos_s": 1000 / ms["total"],
                 "peak_mb": peak_mb(editor, data, emotions) if memory else None,
                 "repeats": repeats})
    logging.info("photos %dx%d %s %d emotion(s): %.2f photos/s %s", width, height,
                 detector.name, k, rows[-1]["photos_s"],
                 {s: round(v, 1) for s, v in ms.items()})
  return rows


def row_line(r: dict, machine: str, flags: str, threads: int) -> str:
  """A table line (matching HEADER) of one `time_photos` row."""
  width, height = r["size"]
  ms = r["ms"]
  peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
  split = " | ".join(f"{ms[s]:.1f}" for s in STAGES)
  return (f"| {datetime.date.today()} | {machine} | {flags} | {tf.__version__} | "
          f"{threads or 'default'} | {width}x{height} ({width * height / 1e6:.1f} MP) | "
          f"{r['jpeg_mb']:.2f} | {r['detector']} | {r['emotions']} | {r['faces']} | "
          f"{r['photos_s']:.2f} | {ms['total']:.1f} | {split} | {peak} | {r['repeats']} |")


def photo_table(sizes: list[str], detector_names: list[str], repeats: int, threads: int,
                table: str, memory: bool = True) -> int:
  """`benchmark --bench_photos`: rows per size and detector, printed and appended to `table`.

  Args:
    sizes: '1mp', '12mp' or 'WxH' (a UserError for anything else).
    detector_names: mtcnn, haar or auto (detectors.load_detector).
    repeats: timed passes per row (at least 1).
    threads: TensorFlow threads (0 = its default).
    table: markdown file the rows are appended to ('' = print only).
    memory: measure each row's peak memory (one more pass under tracemalloc).

  Returns:
    0, the mode's exit status.
  """
  from faceexpr_tf.serving import inference  # pylint: disable=g-import-not-at-top
  parsed = [parse_size(s) for s in sizes]
  if repeats < 1:
    raise errors.UserError(f"--bench_photo_repeats={repeats}: at least 1")
  found = [detectors.load_detector(name) for name in detector_names]
  hardware.set_threads(threads)
  translator = inference.load_translator("pretrained")
  rows = [r for size in parsed for detector in found
          for r in time_photos(translator, detector, size, repeats, memory)]
  machine, flags = hardware.machine(), hardware.cpu_flags()
  lines = [row_line(r, machine, flags, threads) for r in rows]
  tables.show(HEADER, lines)
  tables.append_to_section(table, TITLE, INTRO, HEADER, lines)
  return 0
