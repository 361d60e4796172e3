"""A generator with Neutral as a fifth emotion, downstream: every form and mode reads the
emotions from the model, so a five-class G shows five (issue 21's Neutral lever).

The G is tiny and random (an edit that is not zero, so outputs differ by emotion); what
is checked is that each path carries five emotions, with Neutral among them, through.
"""

import os

import keras
import numpy as np
import pytest

from faceexpr_tf.modeling import models
from faceexpr_tf.photos import intensity
from faceexpr_tf.serving import export
from faceexpr_tf.serving import inference
from faceexpr_tf.serving import pretrained
from faceexpr_tf.serving import signatures
from faceexpr_tf.serving import tflite

FIVE = ("Angry", "Happy", "Neutral", "Sad", "Surprise")


@pytest.fixture(scope="module")
def five_g(tmp_path_factory):
  """(G, path of its .keras file with a record naming the five emotions)."""
  keras.utils.set_random_seed(5)
  g = models.Generator(models.ModelConfig(g_conv_dim=8, g_repeat_num=1, num_classes=5,
                                          upsample="resize", g_output="residual"))
  g.build()
  kernel = g.get_layer("conv_out").kernel
  kernel.assign(np.random.default_rng(0).normal(0, 0.05, kernel.shape))
  path = str(tmp_path_factory.mktemp("five") / "five.keras")
  pretrained.save_generator(g, path, {"emotions": list(FIVE), "step": 3})
  return g, path


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
  skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (test extra)")
  import PIL.Image  # pylint: disable=g-import-not-at-top
  path = str(tmp_path_factory.mktemp("photo") / "astronaut.jpg")
  PIL.Image.fromarray(skimage_data.astronaut()).save(path, quality=92)
  return path


def test_translator_knows_five_and_neutral_is_a_target(five_g):
  _, path = five_g
  translator = inference.load_translator(path)
  assert translator.emotions == FIVE and translator.num_classes == 5
  faces = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 1)).astype(np.uint8)
  out = translator.translate_all(faces)
  assert out.shape == (2, 5, 48, 48, 1)
  assert not np.array_equal(out[:, 2], out[:, 1])      # Neutral is its own edit
  assert list(translator.class_ids("neutral")) == [2]


def test_saved_model_and_tflite_carry_five_classes(five_g, tmp_path):
  g, _ = five_g
  version_dir = export.export_saved_model(g, FIVE, str(tmp_path), step=3)
  assert signatures.read_class_names(version_dir) == list(FIVE)
  images = export.probe_images(5, 48, 1, seed=2)
  assert export.verify_saved_model(version_dir, g, images, np.arange(5)) < 1e-5
  path = tflite.convert_tflite(version_dir, str(tmp_path / "five_float32.tflite"), "none")
  assert tflite.compare_tflite(path, g, images, np.arange(5))["max_abs"] < 1e-4
  # A .tflite holds no names: `main.py export` writes them beside it, as here.
  (tmp_path / "five_labels.txt").write_text("".join(f"{e}\n" for e in FIVE))
  translator = inference.load_translator(path)
  assert translator.emotions == FIVE
  out = translator.translate_all(images[:2])
  assert out.shape == (2, 5, 48, 48, 1)


def test_translate_mode_writes_a_photo_per_emotion(five_g, photo, tmp_path, main_py):
  _, path = five_g
  out = tmp_path / "out"
  result = main_py("translate", f"--model={path}", f"--input={photo}", f"--out={out}")
  assert result.returncode == 0, result.stderr[-2000:]
  written = sorted(os.listdir(out))
  for emotion in FIVE:
    assert any(emotion.lower() in name.lower() for name in written), (emotion, written)


def test_the_page_shows_five_and_claims_no_reading_its_classifier_cannot_make(
    five_g, photo, tmp_path):
  pytest.importorskip("gradio", reason="the `web` extra (gradio) is not installed")
  from faceexpr_tf.photos import editor as editor_lib  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.web import web_ui  # pylint: disable=g-import-not-at-top
  translator = inference.load_translator(five_g[1])
  # The shipped classifier knows the paper's four: the source estimate is uniform.
  assert not intensity.classifier_reads(translator)
  editor = editor_lib.PhotoEditor(translator, "auto",
                                  run=lambda x, y, g=None: translator.forward_labels(x, y, g))
  page = web_ui.Page(editor, str(tmp_path / "page"))
  result = page.edit(photo, 1.0)
  assert list(result.photos) == list(FIVE)
  assert "classifier reads" not in result.message, result.message
  assert result.steps is not None
  half = page.edit(photo, 0.5)                          # the slider works from uniform
  assert list(half.photos) == list(FIVE)


def test_rest_api_lists_five(five_g):
  pytest.importorskip("fastapi", reason="the `web` extra (fastapi) is not installed")
  from fastapi import testclient  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.web import serve  # pylint: disable=g-import-not-at-top
  app = serve.build_app(inference.load_translator(five_g[1]), page=False)
  with testclient.TestClient(app) as client:
    assert client.get("/healthz").json()["emotions"] == list(FIVE)
    faces = np.random.default_rng(1).integers(0, 256, (2, 48, 48, 1)).astype(np.uint8)
    grid = client.post("/v1/models/faceexpr:predict", json={
        "signature_name": "translate_all", "instances": faces.tolist()})
    assert grid.status_code == 200, grid.text
    assert np.asarray(grid.json()["predictions"]).shape == (2, 5, 48, 48, 1)
  app.state.api.batcher.close()
