"""Face images: FER2013 csv, image folders or synthetic faces -> tf.data.

Images stay uint8 [N, H, W, 1] in memory (FER2013 is ~65 MB that way) and are
only scaled to float32 [-1, 1] per batch inside the input pipeline.
"""

import csv
import dataclasses
import gzip
import os
import zlib
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from faceexpr_tf import emotions as emotions_lib
from faceexpr_tf import errors
from faceexpr_tf import images as images_lib

DEFAULT_EMOTIONS = emotions_lib.DEFAULT_EMOTIONS
FER_SIZE = 48
FER_PIXELS = FER_SIZE * FER_SIZE
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLITS = ("train", "validation", "test")
# FER2013 Usage values for each split (the Kaggle names).
SPLIT_USAGE = {"train": "Training", "validation": "PublicTest",
               "test": "PrivateTest"}
# Sub-folder names accepted for each split in image-folder datasets.
SPLIT_FOLDERS = {
    "train": ("train", "training"),
    "validation": ("validation", "val", "valid", "publictest"),
    "test": ("test", "privatetest"),
}
SYNTHETIC_HELDOUT_SEED_OFFSET = 1_000_003
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_LINES_LISTED = 5
# Rows parsed per vectorised step; bounds the temporaries (~20 MB of text).
_PARSE_CHUNK_ROWS = 2048
_RESIZE_CHUNK = 4096


class DataError(errors.UserError):
  """A problem with input data, as one line meant for the user.

  E.g. "data/fer2013.csv line 17: 'pixels' has 2303 values, expected 2304".
  Callers print str(e) without a traceback.
  """


@dataclasses.dataclass
class FaceSet:
  """Grayscale face images with their class ids."""
  images: np.ndarray  # uint8 [N, H, W, 1]
  labels: np.ndarray  # int32 [N], class ids 0..K-1 = index into `emotions`
  emotions: tuple[str, ...]
  source: str  # Human-readable origin, e.g. "fer2013.csv (Training)".
  identities: np.ndarray | None = None  # int32 [N] for synthetic data.

  def __post_init__(self):
    self.emotions = tuple(self.emotions)
    if self.images.ndim != 4 or self.images.shape[-1] != 1:
      raise ValueError(f"images must be [N, H, W, 1], got {self.images.shape}")
    if self.labels.shape != (self.images.shape[0],):
      raise ValueError(f"{self.labels.shape[0]} labels for "
                       f"{self.images.shape[0]} images")

  def __len__(self) -> int:
    return int(self.images.shape[0])

  def class_counts(self) -> dict[str, int]:
    counts = np.bincount(self.labels, minlength=len(self.emotions))
    return {name: int(c) for name, c in zip(self.emotions, counts)}

  def subset(self, index) -> "FaceSet":
    """The images selected by `index` (slice, int array or boolean mask)."""
    return FaceSet(
        images=self.images[index],
        labels=self.labels[index],
        emotions=self.emotions,
        source=self.source,
        identities=(None if self.identities is None
                    else self.identities[index]),
    )


# ---------------------------------------------------------------------------
# FER2013 csv


@dataclasses.dataclass
class _CsvRows:
  """What one pass over the csv found: the selected rows and the bad ones."""
  lines: list[int]  # 1-based line number of each selected row
  classes: list[int]  # its class id
  pixels: list[bytes]  # its raw 'pixels' field
  problems: dict[int, str]  # line number -> problem, for any bad row
  num_rows: int  # non-blank data rows in the file
  usage_text: str  # the Usage filter actually applied, for messages


def load_fer2013_csv(path, emotions: Sequence[str] = DEFAULT_EMOTIONS,
                     usage: str | Sequence[str] | None = "Training", *,
                     skip_bad_rows: bool = False,
                     image_size: int = FER_SIZE) -> FaceSet:
  """Loads the Kaggle FER2013 csv (`emotion,pixels[,Usage]`), plain or gzip.

  Args:
    path: the csv file; gzip is recognised by its magic bytes, not its name.
    emotions: emotions to keep; class id = position in this sequence. Rows
      of other emotions are simply not selected.
    usage: Usage value(s) to keep, case-insensitive; None or "all" keeps all
      rows. Ignored, with a warning, when the file has no Usage column.
    skip_bad_rows: skip malformed rows with a warning instead of failing.
    image_size: output size; FER2013's 48x48 pixels are resized if different.

  Returns:
    The selected faces, in file order. Every row's label and field count are
    checked, but only selected rows have their pixels parsed and checked.

  Raises:
    DataError: naming the file and, for a bad row, its line number as an
      editor shows it (the header is line 1). Quoted fields may not span
      lines (FER2013 never does), or the line numbers would be off.
  """
  path = os.fspath(path)
  names = emotions_lib.parse_emotions(emotions)
  found = _scan_csv(path, names, usage)
  pixels, pixel_problems = _parse_pixels(found.pixels)
  problems = dict(found.problems)
  for i, problem in pixel_problems.items():
    problems[found.lines[i]] = problem
  _report_bad_rows(path, problems, skip_bad_rows)

  good = np.ones(len(found.lines), bool)
  good[list(pixel_problems)] = False
  if not good.any():
    raise DataError(
        f"{path}: no images of {', '.join(names)} with Usage "
        f"{found.usage_text} (file has {found.num_rows} rows)")
  images = pixels[good].reshape(-1, FER_SIZE, FER_SIZE, 1)
  faces = FaceSet(
      images=_resize(images, image_size),
      labels=np.asarray(found.classes, np.int32)[good],
      emotions=names,
      source=f"{os.path.basename(path)} ({found.usage_text})",
  )
  logging.info("Loaded %d images from %s: %s", len(faces), faces.source,
               faces.class_counts())
  return faces


def _report_bad_rows(path: str, problems: dict[int, str],
                     skip_bad_rows: bool) -> None:
  if not problems:
    return
  bad_lines = sorted(problems)
  first = bad_lines[0]
  if not skip_bad_rows:
    raise DataError(f"{path} line {first}: {problems[first]}")
  listed = ", ".join(str(line) for line in bad_lines[:_MAX_LINES_LISTED])
  more = ", ..." if len(bad_lines) > _MAX_LINES_LISTED else ""
  logging.warning("%s: skipped %d bad rows (lines %s%s); first: line %d: %s",
                  path, len(bad_lines), listed, more, first, problems[first])


def _open_csv(path: str):
  """Opens the file for reading bytes, decompressing gzip by magic bytes."""
  if not os.path.exists(path):
    raise DataError(f"{path}: no such file or directory")
  if os.path.isdir(path):
    raise DataError(f"{path}: is a directory, expected a FER2013 csv file")
  try:
    with open(path, "rb") as f:
      magic = f.read(2)
  except OSError as e:
    raise DataError(f"{path}: cannot read ({e.strerror})") from None
  if not magic:
    raise DataError(f"{path}: file is empty")
  return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def _scan_csv(path: str, names: tuple[str, ...], usage) -> _CsvRows:
  """One pass over the file: checks labels, selects rows, keeps their pixels.

  The body is split by hand rather than with a csv reader: it is 30k lines of
  ~9 kB, and keeping only the selected rows' pixel bytes is what makes
  loading fast. Lines containing a quote still go through the csv module.
  """
  try:
    with _open_csv(path) as f:
      columns, width = _read_header(path, f.readline())
      usage_keys, usage_text = _usage_request(usage)
      if usage_keys is not None and "usage" not in columns:
        logging.warning("%s has no Usage column: ignoring usage=%s, using all "
                        "rows", path, usage_text)
        usage_keys, usage_text = None, "all"
      class_of_fer = emotions_lib.fer_to_class_ids(names)
      found = _CsvRows([], [], [], {}, 0, usage_text)
      for line_number, line in enumerate(f, start=2):
        _scan_line(line, line_number, columns, width, class_of_fer,
                   usage_keys, found)
      return found
  except (gzip.BadGzipFile, EOFError, zlib.error) as e:
    raise DataError(f"{path}: cannot decompress gzip data ({e})") from None


def _read_header(path: str, header: bytes) -> tuple[dict[str, int], int]:
  """Column positions by lowercased name, and the number of columns."""
  try:
    text = header.decode("utf-8-sig").strip()
  except UnicodeDecodeError:
    raise DataError(f"{path}: not a CSV text file (header is not UTF-8 text)"
                   ) from None
  if not text:
    raise DataError(f"{path}: file is empty" if not header
                    else f"{path}: first line is empty, expected a header")
  fields = next(csv.reader([text]))
  columns = {}
  for i, name in enumerate(fields):
    columns.setdefault(name.strip().lower(), i)
  for required in ("emotion", "pixels"):
    if required not in columns:
      raise DataError(f"{path}: missing column '{required}' "
                      f"(header has: {', '.join(fields)})")
  return columns, len(fields)


def _usage_request(usage) -> tuple[set[bytes] | None, str]:
  """Lowercased Usage values to keep (None: all), and how to describe them."""
  if usage is None or (isinstance(usage, str)
                       and usage.strip().lower() == "all"):
    return None, "all"
  wanted = [usage] if isinstance(usage, str) else list(usage)
  return ({str(u).strip().lower().encode() for u in wanted},
          "/".join(str(u) for u in wanted))


def _scan_line(line: bytes, line_number: int, columns: dict[str, int],
               width: int, class_of_fer: dict[int, int],
               usage_keys: set[bytes] | None, found: _CsvRows) -> None:
  """Checks one data line and appends it to `found` if it is selected."""
  line = line.rstrip(b"\r\n")
  if not line.strip():
    return  # Blank lines, e.g. at the end, are not rows.
  found.num_rows += 1
  if b'"' in line:
    fields = [f.encode() for f in next(csv.reader(
        [line.decode("utf-8", errors="replace")]))]
  else:
    fields = line.split(b",")
  if len(fields) != width:
    found.problems[line_number] = f"{len(fields)} fields, expected {width}"
    return
  fer, problem = _parse_label(fields[columns["emotion"]])
  if problem:
    found.problems[line_number] = problem
    return
  if usage_keys is not None and (
      fields[columns["usage"]].strip().lower() not in usage_keys):
    return
  if fer not in class_of_fer:
    return
  found.lines.append(line_number)
  found.classes.append(class_of_fer[fer])
  found.pixels.append(fields[columns["pixels"]])


_FER_LABELS = {str(i).encode(): i
               for i in range(len(emotions_lib.FER2013_EMOTIONS))}


def _parse_label(text: bytes) -> tuple[int, str | None]:
  """FER2013 label id, or (-1, problem)."""
  fer = _FER_LABELS.get(text)
  if fer is not None:
    return fer, None
  shown = text.strip().decode("utf-8", errors="replace")
  if not shown:
    return -1, "'emotion' label is empty"
  try:
    fer = int(shown)
  except ValueError:
    return -1, f"'emotion' label {shown[:20]!r} is not an integer"
  top = len(emotions_lib.FER2013_EMOTIONS) - 1
  if not 0 <= fer <= top:
    return -1, f"'emotion' label {fer} is out of range 0..{top}"
  return fer, None


def _parse_pixels(texts: Sequence[bytes]) -> tuple[np.ndarray, dict[int, str]]:
  """Pixel fields -> uint8 [len(texts), 2304] and {row index: problem}.

  Rows with a problem are left as zeros. Parsing is vectorised over chunks of
  rows; only rows the vectorised checks flag are looked at one by one, to say
  precisely what is wrong with them.
  """
  out = np.zeros((len(texts), FER_PIXELS), np.uint8)
  problems = {}
  for start in range(0, len(texts), _PARSE_CHUNK_ROWS):
    chunk = texts[start:start + _PARSE_CHUNK_ROWS]
    values, bad = _parse_pixel_chunk(chunk)
    out[start:start + len(chunk)][~bad] = values
    for i in np.flatnonzero(bad):
      problems[start + int(i)] = _pixel_problem(chunk[i])
  return out, problems


def _parse_pixel_chunk(texts: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
  """Vectorised parse of blank-separated integers 0..255, 2304 per row.

  Returns uint8 [good rows, 2304] and a bool "bad" per row.
  """
  n = len(texts)
  blob = b"\n" + b"\n".join(texts) + b"\n"
  # Row r lies between the line breaks at breaks[r] and breaks[r + 1].
  lengths = np.fromiter(map(len, texts), np.int64, n)
  breaks = np.concatenate([[0], np.cumsum(lengths + 1)])
  chars = np.frombuffer(blob, np.uint8)
  digits = chars - np.uint8(ord("0"))
  is_digit = digits < 10
  bad = np.zeros(n, bool)

  blanks = (chars == ord(" ")) | (chars == ord("\t")) | (chars == ord("\r"))
  expected = np.count_nonzero(is_digit) + np.count_nonzero(blanks) + n + 1
  if expected != len(chars):
    stray = ~(is_digit | blanks | (chars == ord("\n")))
    bad[np.searchsorted(breaks, np.flatnonzero(stray), "right") - 1] = True
  # More than three digits in a row can't be 0..255 (leading zeros aside).
  long_run = is_digit[3:] & is_digit[2:-1] & is_digit[1:-2] & is_digit[:-3]
  if long_run.any():
    bad[np.searchsorted(breaks, np.flatnonzero(long_run), "right") - 1] = True

  # The value of the (up to) three digits ending at each position; read off
  # at the last digit of every number.
  ones = (digits * is_digit).astype(np.uint16)
  value = ones.copy()
  value[1:] += ones[:-1] * np.uint16(10)
  value[2:] += ones[:-2] * is_digit[1:-1] * np.uint16(100)
  last = is_digit.copy()
  last[:-1] &= ~is_digit[1:]
  counts = np.add.reduceat(last, breaks[:-1], dtype=np.int64)
  bad |= counts != FER_PIXELS
  values = value[last]
  too_big = values > 255
  if too_big.any():
    bad[np.repeat(np.arange(n), counts)[too_big]] = True
  if bad.any():
    values = values[np.repeat(~bad, counts)]
  return values.astype(np.uint8).reshape(-1, FER_PIXELS), bad


def _pixel_problem(text: bytes) -> str:
  """Says what is wrong with one pixel field the vectorised check flagged."""
  tokens = text.decode("utf-8", errors="replace").split()
  if not tokens:
    return "'pixels' is empty"
  for token in tokens:
    if token.isascii() and token.isdigit():
      if int(token) > 255:
        return f"'pixels' value {int(token)} is out of range 0..255"
      if len(token) > 3:
        return f"'pixels' value {token!r} has more than 3 digits"
      continue
    try:
      number = int(token)
    except ValueError:
      return f"'pixels' value {token[:20]!r} is not a number"
    if 0 <= number <= 255:
      return f"'pixels' value {token[:20]!r} is not a plain number"
    return f"'pixels' value {number} is out of range 0..255"
  if len(tokens) != FER_PIXELS:
    return f"'pixels' has {len(tokens)} values, expected {FER_PIXELS}"
  return "'pixels' is malformed"


def _resize(images: np.ndarray, image_size: int) -> np.ndarray:
  """uint8 [N, h, w, 1] -> uint8 [N, image_size, image_size, 1]."""
  if images.shape[1:3] == (image_size, image_size):
    return images
  # Area averaging for shrinking (no aliasing); bilinear for enlarging, where
  # area would just replicate pixels into blocks.
  shrink = images.shape[1] >= image_size and images.shape[2] >= image_size
  out = np.empty((len(images), image_size, image_size, 1), np.uint8)
  for start in range(0, len(images), _RESIZE_CHUNK):  # Bounds float memory.
    resized = tf.image.resize(
        tf.convert_to_tensor(images[start:start + _RESIZE_CHUNK], tf.float32),
        [image_size, image_size], method="area" if shrink else "bilinear",
        antialias=not shrink)
    out[start:start + _RESIZE_CHUNK] = np.clip(
        np.rint(resized.numpy()), 0, 255).astype(np.uint8)
  return out


# ---------------------------------------------------------------------------
# Image folders


def load_image_folder(root, emotions: Sequence[str] = DEFAULT_EMOTIONS, *,
                      image_size: int = FER_SIZE) -> FaceSet:
  """Loads `root/<emotion>/*.{png,jpg,jpeg,bmp,gif}` as gray faces.

  Emotion folder names match case-insensitively; folders of emotions not
  asked for (or not emotions at all) are ignored, and an asked-for emotion
  without a folder is fine as long as some image is found. Images of any size
  and colour become gray `image_size` squares (no cropping: non-square images
  are squeezed).

  Raises:
    DataError: missing root, an unreadable image (naming the file), or no
      images at all.
  """
  root = os.fspath(root)
  names = emotions_lib.parse_emotions(emotions)
  if not os.path.isdir(root):
    raise DataError(f"{root}: no such directory")
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
    raise DataError(
        f"{root}: no images found for {', '.join(names)} (expected "
        f"sub-folders named after the emotions, e.g. {root}/{names[0]}/*.png)")
  images = np.stack([_read_image(path, image_size) for path in files])
  faces = FaceSet(images=images, labels=np.asarray(labels, np.int32),
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
    raise DataError(str(e)) from None
  except OSError as e:
    raise DataError(f"{path}: cannot read image ({os.strerror(e.errno) if e.errno else e})"
                    ) from None
  except tf.errors.OpError as e:
    raise DataError(f"{path}: cannot read image ({_tf_reason(e)})") from None
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
# One entry point for every source


def load_faces(source: str, emotions: Sequence[str] = DEFAULT_EMOTIONS, *,
               split: str = "train", usage: str | Sequence[str] | None = None,
               skip_bad_rows: bool = False, image_size: int = FER_SIZE,
               synthetic_identities: int = 200, seed: int = 0) -> FaceSet:
  """Loads one split of faces from `source`.

  Sources:
    "synthetic": procedural faces (see synthetic.py). The train split has
      `synthetic_identities` identities drawn with `seed`; validation and test
      have max(16, synthetic_identities // 4) held-out identities drawn with
      seed + 1_000_003 (test adds a further 1 to stay apart from validation).
    A file (usually .csv or .csv.gz): the FER2013 csv. Rows are chosen by
      `usage` or, if None, by the split: train -> Training,
      validation -> PublicTest, test -> PrivateTest.
    A directory: images in emotion-named folders. If the directory has split
      folders (train/training, validation/val/valid/publictest,
      test/privatetest, any case), the split's folder is used, e.g.
      root/train/happy/*.png, and a missing one is an error. Otherwise the
      directory itself holds the emotion folders and is the train split only;
      asking it for validation or test is an error.

  Raises:
    DataError: for anything wrong with the source, as one line.
  """
  if split not in SPLITS:
    raise DataError(
        f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
  names = emotions_lib.parse_emotions(emotions)
  source = os.fspath(source)
  if source.strip().lower() == "synthetic":
    from faceexpr_tf import synthetic  # Lazy: synthetic imports this module.
    if split == "train":
      return synthetic.synthetic_faceset(synthetic_identities, seed, names,
                                         image_size)
    heldout_seed = seed + SYNTHETIC_HELDOUT_SEED_OFFSET + (split == "test")
    return synthetic.synthetic_faceset(max(16, synthetic_identities // 4),
                                       heldout_seed, names, image_size)
  if not os.path.exists(source):
    raise DataError(f"{source}: no such file or directory")
  if os.path.isdir(source):
    return load_image_folder(_split_folder(source, split), names,
                             image_size=image_size)
  return load_fer2013_csv(
      source, names, usage if usage is not None else SPLIT_USAGE[split],
      skip_bad_rows=skip_bad_rows, image_size=image_size)


def _split_folder(root: str, split: str) -> str:
  """The folder holding `split`'s emotion folders (see load_faces)."""
  subdirs = {e.name.lower(): e.path for e in os.scandir(root) if e.is_dir()}
  known = {alias for aliases in SPLIT_FOLDERS.values() for alias in aliases}
  present = sorted(name for name in subdirs if name in known)
  for alias in SPLIT_FOLDERS[split]:
    if alias in subdirs:
      return subdirs[alias]
  if present:
    raise DataError(f"{root}: no {split!r} folder (found split folders: "
                    f"{', '.join(present)})")
  if split != "train":
    raise DataError(
        f"{root}: holds emotion folders without split folders, so it only has "
        f"a train split; put {split} images in {root}/{split}/<emotion>/")
  return root


# ---------------------------------------------------------------------------
# tf.data pipelines


def steps_per_epoch(faces: FaceSet, batch_size: int) -> int:
  """Full batches per epoch (the remainder is dropped)."""
  steps = len(faces) // batch_size
  if steps == 0:
    raise DataError(f"{faces.source}: {len(faces)} images is less than one "
                    f"batch of {batch_size}")
  return steps


def make_train_dataset(faces: FaceSet, batch_size: int, *, seed: int,
                       start_step: int = 0, num_steps: int | None = None,
                       flip: bool = True) -> tf.data.Dataset:
  """Shuffled training batches, reproducible from (seed, global step).

  Epoch e visits the images in the order stateless_shuffle(range(N), [seed, e])
  in full batches; global batch b = e * steps_per_epoch + i. The stream starts
  at batch `start_step`, so a resumed run sees exactly the batches it would
  have seen, and yields `num_steps` batches (None: forever).

  Yields:
    (images float32 [B, H, W, 1] in [-1, 1], label_org int32 [B],
     label_trg int32 [B]) with label_trg != label_org for every example, both
    the targets and the horizontal flips drawn from (seed, b).
  """
  num_classes = _check_classes(faces)
  spe = steps_per_epoch(faces, batch_size)
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}")
  with tf.device("/cpu:0"):  # The input pipeline runs on the host anyway.
    images = tf.convert_to_tensor(faces.images)
    labels = tf.convert_to_tensor(faces.labels, tf.int32)
  n = len(faces)
  seed = int(seed)

  def epoch_batches(epoch):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int32),
        seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    index = tf.reshape(order[:spe * batch_size], [spe, batch_size])
    step = epoch * spe + tf.range(spe, dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices((step, index))

  def make_batch(step, index):
    target_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(
        tf.stack([tf.constant(seed, tf.int64), step]), num=2))
    label_org = tf.gather(labels, index)
    label_trg = _shifted_targets(label_org, num_classes, target_seed)
    batch = tf.gather(images, index)
    if flip:
      mirror = tf.random.stateless_uniform([batch_size], seed=flip_seed) < 0.5
      batch = tf.where(mirror[:, None, None, None],
                       tf.reverse(batch, axis=[2]), batch)
    shape = (batch_size,) + faces.images.shape[1:]
    return (tf.ensure_shape(_scale(batch), shape),
            tf.ensure_shape(label_org, [batch_size]),
            tf.ensure_shape(label_trg, [batch_size]))

  start_epoch, offset = divmod(int(start_step), spe)
  ds = tf.data.Dataset.counter(start_epoch).flat_map(epoch_batches)
  ds = ds.skip(offset)
  if num_steps is not None:
    ds = ds.take(num_steps)
  ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(faces: FaceSet, batch_size: int, *,
                      seed: int = 0) -> tf.data.Dataset:
  """Every image once, in order, batched (last batch may be short), no flip.

  Targets are fixed by `seed` and always differ from the source label.
  """
  num_classes = _check_classes(faces)
  rng = np.random.default_rng(seed)
  shift = rng.integers(1, num_classes, size=len(faces), dtype=np.int32)
  targets = ((faces.labels + shift) % num_classes).astype(np.int32)
  ds = tf.data.Dataset.from_tensor_slices(
      (faces.images, faces.labels.astype(np.int32), targets))
  ds = ds.batch(batch_size).map(lambda x, org, trg: (_scale(x), org, trg))
  return ds.prefetch(tf.data.AUTOTUNE)


def _check_classes(faces: FaceSet) -> int:
  num_classes = len(faces.emotions)
  if num_classes < 2:
    raise DataError(f"{faces.source}: translating needs at least 2 emotions, "
                    f"got {', '.join(faces.emotions)}")
  return num_classes


def _shifted_targets(label_org, num_classes: int, seed):
  """Random target classes, never equal to the source class."""
  shift = tf.random.stateless_uniform(tf.shape(label_org), seed=seed, minval=1,
                                      maxval=num_classes, dtype=tf.int32)
  return (label_org + shift) % num_classes


def _scale(images):
  return tf.cast(images, tf.float32) / 127.5 - 1.0
