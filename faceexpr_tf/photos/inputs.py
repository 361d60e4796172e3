"""What `translate --input` names: files, folders, globs and fer2013 csv files, and the
output stems they get."""

import glob
import os

from faceexpr_tf.photos import faces

_CSV_SUFFIXES = (".csv", ".csv.gz")


def split_inputs(values) -> list[str]:
  """Repeated and comma-separated --input values -> paths (globs expanded).

  A value that exists as a path is kept whole, so file names with commas still work.
  """
  paths = []
  for value in values or ():
    parts = [value] if os.path.exists(value) else [p.strip() for p in value.split(",")]
    for part in filter(None, parts):
      matches = sorted(glob.glob(part)) if glob.has_magic(part) else []
      paths.extend(matches or [part])
  return paths


def empty_folder_error(path: str) -> faces.ImageReadError:
  """The error for a folder --input that holds no image (expand_inputs keeps it as is)."""
  return faces.ImageReadError(f"{path}: no image files in this folder "
                              f"({', '.join(faces.IMAGE_EXTENSIONS[:4])}, ...)")


def is_csv(path: str) -> bool:
  return path.lower().endswith(_CSV_SUFFIXES)


def expand_inputs(paths) -> list[str]:
  """Folders -> their image files (sorted, not recursive); other paths stay as given.

  An empty folder stays as itself, so processing it reports the problem.
  """
  out = []
  for path in paths:
    if os.path.isdir(path):
      images = sorted(os.path.join(path, name) for name in os.listdir(path)
                      if name.lower().endswith(faces.IMAGE_EXTENSIONS)
                      and os.path.isfile(os.path.join(path, name)))
      out.extend(images or [path])
    else:
      out.append(path)
  return out


def unique_stem(path: str, used: set) -> str:
  """File stem for outputs; a second 'a.jpg' (other folder, or a.png) gets 'a_2'."""
  name = os.path.basename(os.path.normpath(path))
  for suffix in _CSV_SUFFIXES:
    if name.lower().endswith(suffix):
      name = name[:-len(suffix)]
      break
  else:
    name = os.path.splitext(name)[0]
  stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "image"
  candidate, n = stem, 1
  while candidate in used:
    n += 1
    candidate = f"{stem}_{n}"
  used.add(candidate)
  return candidate
