import os

import keras
import numpy as np
import pytest

from faceexpr_tf import errors
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.modeling import models
from faceexpr_tf.serving import inference
from faceexpr_tf.serving import pretrained

EMOTIONS = emotions_lib.DEFAULT_EMOTIONS
REFERENCE = os.path.join(pretrained.ASSETS, "generator_reference.npy")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  keras.utils.set_random_seed(0)
  g = models.Generator(models.ModelConfig(g_conv_dim=8, g_repeat_num=1, upsample="resize",
                                          g_output="residual"))
  g.build()
  for w in g.weights:  # non-trivial weights, so a round trip is a real check
    w.assign(np.random.default_rng(1).normal(0, 0.05, w.shape).astype("float32"))
  path = str(tmp_path_factory.mktemp("g") / "g.keras")
  pretrained.save_generator(g, path, {"emotions": list(EMOTIONS), "step": 7})
  return g, path


def test_keras_file_opens_with_plain_load_model_and_matches(saved):
  g, path = saved
  loaded = keras.models.load_model(path, compile=False)
  assert isinstance(loaded, models.Generator) and loaded.config == g.config
  np.testing.assert_array_equal(pretrained.reference_output(loaded),
                                pretrained.reference_output(g))


def test_translator_from_a_keras_file(saved):
  _, path = saved
  translator = inference.load_translator(path)
  assert translator.emotions == EMOTIONS and translator.step == 7
  faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1)).astype(np.uint8)
  assert translator.translate_all(faces).shape == (3, 4, 48, 48, 1)


def test_corrupt_or_missing_generator_is_one_line(tmp_path, saved):
  with pytest.raises(errors.UserError, match="no such .keras generator file"):
    pretrained.load_generator(str(tmp_path / "none.keras"))
  bad = tmp_path / "bad.keras"
  bad.write_bytes(b"\x00" * 100)
  with pytest.raises(errors.UserError, match="corrupt or unreadable") as e:
    pretrained.load_generator(str(bad))
  assert "\n" not in str(e.value)
  _, path = saved
  no_record = tmp_path / "norecord.keras"
  no_record.write_bytes(open(path, "rb").read())
  with pytest.raises(errors.UserError, match="emotions"):
    pretrained.load_generator(str(no_record))


def test_shipped_generator_reproduces_its_stored_reference_output():
  generator, record = pretrained.load_generator()
  assert record["emotions"] == list(EMOTIONS)
  # The width-64 G (8.1M float32 parameters, 32.6 MB) fits a registry wheel with room.
  assert os.path.getsize(pretrained.SHIPPED_GENERATOR) <= 40 * 1024 * 1024
  np.testing.assert_allclose(pretrained.reference_output(generator), np.load(REFERENCE),
                             atol=1e-5)


def test_translate_without_model_uses_the_shipped_generator(tmp_path, main_py):
  from skimage import data as skdata  # pylint: disable=g-import-not-at-top
  import cv2  # pylint: disable=g-import-not-at-top
  photo = tmp_path / "astronaut.png"
  cv2.imwrite(str(photo), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
  out = tmp_path / "out"
  result = main_py("translate", f"--input={photo}", f"--out={out}")
  assert result.returncode == 0, result.stderr[-2000:]
  written = sorted(os.listdir(out))
  for emotion in EMOTIONS:
    assert any(emotion.lower() in name.lower() for name in written), (emotion, written)


def test_translate_with_a_corrupt_model_file_is_one_error_line(tmp_path, main_py):
  bad = tmp_path / "broken.keras"
  bad.write_bytes(b"broken")
  photo = tmp_path / "x.png"
  import cv2  # pylint: disable=g-import-not-at-top
  cv2.imwrite(str(photo), np.full((64, 64), 128, np.uint8))
  result = main_py("translate", f"--model={bad}", f"--input={photo}", f"--out={tmp_path / 'o'}",
                   "--no_detect")
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  assert "corrupt or unreadable .keras generator" in result.stderr
