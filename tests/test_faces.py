"""Face detection and cropping on real photos (scikit-image's bundled test images)."""

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from faceexpr_tf import errors
from faceexpr_tf.photos import faces


def _gray(rgb):
  return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def test_detects_the_astronauts_face():
  boxes = faces.detect_faces(_gray(skdata.astronaut()))
  assert len(boxes) == 1
  x, y, w, h = boxes[0]
  # Eileen Collins' face sits in the upper middle of the 512x512 portrait.
  assert 150 < x + w / 2 < 320 and 60 < y + h / 2 < 200
  assert 60 < w < 160 and 60 < h < 160


def test_detects_faces_in_a_large_photo_downscaled_for_speed():
  big = cv2.resize(_gray(skdata.astronaut()), (2048, 2048), interpolation=cv2.INTER_CUBIC)
  (x, y, w, h), = faces.detect_faces(big)
  assert 4 * 150 < x + w / 2 < 4 * 320 and 4 * 60 < w < 4 * 160


@pytest.mark.parametrize("image", [
    _gray(skdata.coffee()),
    np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1)),
    np.random.default_rng(0).integers(0, 256, (240, 320), dtype=np.uint8),
], ids=["coffee", "gradient", "noise"])
def test_no_face_in_non_face_pictures(image):
  assert faces.detect_faces(image) == []


def test_detect_faces_sorts_largest_first():
  face = _gray(skdata.astronaut())[40:240, 130:360]
  canvas = np.full((400, 900), 128, np.uint8)
  canvas[10:210, 10:240] = face
  small = cv2.resize(face, (172, 150), interpolation=cv2.INTER_AREA)
  canvas[220:370, 600:772] = small
  boxes = faces.detect_faces(canvas)
  assert len(boxes) == 2
  assert boxes[0][2] * boxes[0][3] > boxes[1][2] * boxes[1][3]
  assert boxes[0][0] < 300 and boxes[1][0] > 550


def test_crop_square_inside_the_image():
  image = np.arange(100 * 120, dtype=np.int32).reshape(100, 120)
  crop = faces.crop_square(image, (40, 30, 20, 20), margin=0.5)
  assert crop.shape == (40, 40)
  np.testing.assert_array_equal(crop, image[20:60, 30:70])


def test_crop_square_pads_by_repeating_edges():
  image = np.arange(10 * 10, dtype=np.uint8).reshape(10, 10)
  crop = faces.crop_square(image, (0, 0, 4, 4), margin=0.5)  # square (-2, -2) side 8
  assert crop.shape == (8, 8)
  np.testing.assert_array_equal(crop[2:, 2:], image[:6, :6])
  np.testing.assert_array_equal(crop[:2, 2:], np.repeat(image[:1, :6], 2, axis=0))
  np.testing.assert_array_equal(crop[2:, :2], np.repeat(image[:6, :1], 2, axis=1))
  assert (crop[:2, :2] == image[0, 0]).all()


def test_crop_square_of_a_wide_box_keeps_colour_and_pads_rows():
  image = np.zeros((20, 40, 3), np.uint8)
  image[..., 0] = 200
  crop = faces.crop_square(image, (0, 0, 40, 20), margin=0.0)
  assert crop.shape == (40, 40, 3)
  assert (crop[..., 0] == 200).all() and (crop[..., 1:] == 0).all()


def test_square_box_margin():
  assert faces.square_box((10, 10, 50, 40), margin=0.2) == (0, -5, 70)
  with pytest.raises(ValueError):
    faces.square_box((0, 0, 5, 5), margin=-0.1)


@pytest.mark.parametrize("shape", [(97, 97), (97, 97, 1), (97, 97, 3), (20, 20)])
def test_to_model_input_shapes(shape):
  crop = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
  out = faces.to_model_input(crop, image_size=48)
  assert out.shape == (48, 48, 1) and out.dtype == np.uint8
  assert faces.to_model_input(crop, 32, channels=3).shape == (32, 32, 3)


def test_to_model_input_averages_when_shrinking():
  crop = np.zeros((96, 96), np.uint8)
  crop[:, ::2] = 200  # 1-px stripes: area resize gives flat 100, sampling would alias
  out = faces.to_model_input(crop, 48)
  assert np.abs(out.astype(int) - 100).max() <= 1


def test_read_image(tmp_path):
  path = str(tmp_path / "a.png")
  rgb = skdata.astronaut()[:64, :80]
  cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
  gray = faces.read_image(path)
  assert gray.shape == (64, 80) and gray.dtype == np.uint8
  np.testing.assert_array_equal(faces.read_image(path, color=True), rgb)


@pytest.mark.parametrize("name,content,words", [
    ("missing.png", None, "no such file"),
    ("broken.png", b"\x89PNG not really", "corrupt"),
    ("notes.txt", b"hello", "unsupported format"),
])
def test_read_image_errors_name_the_file(tmp_path, name, content, words):
  path = tmp_path / name
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(errors.UserError, match=words) as info:
    faces.read_image(str(path))
  assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_read_image_of_a_directory(tmp_path):
  with pytest.raises(errors.UserError, match="directory"):
    faces.read_image(str(tmp_path))


def test_a_jpeg_cut_inside_its_image_data_is_refused_in_one_line(tmp_path, capfd):
  rng = np.random.default_rng(0)
  picture = cv2.GaussianBlur(rng.integers(0, 256, (240, 240), dtype=np.uint8), (5, 5), 0)
  data = cv2.imencode(".jpg", picture)[1].tobytes()
  whole, cut, padded = (tmp_path / n for n in ("whole.jpg", "cut.jpg", "padded.jpg"))
  whole.write_bytes(data)
  padded.write_bytes(data + b"\0" * 100)   # some encoders pad after the end marker
  cut.write_bytes(data[:len(data) * 2 // 3])
  # OpenCV alone decodes the cut file, with its lower rows missing.
  assert cv2.imread(str(cut), cv2.IMREAD_GRAYSCALE) is not None
  capfd.readouterr()
  with pytest.raises(faces.ImageReadError, match=r"cut\.jpg: truncated JPEG"):
    faces.read_image(str(cut))
  assert "Premature end" not in capfd.readouterr().err
  for ok in (whole, padded):
    np.testing.assert_array_equal(faces.read_image(str(ok)),
                                  cv2.imread(str(whole), cv2.IMREAD_GRAYSCALE))
