"""The FER2013 csv (Kaggle layout: emotion, pixels, Usage) -> FaceSet.

One streaming pass over the (optionally gzipped) file selects rows by Usage and class,
then parses the 'pixels' fields in vectorised chunks. Every bad row is named by its line
number in one DataError, or skipped and counted with skip_bad_rows.
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

from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.data import faceset
from faceexpr_tf.data import ferplus as ferplus_lib

FER_PIXELS = faceset.FER_SIZE * faceset.FER_SIZE
# FER2013 Usage values for each split (the Kaggle names).
SPLIT_USAGE = {"train": "Training", "validation": "PublicTest",
               "test": "PrivateTest"}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_LINES_LISTED = 5
# Rows parsed per vectorised step; bounds the temporaries (~20 MB of text).
_PARSE_CHUNK_ROWS = 2048
_RESIZE_CHUNK = 4096


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
  usage_rows: list[int] = dataclasses.field(default_factory=list)  # rows of that Usage


def load_fer2013_csv(path, emotions: Sequence[str] = emotions_lib.DEFAULT_EMOTIONS,
                     usage: str | Sequence[str] | None = "Training", *,
                     skip_bad_rows: bool = False,
                     image_size: int = faceset.FER_SIZE, ferplus: str | None = None,
                     ferplus_scheme: str = "majority") -> faceset.FaceSet:
  """Loads the Kaggle FER2013 csv (`emotion,pixels[,Usage]`), plain or gzip.

  Args:
    path: the csv file; gzip is recognised by its magic bytes, not its name.
    emotions: emotions to keep; class id = position in this sequence. Rows
      of other emotions are simply not selected.
    usage: Usage value(s) to keep, case-insensitive; None or "all" keeps all
      rows. Ignored, with a warning, when the file has no Usage column.
    skip_bad_rows: skip malformed rows with a warning instead of failing.
    image_size: output size; FER2013's 48x48 pixels are resized if different.
    ferplus: a FER+ votes file for this csv (ferplus.py): rows are labelled by the
      crowd's vote (ferplus_scheme: majority or plurality) instead of the csv's own
      emotion column, and rows the crowd gives no usable label are dropped and counted.

  Returns:
    The selected faces, in file order. Every row's label and field count are
    checked, but only selected rows have their pixels parsed and checked.

  Raises:
    faceset.DataError: naming the file and, for a bad row, its line number as an
      editor shows it (the header is line 1). Quoted fields may not span
      lines (FER2013 never does), or the line numbers would be off.
  """
  path = os.fspath(path)
  names = emotions_lib.parse_emotions(emotions)
  votes = relabel = None
  if ferplus is not None:
    votes = ferplus_lib.read_votes(ferplus)
    relabel, _ = ferplus_lib.labels_from_votes(votes, ferplus_scheme)
  found = _scan_csv(path, names, usage, relabel)
  if votes is not None:
    _report_ferplus(path, ferplus, votes, found, ferplus_scheme)
  pixels, pixel_problems = _parse_pixels(found.pixels)
  problems = dict(found.problems)
  for i, problem in pixel_problems.items():
    problems[found.lines[i]] = problem
  _report_bad_rows(path, problems, skip_bad_rows)

  good = np.ones(len(found.lines), bool)
  good[list(pixel_problems)] = False
  if not good.any():
    raise faceset.DataError(
        f"{path}: no images of {', '.join(names)} with Usage "
        f"{found.usage_text} (file has {found.num_rows} rows)")
  images = pixels[good].reshape(-1, faceset.FER_SIZE, faceset.FER_SIZE, 1)
  faces = faceset.FaceSet(
      images=_resize(images, image_size),
      labels=np.asarray(found.classes, np.int32)[good],
      emotions=names,
      source=f"{os.path.basename(path)} ({found.usage_text}"
             + (f", FER+ {ferplus_scheme} labels)" if ferplus else ")"),
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
    raise faceset.DataError(f"{path} line {first}: {problems[first]}")
  listed = ", ".join(str(line) for line in bad_lines[:_MAX_LINES_LISTED])
  more = ", ..." if len(bad_lines) > _MAX_LINES_LISTED else ""
  logging.warning("%s: skipped %d bad rows (lines %s%s); first: line %d: %s",
                  path, len(bad_lines), listed, more, first, problems[first])


def _open_csv(path: str):
  """Opens the file for reading bytes, decompressing gzip by magic bytes."""
  if not os.path.exists(path):
    raise faceset.DataError(f"{path}: no such file or directory")
  if os.path.isdir(path):
    raise faceset.DataError(f"{path}: is a directory, expected a FER2013 csv file")
  try:
    with open(path, "rb") as f:
      magic = f.read(2)
  except OSError as e:
    raise faceset.DataError(f"{path}: cannot read ({e.strerror})") from None
  if not magic:
    raise faceset.DataError(f"{path}: file is empty")
  return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def _report_ferplus(path, ferplus, votes, found: _CsvRows, scheme: str):
  """Refuses votes of another csv; logs what the crowd's labels kept and dropped."""
  if len(votes) != found.num_rows:
    raise ferplus_lib.VotesError(
        f"{ferplus}: {len(votes)} rows of votes for {path}'s {found.num_rows} rows: the "
        "votes file must be the one for this csv, in its row order")
  _, dropped = ferplus_lib.labels_from_votes(votes[found.usage_rows], scheme)
  logging.info("%s: FER+ %s labels from %s: kept %d of %d %s rows; dropped %s", path,
               scheme, os.path.basename(ferplus), len(found.lines), len(found.usage_rows),
               found.usage_text, ", ".join(f"{n} {why}" for why, n in dropped.items())
               or "none")


def _scan_csv(path: str, names: tuple[str, ...], usage,
              relabel: np.ndarray | None = None) -> _CsvRows:
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
                   usage_keys, found, relabel)
      return found
  except (gzip.BadGzipFile, EOFError, zlib.error) as e:
    raise faceset.DataError(f"{path}: cannot decompress gzip data ({e})") from None


def _read_header(path: str, header: bytes) -> tuple[dict[str, int], int]:
  """Column positions by lowercased name, and the number of columns."""
  try:
    text = header.decode("utf-8-sig").strip()
  except UnicodeDecodeError:
    raise faceset.DataError(f"{path}: not a CSV text file (header is not UTF-8 text)"
                   ) from None
  if not text:
    raise faceset.DataError(f"{path}: file is empty" if not header
                    else f"{path}: first line is empty, expected a header")
  fields = next(csv.reader([text]))
  columns = {}
  for i, name in enumerate(fields):
    columns.setdefault(name.strip().lower(), i)
  for required in ("emotion", "pixels"):
    if required not in columns:
      raise faceset.DataError(f"{path}: missing column '{required}' "
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
               usage_keys: set[bytes] | None, found: _CsvRows,
               relabel: np.ndarray | None = None) -> None:
  """Checks one data line and appends it to `found` if it is selected (by its own label,
  or by relabel[row]: a FER2013 label id per data row, -1 to drop)."""
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
  if relabel is not None:
    row = found.num_rows - 1
    found.usage_rows.append(row)
    fer = int(relabel[row]) if row < len(relabel) else -1
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

