"""One entry point for every source of faces: 'synthetic', a FER2013 csv or an image folder."""

import os
from collections.abc import Sequence

from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.data import faceset
from faceexpr_tf.data import fer2013
from faceexpr_tf.data import ferplus as ferplus_lib
from faceexpr_tf.data import folders
from faceexpr_tf.data import synthetic

# Sub-folder names accepted for each split in image-folder datasets.
SPLIT_FOLDERS = {
    "train": ("train", "training"),
    "validation": ("validation", "val", "valid", "publictest"),
    "test": ("test", "privatetest"),
}
SYNTHETIC_HELDOUT_SEED_OFFSET = 1_000_003



def load_faces(source: str, emotions: Sequence[str] = emotions_lib.DEFAULT_EMOTIONS, *,
               split: str = "train", usage: str | Sequence[str] | None = None,
               skip_bad_rows: bool = False, image_size: int = faceset.FER_SIZE,
               synthetic_identities: int = 200, seed: int = 0, labels: str = "fer2013",
               ferplus: str | None = None, ferplus_scheme: str = "majority"
               ) -> faceset.FaceSet:
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

  labels="ferplus" labels a FER2013 csv's rows by the FER+ crowd's votes in the file
  `ferplus` (data/ferplus.py, ferplus_scheme: majority or plurality) instead of its own
  emotion column; it is for csv sources only.

  Raises:
    faceset.DataError: for anything wrong with the source, as one line.
  """
  if split not in faceset.SPLITS:
    raise faceset.DataError(
        f"unknown split {split!r} (choose from {', '.join(faceset.SPLITS)})")
  names = emotions_lib.parse_emotions(emotions)
  source = os.fspath(source)
  votes = _votes_file(source, labels, ferplus)
  if source.strip().lower() == "synthetic":
    if split == "train":
      return synthetic.synthetic_faceset(synthetic_identities, seed, names,
                                         image_size)
    heldout_seed = seed + SYNTHETIC_HELDOUT_SEED_OFFSET + (split == "test")
    return synthetic.synthetic_faceset(max(16, synthetic_identities // 4),
                                       heldout_seed, names, image_size)
  if not os.path.exists(source):
    raise faceset.DataError(f"{source}: no such file or directory")
  if os.path.isdir(source):
    return folders.load_image_folder(_split_folder(source, split), names,
                             image_size=image_size)
  return fer2013.load_fer2013_csv(
      source, names, usage if usage is not None else fer2013.SPLIT_USAGE[split],
      skip_bad_rows=skip_bad_rows, image_size=image_size, ferplus=votes,
      ferplus_scheme=ferplus_scheme)


def _votes_file(source: str, labels: str, ferplus: str | None) -> str | None:
  """The FER+ votes file to label `source` with, or None for its own labels."""
  if labels not in ferplus_lib.LABELS:
    raise faceset.DataError(f"unknown labels {labels!r} (choose from "
                            f"{', '.join(ferplus_lib.LABELS)})")
  if labels == "fer2013":
    if ferplus:
      raise faceset.DataError(f"--ferplus={ferplus} is read only with --labels=ferplus")
    return None
  if not ferplus:
    raise faceset.DataError("--labels=ferplus needs --ferplus=<votes csv>: Microsoft's "
                            "fer2013new.csv for the original fer2013.csv, or "
                            "ferplus.csv.gz beside our FER2013 copy")
  if source.strip().lower() == "synthetic" or os.path.isdir(source):
    raise faceset.DataError(f"--labels=ferplus relabels a FER2013 csv; --data={source} "
                            "is not one")
  return ferplus


def _split_folder(root: str, split: str) -> str:
  """The folder holding `split`'s emotion folders (see load_faces)."""
  subdirs = {e.name.lower(): e.path for e in os.scandir(root) if e.is_dir()}
  known = {alias for aliases in SPLIT_FOLDERS.values() for alias in aliases}
  present = sorted(name for name in subdirs if name in known)
  for alias in SPLIT_FOLDERS[split]:
    if alias in subdirs:
      return subdirs[alias]
  if present:
    raise faceset.DataError(f"{root}: no {split!r} folder (found split folders: "
                    f"{', '.join(present)})")
  if split != "train":
    raise faceset.DataError(
        f"{root}: holds emotion folders without split folders, so it only has "
        f"a train split; put {split} images in {root}/{split}/<emotion>/")
  return root


# ---------------------------------------------------------------------------
