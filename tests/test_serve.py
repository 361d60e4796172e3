"""`main.py serve` without a browser: the REST API (TF Serving's contract), the model
thread, intensity, and the page's computation, with the shipped generator.

The REST tests go through FastAPI's TestClient; the serving_client test starts a real
uvicorn on a free loopback port, since that client speaks plain urllib.
"""

import base64
import socket
import threading
import time
from concurrent import futures

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the `web` extra (fastapi) is not installed")
pytest.importorskip("gradio", reason="the `web` extra (gradio) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the `web` extra (uvicorn) is not installed")

from fastapi import testclient  # pylint: disable=g-import-not-at-top,wrong-import-position

from faceexpr_tf import errors  # pylint: disable=wrong-import-position
from faceexpr_tf.photos import faces  # pylint: disable=wrong-import-position
from faceexpr_tf.photos import intensity  # pylint: disable=wrong-import-position
from faceexpr_tf.serving import inference  # pylint: disable=wrong-import-position
from faceexpr_tf.serving import serving_client  # pylint: disable=wrong-import-position
from faceexpr_tf.serving import translators  # pylint: disable=wrong-import-position
from faceexpr_tf.web import batcher as batcher_lib  # pylint: disable=wrong-import-position
from faceexpr_tf.web import predict_json  # pylint: disable=wrong-import-position
from faceexpr_tf.web import rest_api  # pylint: disable=wrong-import-position
from faceexpr_tf.web import serve  # pylint: disable=wrong-import-position
from faceexpr_tf.web import web_ui  # pylint: disable=wrong-import-position

URL = "/v1/models/faceexpr:predict"


@pytest.fixture(scope="module")
def translator():
  return inference.load_translator("pretrained")


@pytest.fixture(scope="module")
def client(translator):
  app = serve.build_app(translator, page=False)
  with testclient.TestClient(app) as c:
    yield c
  app.state.api.batcher.close()


@pytest.fixture(scope="module")
def astronaut():
  """The astronaut photo (public domain) and its detected face as the model sees it."""
  skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (test extra)")
  photo = skimage_data.astronaut()
  box = faces.detect_faces(faces.to_gray(photo))[0]
  face = faces.to_model_input(faces.crop_square(photo, box), 48, 1)
  return photo, face


@pytest.fixture(scope="module")
def probe_faces(astronaut):
  """Three different real-looking faces: the astronaut, mirrored, and darker."""
  face = astronaut[1]
  return np.stack([face, face[:, ::-1], (face * 0.7).astype(np.uint8)])


def png(image) -> bytes:
  ok, data = cv2.imencode(".png", np.asarray(image))
  assert ok
  return data.tobytes()


def b64(data: bytes) -> dict:
  return {"b64": base64.b64encode(data).decode()}


# ---------------------------------------------------------------------------------------
# Happy paths: what TF Serving would answer, computed by the loaded Translator.


def test_status_metadata_and_healthz(client):
  status = client.get("/v1/models/faceexpr")
  assert status.status_code == 200
  assert status.json() == {"model_version_status": [{
      "version": "1", "state": "AVAILABLE",
      "status": {"error_code": "OK", "error_message": ""}}]}
  assert client.get("/v1/models/faceexpr/versions/1").status_code == 200
  meta = client.get("/v1/models/faceexpr/metadata").json()
  defs = meta["metadata"]["signature_def"]["signature_def"]
  assert set(defs) == {"serving_default", "translate_ids", "translate_all",
                       "translate_bytes", "metadata"}
  assert defs["translate_bytes"]["outputs"]["png_bytes"]["dtype"] == "DT_STRING"
  health = client.get("/healthz").json()
  assert health["status"] == "ok" and health["emotions"] == ["Angry", "Happy", "Sad",
                                                            "Surprise"]


def test_serving_default_rows_and_columns_equal_the_translator(client, translator,
                                                               probe_faces):
  targets = ["Happy", "sad", " Surprise "]
  want = translator.translate(probe_faces, [1, 2, 3])
  rows = client.post(URL, json={"instances": [
      {"image": f.tolist(), "target": t} for f, t in zip(probe_faces, targets)]})
  assert rows.status_code == 200, rows.text
  np.testing.assert_array_equal(np.array(rows.json()["predictions"], np.uint8), want)
  columns = client.post(URL, json={"signature_name": "serving_default", "inputs": {
      "image": probe_faces.tolist(), "target": targets}})
  assert columns.status_code == 200, columns.text
  np.testing.assert_array_equal(np.array(columns.json()["outputs"], np.uint8), want)
  assert not np.array_equal(want, probe_faces)


def test_translate_ids_and_translate_all(client, translator, probe_faces):
  x = translators.to_model_range(probe_faces)
  ids = [0, 3, 1]
  out = client.post(URL, json={"signature_name": "translate_ids", "instances": [
      {"image": xi.tolist(), "target": i} for xi, i in zip(x, ids)]}).json()
  want = translator.forward_labels(x, np.eye(4, dtype=np.float32)[ids])
  np.testing.assert_allclose(np.array(out["predictions"]), want, atol=1e-5)
  # One input: the instances are the bare images.
  grid = client.post(URL, json={"signature_name": "translate_all",
                                "instances": probe_faces[:2].tolist()})
  assert grid.status_code == 200, grid.text
  np.testing.assert_array_equal(np.array(grid.json()["predictions"], np.uint8),
                                translator.translate_all(probe_faces[:2]))


def test_translate_bytes_returns_pngs_like_the_local_pipeline(client, translator,
                                                              astronaut):
  photo, face = astronaut
  crop = faces.crop_square(photo, faces.detect_faces(faces.to_gray(photo))[0])
  jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))[1].tobytes()
  body = {"signature_name": "translate_bytes", "instances": [
      {"image_bytes": b64(png(face)), "target": "Happy"},
      {"image_bytes": b64(jpeg), "target": "Angry"}]}
  response = client.post(URL, json=body)
  assert response.status_code == 200, response.text
  predictions = response.json()["predictions"]
  assert [set(p) for p in predictions] == [{"b64"}, {"b64"}]  # *_bytes: base64, unnamed
  outs = [cv2.imdecode(np.frombuffer(base64.b64decode(p["b64"]), np.uint8),
                       cv2.IMREAD_UNCHANGED) for p in predictions]
  assert outs[0].shape == (48, 48)
  np.testing.assert_array_equal(outs[0], translator.translate(face[None], [1])[0, ..., 0])
  # The JPEG of the whole crop is decoded and shrunk here, so compare loosely.
  near = translator.translate(face[None], [0])[0, ..., 0].astype(int)
  assert np.abs(outs[1].astype(int) - near).mean() < 8
  assert not np.array_equal(outs[0], face[..., 0])
  columns = client.post(URL, json={"signature_name": "translate_bytes", "inputs": {
      "image_bytes": [b64(png(face))], "target": ["Happy"]}})
  assert columns.status_code == 200, columns.text
  assert columns.json() == {"outputs": [predictions[0]]}


def test_intensity_input_blends_toward_the_target(client, translator, probe_faces):
  def happy(a):
    body = {"instances": [{"image": probe_faces[0].tolist(), "target": "Happy",
                           "intensity": a}]}
    response = client.post(URL, json=body)
    assert response.status_code == 200, response.text
    return np.array(response.json()["predictions"][0], np.uint8)

  np.testing.assert_array_equal(happy(1.0), translator.translate(probe_faces[:1], [1])[0])
  np.testing.assert_array_equal(
      happy(0.25), intensity.translate(translator, probe_faces[:1], [1], 0.25)[0])


def test_the_projects_serving_client_works_unchanged(translator, probe_faces, astronaut,
                                                     tmp_path):
  """faceexpr_tf/serving/serving_client.py, written for TF Serving, against a real server."""
  app = serve.build_app(translator, page=False)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                         log_level="warning"))
  thread = threading.Thread(target=server.run, daemon=True)
  thread.start()
  try:
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
      time.sleep(0.05)
    assert server.started, "uvicorn did not start within 30 s"
    address = f"127.0.0.1:{port}"
    out = serving_client.predict_rest(address, "faceexpr", "serving_default", {
        "image": probe_faces, "target": ["Happy", "Sad", "Angry"]})
    np.testing.assert_array_equal(out["image"], translator.translate(probe_faces,
                                                                     [1, 2, 0]))
    grid = serving_client.predict_rest(address, "faceexpr", "translate_all",
                                       {"image": probe_faces[:1]}, version=1)
    np.testing.assert_array_equal(grid["images"], translator.translate_all(probe_faces[:1]))
    path = tmp_path / "face.png"
    path.write_bytes(png(astronaut[1]))
    result = serving_client.translate_file(address, str(path), "Surprise")
    decoded = cv2.imdecode(np.frombuffer(result, np.uint8), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(decoded, translator.translate(astronaut[1][None],
                                                                [3])[0, ..., 0])
    with pytest.raises(serving_client.ServingError, match=r"HTTP 400.*unknown emotion"):
      serving_client.translate_file(address, str(path), "Joyful")
    with pytest.raises(serving_client.ServingError, match=r"HTTP 404"):
      serving_client.predict_rest(address, "faceexpr", "serving_default", {
          "image": probe_faces, "target": ["Happy"] * 3}, version=7)
  finally:
    server.should_exit = True
    thread.join(timeout=10)
    app.state.api.batcher.close()


# ---------------------------------------------------------------------------------------
# Bad input: 4xx with {"error": ...}; the server stays up.

_FACE = np.zeros((48, 48, 1), np.uint8).tolist()


@pytest.mark.parametrize("body, status, words", [
    ({"signature_name": "nope", "instances": [{}]}, 400, "not found in signature def"),
    ({"instances": [{"image": _FACE, "target": "Joyful"}]}, 400, "unknown emotion"),
    ({"signature_name": "translate_bytes",
      "instances": [{"image_bytes": {"b64": base64.b64encode(b"hello").decode()},
                     "target": "Happy"}]}, 400, "not a PNG, JPEG, BMP or GIF"),
    ({"signature_name": "translate_bytes",
      "instances": [{"image_bytes": {"b64": base64.b64encode(b"\x89PNG broken").decode()},
                     "target": "Happy"}]}, 400, "corrupt or truncated"),
    ({"signature_name": "translate_bytes",
      "instances": [{"image_bytes": {"b64": "@@@"}, "target": "Happy"}]}, 400,
     "invalid base64"),
    ({"instances": [{"image": [[0] * 48] * 48, "target": "Happy"}]}, 400,
     "expected shape [N, 48, 48, 1]"),
    ({"instances": [{"image": [[[0]] * 48] * 47, "target": "Happy"}]}, 400,
     "expected shape"),
    ({"instances": [{"image": [[[300]] * 48] * 48, "target": "Happy"}]}, 400,
     "integers in [0, 255]"),
    ({"instances": []}, 400, "empty batch"),
    ({"inputs": {"image": [], "target": []}}, 400, "empty batch"),
    ({"instances": [{"image": _FACE, "target": "Happy"}] * 65}, 413, "limit of 64"),
    ({"inputs": {"image": [_FACE, _FACE], "target": ["Happy"]}}, 400,
     "different batch sizes"),
    ({"instances": [{"image": _FACE}]}, 400, "missing input target"),
    ({"instances": [{"image": _FACE, "target": "Happy", "colour": 1}]}, 400,
     "unknown input colour"),
    ({"instances": [{"image": _FACE, "target": "Happy", "intensity": 2}]}, 400,
     "intensity must be in [0, 1]"),
    ({"signature_name": "translate_ids",
      "instances": [{"image": np.zeros((48, 48, 1)).tolist(), "target": 9}]}, 400,
     "out of range [0, 4)"),
    ({"signature_name": "metadata", "instances": [{}]}, 400, "no inputs"),
    ({"instances": [1], "inputs": {}}, 400, "exactly one of"),
    ([1, 2], 400, "JSON object"),
])
def test_bad_requests_answer_4xx_with_the_reason(client, body, status, words):
  response = client.post(URL, json=body)
  assert response.status_code == status, response.text
  assert words in response.json()["error"]
  assert client.get("/healthz").status_code == 200  # still up


def test_bad_urls_and_bodies(client):
  for url in ("/v1/models/other:predict", "/v1/models/faceexpr/versions/3:predict"):
    response = client.post(url, json={"instances": [{"image": _FACE, "target": "Happy"}]})
    assert response.status_code == 404 and "Servable not found" in response.json()["error"]
  assert client.get("/v1/models/other").status_code == 404
  response = client.post(URL, content=b"{not json")
  assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
  nested = b"[" * 50_000 + b"]" * 50_000  # the JSON decoder's recursion limit: 400, not 500
  response = client.post(URL, content=nested)
  assert response.status_code == 400 and "nested too deeply" in response.json()["error"]
  huge = b"x" * (rest_api.MAX_BODY_BYTES + 1)
  response = client.post(URL, content=huge)
  assert response.status_code == 413 and "over the limit" in response.json()["error"]
  bad_version = client.get("/v1/models/faceexpr/versions/abc")
  assert bad_version.status_code == 400 and "error" in bad_version.json()


# ---------------------------------------------------------------------------------------
# The model thread.


def test_batcher_merges_concurrent_requests(translator, probe_faces):
  batcher = batcher_lib.Batcher(translator, max_batch=64, max_wait_s=0.05)
  try:
    x = translators.to_model_range(probe_faces)
    labels = np.eye(4, dtype=np.float32)[[1, 2, 3]]
    with futures.ThreadPoolExecutor(8) as pool:
      outs = list(pool.map(lambda _: batcher.run(x, labels, timeout=60), range(16)))
    want = translator.forward_labels(x, labels)
    for out in outs:
      np.testing.assert_allclose(out, want, atol=1e-5)
    assert batcher.examples == 16 * 3
    assert batcher.batches < 16, "no two requests were merged into one forward pass"
  finally:
    batcher.close()


def test_batcher_merges_requests_with_and_without_edit_gains(translator, probe_faces):
  # Intensity below 1 sends each row's gain (intensity.edit_gain); a merged batch gives the
  # rows without one the gain their labels imply, so every request gets its own answer.
  batcher = batcher_lib.Batcher(translator, max_batch=64, max_wait_s=0.05)
  try:
    x = translators.to_model_range(probe_faces)
    labels = intensity.blend(np.full(4, 0.25, np.float32), [0, 2, 3], 0.5)
    gain = intensity.edit_gain(translator, [0, 2, 3], 0.5)
    assert gain is not None   # the shipped G has an edit gain
    with futures.ThreadPoolExecutor(8) as pool:
      outs = list(pool.map(lambda i: batcher.run(x, labels, gain if i % 2 else None,
                                                 timeout=60), range(8)))
    with_gain, without = translator.forward_labels(x, labels, gain), translator.forward_labels(
        x, labels)
    assert np.abs(with_gain - without).max() > 1e-3
    for i, out in enumerate(outs):
      np.testing.assert_allclose(out, with_gain if i % 2 else without, atol=1e-5)
    assert batcher.batches < 8, "no two requests were merged into one forward pass"
  finally:
    batcher.close()


def test_batcher_traces_both_forward_passes_before_serving(translator, probe_faces):
  # The first request at an intensity below 1 (a gained forward pass) must not pay for a
  # trace: the batcher warms both tf.functions, and any later batch size reuses them.
  translator = translators.KerasTranslator(translator.generator, translator.emotions, "test")
  # pylint: disable=protected-access
  traces = lambda: (translator._compiled.experimental_get_tracing_count(),
                    translator._compiled_gained.experimental_get_tracing_count())
  batcher = batcher_lib.Batcher(translator, max_batch=64, max_wait_s=0.0)
  try:
    warmed = traces()
    assert min(warmed) >= 1, f"traces after warm-up (plain, gained): {warmed}"
    x = translators.to_model_range(probe_faces)
    labels = np.eye(4, dtype=np.float32)[[1, 2, 3]]
    batcher.run(x, labels, timeout=60)
    batcher.run(x, labels, np.full(3, 0.9, np.float32), timeout=60)
    assert traces() == warmed, "a request traced G again after the warm-up"
  finally:
    batcher.close()


def test_batcher_queue_is_bounded(translator, probe_faces):
  batcher = batcher_lib.Batcher(translator, max_batch=1, max_wait_s=0.0, max_queue=2)
  try:
    x = translators.to_model_range(np.repeat(probe_faces, 20, axis=0))
    labels = np.eye(4, dtype=np.float32)[np.zeros(len(x), int)]
    accepted, refused = [], 0
    for _ in range(20):
      try:
        accepted.append(batcher.submit(x, labels))
      except predict_json.RequestError as e:
        assert e.status == 503 and "busy" in str(e)
        refused += 1
    assert refused > 0, "20 instant submits of a slow job never filled a 2-slot queue"
    for future in accepted:
      assert future.result(60).shape == x.shape
  finally:
    batcher.close()


# ---------------------------------------------------------------------------------------
# Intensity.


def test_blend_and_bounds():
  source = np.array([0.5, 0.5, 0, 0], np.float32)
  np.testing.assert_allclose(intensity.blend(source, [3], 0.25),
                             [[0.375, 0.375, 0, 0.25]])
  np.testing.assert_allclose(intensity.blend(source, [0], 1.0), [[1, 0, 0, 0]])
  for bad in (-0.1, 1.5, float("nan")):
    with pytest.raises(intensity.IntensityError, match=r"\[0, 1\]"):
      intensity.check_alpha(bad)


def test_intensity_moves_from_the_input_to_the_full_expression(translator, probe_faces):
  source = intensity.source_estimator(translator)(probe_faces)
  np.testing.assert_allclose(source.sum(axis=1), 1, atol=1e-5)
  assert source[0].argmax() == 1  # the smiling astronaut reads as Happy
  for target in (0, 2, 3):        # away from Happy
    ids = np.full(len(probe_faces), target)
    outs = [intensity.translate(translator, probe_faces, ids, a, source).astype(float)
            for a in intensity.STEPS]
    full = outs[-1]
    np.testing.assert_array_equal(full, translator.translate(probe_faces, ids))
    to_full = [np.abs(o - full).mean() for o in outs]
    to_input = [np.abs(o - probe_faces).mean() for o in outs]
    # Towards the full expression over each half (0 -> 0.5 -> 1), and no quarter step
    # moves away from it by more than half a gray level: G is not linear in its label,
    # and the shipped G's first quarter step to Angry on this face goes sideways by 0.03.
    assert to_full[0] > to_full[2] > to_full[4], to_full
    assert all(b < a + 0.5 for a, b in zip(to_full, to_full[1:])), to_full
    assert to_input[0] < to_input[-1], to_input   # a=0 stays closer to the face
    assert to_input[0] < 0.05 * 255               # G's reconstruction of the face


def test_ids_only_translators_refuse_intensity_below_one(probe_faces, tiny_saved_model):
  from faceexpr_tf.data import emotions as emotions_lib  # pylint: disable=g-import-not-at-top
  tiny, version_dir = tiny_saved_model   # a tiny random G and its SavedModel (conftest.py)
  keras_translator = translators.KerasTranslator(tiny, emotions_lib.DEFAULT_EMOTIONS, "tiny")
  saved = inference.load_translator(version_dir)
  assert keras_translator.takes_label_vectors and not saved.takes_label_vectors
  np.testing.assert_allclose(
      intensity.translate(saved, probe_faces[:1], [1], 1.0),
      keras_translator.translate(probe_faces[:1], [1]), atol=1)
  with pytest.raises(errors.UserError, match="class ids only"):
    intensity.translate(saved, probe_faces[:1], [1], 0.5)
  with pytest.raises(errors.UserError, match="class ids only"):
    saved.translate_labels(probe_faces[:1], [[0.5, 0.5, 0, 0]])


def test_translate_mode_intensity_flag(parsed_flags, tmp_path, astronaut):
  from faceexpr_tf.photos import translate  # pylint: disable=g-import-not-at-top
  path = tmp_path / "astronaut.png"
  path.write_bytes(png(cv2.cvtColor(astronaut[0], cv2.COLOR_RGB2BGR)))
  grids = {}
  for a in (0.0, 1.0):
    translate.FLAGS.input = [str(path)]
    translate.FLAGS.out = str(tmp_path / f"out{a}")
    translate.FLAGS.intensity = a
    assert translate.run() == 0
    # The photo edited in place (translate's default output since photos/editor.py).
    grids[a] = cv2.imread(str(tmp_path / f"out{a}" / "astronaut_Sad.png"))
  assert grids[0.0].shape == grids[1.0].shape == astronaut[0].shape
  assert np.abs(grids[0.0].astype(int) - grids[1.0]).max() > 10


# ---------------------------------------------------------------------------------------
# The page's computation (the browser test drives the same through Chromium).


@pytest.fixture(scope="module")
def page_editor(translator):
  from faceexpr_tf.photos import editor as editor_lib  # pylint: disable=g-import-not-at-top
  return editor_lib.PhotoEditor(translator, "auto",
                                run=lambda x, y, g=None: translator.forward_labels(x, y, g))


def test_page_shows_the_whole_photo_edited_strip_animation_and_downloads(
    page_editor, translator, astronaut, tmp_path):
  import PIL.Image  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.photos import photo_files  # pylint: disable=g-import-not-at-top
  page = web_ui.Page(page_editor, str(tmp_path / "page"))
  upload = tmp_path / "astronaut.jpg"
  PIL.Image.fromarray(astronaut[0]).save(upload, quality=92)
  result = page.edit(str(upload), 1.0)
  assert result.message.startswith("Edited 1 face in your 512x512 photo"), result.message
  assert "Happy" in result.message                      # the classifier's reading
  assert list(result.photos) == list(translator.emotions)
  before = np.asarray(PIL.Image.open(upload))
  shown = {}
  for name, path in result.photos.items():
    with PIL.Image.open(path) as image:                 # the upload's format and size
      assert (image.format, image.size) == ("JPEG", (512, 512)), name
      shown[name] = np.asarray(image).astype(int)
    record = photo_files.read_provenance(path)
    assert (record["tool"], record["emotion"], record["intensity"]) == ("faceexpr-tf", name,
                                                                        1.0)
    assert record["model"] == translator.source
    caption = result.captions[name]
    assert "faceexpr-tf" in caption and name in caption and "intensity 1" in caption
    assert np.abs(shown[name] - before).max() > 40, f"{name}: the face did not change"
  assert not np.array_equal(shown["Happy"], shown["Sad"])
  with PIL.Image.open(result.animation) as gif:
    assert gif.format == "GIF" and gif.n_frames > len(translator.emotions)
  assert photo_files.read_provenance(result.animation)["intensity"] == "0 to 1"
  assert cv2.imread(result.strip) is not None and "faceexpr-tf" in result.note
  assert result.downloads == [*result.photos.values(), result.strip, result.animation]
  assert result.steps.shape[0] > result.steps.shape[1] / 2   # 4 rows of 5 steps
  # The slider re-edits the same photo (its faces kept): a different photo, same size.
  half = page.edit(str(upload), 0.5)
  with PIL.Image.open(half.photos["Sad"]) as image:
    assert image.size == (512, 512)
    assert np.abs(np.asarray(image).astype(int) - shown["Sad"]).mean() > 0.05
  assert half.animation == result.animation and "intensity 0.5" in half.captions["Sad"]
  # An array (no file) is edited too, and written as PNG.
  array = page.edit(astronaut[0], 1.0)
  assert all(p.endswith(".png") for p in array.photos.values())


def test_page_messages_for_no_face_and_bad_files(page_editor, tmp_path, monkeypatch):
  page = web_ui.Page(page_editor, str(tmp_path / "page"))
  assert "No face found" in page.edit(np.full((200, 200, 3), 128, np.uint8), 1).message
  from gradio import data_classes  # pylint: disable=g-import-not-at-top
  photo = web_ui.photo_input(type="filepath", image_mode=None)
  text = tmp_path / "notes.txt"
  text.write_text("not a picture")
  rejected = photo.preprocess(data_classes.FileData(path=str(text), orig_name="notes.txt"))
  assert isinstance(rejected, web_ui.Rejected)
  assert "notes.txt is not an image" in page.edit(rejected, 1).message
  image = tmp_path / "face.png"
  image.write_bytes(png(np.zeros((64, 64), np.uint8)))
  assert photo.preprocess(data_classes.FileData(path=str(image), orig_name="face.png")
                          ) == str(image)           # the uploaded file itself: format, EXIF
  monkeypatch.setattr(web_ui, "MAX_UPLOAD_BYTES", 10)
  big = photo.preprocess(data_classes.FileData(path=str(image), orig_name="face.png"))
  assert "face.png is too large" in page.edit(big, 1).message


def test_a_busy_port_is_a_user_error_before_the_model_loads():
  with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    with pytest.raises(errors.UserError, match=f"cannot listen on 127.0.0.1:{port}"):
      serve.check_port("127.0.0.1", port)
  serve.check_port("127.0.0.1", port)  # free again


def test_translate_bytes_turns_phone_photos_upright_and_refuses_huge_ones(client, translator,
                                                                          astronaut):
  """EXIF orientation 6 (a phone held upright): the same face as the upright file."""
  import PIL.Image  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  face = astronaut[1][..., 0]
  stored = np.rot90(face, 1)  # how the camera stored it; orientation 6 rotates it back
  exif = PIL.Image.Exif()
  exif[0x0112] = 6
  buffer = io.BytesIO()
  PIL.Image.fromarray(np.ascontiguousarray(stored)).save(buffer, "JPEG", quality=100,
                                                          exif=exif)
  out = client.post(URL, json={"signature_name": "translate_bytes", "instances": [
      {"image_bytes": b64(buffer.getvalue()), "target": "Sad"}]}).json()["predictions"][0]
  got = cv2.imdecode(np.frombuffer(base64.b64decode(out["b64"]), np.uint8),
                     cv2.IMREAD_GRAYSCALE).astype(int)
  upright = translator.translate(astronaut[1][None], [2])[0, ..., 0].astype(int)
  sideways = translator.translate(stored[None, ..., None].copy(), [2])[0, ..., 0]
  assert np.abs(got - upright).mean() < 3 < np.abs(got - sideways).mean()
  huge = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (20000).to_bytes(4, "big") * 2 + b"\x08"
  response = client.post(URL, json={"signature_name": "translate_bytes", "instances": [
      {"image_bytes": b64(huge), "target": "Sad"}]})
  assert response.status_code == 413 and "20000x20000" in response.json()["error"]
