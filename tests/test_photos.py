"""The photo path: faces edited in place, in colour, at full resolution (faceexpr_tf/photos).

Geometry and the paste are checked as pure functions; the editor, files and the Python
API on skimage's astronaut (a 512x512 colour photo, one face at x 182..265, y 64..171)
with the shipped generator and the MTCNN detector.
"""

import io
import logging
import os

import cv2
import numpy as np
import PIL.Image
import pytest
from skimage import data as skdata

import faceexpr_tf
from faceexpr_tf import errors
from faceexpr_tf.photos import align
from faceexpr_tf.photos import detectors
from faceexpr_tf.photos import editor as editor_lib
from faceexpr_tf.photos import faces as faces_lib
from faceexpr_tf.photos import photo_files
from faceexpr_tf.photos import photo_outputs
from faceexpr_tf.photos import translate
from faceexpr_tf.serving import translators

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "tests", "data", "bad_inputs", "images")
ASTRONAUT = skdata.astronaut()


@pytest.fixture(scope="module")
def editor():
  return faceexpr_tf.load()          # the shipped generator, MTCNN


def _ycrcb(rgb):
  return cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2YCrCb).astype(int)


# --- geometry -------------------------------------------------------------------------

def test_similarity_takes_the_two_points_where_asked_and_inverts():
  src, dst = [(10.0, 20.0), (50.0, 35.0)], [(15.0, 19.5), (33.0, 19.5)]
  m = align.similarity(src, dst)
  np.testing.assert_allclose(align.apply(m, src), dst, atol=1e-9)
  np.testing.assert_allclose(align.apply(align.invert(m), dst), src, atol=1e-9)
  # A similarity: the same scale both ways, a rotation, no shear.
  assert align.scale_of(m) == pytest.approx(18 / np.hypot(40, 15))
  assert align.rotation_degrees(m) == pytest.approx(np.degrees(np.arctan2(15, 40)))
  with pytest.raises(ValueError, match="coincide"):
    align.similarity([(1, 1), (1, 1)], dst)


def test_eye_transform_puts_the_eyes_on_fer2013s_and_scales_with_the_frame():
  m = align.eye_transform((204.0, 100.0), (245.0, 102.0))
  np.testing.assert_allclose(align.apply(m, [(204, 100), (245, 102)]),
                             align.CANONICAL_EYES, atol=1e-9)
  big = align.eye_transform((204.0, 100.0), (245.0, 102.0), size=96)
  np.testing.assert_allclose(align.apply(big, [(204, 100)]),
                             [np.array(align.CANONICAL_EYES[0]) * 2], atol=1e-9)


def test_cut_of_an_upright_square_is_a_plain_resize():
  image = np.random.default_rng(0).integers(0, 256, (96, 96)).astype(np.float32)
  m = align.box_transform(0, 0, 96, 48)         # a 2x shrink: area averaging
  np.testing.assert_allclose(align.cut(image, m, 48),
                             cv2.resize(image, (48, 48), interpolation=cv2.INTER_AREA),
                             atol=1e-3)


def test_fade_mask_is_one_inside_and_zero_at_the_border():
  mask = align.fade_mask(48)
  assert mask.shape == (48, 48) and mask[24, 24] == 1.0 and mask[6:42, 6:42].min() == 1.0
  assert mask[0].max() < 0.05 and mask[:, -1].max() < 0.05
  assert np.all(np.diff(mask[24, :24]) >= 0)     # rising towards the middle


def test_paste_adds_to_luminance_only_and_leaves_the_rest_byte_for_byte():
  rng = np.random.default_rng(1)
  photo = rng.integers(30, 220, (120, 160, 3)).astype(np.uint8)
  to_face = align.eye_transform((60.0, 50.0), (90.0, 55.0))   # tilted, ~1.6x the frame
  delta = np.full((48, 48), 20.0, np.float32)
  box, edit = align.paste(delta, to_face, photo.shape)
  out = align.add_luminance(photo, box, edit)
  x0, y0, x1, y1 = box
  outside = np.ones(photo.shape[:2], bool)
  outside[y0:y1, x0:x1] = False
  assert np.array_equal(out[outside], photo[outside])
  # Inside: where the mask is full, Y rose by 20 and Cr, Cb moved at most by rounding.
  centre = align.apply(align.invert(to_face), [(24, 24)])[0].round().astype(int)
  cx, cy = centre
  before, after = _ycrcb(photo[cy - 3:cy + 3, cx - 3:cx + 3]), _ycrcb(
      out[cy - 3:cy + 3, cx - 3:cx + 3])
  assert np.all(np.abs(after[..., 0] - before[..., 0] - 20) <= 1)
  assert np.abs(after[..., 1:] - before[..., 1:]).max() <= 1
  # Faded at the frame's border: the edit's largest values sit inside, none at the box.
  assert edit.max() == pytest.approx(20, abs=0.5) and np.abs(edit[0]).max() < 2


def test_gray_and_rgba_photos_keep_their_kind():
  gray = np.full((60, 60), 100, np.uint8)
  rgba = np.dstack([np.full((60, 60, 3), 100, np.uint8), np.full((60, 60), 7, np.uint8)])
  edit = np.full((20, 20), 10.0, np.float32)
  assert align.add_luminance(gray, (5, 5, 25, 25), edit)[10, 10] == 110
  out = align.add_luminance(rgba, (5, 5, 25, 25), edit)
  assert out[10, 10].tolist() == [110, 110, 110, 7] and out[40, 40].tolist() == [100] * 3 + [7]


# --- the editor -----------------------------------------------------------------------

def test_edit_changes_the_face_and_nothing_else(editor):
  faces = editor.find(ASTRONAUT)
  assert len(faces) == 1 and faces[0].aligned and faces[0].skipped is None
  left, right = faces[0].detection.left_eye, faces[0].detection.right_eye
  assert abs(left[0] - 204) < 4 and abs(right[0] - 245) < 4     # mtcnn's eyes, as stated
  edits = editor.edit_all(ASTRONAUT, intensity=1.0, faces=faces)
  assert list(edits.photos) == list(editor.emotions)
  x0, y0, x1, y1 = align.frame_box(faces[0].to_face, 48, ASTRONAUT.shape)
  outside = np.ones(ASTRONAUT.shape[:2], bool)
  outside[y0:y1, x0:x1] = False
  for name, out in edits.photos.items():
    assert out.shape == ASTRONAUT.shape and out.dtype == np.uint8
    assert np.array_equal(out[outside], ASTRONAUT[outside]), name
    moved = np.any(out != ASTRONAUT, axis=-1)
    assert moved[y0:y1, x0:x1].mean() > 0.3, name          # the face itself changed
    # Chroma untouched: Cr and Cb move only by rounding where no channel clipped.
    unclipped = moved & np.all((out > 0) & (out < 255), axis=-1)
    diff = np.abs(_ycrcb(out) - _ycrcb(ASTRONAUT))[unclipped]
    assert np.percentile(diff[:, 0], 99) > 5 and diff[:, 1:].max() <= 1, name


def test_several_faces_each_edited_and_a_tiny_one_skipped_and_named(editor):
  pair = np.concatenate([ASTRONAUT[:300, 80:380], ASTRONAUT[:300, 80:380][:, ::-1]], axis=1)
  faces = editor.find(pair)
  assert len(faces) == 2 and all(f.skipped is None for f in faces)
  out = editor.edit(pair, "Surprise")
  for face in faces:
    x0, y0, x1, y1 = align.frame_box(face.to_face, 48, pair.shape)
    assert np.any(out[y0:y1, x0:x1] != pair[y0:y1, x0:x1])
  small = cv2.resize(ASTRONAUT, (128, 128), interpolation=cv2.INTER_AREA)
  found = editor.find(small)
  assert found and found[0].frame_px < editor_lib.MIN_FACE_PX
  assert "too small to edit" in found[0].skipped
  edits = editor.edit_all(small, ["Happy"], faces=found)
  assert not edits.edited and np.array_equal(edits.photos["Happy"], small)
  assert "too small to edit" in editor_lib.no_edit_reason(edits.faces)


def test_a_photo_without_a_face_comes_back_unchanged_with_one_line(editor, caplog):
  coffee = skdata.coffee()
  with caplog.at_level(logging.WARNING):
    out = editor.edit(coffee, "Happy")
  assert np.array_equal(out, coffee) and out is not coffee
  lines = [r.getMessage() for r in caplog.records if "no face found" in r.getMessage()]
  assert len(lines) == 1 and "unchanged" in lines[0]


def test_intensity_moves_the_photo_from_g_s_reconstruction_to_the_full_edit(editor):
  faces = editor.find(ASTRONAUT)
  frames = editor.frames(ASTRONAUT, "Happy", [0.0, 0.5, 1.0], faces=faces)
  full = editor.edit_all(ASTRONAUT, ["Happy"], 1.0, faces=faces).photos["Happy"]
  assert np.array_equal(frames[2], full)
  far = [np.abs(f.astype(int) - full).mean() for f in frames]
  assert far[0] > far[1] > far[2] == 0


# --- the Python API -------------------------------------------------------------------

def test_api_edits_an_array_and_names_what_is_wrong(editor):
  out = editor.edit(ASTRONAUT, "happy", intensity=0.8)      # any case, as everywhere
  assert out.shape == ASTRONAUT.shape and np.any(out != ASTRONAUT)
  with pytest.raises(errors.UserError, match="unknown emotion 'Bored'"):
    editor.edit(ASTRONAUT, "Bored")
  with pytest.raises(errors.UserError, match=r"'Neutral' is not one this model knows \(Angry, "
                                             r"Happy, Sad, Surprise\)"):
    editor.edit(ASTRONAUT, "neutral")
  with pytest.raises(editor_lib.PhotoError, match="uint8"):
    editor.edit(ASTRONAUT.astype(np.float32) / 255, "Happy")
  with pytest.raises(editor_lib.PhotoError, match=r"shape \[512, 512, 2\]"):
    editor.edit(ASTRONAUT[..., :2], "Happy")
  with pytest.raises(errors.UserError, match="intensity must be in"):
    editor.edit(ASTRONAUT, "Happy", intensity=1.5)


def test_api_edits_a_file_into_the_same_format_with_provenance(editor, tmp_path):
  path = tmp_path / "me.jpg"
  PIL.Image.fromarray(ASTRONAUT).save(path, quality=92)
  written = editor.edit_file(str(path), str(tmp_path / "out"), ["Happy", "Sad"], 0.8)
  names = [os.path.basename(p) for p in written]
  assert names == ["me_Happy.jpg", "me_Sad.jpg", "me_strip.jpg", "me_face0.gif"]
  with PIL.Image.open(written[0]) as image:
    assert image.format == "JPEG" and image.size == (512, 512)
  record = photo_files.read_provenance(written[1])
  assert record["tool"] == "faceexpr-tf" and record["emotion"] == "Sad"
  assert record["intensity"] == 0.8 and record["faces_edited"] == 1 and record["model"]
  # Far from the face, within JPEG's re-encoding error of the input.
  before, after = photo_files.read_photo(str(path)).pixels, np.asarray(
      PIL.Image.open(written[0]))
  corner = np.abs(after[300:, :150].astype(int) - before[300:, :150])
  assert corner.mean() < 1.5
  with PIL.Image.open(written[3]) as gif:      # the animation: a loop of many frames
    assert gif.format == "GIF" and gif.n_frames >= 2 * len(photo_outputs.ANIMATION_STEPS)
    assert photo_files.read_provenance(written[3])["tool"] == "faceexpr-tf"
  with pytest.raises(editor_lib.NoFaceError, match="no face found"):
    PIL.Image.fromarray(skdata.coffee()).save(tmp_path / "coffee.png")
    editor.edit_file(str(tmp_path / "coffee.png"), str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out" / "coffee_Happy.png")


def test_png_is_lossless_outside_the_face_and_carries_a_text_chunk(editor, tmp_path):
  path = tmp_path / "a.png"
  PIL.Image.fromarray(ASTRONAUT).save(path)
  written = editor.edit_file(str(path), str(tmp_path / "out"), ["Angry"], strip=False,
                             animations=False)
  assert [os.path.basename(p) for p in written] == ["a_Angry.png"]
  with PIL.Image.open(written[0]) as image:
    assert image.format == "PNG" and photo_files.PNG_KEY in image.info
    after = np.asarray(image)
  face = editor.find(ASTRONAUT)[0]
  x0, y0, x1, y1 = align.frame_box(face.to_face, 48, ASTRONAUT.shape)
  outside = np.ones(ASTRONAUT.shape[:2], bool)
  outside[y0:y1, x0:x1] = False
  assert np.array_equal(after[outside], ASTRONAUT[outside])


# --- files of every kind --------------------------------------------------------------

BAD = {"bad_empty.png": "corrupt or truncated image", "bad_text.jpg": "corrupt or truncated",
       "bad_truncated.png": "corrupt or truncated", "bad_truncated.jpg": "truncated JPEG",
       "bad_pdf_named.png": "corrupt or truncated", "bad_no_face.png": "no face"}


def test_translate_writes_each_good_file_upright_in_its_format_and_names_each_bad_one(
    editor, tmp_path):
  paths = sorted(os.path.join(CORPUS, n) for n in os.listdir(CORPUS))
  out = tmp_path / "out"
  edited, failures = translate.edit_photos(paths, editor, str(out), ["Happy"], 1.0,
                                           strip=False, animations=False)
  assert len(failures) == len(BAD)
  for name, message in BAD.items():
    line = [f for f in failures if f.startswith(os.path.join(CORPUS, name) + ":")]
    assert len(line) == 1 and message in line[0] and "\n" not in line[0], (name, failures)
  for name in sorted(n for n in os.listdir(CORPUS) if n.startswith("ok_")):
    stem, ext = os.path.splitext(name)
    with PIL.Image.open(os.path.join(CORPUS, name)) as source:
      upright = PIL.ImageOps.exif_transpose(source).size
      fmt = source.format
    with PIL.Image.open(out / f"{stem}_Happy{ext}") as result:
      assert result.size == upright and result.format == fmt, name
      assert result.getexif().get(0x0112, 1) == 1, name       # no rotation left to apply
      if name == "ok_rgba.png":
        assert result.mode == "RGBA"
  assert edited == len([n for n in os.listdir(CORPUS) if n.startswith("ok_")]) + 1  # 2 faces


def test_huge_photo_is_refused_before_decoding():
  import test_images  # pylint: disable=g-import-not-at-top  (tests/ is on sys.path)
  with pytest.raises(faces_lib.ImageReadError, match="20000x20000 pixels is too large"):
    photo_files.decode_photo(test_images.huge_png_header(), "huge.png")


def test_gif_and_bmp_come_back_as_png_with_a_line():
  buffer = io.BytesIO()
  PIL.Image.fromarray(ASTRONAUT).save(buffer, "BMP")
  photo = photo_files.decode_photo(buffer.getvalue(), "a.bmp")
  assert photo.format == "PNG" and photo.extension == ".png" and "as PNG" in photo.note
  data = photo_files.encode_photo(photo.pixels, photo, photo_files.provenance(
      "m", "Happy", 1.0, 1))
  assert photo_files.read_provenance(data)["emotion"] == "Happy"
  assert np.array_equal(np.asarray(PIL.Image.open(io.BytesIO(data))), ASTRONAUT)


# --- detectors ------------------------------------------------------------------------

def test_without_mtcnn_auto_falls_back_to_haar_with_one_line(monkeypatch, caplog):
  monkeypatch.setattr(detectors, "mtcnn_available", lambda: False)
  detectors._warn_fallback.cache_clear()  # pylint: disable=protected-access
  with caplog.at_level(logging.WARNING):
    first, second = detectors.load_detector("auto"), detectors.load_detector("auto")
  assert first.name == second.name == "haar"
  assert len([r for r in caplog.records if "mtcnn is not installed" in r.getMessage()]) == 1
  with pytest.raises(errors.UserError, match="pip install"):
    detectors.load_detector("mtcnn")
  with pytest.raises(errors.UserError, match="unknown face detector 'dlib'"):
    detectors.load_detector("dlib")
  found = first.detect(ASTRONAUT)
  assert len(found) == 1 and not found[0].has_eyes


def test_the_readme_python_block_runs_as_written(tmp_path, monkeypatch):
  readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
  blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
  block = [b for b in blocks if "faceexpr_tf.load()" in b]
  assert len(block) == 1
  monkeypatch.chdir(tmp_path)
  PIL.Image.fromarray(ASTRONAUT).save("me.jpg", quality=95)
  namespace = {"photo": ASTRONAUT}
  exec(compile(block[0], "README.md", "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["happy"].shape == ASTRONAUT.shape
  assert np.any(namespace["happy"] != ASTRONAUT)
  assert [os.path.basename(p) for p in namespace["paths"]][:4] == [
      f"me_{n}.jpg" for n in ("Angry", "Happy", "Sad", "Surprise")]
  assert list(namespace["edits"].photos) == ["Angry", "Happy", "Sad", "Surprise"]
  assert len(namespace["edits"].faces) == 1


class _Brighter(translators.Translator):
  """A generator whose edit is known: +0.2 in [-1, 1] (25.5 gray levels) for any emotion,
  taking class ids only, as a SavedModel or a .tflite does."""

  def __init__(self):
    super().__init__(("Angry", "Happy", "Sad", "Surprise"), 48, 1, "brighter by 25.5")

  def _forward(self, images, target_ids):
    return np.clip(images + 0.2, -1.0, 1.0)


def test_a_known_edit_lands_on_the_face_at_its_size_and_a_class_id_model_scales_frames():
  editor = editor_lib.PhotoEditor(_Brighter(), detectors.load_detector("mtcnn"))
  dark = (ASTRONAUT // 2).astype(np.uint8)      # room to brighten without clipping
  face, = editor.find(dark)
  out = editor.edit(dark, "Happy")
  inverse = align.invert(face.to_face)
  y_in, y_out = _ycrcb(dark)[..., 0], _ycrcb(out)[..., 0]
  for fx, fy in [(24, 24), (16, 30), (32, 14)]:  # inside the frame's unfaded part
    x, y = align.apply(inverse, [(fx, fy)])[0].round().astype(int)
    assert abs(y_out[y, x] - y_in[y, x] - 25.5) <= 1.5, (fx, fy)
  # Just outside the frame's corners nothing moved.
  for fx, fy in [(-2, -2), (50, 50), (-2, 50)]:
    x, y = align.apply(inverse, [(fx, fy)])[0].round().astype(int)
    assert y_out[y, x] == y_in[y, x]
  with pytest.raises(errors.UserError, match="class ids only"):
    editor.edit(dark, "Happy", intensity=0.5)
  frames = editor.frames(dark, "Sad", [0.0, 0.5, 1.0], faces=[face])
  assert np.array_equal(frames[0], dark) and np.array_equal(frames[2], out)
  x, y = align.apply(inverse, [(24, 24)])[0].round().astype(int)
  assert abs(int(_ycrcb(frames[1])[y, x, 0]) - y_in[y, x] - 12.75) <= 1.5
