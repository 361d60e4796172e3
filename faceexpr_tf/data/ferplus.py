"""FER+ crowd labels for FER2013's rows: ten taggers' votes per image -> one label.

Microsoft's FER+ (Barsoum et al. 2016, MIT licence) relabelled every FER2013 image with
10 crowd taggers. A votes file holds, in the row order of the FER2013 csv it belongs to,
how many taggers chose each of neutral, happiness, surprise, sadness, anger, disgust,
fear, contempt, unknown and NF (not a face). Two layouts are read:

- Microsoft's `fer2013new.csv`: `Usage,Image name,neutral,...,NF`, for the original
  Kaggle `fer2013.csv` (rows in its order; rows without a FER+ image have an empty name);
- `ferplus.csv.gz` beside our shared FER2013 copy: `ferplus_name,neutral,...,NF` (empty
  fields where FER+ has no image).

Labels, by the FER+ paper's schemes (`scheme`):

- "majority": the emotion more than half of the votes chose (the paper's majority vote);
- "plurality": the emotion with the most votes, when no other ties it.

A row is dropped (label -1) when it has no votes, when no emotion wins by the scheme,
when the winner is `unknown` or `NF`, or when it is `contempt` (no FER2013 class). The
winner is returned as a FER2013 label id (0 Angry ... 6 Neutral), so the csv parser
selects and maps rows exactly as it does FER2013's own labels.
"""

import collections
import csv
import gzip
import io
import os

import numpy as np

from faceexpr_tf.data import faceset

VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                "contempt", "unknown", "nf")
# FER+ vote column -> FER2013 label id (emotions.FER2013_EMOTIONS order); None: dropped.
FER_ID = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5,
          "neutral": 6, "contempt": None, "unknown": None, "nf": None}
SCHEMES = ("majority", "plurality")
LABELS = ("fer2013", "ferplus")


class VotesError(faceset.DataError):
  """A votes file that cannot be read or does not fit the csv it is used with."""


def read_votes(path: str) -> np.ndarray:
  """float32 [rows, 10] vote counts in VOTE_COLUMNS order; NaN where a row has none."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise VotesError(f"{path}: no such FER+ votes file (--ferplus: Microsoft's "
                     "fer2013new.csv, or ferplus.csv.gz beside a FER2013 copy)")
  try:
    with open(path, "rb") as f:
      raw = f.read()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8-sig")
  except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as e:
    raise VotesError(f"{path}: cannot read the FER+ votes ({e})") from None
  reader = csv.reader(io.StringIO(text))
  header = [h.strip().lower() for h in next(reader, [])]
  missing = [c for c in VOTE_COLUMNS if c not in header]
  if missing:
    raise VotesError(f"{path}: not a FER+ votes file: no column(s) {', '.join(missing)} "
                     f"(header: {', '.join(header) or 'empty'})")
  index = [header.index(c) for c in VOTE_COLUMNS]
  rows = []
  for line, fields in enumerate(reader, start=2):
    if not fields:
      continue
    try:
      values = [fields[i].strip() for i in index]
    except IndexError:
      raise VotesError(f"{path} line {line}: {len(fields)} fields, expected "
                       f"{len(header)}") from None
    if not any(values):
      rows.append([np.nan] * len(VOTE_COLUMNS))
      continue
    try:
      counts = [float(v) for v in values]
    except ValueError:
      raise VotesError(f"{path} line {line}: a vote count is not a number: "
                       f"{','.join(values)}") from None
    if min(counts) < 0:
      raise VotesError(f"{path} line {line}: a negative vote count")
    rows.append(counts)
  if not rows:
    raise VotesError(f"{path}: no rows of votes")
  return np.asarray(rows, np.float32)


def labels_from_votes(votes: np.ndarray, scheme: str = "majority"
                      ) -> tuple[np.ndarray, dict[str, int]]:
  """(FER2013 label id per row, -1 where dropped; {reason: rows dropped})."""
  if scheme not in SCHEMES:
    raise ValueError(f"unknown FER+ label scheme {scheme!r} (choose from "
                     f"{', '.join(SCHEMES)})")
  votes = np.asarray(votes, np.float64)
  labels = np.full(len(votes), -1, np.int64)
  dropped = collections.Counter()
  has = np.isfinite(votes).all(axis=1) & (np.nan_to_num(votes).sum(axis=1) > 0)
  dropped["no votes"] = int((~has).sum())
  safe = np.where(has[:, None], np.nan_to_num(votes), 0.0)
  top = safe.argmax(axis=1)
  best = safe.max(axis=1)
  if scheme == "majority":
    wins = best > 0.5 * safe.sum(axis=1)
  else:
    wins = (safe == best[:, None]).sum(axis=1) == 1
  dropped["no " + scheme] = int((has & ~wins).sum())
  for column, name in enumerate(VOTE_COLUMNS):
    chosen = has & wins & (top == column)
    if FER_ID[name] is None:
      dropped[name if name != "nf" else "not a face"] = int(chosen.sum())
    else:
      labels[chosen] = FER_ID[name]
  return labels, {k: v for k, v in dropped.items() if v}
