"""POST /v1/photos:edit (faceexpr_tf/web/photo_api.py) with the shipped generator and the
server's own detector: a real photo in, the same photo back (size, format, provenance),
edited around the face only. The bad requests are in tests/test_bad_inputs.py's corpus.
"""

import io

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the `web` extra (fastapi) is not installed")
pytest.importorskip("gradio", reason="the `web` extra (gradio) is not installed")
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (test extra)")

import PIL.Image  # pylint: disable=g-import-not-at-top,wrong-import-position
from fastapi import testclient  # pylint: disable=g-import-not-at-top,wrong-import-position

from faceexpr_tf.photos import photo_files  # pylint: disable=wrong-import-position
from faceexpr_tf.photos import photo_outputs  # pylint: disable=wrong-import-position
from faceexpr_tf.serving import inference  # pylint: disable=wrong-import-position
from faceexpr_tf.web import photo_api  # pylint: disable=wrong-import-position
from faceexpr_tf.web import serve  # pylint: disable=wrong-import-position

URL = photo_api.ROUTE


@pytest.fixture(scope="module")
def app():
  app = serve.build_app(inference.load_translator("pretrained"), page=False)
  yield app
  app.state.api.batcher.close()


@pytest.fixture(scope="module")
def client(app):
  with testclient.TestClient(app) as c:
    yield c


@pytest.fixture(scope="module")
def astronaut():
  return skimage_data.astronaut()   # NASA, public domain: one face, 512x512 RGB


def _encoded(pixels: np.ndarray, fmt: str) -> bytes:
  buffer = io.BytesIO()
  PIL.Image.fromarray(pixels).save(buffer, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
  return buffer.getvalue()


@pytest.mark.parametrize("fmt, media_type", [("JPEG", "image/jpeg"), ("PNG", "image/png")])
def test_a_real_photo_comes_back_edited_in_its_own_format(app, client, astronaut, fmt,
                                                          media_type):
  sent = _encoded(astronaut, fmt)
  response = client.post(f"{URL}?emotion=sad&intensity=0.8", content=sent,
                         headers={"Content-Type": media_type})
  assert response.status_code == 200, response.text
  assert response.headers["content-type"] == media_type
  assert (response.headers["x-faces-found"], response.headers["x-faces-edited"],
          response.headers["x-emotion"], response.headers["x-intensity"]) == ("1", "1", "Sad",
                                                                              "0.8")
  with PIL.Image.open(io.BytesIO(response.content)) as image:
    assert (image.format, image.size, image.mode) == (fmt, (512, 512), "RGB")
    out = np.asarray(image).astype(int)
  record = photo_files.read_provenance(response.content)
  assert record["tool"] == "faceexpr-tf" and record["emotion"] == "Sad"
  assert record["intensity"] == 0.8 and record["faces_edited"] == 1
  assert record["model"] == app.state.photos.translator.source
  # Far from the face (outside its frame, grown a little): the input's pixels, exactly
  # for PNG, within JPEG's re-encoding noise for JPEG; inside it, G's edit.
  before = np.asarray(PIL.Image.open(io.BytesIO(sent))).astype(int)
  face = app.state.photos.editor.find(before.astype(np.uint8))[0]
  x0, y0, x1, y1 = photo_outputs.face_region(face, before.shape, grow=1.1)
  far = np.ones(before.shape[:2], bool)
  far[y0:y1, x0:x1] = False
  assert far.mean() > 0.8
  diff = np.abs(out - before)
  if fmt == "PNG":
    assert diff[far].max() == 0
  else:
    assert diff[far].mean() < 1.0
  assert diff[y0:y1, x0:x1].max() > 30 and diff[y0:y1, x0:x1].mean() > 3 * diff[far].mean()


def test_intensity_defaults_to_one_and_moves_the_edit(client, astronaut):
  sent = _encoded(astronaut, "PNG")
  outs = {}
  for query in ("emotion=Surprise", "emotion=Surprise&intensity=1", "emotion=Surprise&"
                "intensity=0"):
    response = client.post(f"{URL}?{query}", content=sent)   # no Content-Type: taken too
    assert response.status_code == 200, response.text
    outs[query] = np.asarray(PIL.Image.open(io.BytesIO(response.content))).astype(int)
  np.testing.assert_array_equal(outs["emotion=Surprise"], outs["emotion=Surprise&intensity=1"])
  assert np.abs(outs["emotion=Surprise"] - outs["emotion=Surprise&intensity=0"]).max() > 10


def test_a_non_image_is_a_4xx_with_one_line_and_the_server_stays_up(client):
  response = client.post(f"{URL}?emotion=Happy", content=b"these are not the pixels",
                         headers={"Content-Type": "image/jpeg"})
  assert response.status_code == 400
  error = response.json()["error"]
  assert error.startswith("photo: ") and "\n" not in error, error
  assert client.get("/healthz").status_code == 200
