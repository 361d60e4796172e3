"""The bad-input corpus (tests/data/bad_inputs, written by tools/make_bad_inputs.py):
each input gives one clear line naming what and where, the other inputs are still
processed, nothing ends in a traceback or a hang. Each case is counted as tried and, when
its test passes, as handled cleanly (the README's Reliability section quotes the count)."""

import os
import re
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from faceexpr_tf import errors
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.data import faceset
from faceexpr_tf.data import fer2013
from faceexpr_tf.modeling import models
from faceexpr_tf.serving import inference
from faceexpr_tf.serving import signatures
from faceexpr_tf.store import runs
from faceexpr_tf.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "data", "bad_inputs")
TINY = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_bad_inputs  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position


def _files(folder):
  return sorted(os.listdir(os.path.join(CORPUS, folder)))


def _one_line(error, path):
  text = str(error)
  assert "\n" not in text and "Traceback" not in text, text
  assert path in text, text
  return text


def test_corpus_is_what_the_script_writes(tmp_path):
  written = make_bad_inputs.write(str(tmp_path))
  for folder, names in written.items():
    assert _files(folder) == names, folder
  for name in make_bad_inputs.csv_files():   # csv and checkpoints are byte-exact
    with open(os.path.join(CORPUS, "csv", name), "rb") as f:
      assert f.read() == (tmp_path / "csv" / name).read_bytes(), name


# --- csv files ----------------------------------------------------------------------------

BAD_ROW_FILES = sorted(list(make_bad_inputs.BAD_ROWS) + ["binary_garbage_row.csv",
                                                         "non_utf8_row.csv"])
WHOLE_FILE_ERRORS = {
    "empty.csv": "file is empty", "empty.csv.gz": "file is empty",
    "header_only.csv": "no images of Angry, Happy, Sad, Surprise",
    "no_pixels_column.csv": "missing column 'pixels'",
    "not_a_csv.csv": "missing column 'emotion'",
    "truncated.csv.gz": "cannot decompress gzip data"}
LOADS = {"ok_reference.csv": 4, "not_gzip.csv.gz": 2}   # plain text named .gz is read


def test_csv_corpus_is_fully_covered():
  assert sorted(BAD_ROW_FILES + list(WHOLE_FILE_ERRORS) + list(LOADS)) == _files("csv")


@pytest.mark.parametrize("name", BAD_ROW_FILES)
def test_bad_csv_row_names_file_and_line_or_is_skipped(name):
  path = os.path.join(CORPUS, "csv", name)
  with pytest.raises(faceset.DataError) as e:
    fer2013.load_fer2013_csv(path)
  assert _one_line(e.value, path).startswith(f"{path} line 3: ")
  # --skip_bad_rows: the good rows on both sides of it still load.
  assert len(fer2013.load_fer2013_csv(path, skip_bad_rows=True)) == 2


@pytest.mark.parametrize("name", sorted(WHOLE_FILE_ERRORS))
def test_unusable_csv_file_is_one_line(name):
  path = os.path.join(CORPUS, "csv", name)
  for skip in (False, True):
    with pytest.raises(faceset.DataError, match=WHOLE_FILE_ERRORS[name]) as e:
      fer2013.load_fer2013_csv(path, skip_bad_rows=skip)
    assert _one_line(e.value, path).startswith(f"{path}: ")


@pytest.mark.parametrize("name", sorted(LOADS))
def test_csv_controls_load(name):
  assert len(fer2013.load_fer2013_csv(os.path.join(CORPUS, "csv", name))) == LOADS[name]


# --- photos for translate -----------------------------------------------------------------

BAD_IMAGES = {
    "bad_empty.png": "corrupt or truncated image", "bad_text.jpg": "corrupt or truncated",
    "bad_truncated.png": "corrupt or truncated", "bad_truncated.jpg": "truncated JPEG",
    "bad_pdf_named.png": "corrupt or truncated", "bad_no_face.png": "no face",
    "huge.png": "20000x20000 pixels is too large"}
FACES_FOUND = {"ok_two_faces.png": 2}


@pytest.fixture(scope="module")
def translator():
  return inference.load_translator("pretrained")


def test_translate_reports_each_bad_photo_and_translates_the_rest(translator, tmp_path):
  from faceexpr_tf.photos import grids  # pylint: disable=g-import-not-at-top
  import test_images  # pylint: disable=g-import-not-at-top  (tests/ is on sys.path)
  folder = tmp_path / "photos"
  folder.mkdir()
  for name in _files("images"):
    (folder / name).write_bytes(open(os.path.join(CORPUS, "images", name), "rb").read())
  (folder / "huge.png").write_bytes(test_images.huge_png_header())
  paths = sorted(str(p) for p in folder.iterdir())
  opts = grids.Options(out_dir=str(tmp_path / "out"), class_ids=[1],
                           names=["Happy"], scale=1, face_size=48)
  written, failures = grids.translate_inputs(paths, translator, opts)
  assert len(failures) == len(BAD_IMAGES)
  for name, message in BAD_IMAGES.items():
    line = [f for f in failures if f.startswith(str(folder / name) + ":")]
    assert len(line) == 1 and message in line[0] and "\n" not in line[0], (name, failures)
  good = [n for n in _files("images") if n.startswith("ok_")]
  out = os.listdir(tmp_path / "out")
  for name in good:
    stem = os.path.splitext(name)[0]
    found = len([f for f in out if f.startswith(stem + "_face") and f.endswith("_grid.png")])
    assert found == FACES_FOUND.get(name, 1), (name, sorted(out))
  assert written == sum(FACES_FOUND.get(n, 1) for n in good)


def test_translate_cli_goes_on_past_bad_photos_and_exits_1(tmp_path, main_py):
  bad = [os.path.join(CORPUS, "images", n) for n in ("bad_empty.png", "bad_text.jpg")]
  good = os.path.join(CORPUS, "images", "ok_gray.png")
  # `python main.py translate ...`, forked from a process that imported TensorFlow once.
  proc = main_py("translate", f"--input={','.join(bad + [good])}", f"--out={tmp_path}",
                 "--emotions=Sad")
  assert proc.returncode == 1, proc.stderr
  assert "Traceback" not in proc.stderr
  for path in bad:
    assert f"{path}: corrupt or truncated image" in proc.stderr
  assert "translated 1 face(s) from 1 of 3 input(s)" in proc.stderr
  assert os.path.exists(tmp_path / "ok_gray_Sad.png")        # the gray photo, edited


# --- checkpoints and .tflite files ------------------------------------------------------------

CHECKPOINT_ERRORS = {
    "ckpt-000000001.npz": "corrupt or incomplete checkpoint (empty file)",
    "ckpt-000000002.npz": "corrupt or incomplete checkpoint (not a complete .npz archive)",
    "ckpt-000000003.npz": "not a faceexpr-tf checkpoint",
    "ckpt-000000004.npz": "not a faceexpr-tf checkpoint",
    "ckpt-000000005.npz": "corrupt or incomplete checkpoint (not a complete .npz archive)"}


@pytest.mark.parametrize("name", _files("checkpoints"))
def test_foreign_or_broken_checkpoint_is_one_line(name):
  path = os.path.join(CORPUS, "checkpoints", name)
  with pytest.raises(runs.RunDirError, match=re.escape(CHECKPOINT_ERRORS[name])) as e:
    runs.read_checkpoint(path, ["generator"])
  _one_line(e.value, path)


def _real_checkpoint(run_dir):
  runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, emotions_lib.DEFAULT_EMOTIONS))
  g, _ = models.build_models(TINY)
  return runs.save_checkpoint(run_dir, 1, {"generator": g.weights})


@pytest.mark.parametrize("damage", ["cut_10", "cut_50", "cut_90", "cut_last_byte",
                                    "flip_a_byte"])
def test_damaged_real_checkpoint_is_one_line_and_no_run_dir_loads_it(tmp_path, damage):
  run_dir = str(tmp_path / "run")
  path = _real_checkpoint(run_dir)
  blob = bytearray(open(path, "rb").read())
  if damage == "flip_a_byte":
    blob[len(blob) // 2] ^= 0xFF          # inside a weight array: its CRC no longer fits
  else:
    blob = blob[:{"cut_10": len(blob) // 10, "cut_50": len(blob) // 2,
                  "cut_90": len(blob) * 9 // 10, "cut_last_byte": len(blob) - 1}[damage]]
  with open(path, "wb") as f:
    f.write(blob)
  with pytest.raises(runs.RunDirError, match="corrupt or incomplete checkpoint") as e:
    runs.read_checkpoint(path, ["generator"])
  _one_line(e.value, path)
  with pytest.raises(runs.RunDirError, match="no readable checkpoint") as e:
    runs.load_generator(run_dir)
  _one_line(e.value, run_dir)


@pytest.mark.parametrize("name", _files("tflite"))
def test_broken_tflite_is_one_line(name):
  pytest.importorskip("ai_edge_litert", reason="reading .tflite files needs ai-edge-litert")
  path = os.path.join(CORPUS, "tflite", name)
  with pytest.raises(errors.UserError, match="corrupt or unreadable .tflite") as e:
    inference.load_translator(path)
  _one_line(e.value, path)


# --- flags out of range -------------------------------------------------------------------

@pytest.mark.parametrize("flag,value,message", [
    ("batch_size", -8, "--batch_size=-8: must be at least 1"),
    ("steps_per_execution", 0, "--steps_per_execution=0: must be at least 1"),
    ("checkpoint_every", -1, "--checkpoint_every=-1: must be 0 or more"),
    ("image_size", 50, "--image_size=50: must be a positive multiple of 16"),
    ("g_lr", 0.0, "--g_lr=0.0: must be above 0"),
    ("beta2", 1.0, "--beta2=1.0: must be in [0, 1)"),
    ("same_target_rate", 1.5, "--same_target_rate=1.5: must be in [0, 1]"),
    ("guide_confidence", 0.0, "--guide_confidence=0.0: must be in (0, 1]"),
    ("guide_confidence", 1.5, "--guide_confidence=1.5: must be in (0, 1]"),
    ("eval_faces", 2, "--eval_faces=2: must be 0 (all) or at least 4"),
])
def test_training_flag_out_of_range_is_one_line(parsed_flags, flag, value, message):
  train.FLAGS[flag].value = value
  with pytest.raises(errors.UserError) as e:
    train.check_flags()
  assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.parametrize("value,message", [
    ("Happy,Bored", "unknown emotion 'Bored'"), ("Happy,Happy", "listed twice")])
def test_unknown_or_repeated_emotion_is_one_line(value, message):
  with pytest.raises(errors.UserError, match=message) as e:
    emotions_lib.parse_emotions(value)
  assert "\n" not in str(e.value)


# --- serving requests to the SavedModel ------------------------------------------------------

@pytest.fixture(scope="module")
def served(tiny_loaded):
  """A tiny random G's SavedModel, loaded (shared with other modules: conftest.py)."""
  return tiny_loaded


def _call(served, signature, **inputs):
  return served.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})


def test_empty_batch_is_an_empty_answer(served):
  out = _call(served, "serving_default", image=np.zeros((0, 48, 48, 1), np.uint8),
              target=np.zeros((0,), str))
  assert out["image"].shape == (0, 48, 48, 1)
  out = _call(served, "translate_all", image=np.zeros((0, 48, 48, 1), np.uint8))
  assert out["images"].shape == (0, 4, 48, 48, 1)
  out = _call(served, "translate_bytes", image_bytes=np.zeros((0,), bytes),
              target=np.zeros((0,), str))
  assert out["png_bytes"].shape == (0,)


@pytest.mark.parametrize("signature,inputs,error,message", [
    ("serving_default", {"image": np.zeros((1, 48, 48, 1), np.float32), "target": ["Sad"]},
     (TypeError, ValueError, tf.errors.InvalidArgumentError), "uint8|dtype|float"),
    ("serving_default", {"image": np.zeros((1, 48, 48), np.uint8), "target": ["Sad"]},
     (TypeError, ValueError, tf.errors.InvalidArgumentError), "shape|rank|image must be"),
    ("serving_default", {"image": np.zeros((1, 48, 48, 1), np.uint8), "target": ["Bored"]},
     tf.errors.InvalidArgumentError, "unknown emotion name.*Bored"),
    ("translate_ids", {"image": np.zeros((1, 48, 48, 1), np.float32), "target": [7]},
     tf.errors.InvalidArgumentError, "out of range"),
    ("translate_bytes", {"image_bytes": [b"\xff\xd8\xff garbage"], "target": ["Sad"]},
     tf.errors.InvalidArgumentError, "(?i)jpeg"),
    ("translate_bytes", {"image_bytes": [b"GIF89a"], "target": ["Sad"]},
     tf.errors.InvalidArgumentError, "(?i)gif"),
])
def test_bad_request_is_a_clear_error(served, signature, inputs, error, message):
  with pytest.raises(error, match=message):
    _call(served, signature, **inputs)


def test_huge_image_upload_is_refused_before_decoding(served):
  import test_images  # pylint: disable=g-import-not-at-top  (tests/ is on sys.path)
  with pytest.raises(tf.errors.InvalidArgumentError, match="image too large to decode"):
    _call(served, "translate_bytes", image_bytes=[test_images.huge_png_header()],
          target=["Sad"])


def test_huge_batch_is_refused_with_the_limit_before_g_runs(served):
  """A 4096-face request is refused in one line naming the limit (not run: G's
  activations for all of them at once could take the server down); the limit itself
  works."""
  limit = signatures.MAX_BATCH
  huge = np.zeros((4 * limit, 48, 48, 1), np.uint8)
  message = r"batch too large \(at most {} images per request"
  with pytest.raises(tf.errors.InvalidArgumentError, match=message.format(limit)):
    _call(served, "serving_default", image=huge, target=["Sad"] * len(huge))
  with pytest.raises(tf.errors.InvalidArgumentError, match=message.format(limit)):
    _call(served, "translate_ids", image=huge.astype(np.float32),
          target=np.zeros(len(huge), np.int32))
  per_all = limit // 4                      # translate_all runs N*K rows
  with pytest.raises(tf.errors.InvalidArgumentError, match=message.format(per_all)):
    _call(served, "translate_all", image=huge[:per_all + 1])
  png = cv2.imencode(".png", huge[0])[1].tobytes()
  with pytest.raises(tf.errors.InvalidArgumentError, match=message.format(limit)):
    _call(served, "translate_bytes", image_bytes=[png] * (limit + 1),
          target=["Sad"] * (limit + 1))
  out = _call(served, "translate_ids", image=huge[:limit].astype(np.float32) - 1.0,
              target=np.arange(limit, dtype=np.int32) % 4)
  assert out["image"].shape == (limit, 48, 48, 1)
  assert np.all(np.isfinite(out["image"].numpy()))


# --- requests to `main.py serve`'s REST API ---------------------------------------------------
# POST /v1/photos:edit (web/photo_api.py) gets each corpus photo, bad queries, types and
# sizes; :predict gets bodies nested deeper than the JSON decoder recurses. Each answers
# a 4xx with {"error": one line} (a photo without a face: 200, the bytes sent back), never
# a 500, and nothing is logged with a traceback.

PHOTO_URL = "/v1/photos:edit"
PREDICT_URL = "/v1/models/faceexpr:predict"
PHOTO_ERRORS = {
    "bad_empty.png": (400, "empty body"), "bad_text.jpg": (400, "photo: "),
    "bad_truncated.png": (400, "photo: "), "bad_truncated.jpg": (400, "photo: truncated"),
    "bad_pdf_named.png": (400, "photo: "), "huge.png": (413, "20000x20000 pixels")}


@pytest.fixture(scope="module")
def rest(translator):
  """The REST app (no page) of `main.py serve` with the shipped G and OpenCV's detector."""
  pytest.importorskip("fastapi", reason="the `web` extra (fastapi) is not installed")
  pytest.importorskip("gradio", reason="the `web` extra (gradio) is not installed")
  from fastapi import testclient  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.web import serve  # pylint: disable=g-import-not-at-top
  app = serve.build_app(translator, page=False, detector="haar")
  with testclient.TestClient(app) as client:   # raises, were any request to fail inside
    yield client
  app.state.api.batcher.close()


def _refused(response, status, words, caplog):
  assert response.status_code == status, response.text
  error = response.json()["error"]
  assert words in error and "\n" not in error and "Traceback" not in error, error
  _no_traceback(caplog)
  return error


def _no_traceback(caplog):
  logged = [r for r in caplog.records if r.exc_info or r.levelname in ("ERROR", "CRITICAL")]
  assert not logged and "Traceback" not in caplog.text, caplog.text


@pytest.mark.parametrize("name", _files("images") + ["huge.png"])
def test_photo_route_answers_each_corpus_photo(rest, name, caplog):
  import io  # pylint: disable=g-import-not-at-top
  import PIL.Image  # pylint: disable=g-import-not-at-top
  import test_images  # pylint: disable=g-import-not-at-top  (tests/ is on sys.path)
  from faceexpr_tf.photos import photo_files  # pylint: disable=g-import-not-at-top
  data = (test_images.huge_png_header() if name == "huge.png" else
          open(os.path.join(CORPUS, "images", name), "rb").read())
  response = rest.post(f"{PHOTO_URL}?emotion=Sad", content=data,
                       headers={"Content-Type": "application/octet-stream"})
  if name in PHOTO_ERRORS:
    _refused(response, *PHOTO_ERRORS[name], caplog)
    return
  assert response.status_code == 200, response.text
  if name == "bad_no_face.png":           # nothing to edit: the photo as it was sent
    assert response.content == data and response.headers["x-faces-edited"] == "0"
    assert "no face found" in response.headers["x-edit-note"]
  else:                                   # the same photo, upright, edited, signed
    with PIL.Image.open(io.BytesIO(data)) as sent, \
         PIL.Image.open(io.BytesIO(response.content)) as back:
      assert back.size == sent.size and back.format == sent.format, name
    assert response.headers["x-faces-edited"] == str(FACES_FOUND.get(name, 1))
    assert photo_files.read_provenance(response.content)["emotion"] == "Sad"
  _no_traceback(caplog)


def _small_png() -> bytes:
  return cv2.imencode(".png", np.full((64, 64), 90, np.uint8))[1].tobytes()


@pytest.mark.parametrize("query, headers, status, words", [
    ("emotion=Joyful", {}, 400, "unknown emotion 'Joyful' (this model knows Angry, Happy"),
    ("emotion=Happy,Sad", {}, 400, "unknown emotion"),
    ("", {}, 400, "missing query parameter emotion"),
    ("emotion=", {}, 400, "missing query parameter emotion"),
    ("intensity=0.5", {}, 400, "missing query parameter emotion"),
    ("emotion=Happy&emotion=Sad", {}, 400, "given twice"),
    ("emotion=Happy&emotions=Sad", {}, 400, "unknown query parameter 'emotions'"),
    ("emotion=Happy&intensity=abc", {}, 400, "intensity must be a number in [0, 1]"),
    ("emotion=Happy&intensity=", {}, 400, "intensity must be a number in [0, 1]"),
    ("emotion=Happy&intensity=1.5", {}, 400, "got '1.5'"),
    ("emotion=Happy&intensity=-0.1", {}, 400, "got '-0.1'"),
    ("emotion=Happy&intensity=nan", {}, 400, "got 'nan'"),
    ("emotion=Happy&intensity=inf", {}, 400, "got 'inf'"),
    ("emotion=Happy", {"Content-Type": "application/json"}, 415, "is not a photo"),
    ("emotion=Happy", {"Content-Type": "multipart/form-data; boundary=x"}, 415,
     "send the photo file's bytes"),
    ("emotion=Happy", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
     "-H 'Content-Type: image/jpeg'"),
])
def test_photo_route_refuses_bad_queries_and_types(rest, query, headers, status, words,
                                                   caplog):
  response = rest.post(f"{PHOTO_URL}?{query}", content=_small_png(), headers=headers)
  _refused(response, status, words, caplog)


def test_photo_route_refuses_bodies_over_the_limit_and_ids_only_intensity(rest, caplog):
  import types  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.web import photo_api  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.web import predict_json  # pylint: disable=g-import-not-at-top
  huge = b"\xff\xd8\xff" + b"\x00" * photo_api.MAX_PHOTO_BYTES
  _refused(rest.post(f"{PHOTO_URL}?emotion=Happy", content=huge), 413, "over the limit",
           caplog)
  # A SavedModel or .tflite G takes class ids only: intensity below 1 is refused up front.
  ids_only = types.SimpleNamespace(translator=types.SimpleNamespace(
      emotions=emotions_lib.DEFAULT_EMOTIONS, takes_label_vectors=False, source="g.tflite"))
  api = photo_api.PhotoApi(ids_only)
  assert api.parse_query([("emotion", "happy")]) == ("Happy", 1.0)
  with pytest.raises(predict_json.RequestError, match="g.tflite takes class ids only") as e:
    api.parse_query([("emotion", "Happy"), ("intensity", "0.5")])
  assert e.value.status == 400


_DEEP = 50_000


@pytest.mark.parametrize("body, words", [
    ("[" * _DEEP + "]" * _DEEP, "nested too deeply"),
    ('{"instances": ' + "[" * _DEEP + "]" * _DEEP + "}", "nested too deeply"),
    ('{"a": ' * _DEEP + "0" + "}" * _DEEP, "nested too deeply"),
    ('[{"b64": ' * _DEEP + '""' + "}]" * _DEEP, "nested too deeply"),
    ('{"instances": ' + "[" * 900 + "]" * 900 + "}", "instances[0]"),  # under the limit
])
def test_predict_body_nested_too_deeply_is_a_400(rest, body, words, caplog):
  assert len(body) < 1 << 20           # far under the 16 MB body limit
  _refused(rest.post(PREDICT_URL, content=body.encode()), 400, words, caplog)
  assert rest.get("/healthz").status_code == 200
