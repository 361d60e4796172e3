"""One decode path: EXIF orientation honoured by training folders, translate and the
SavedModel bytes signature alike; oversized images refused from their header."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

from faceexpr_tf.data import faceset
from faceexpr_tf.data import folders
from faceexpr_tf.data import images
from faceexpr_tf.photos import faces

PIL = pytest.importorskip("PIL", reason="Pillow writes the EXIF test photos")
from PIL import Image, ImageOps  # pylint: disable=g-import-not-at-top,wrong-import-position


def upright_picture(height=48, width=72):
  """A gray picture no flip or turn leaves alike: 8x8-aligned blocks (JPEG keeps them)."""
  picture = np.full((height, width), 40, np.uint8)
  picture[:16, :24] = 230
  picture[32:, 48:] = 150
  picture[16:32, 56:64] = 90
  return picture


# The stored pixels whose EXIF orientation makes them display as the upright picture.
_STORE = {1: lambda p: p, 2: lambda p: p[:, ::-1], 3: lambda p: p[::-1, ::-1],
          4: lambda p: p[::-1], 5: lambda p: p.T, 6: lambda p: np.rot90(p, 1),
          7: lambda p: p[::-1, ::-1].T, 8: lambda p: np.rot90(p, -1)}


def exif_jpeg(picture, orientation, mode="L"):
  """JPEG bytes storing `picture` turned so that EXIF `orientation` shows it upright."""
  stored = np.ascontiguousarray(_STORE[orientation](picture))
  exif = Image.Exif()
  exif[0x0112] = orientation
  buf = io.BytesIO()
  Image.fromarray(stored).convert(mode).save(buf, "JPEG", exif=exif.tobytes(), quality=100)
  return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_turns_every_exif_orientation_upright_as_pil_does(orientation):
  blob = exif_jpeg(upright_picture(), orientation, mode="RGB")
  assert int(images.exif_orientation(blob)) == orientation
  reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(blob))))
  got = images.decode(blob, channels=3).numpy()
  assert got.shape == reference.shape == (48, 72, 3)
  assert np.abs(got.astype(int) - reference).mean() < 2
  assert np.abs(got[..., 0].astype(int) - upright_picture()).mean() < 2


def test_decode_works_inside_a_graph_and_on_bytes_without_exif():
  decode = tf.function(lambda b: images.decode(b, channels=1),
                       input_signature=[tf.TensorSpec([], tf.string)])
  assert decode(exif_jpeg(upright_picture(), 6)).shape == (48, 72, 1)
  for blob in (b"", b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\xff\xff", b"\x89PNG",
               b"\xff\xd8" + b"\x00" * 100):
    assert int(images.exif_orientation(blob)) == 1   # absent or broken: leave as stored


def test_training_folders_and_translate_read_the_same_upright_face(tmp_path):
  picture = upright_picture()
  (tmp_path / "Happy").mkdir()
  (tmp_path / "Happy" / "a_upright.png").write_bytes(
      _png(picture))
  (tmp_path / "Happy" / "b_phone.jpg").write_bytes(exif_jpeg(picture, 6))
  loaded = folders.load_image_folder(str(tmp_path), ("Happy", "Sad"), image_size=24)
  upright, phone = loaded.images[..., 0].astype(int)
  assert np.abs(upright - phone).mean() < 2
  # Without the orientation the phone photo is the sideways picture, far from upright.
  sideways = tf.io.decode_image(exif_jpeg(picture, 6), channels=1).numpy()
  assert sideways.shape == (72, 48, 1)
  read = [faces.read_image(str(tmp_path / "Happy" / n)) for n in ("a_upright.png",
                                                                  "b_phone.jpg")]
  assert read[0].shape == read[1].shape == (48, 72)
  assert np.abs(read[0].astype(int) - read[1]).mean() < 2
  model_input = faces.to_model_input(read[1], image_size=24)[..., 0]
  assert np.abs(model_input.astype(int) - phone).mean() < 3   # OpenCV path = TF path


def _png(gray):
  import cv2  # pylint: disable=g-import-not-at-top
  return cv2.imencode(".png", gray)[1].tobytes()


def huge_png_header(width=20000, height=20000):
  """A PNG signature and IHDR announcing width x height: what a decoder sizes itself by."""
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
  return (b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
          + b"\x00" * 64)


def test_header_size_of_each_format():
  assert images.header_size(huge_png_header()) == (20000, 20000)
  assert images.header_size(exif_jpeg(upright_picture(), 6)) == (48, 72)
  import cv2  # pylint: disable=g-import-not-at-top
  bmp = cv2.imencode(".bmp", upright_picture())[1].tobytes()
  assert images.header_size(bmp) == (72, 48)
  assert images.header_size(b"not an image") is None


def test_huge_image_is_refused_from_its_header(tmp_path):
  path = tmp_path / "Happy" / "huge.png"
  path.parent.mkdir()
  path.write_bytes(huge_png_header())
  with pytest.raises(faces.ImageReadError, match="huge.png: 20000x20000 pixels is too "
                     "large"):
    faces.read_image(str(path))
  with pytest.raises(faceset.DataError, match="huge.png: 20000x20000 pixels is too large"):
    folders.load_image_folder(str(tmp_path), ("Happy",))
  assert os.path.getsize(path) < 200
