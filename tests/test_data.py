"""Tests for faceexpr_tf.data: FER2013 csv, image folders and tf.data."""

import gzip
import logging as std_logging
import os
import re
import struct

import numpy as np
import pytest
import tensorflow as tf

from faceexpr_tf import errors
from faceexpr_tf.data import faceset
from faceexpr_tf.data import fer2013
from faceexpr_tf.data import folders
from faceexpr_tf.data import loader
from faceexpr_tf.data import pipeline

HEADER = "emotion,pixels,Usage"


# ---------------------------------------------------------------------------
# Fixture helpers


def _pixels(seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, 2304, dtype=np.uint8)


def _row(label, pixels, usage="Training") -> str:
  text = pixels if isinstance(pixels, str) else " ".join(map(str, pixels))
  return f"{label},{text},{usage}" if usage is not None else f"{label},{text}"


def _write(path, lines, *, compress=False, newline="\n"):
  content = (newline.join(lines) + newline).encode()
  if compress:
    content = gzip.compress(content)
  path.write_bytes(content)
  return path


def _good_csv(tmp_path, name="fer.csv", compress=False):
  """Seven rows, one per FER id 0..6, then two PublicTest rows (ids 3, 0).

  Row i (line i + 2) has pixels _pixels(i).
  """
  rows = [_row(fer, _pixels(fer)) for fer in range(7)]
  rows += [_row(3, _pixels(7), "PublicTest"), _row(0, _pixels(8), "PublicTest")]
  return _write(tmp_path / name, [HEADER] + rows, compress=compress)


def _images(*seeds):
  return np.stack([_pixels(s).reshape(48, 48, 1) for s in seeds])


# ---------------------------------------------------------------------------
# FER2013 csv: good files


@pytest.mark.parametrize("name,compress", [
    ("fer.csv", False), ("fer.csv.gz", True),
    ("gzip_named_csv.csv", True),  # gzip found by magic bytes, not the name.
])
def test_csv_loads_pixels_and_default_classes(tmp_path, name, compress):
  path = _good_csv(tmp_path, name, compress)
  faces = fer2013.load_fer2013_csv(path)
  # Defaults Angry, Happy, Sad, Surprise = FER ids 0, 3, 4, 5 -> classes 0..3.
  assert faces.emotions == ("Angry", "Happy", "Sad", "Surprise")
  np.testing.assert_array_equal(faces.labels, [0, 1, 2, 3])
  assert faces.labels.dtype == np.int32
  assert faces.images.dtype == np.uint8
  np.testing.assert_array_equal(faces.images, _images(0, 3, 4, 5))
  assert faces.identities is None
  assert faces.source == f"{name} (Training)"
  assert faces.class_counts() == {"Angry": 1, "Happy": 1, "Sad": 1,
                                  "Surprise": 1}


def test_csv_usage_filter(tmp_path):
  path = _good_csv(tmp_path)
  public = fer2013.load_fer2013_csv(path, usage="publictest")  # Any case.
  np.testing.assert_array_equal(public.labels, [1, 0])
  np.testing.assert_array_equal(public.images, _images(7, 8))
  both = fer2013.load_fer2013_csv(path, usage=["Training", "PublicTest"])
  assert len(both) == 6
  assert len(fer2013.load_fer2013_csv(path, usage=None)) == 6
  assert len(fer2013.load_fer2013_csv(path, usage="all")) == 6


def test_csv_emotion_selection_and_order(tmp_path):
  path = _good_csv(tmp_path)
  faces = fer2013.load_fer2013_csv(path, emotions="neutral,Happy", usage=None)
  assert faces.emotions == ("Neutral", "Happy")
  # File order is kept; class ids follow the order asked for.
  np.testing.assert_array_equal(faces.labels, [1, 0, 1])
  np.testing.assert_array_equal(faces.images, _images(3, 6, 7))


def test_csv_without_usage_column_uses_all_rows(tmp_path, caplog):
  rows = [_row(3, _pixels(1), None), _row(4, _pixels(2), None)]
  path = _write(tmp_path / "no_usage.csv", ["emotion,pixels"] + rows)
  with caplog.at_level(std_logging.WARNING):
    faces = fer2013.load_fer2013_csv(path, usage="Training")
  assert len(faces) == 2
  assert "no Usage column" in caplog.text


def test_csv_crlf_bom_column_order_and_blank_lines(tmp_path):
  lines = ["\ufeffUsage,Pixels,Emotion",
           f"Training,{' '.join(map(str, _pixels(1)))},3", "",
           f"Training,{' '.join(map(str, _pixels(2)))},5", ""]
  path = _write(tmp_path / "odd.csv", lines, newline="\r\n")
  faces = fer2013.load_fer2013_csv(path)
  np.testing.assert_array_equal(faces.labels, [1, 3])
  np.testing.assert_array_equal(faces.images, _images(1, 2))


def test_csv_quoted_pixels(tmp_path):
  path = _write(tmp_path / "quoted.csv",
                [HEADER, f'3,"{" ".join(map(str, _pixels(1)))}",Training'])
  np.testing.assert_array_equal(fer2013.load_fer2013_csv(path).images, _images(1))


def test_csv_resize(tmp_path):
  flat = np.full(2304, 90, np.uint8)
  path = _write(tmp_path / "flat.csv", [HEADER, _row(3, flat)])
  faces = fer2013.load_fer2013_csv(path, image_size=24)
  assert faces.images.shape == (1, 24, 24, 1)
  assert (faces.images == 90).all()
  assert fer2013.load_fer2013_csv(path, image_size=64).images.shape == (
      1, 64, 64, 1)


# ---------------------------------------------------------------------------
# FER2013 csv: bad rows and bad files


def _with_bad_row(tmp_path, bad_row, bad_line=4):
  """A good file whose line `bad_line` (1-based, header = 1) is `bad_row`."""
  rows = [_row(3, _pixels(i)) for i in range(5)]
  rows[bad_line - 2] = bad_row
  return _write(tmp_path / "bad.csv", [HEADER] + rows)


_FULL = " ".join(map(str, _pixels(0)))


def _replaced(index, token):
  """_FULL with its index-th value replaced by `token`."""
  tokens = _FULL.split()
  tokens[index] = token
  return " ".join(tokens)


BAD_ROWS = {
    "short": (_row(3, " ".join(_FULL.split()[:-1])),
              "'pixels' has 2303 values, expected 2304"),
    "long": (_row(3, _FULL + " 7"), "'pixels' has 2305 values, expected 2304"),
    "non_numeric": (_row(3, _replaced(1, "ab")),
                    "'pixels' value 'ab' is not a number"),
    "decimal": (_row(3, _replaced(0, "1.5")),
                "'pixels' value '1.5' is not a number"),
    "too_big": (_row(3, _replaced(2303, "256")),
                "'pixels' value 256 is out of range 0..255"),
    "four_digits": (_row(3, _replaced(5, "1000")),
                    "'pixels' value 1000 is out of range 0..255"),
    "negative": (_row(3, _replaced(7, "-1")),
                 "'pixels' value -1 is out of range 0..255"),
    "empty_pixels": (_row(3, ""), "'pixels' is empty"),
    "label_text": (_row("happy", _pixels(1)),
                   "'emotion' label 'happy' is not an integer"),
    "label_float": (_row("3.0", _pixels(1)),
                    "'emotion' label '3.0' is not an integer"),
    "label_range": (_row(7, _pixels(1)),
                    "'emotion' label 7 is out of range 0..6"),
    "label_empty": (_row("", _pixels(1)), "'emotion' label is empty"),
    "fields": ("3," + _FULL, "2 fields, expected 3"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_csv_bad_row_names_file_and_line(tmp_path, kind):
  row, problem = BAD_ROWS[kind]
  path = _with_bad_row(tmp_path, row, bad_line=4)
  with pytest.raises(faceset.DataError) as error:
    fer2013.load_fer2013_csv(path)
  assert str(error.value) == f"{path} line 4: {problem}"


def test_csv_reports_the_first_bad_line(tmp_path):
  rows = [_row(3, _pixels(i)) for i in range(6)]
  rows[4] = _row(9, _pixels(0))  # line 6: label
  rows[2] = _row(3, "1 2 3")  # line 4: pixels
  path = _write(tmp_path / "two_bad.csv", [HEADER] + rows)
  with pytest.raises(faceset.DataError, match=r"line 4: 'pixels' has 3 values"):
    fer2013.load_fer2013_csv(path)


def test_csv_line_numbers_count_blank_lines(tmp_path):
  lines = [HEADER, _row(3, _pixels(0)), "", "", _row(3, "1 2")]
  path = _write(tmp_path / "blank.csv", lines)
  with pytest.raises(faceset.DataError, match=r"line 5: "):
    fer2013.load_fer2013_csv(path)


def test_csv_skip_bad_rows(tmp_path, caplog):
  rows = [_row(3, _pixels(i)) for i in range(8)]
  rows[1] = _row(3, "1 2 3")  # line 3
  rows[4] = _row("x", _pixels(0))  # line 6
  rows[6] = _row(4, _replaced(0, "300"))  # line 8
  path = _write(tmp_path / "skip.csv", [HEADER] + rows)
  with caplog.at_level(std_logging.WARNING):
    faces = fer2013.load_fer2013_csv(path, skip_bad_rows=True)
  np.testing.assert_array_equal(faces.images, _images(0, 2, 3, 5, 7))
  np.testing.assert_array_equal(faces.labels, [1] * 5)
  assert "skipped 3 bad rows (lines 3, 6, 8)" in caplog.text


def test_csv_pixels_of_unselected_rows_are_not_checked(tmp_path):
  rows = [_row(3, _pixels(0)), _row(6, "garbage"), _row(3, "1 2", "PublicTest")]
  path = _write(tmp_path / "unselected.csv", [HEADER] + rows)
  assert len(fer2013.load_fer2013_csv(path)) == 1


def test_csv_missing_file(tmp_path):
  path = tmp_path / "nope.csv"
  with pytest.raises(faceset.DataError, match="no such file or directory"):
    fer2013.load_fer2013_csv(path)
  assert issubclass(faceset.DataError, errors.UserError)  # Shown as one line.


def test_csv_missing_column(tmp_path):
  path = _write(tmp_path / "cols.csv",
                ["emotion,image,Usage", "3,1 2,Training"])
  with pytest.raises(faceset.DataError) as error:
    fer2013.load_fer2013_csv(path)
  assert str(error.value) == (
      f"{path}: missing column 'pixels' (header has: emotion, image, Usage)")


def test_csv_empty_file(tmp_path):
  path = tmp_path / "empty.csv"
  path.write_bytes(b"")
  with pytest.raises(faceset.DataError, match=r"empty\.csv: file is empty"):
    fer2013.load_fer2013_csv(path)
  compressed = tmp_path / "empty.csv.gz"
  compressed.write_bytes(gzip.compress(b""))
  with pytest.raises(faceset.DataError, match="file is empty"):
    fer2013.load_fer2013_csv(compressed)


def test_csv_header_only_selects_nothing(tmp_path):
  path = _write(tmp_path / "header.csv", [HEADER])
  with pytest.raises(faceset.DataError,
                     match="no images of Angry, Happy, Sad, Surprise with "
                     "Usage Training"):
    fer2013.load_fer2013_csv(path)


def test_csv_nothing_selected_names_emotions_and_usage(tmp_path):
  path = _good_csv(tmp_path)
  with pytest.raises(faceset.DataError) as error:
    fer2013.load_fer2013_csv(path, emotions=["Fear"], usage="PrivateTest")
  assert "no images of Fear with Usage PrivateTest" in str(error.value)


def test_csv_corrupt_gzip(tmp_path):
  path = tmp_path / "broken.csv.gz"
  path.write_bytes(gzip.compress(b"emotion,pixels\n" * 1000)[:40])
  with pytest.raises(faceset.DataError, match="cannot decompress gzip"):
    fer2013.load_fer2013_csv(path)
  path.write_bytes(b"\x1f\x8b" + bytes(range(200)))
  with pytest.raises(faceset.DataError, match="cannot decompress gzip"):
    fer2013.load_fer2013_csv(path)


def test_csv_binary_file(tmp_path):
  path = tmp_path / "image.csv"
  path.write_bytes(tf.io.encode_png(np.zeros((4, 4, 1), np.uint8)).numpy())
  with pytest.raises(faceset.DataError, match="not a CSV text file"):
    fer2013.load_fer2013_csv(path)


# ---------------------------------------------------------------------------
# Image folders


def _save(path, image, fmt="png"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  encode = tf.io.encode_png if fmt == "png" else tf.io.encode_jpeg
  tf.io.write_file(str(path), encode(tf.constant(image, tf.uint8)))


def _save_bmp(path, rgb):
  """Writes a 24-bit BMP by hand, as TF has no BMP encoder."""
  height, width, _ = rgb.shape
  row = (width * 3 + 3) // 4 * 4
  pixels = b"".join(rgb[y, :, ::-1].tobytes().ljust(row, b"\0")
                    for y in reversed(range(height)))
  header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
  info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels),
                     2835, 2835, 0, 0)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  path.write_bytes(header + info + pixels)


def _image_folder(root):
  _save(root / "happy" / "a.png", np.full((64, 80, 3), [90, 90, 90], np.uint8))
  _save(root / "happy" / "b.JPG", np.full((48, 48, 1), 150, np.uint8), "jpeg")
  _save(root / "SAD" / "c.png", np.full((30, 20, 1), 40, np.uint8))
  _save(root / "neutral" / "d.png", np.zeros((48, 48, 1), np.uint8))
  (root / "happy" / "notes.txt").write_text("not an image")
  (root / "README").write_text("ignored")
  return root


def test_image_folder_converts_any_size_and_colour(tmp_path):
  faces = folders.load_image_folder(_image_folder(tmp_path / "faces"))
  assert faces.images.shape == (3, 48, 48, 1)
  assert faces.images.dtype == np.uint8
  # Folders matched case-insensitively, sorted; Neutral is not asked for.
  np.testing.assert_array_equal(faces.labels, [1, 1, 2])
  assert faces.class_counts() == {"Angry": 0, "Happy": 2, "Sad": 1,
                                  "Surprise": 0}
  assert (faces.images[0] == 90).all()  # RGB gray -> the same gray level.
  assert np.abs(faces.images[1].astype(int) - 150).max() <= 2  # JPEG.
  assert (faces.images[2] == 40).all()


def test_image_folder_colour_bmp_and_rgba_png(tmp_path):
  root = tmp_path / "faces"
  _save_bmp(root / "Angry" / "a.bmp", np.full((5, 7, 3), 120, np.uint8))
  _save(root / "Angry" / "b.png", np.full((50, 50, 4), [60, 60, 60, 255],
                                          np.uint8))
  faces = folders.load_image_folder(root, image_size=16)
  assert faces.images.shape == (2, 16, 16, 1)
  assert (faces.images[0] == 120).all() and (faces.images[1] == 60).all()


def test_image_folder_size_and_selection(tmp_path):
  root = _image_folder(tmp_path / "faces")
  faces = folders.load_image_folder(root, ["Neutral"], image_size=32)
  assert faces.images.shape == (1, 32, 32, 1)
  np.testing.assert_array_equal(faces.labels, [0])


def test_image_folder_unreadable_image(tmp_path):
  root = _image_folder(tmp_path / "faces")
  bad = root / "SAD" / "broken.png"
  bad.write_bytes(b"\x89PNG not really")
  with pytest.raises(faceset.DataError, match=re.escape(f"{bad}: cannot read")):
    folders.load_image_folder(root)


def test_image_folder_without_images(tmp_path):
  (tmp_path / "faces" / "Fear").mkdir(parents=True)
  with pytest.raises(faceset.DataError, match="no images found for Angry"):
    folders.load_image_folder(tmp_path / "faces")
  with pytest.raises(faceset.DataError, match="no such directory"):
    folders.load_image_folder(tmp_path / "missing")


# ---------------------------------------------------------------------------
# load_faces


def test_load_faces_synthetic_splits():
  train = loader.load_faces("synthetic", synthetic_identities=8, seed=5)
  val = loader.load_faces("Synthetic", split="validation",
                          synthetic_identities=8, seed=5)
  test = loader.load_faces("synthetic", split="test", synthetic_identities=8,
                           seed=5)
  assert len(train) == 8 * 4 and len(val) == 16 * 4 and len(test) == 16 * 4
  assert train.identities is not None
  # Held-out identities: no validation face is a training face.
  flat_train = train.images.reshape(len(train), -1)
  for image in val.images.reshape(len(val), -1):
    assert not (flat_train == image).all(axis=1).any()
  assert not np.array_equal(val.images, test.images)
  again = loader.load_faces("synthetic", synthetic_identities=8, seed=5)
  np.testing.assert_array_equal(train.images, again.images)


def test_load_faces_csv_split_to_usage(tmp_path):
  path = _good_csv(tmp_path)
  assert len(loader.load_faces(str(path))) == 4
  val = loader.load_faces(str(path), split="validation")
  assert val.source == "fer.csv (PublicTest)"
  assert len(val) == 2
  assert len(loader.load_faces(str(path), split="validation", usage="all")) == 6
  with pytest.raises(faceset.DataError, match="Usage PrivateTest"):
    loader.load_faces(str(path), split="test")


def test_load_faces_csv_passes_options(tmp_path):
  path = _with_bad_row(tmp_path, _row(3, "1 2"))
  faces = loader.load_faces(str(path), ["Happy"], skip_bad_rows=True,
                            image_size=32)
  assert faces.images.shape == (4, 32, 32, 1)


def test_load_faces_folder_with_split_folders(tmp_path):
  _image_folder(tmp_path / "root" / "train")
  _save(tmp_path / "root" / "Test" / "angry" / "x.png",
        np.zeros((48, 48, 1), np.uint8))
  root = str(tmp_path / "root")
  assert len(loader.load_faces(root)) == 3
  assert loader.load_faces(root, split="test").class_counts()["Angry"] == 1
  with pytest.raises(faceset.DataError, match="no 'validation' folder"):
    loader.load_faces(root, split="validation")


def test_load_faces_folder_without_split_folders(tmp_path):
  root = str(_image_folder(tmp_path / "root"))
  assert len(loader.load_faces(root)) == 3
  with pytest.raises(faceset.DataError, match="only has a train split"):
    loader.load_faces(root, split="validation")


def test_load_faces_bad_source_and_split(tmp_path):
  missing = str(tmp_path / "missing.csv")
  with pytest.raises(faceset.DataError) as error:
    loader.load_faces(missing)
  assert str(error.value) == f"{missing}: no such file or directory"
  with pytest.raises(faceset.DataError, match="unknown split"):
    loader.load_faces("synthetic", split="dev")


# ---------------------------------------------------------------------------
# FaceSet


def test_faceset_subset_and_counts():
  faces = faceset.FaceSet(images=np.zeros((4, 8, 8, 1), np.uint8),
                          labels=np.array([0, 1, 1, 0], np.int32),
                          emotions=("Angry", "Happy"), source="test",
                          identities=np.arange(4, dtype=np.int32))
  sub = faces.subset(np.array([1, 2]))
  assert len(sub) == 2
  assert sub.class_counts() == {"Angry": 0, "Happy": 2}
  np.testing.assert_array_equal(sub.identities, [1, 2])
  assert len(faces.subset(faces.labels == 0)) == 2


# ---------------------------------------------------------------------------
# tf.data


def _indexed_faces(n=10, num_classes=3):
  """Image i is the constant 10 * i with a bright left column, to see flips."""
  images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 10,
                     8, axis=1).repeat(8, axis=2)
  images[:, :, 0] = 255
  labels = (np.arange(n) % num_classes).astype(np.int32)
  names = ("Angry", "Happy", "Sad", "Surprise")[:num_classes]
  return faceset.FaceSet(images=images, labels=labels, emotions=names,
                         source="indexed")


def _batches(ds, count=None):
  if count is not None:
    ds = ds.take(count)
  return [tuple(t.numpy() for t in batch) for batch in ds]


def _index_of(images):
  """Recovers the image index from a batch scaled to [-1, 1]."""
  raw = np.rint((images + 1.0) * 127.5).astype(int)
  return raw[:, :, 3, 0].max(axis=1) // 10, raw[:, 0, 0, 0] == 255


def test_steps_per_epoch():
  faces = _indexed_faces(10)
  assert pipeline.steps_per_epoch(faces, 3) == 3
  assert pipeline.steps_per_epoch(faces, 10) == 1
  with pytest.raises(faceset.DataError, match="less than one batch"):
    pipeline.steps_per_epoch(faces, 11)


def test_train_dataset_shapes_values_and_targets():
  faces = _indexed_faces(10, num_classes=3)
  ds = pipeline.make_train_dataset(faces, 4, seed=1)
  images_spec, org_spec, trg_spec = ds.element_spec
  assert images_spec.shape == (4, 8, 8, 1) and images_spec.dtype == tf.float32
  assert org_spec.shape == (4,) and org_spec.dtype == tf.int32
  assert trg_spec.shape == (4,) and trg_spec.dtype == tf.int32
  batches = _batches(ds, 30)  # Infinite by default.
  targets = []
  for images, org, trg in batches:
    assert images.min() >= -1.0 and images.max() <= 1.0
    index, _ = _index_of(images)
    np.testing.assert_array_equal(org, faces.labels[index])
    assert (trg != org).all() and (trg >= 0).all() and (trg < 3).all()
    targets.append(trg)
  # Every target class is drawn.
  assert set(np.concatenate(targets)) == {0, 1, 2}
  assert batches[0][0].max() == 1.0  # 255 -> 1.0


def test_train_dataset_visits_each_image_once_per_epoch():
  faces = _indexed_faces(10)
  batches = _batches(pipeline.make_train_dataset(faces, 3, seed=4, num_steps=9))
  assert len(batches) == 9
  for epoch in range(3):
    index = np.concatenate([_index_of(b[0])[0]
                            for b in batches[epoch * 3:epoch * 3 + 3]])
    assert len(set(index)) == 9  # 9 of 10 distinct, one dropped.
  orders = [np.concatenate([_index_of(b[0])[0]
                            for b in batches[e * 3:e * 3 + 3]])
            for e in range(3)]
  assert not np.array_equal(orders[0], orders[1])  # Reshuffled every epoch.


def test_train_dataset_is_deterministic():
  faces = _indexed_faces(10)
  first = _batches(pipeline.make_train_dataset(faces, 3, seed=7, num_steps=5))
  second = _batches(pipeline.make_train_dataset(faces, 3, seed=7, num_steps=5))
  other = _batches(pipeline.make_train_dataset(faces, 3, seed=8, num_steps=5))
  for a, b in zip(first, second):
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


@pytest.mark.parametrize("start", [1, 3, 5, 7])
def test_train_dataset_resumes_at_start_step(start):
  faces = _indexed_faces(10)  # 3 batches of 3 per epoch: crosses epochs.
  full = _batches(pipeline.make_train_dataset(faces, 3, seed=2, num_steps=10))
  resumed = _batches(pipeline.make_train_dataset(
      faces, 3, seed=2, start_step=start, num_steps=10 - start))
  assert len(resumed) == 10 - start
  for a, b in zip(full[start:], resumed):
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x, y)


def test_train_dataset_flip():
  faces = _indexed_faces(10)
  flipped = np.concatenate([_index_of(b[0])[1] == 0 for b in _batches(
      pipeline.make_train_dataset(faces, 5, seed=0, num_steps=8))])
  assert 0 < flipped.sum() < len(flipped)
  plain = np.concatenate([_index_of(b[0])[1] == 0 for b in _batches(
      pipeline.make_train_dataset(faces, 5, seed=0, num_steps=8, flip=False))])
  assert not plain.any()


def test_train_dataset_same_target_rate():
  faces = _indexed_faces(10, num_classes=4)
  def draw(rate, seed=5):
    batches = _batches(pipeline.make_train_dataset(faces, 5, seed=seed, num_steps=400,
                                                   same_target_rate=rate))
    return (np.concatenate([b[1] for b in batches]), np.concatenate([b[2] for b in batches]),
            np.concatenate([b[0] for b in batches]))
  org0, trg0, img0 = draw(0.0)
  assert (trg0 != org0).all()
  org, trg, img = draw(0.25)
  same = trg == org
  assert 0.21 < same.mean() < 0.29  # 2,000 draws: about a quarter are the own emotion.
  # The other targets stay uniform over the other emotions, and each source keeps its rate.
  shift = (trg[~same] - org[~same]) % 4
  assert all(abs((shift == k).mean() - 1 / 3) < 0.05 for k in (1, 2, 3))
  assert all(0.15 < same[org == c].mean() < 0.35 for c in range(4))
  # Images, flips and the other targets are those of rate 0: only some targets become c_org.
  np.testing.assert_array_equal(img, img0)
  np.testing.assert_array_equal(trg[~same], trg0[~same])
  org1, trg1, _ = draw(1.0)
  np.testing.assert_array_equal(trg1, org1)
  with pytest.raises(ValueError, match="same_target_rate"):
    pipeline.make_train_dataset(faces, 5, seed=0, same_target_rate=1.5)


def test_train_dataset_needs_two_classes():
  faces = _indexed_faces(10, num_classes=1)
  with pytest.raises(faceset.DataError, match="at least 2 emotions"):
    pipeline.make_train_dataset(faces, 2, seed=0)


def test_eval_dataset_covers_every_image_once_in_order():
  faces = _indexed_faces(10, num_classes=4)
  batches = _batches(pipeline.make_eval_dataset(faces, 4, seed=3))
  assert [len(b[1]) for b in batches] == [4, 4, 2]
  images = np.concatenate([b[0] for b in batches])
  np.testing.assert_allclose(images, faces.images / 127.5 - 1.0, atol=1e-6)
  org = np.concatenate([b[1] for b in batches])
  trg = np.concatenate([b[2] for b in batches])
  np.testing.assert_array_equal(org, faces.labels)
  assert (trg != org).all() and trg.dtype == np.int32
  again = np.concatenate([b[2] for b in _batches(
      pipeline.make_eval_dataset(faces, 3, seed=3))])
  np.testing.assert_array_equal(trg, again)  # Fixed by the seed only.
