"""SavedModel/TFLite export: the signature contract, errors, versions, the CLI."""

import os
import shutil
import subprocess
import sys
import textwrap

import conftest
import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from faceexpr_tf import errors
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.modeling import models
from faceexpr_tf.serving import export
from faceexpr_tf.serving import signatures
from faceexpr_tf.serving import tflite
from faceexpr_tf.store import runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMOTIONS = emotions_lib.DEFAULT_EMOTIONS
TINY = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8)
STEP = 1  # the step conftest.py's tiny_saved_model is exported with


def _env():
  return {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
          "CUDA_VISIBLE_DEVICES": ""}


def _run(args, **kwargs):
  return subprocess.run(args, cwd=REPO, env=_env(), capture_output=True, text=True,
                        timeout=240, **kwargs)


def _keras(generator, images_f32, ids):
  return np.asarray(generator(images_f32, tf.one_hot(ids, generator.config.num_classes)))


# One tiny random G, its SavedModel and its .tflite files are shared with other modules
# (conftest.py: tiny_saved_model, tiny_loaded, tiny_tflite): an export traces every
# signature and a conversion runs the TFLite converter, seconds each, so each is made once.


@pytest.fixture(scope="module")
def generator(tiny_saved_model):
  return tiny_saved_model[0]


@pytest.fixture(scope="module")
def version_dir(tiny_saved_model):
  return tiny_saved_model[1]


@pytest.fixture(scope="module")
def export_base(version_dir):
  """The folder export_saved_model wrote <base>/faceexpr/1 into (read-only here)."""
  return os.path.dirname(os.path.dirname(version_dir))


@pytest.fixture(scope="module")
def loaded(tiny_loaded):
  return tiny_loaded


@pytest.fixture(scope="module")
def images():
  return export.probe_images(6, TINY.image_size, TINY.channels, seed=3)


# ---------------------------------------------------------------------------------------
# SavedModel contract.


def test_layout_is_tf_serving_base_name_integer_version(version_dir, export_base):
  assert version_dir == os.path.join(export_base, "faceexpr", "1")
  assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
  assert sorted(os.listdir(os.path.join(export_base, "faceexpr"))) == ["1"]  # no temp left
  assert signatures.read_class_names(version_dir) == list(EMOTIONS)


def test_fresh_process_load_matches_keras(version_dir, generator, images, tmp_path):
  """Everything a consumer sees, from a process that never saw the Keras model."""
  ids = np.array([0, 1, 2, 3, 1, 2], np.int32)
  names = ["angry", " HAPPY ", "Sad", "surprise", "Happy", "sad"]
  inputs = tmp_path / "in.npz"
  outputs = tmp_path / "out.npz"
  np.savez(inputs, images=images, ids=ids, names=np.array(names))
  script = textwrap.dedent(f"""
      import numpy as np, tensorflow as tf
      m = tf.saved_model.load({version_dir!r})
      x = np.load({str(inputs)!r})
      images = tf.constant(x["images"])
      f32 = tf.cast(images, tf.float32) / 127.5 - 1.0
      sig = m.signatures
      meta = sig["metadata"]()
      np.savez({str(outputs)!r},
               ids=sig["translate_ids"](image=f32, target=tf.constant(x["ids"]))["image"],
               default=sig["serving_default"](image=images,
                                              target=tf.constant(x["names"]))["image"],
               all=sig["translate_all"](image=images)["images"],
               signatures=np.array(sorted(sig)),
               attr_names=m.class_names.numpy(),
               **{{"meta_" + k: v.numpy() for k, v in meta.items()}})
      """)
  result = _run([sys.executable, "-c", script])
  assert result.returncode == 0, result.stderr[-3000:]
  out = np.load(outputs, allow_pickle=True)

  f32 = signatures.to_unit_range(images)
  expected = _keras(generator, f32, ids)
  np.testing.assert_allclose(out["ids"], expected, atol=1e-5)
  expected_u8 = signatures.to_uint8(expected).numpy().astype(int)
  assert out["default"].dtype == np.uint8
  assert np.abs(out["default"].astype(int) - expected_u8).max() <= 1
  assert out["all"].shape == (6, 4, 48, 48, 1) and out["all"].dtype == np.uint8
  for k in range(4):
    per_class = signatures.to_uint8(_keras(generator, f32, np.full(6, k))).numpy().astype(int)
    assert np.abs(out["all"][:, k].astype(int) - per_class).max() <= 1
  assert sorted(out["signatures"]) == sorted(signatures.SIGNATURES)
  assert [n.decode() for n in out["attr_names"]] == list(EMOTIONS)
  assert [n.decode() for n in out["meta_class_names"]] == list(EMOTIONS)
  assert out["meta_image_size"] == 48 and out["meta_image_size"].dtype == np.int32
  assert out["meta_channels"] == 1 and out["meta_channels"].dtype == np.int32
  assert out["meta_model_version"] == 1 and out["meta_model_version"].dtype == np.int64
  assert out["meta_step"] == STEP and out["meta_step"].dtype == np.int64


def test_signature_specs(loaded):
  def specs(name):
    _, kwargs = loaded.signatures[name].structured_input_signature
    return {k: (v.dtype, v.shape.as_list()) for k, v in kwargs.items()}

  def outs(name):
    return {k: (v.dtype, v.shape.as_list())
            for k, v in loaded.signatures[name].structured_outputs.items()}

  image_u8 = (tf.uint8, [None, 48, 48, 1])
  assert specs("serving_default") == {"image": image_u8, "target": (tf.string, [None])}
  assert outs("serving_default") == {"image": image_u8}
  assert specs("translate_ids") == {"image": (tf.float32, [None, 48, 48, 1]),
                                    "target": (tf.int32, [None])}
  assert outs("translate_ids") == {"image": (tf.float32, [None, 48, 48, 1])}
  assert specs("translate_all") == {"image": image_u8}
  assert outs("translate_all") == {"images": (tf.uint8, [None, 4, 48, 48, 1])}
  assert specs("translate_bytes") == {"image_bytes": (tf.string, [None]),
                                      "target": (tf.string, [None])}
  assert outs("translate_bytes") == {"png_bytes": (tf.string, [None])}
  assert specs("metadata") == {}


def test_saved_variables_are_exactly_gs(version_dir, generator, loaded):
  """ExportArchive tracks the variables: the file holds G's weights once each, nothing
  else but the class names, and the loaded signatures read those values."""
  reader = tf.train.load_checkpoint(os.path.join(version_dir, "variables", "variables"))
  keys = [k for k in reader.get_variable_to_shape_map()
          if k not in ("_CHECKPOINTABLE_OBJECT_GRAPH", "class_names/.ATTRIBUTES/VARIABLE_VALUE")]
  assert len(keys) == len(generator.variables)           # each weight stored once
  saved = sorted((reader.get_tensor(k) for k in keys), key=lambda a: (a.shape, a.tobytes()))
  ours = sorted((np.asarray(v) for v in generator.variables),
                key=lambda a: (a.shape, a.tobytes()))
  for a, b in zip(saved, ours):
    np.testing.assert_array_equal(a, b)
  # The collection a consumer reads, in G's order, and the exact values.
  assert len(loaded.generator_variables) == len(generator.variables)
  for got, want in zip(loaded.generator_variables, generator.variables):
    assert tuple(got.shape) == tuple(want.shape)
    np.testing.assert_array_equal(got.numpy(), np.asarray(want))
  # And they are what the signatures compute with: zeroing the loaded copies changes
  # translate_ids' output (a signature reading other, untracked handles would not).
  x = signatures.to_unit_range(export.probe_images(2, 48, 1, seed=8))
  before = loaded.signatures["translate_ids"](image=tf.constant(x),
                                              target=tf.constant([0, 1]))["image"].numpy()
  fresh = tf.saved_model.load(version_dir)
  for v in fresh.generator_variables:
    v.assign(tf.zeros_like(v))
  after = fresh.signatures["translate_ids"](image=tf.constant(x),
                                            target=tf.constant([0, 1]))["image"].numpy()
  assert np.abs(before - after).max() > 1e-3


def test_translate_bytes_matches_g_eager(loaded, generator, images):
  """translate_bytes of lossless 48x48 gray PNGs is G's eager output within one level."""
  ids = np.array([3, 2, 1, 0, 1, 2])
  blobs = [_encode(".png", face[..., 0]) for face in images]
  out = loaded.signatures["translate_bytes"](
      image_bytes=tf.constant(blobs), target=tf.constant([EMOTIONS[i] for i in ids]))
  got = np.stack([cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_UNCHANGED)
                  for p in out["png_bytes"].numpy()]).astype(int)
  want = signatures.to_uint8(_keras(generator, signatures.to_unit_range(images), ids))
  assert np.abs(got - want.numpy()[..., 0].astype(int)).max() <= 1


def _encode(ext, image):
  ok, buf = cv2.imencode(ext, image)
  assert ok
  return buf.tobytes()


def test_translate_bytes_decodes_any_format_and_size(loaded, images):
  face = images[0, ..., 0]
  big_color = cv2.cvtColor(cv2.resize(face, (96, 96), interpolation=cv2.INTER_NEAREST),
                           cv2.COLOR_GRAY2BGR)
  blobs = [_encode(".png", face), _encode(".png", big_color), _encode(".jpg", big_color),
           _encode(".bmp", face), _encode(".gif", big_color),
           _encode(".png", cv2.resize(face, (30, 20)))]   # smaller, not square
  out = loaded.signatures["translate_bytes"](
      image_bytes=tf.constant(blobs), target=tf.constant(["Happy"] * len(blobs)))
  pngs = out["png_bytes"].numpy()
  assert len(pngs) == len(blobs)
  decoded = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_UNCHANGED) for p in pngs]
  assert all(d.shape == (48, 48) and d.dtype == np.uint8 for d in decoded)
  # A 48x48 gray PNG goes through unchanged, so it must equal serving_default.
  direct = loaded.signatures["serving_default"](image=tf.constant(images[:1]),
                                                target=tf.constant(["happy"]))["image"]
  np.testing.assert_array_equal(decoded[0], direct.numpy()[0, ..., 0])


def test_translate_bytes_turns_an_exif_rotated_jpeg_upright(loaded):
  import test_images  # pylint: disable=g-import-not-at-top  (tests/ is on sys.path)
  picture = test_images.upright_picture()
  upright = test_images.exif_jpeg(picture, 1)
  phone = test_images.exif_jpeg(picture, 6)            # stored sideways, EXIF says turn it
  sideways = _encode(".jpg", np.ascontiguousarray(np.rot90(picture, 1)))  # no EXIF
  out = loaded.signatures["translate_bytes"](
      image_bytes=tf.constant([upright, phone, sideways]), target=tf.constant(["Sad"] * 3))
  a, b, c = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_UNCHANGED).astype(int)
             for p in out["png_bytes"].numpy()]
  assert np.abs(a - b).mean() < 3            # the same upright face as the training folders
  assert np.abs(a - c).mean() > 10           # what ignoring the orientation gives


@pytest.mark.parametrize("signature,kwargs,message", [
    ("serving_default", {"target": ["happy", "Joyful", "x"]}, "unknown emotion name"),
    ("serving_default", {"target": ["happy"]}, "batch sizes differ"),
    ("translate_ids", {"target": [0, 4, -1]}, r"target class id out of range \[0, 4\)"),
    ("translate_ids", {"target": [0, 1]}, "batch sizes differ"),
    ("translate_bytes", {"image_bytes": [b"\x89PNG", b"not an image", b""],
                         "target": ["happy"] * 3}, "not a PNG, JPEG, BMP or GIF"),
    ("translate_bytes", {"image_bytes": [b"x"], "target": ["happy", "sad"]},
     "batch sizes differ"),
    ("serving_default", {"image": np.zeros((1, 32, 32, 1), np.uint8), "target": ["happy"]},
     r"image must be \[N, 48, 48, 1\]"),
    ("translate_all", {"image": np.zeros((2, 48, 48, 3), np.uint8)},
     r"image must be \[N, 48, 48, 1\]"),
])
def test_bad_input_gives_clear_error(loaded, images, signature, kwargs, message):
  inputs = {"image": images[:3]}
  if signature == "translate_ids":
    inputs["image"] = signatures.to_unit_range(images[:3])
  elif signature == "translate_bytes":
    inputs = {}
  inputs.update(kwargs)
  tensors = {k: tf.constant(v, dtype=tf.int32 if k == "target" and
                            signature == "translate_ids" else None)
             for k, v in inputs.items()}
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    loaded.signatures[signature](**tensors)


def test_unknown_emotion_error_names_the_bad_value_and_the_choices(loaded, images):
  with pytest.raises(tf.errors.InvalidArgumentError) as e:
    loaded.signatures["serving_default"](image=tf.constant(images[:2]),
                                         target=tf.constant(["happy", "Joyful"]))
  assert "Joyful" in str(e.value) and "Angry, Happy, Sad, Surprise" in str(e.value)


def test_truncated_png_is_an_invalid_argument(loaded, images):
  png = _encode(".png", images[0, ..., 0])
  with pytest.raises(tf.errors.InvalidArgumentError):
    loaded.signatures["translate_bytes"](image_bytes=tf.constant([png[:40]]),
                                         target=tf.constant(["happy"]))


def test_saved_model_cli_show_and_run(version_dir, generator, tmp_path):
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  x = np.linspace(-1, 1, 2304, dtype=np.float32).reshape(1, 48, 48, 1)
  np.save(tmp_path / "x.npy", x)
  np.save(tmp_path / "t.npy", np.array([2], np.int32))
  out = tmp_path / "out"
  # Both commands start at once (each imports TensorFlow for seconds; neither needs the
  # other). --input_exprs only takes literals now; .npy files carry the dtypes.
  show = subprocess.Popen([cli, "show", "--dir", version_dir, "--all"], cwd=REPO, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  run = _run([cli, "run", "--dir", version_dir, "--tag_set", "serve",
              "--signature_def", "translate_ids",
              "--inputs", f"image={tmp_path / 'x.npy'};target={tmp_path / 't.npy'}",
              "--outdir", str(out)])
  show_stdout, show_stderr = show.communicate(timeout=240)
  assert show.returncode == 0, show_stderr[-2000:]
  for name in signatures.SIGNATURES:
    assert f"signature_def['{name}']" in show_stdout
  for needle in ("inputs['image_bytes']", "outputs['png_bytes']", "outputs['class_names']",
                 "inputs['target'] tensor_info:\n        dtype: DT_INT32"):
    assert needle in show_stdout

  assert run.returncode == 0, run.stderr[-2000:]
  np.testing.assert_allclose(np.load(out / "image.npy"), _keras(generator, x, np.array([2])),
                             atol=1e-5)


# ---------------------------------------------------------------------------------------
# Versions.


def test_versions_auto_increment_and_never_overwrite(generator, export_base, tmp_path):
  # On a copy of the shared export base (version 1): the one other tests read stays as is.
  shutil.copytree(export_base, tmp_path / "exports")
  export_base = str(tmp_path / "exports")
  model_dir = os.path.join(export_base, "faceexpr")
  os.makedirs(os.path.join(model_dir, "notes"))       # non-integer entries are ignored
  assert export.existing_versions(model_dir) == [1]
  assert export.next_version(model_dir) == 2
  second = export.export_saved_model(generator, EMOTIONS, export_base)
  assert second == os.path.join(model_dir, "2")
  meta = tf.saved_model.load(second).signatures["metadata"]()
  assert int(meta["model_version"]) == 2 and int(meta["step"]) == -1
  with pytest.raises(errors.UserError, match="already exists.*never overwritten"):
    export.export_saved_model(generator, EMOTIONS, export_base, version=1)
  for bad in (0, -3, "7", 1.5):
    with pytest.raises(errors.UserError, match="positive integer"):
      export.export_saved_model(generator, EMOTIONS, export_base, version=bad)
  with pytest.raises(errors.UserError, match="model name"):
    export.export_saved_model(generator, EMOTIONS, export_base, model_name="../x")


def test_versions_sort_numerically(tmp_path):
  for name in ("2", "10", "9", "tmp", ".tmp-11-abc"):
    os.makedirs(tmp_path / name)
  (tmp_path / "12").write_text("a file, not a version")
  assert export.existing_versions(str(tmp_path)) == [2, 9, 10]
  assert export.next_version(str(tmp_path)) == 11
  assert export.next_version(str(tmp_path / "missing")) == 1


def test_wrong_number_of_emotions_is_refused(generator, tmp_path):
  with pytest.raises(errors.UserError, match="3 emotions .* 4 classes"):
    export.export_saved_model(generator, EMOTIONS[:3], str(tmp_path))


# ---------------------------------------------------------------------------------------
# TFLite.


@pytest.fixture(scope="module")
def tflite_files(tiny_tflite):
  """Every quantize mode of the shared SavedModel (conftest.py converts each once)."""
  return {q: tiny_tflite(q) for q in tflite.QUANTIZE_MODES}


# Bounds in [-1, 1] units on 16 smooth random images, about 2x what this tiny random
# model measured (docs/serving.md has the full-size numbers). int8 is loose on purpose:
# each instance norm divides by a per-channel std computed from int8 activations, so
# quantisation error is amplified; mean 0.1 is 13 gray levels, while a broken conversion
# (wrong scales, unfrozen weights) gives NaN or a mean around 0.5.
@pytest.mark.parametrize("quantize,max_bound,mean_bound", [
    ("none", 1e-4, 1e-5), ("float16", 0.02, 0.002), ("dynamic", 0.4, 0.03),
    ("int8", 1.0, 0.1), ("int16x8", 0.2, 0.015)])
def test_tflite_matches_keras(tflite_files, generator, quantize, max_bound, mean_bound):
  test_images = export.probe_images(16, 48, 1, seed=12)
  stats = tflite.compare_tflite(tflite_files[quantize], generator, test_images,
                                np.arange(16) % 4)
  assert np.isfinite(stats["max_abs"])
  assert stats["max_abs"] < max_bound and stats["mean_abs"] < mean_bound, stats
  assert stats["size_bytes"] == os.path.getsize(tflite_files[quantize])


def test_tflite_quantized_files_are_smaller(tflite_files):
  size = {q: os.path.getsize(p) for q, p in tflite_files.items()}
  assert size["int8"] < size["float16"] < size["none"]
  assert size["dynamic"] < size["float16"] and size["int16x8"] < size["float16"]


def test_tflite_has_only_translate_ids_with_dynamic_batch(tflite_files, generator):
  from ai_edge_litert.interpreter import Interpreter
  interpreter = Interpreter(model_path=tflite_files["none"])
  assert list(interpreter.get_signature_list()) == ["translate_ids"]
  x = signatures.to_unit_range(export.probe_images(3, 48, 1, seed=5))
  for n in (1, 3):    # the runner resizes the batch dimension
    got = tflite.run_tflite(tflite_files["none"], x[:n], np.arange(n))
    np.testing.assert_allclose(got, _keras(generator, x[:n], np.arange(n)), atol=1e-4)


@pytest.mark.parametrize("g_output,edit_gain", [("residual", None), ("attention", None),
                                                ("residual", (0.5, 1.5, 1.0, 2.0))])
def test_edit_generators_export_to_saved_model_and_tflite(tmp_path, g_output, edit_gain):
  # --g_output=residual adds atanh(x) (written with LOG, a TFLite builtin) to G's output;
  # attention also blends it with the input through a sigmoid mask; a calibrated G scales
  # its edit per emotion (models.Generator's edit_gain), and every export must too.
  keras.utils.set_random_seed(3)
  g = models.Generator(models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8,
                                          g_output=g_output), edit_gain=edit_gain)
  g.build()
  g.get_layer("conv_out").kernel.assign(
      np.random.default_rng(0).normal(0, 0.05, g.get_layer("conv_out").kernel.shape))
  version_dir = export.export_saved_model(g, EMOTIONS, str(tmp_path), step=1)
  images = export.probe_images(4, 48, 1, seed=6)
  assert export.verify_saved_model(version_dir, g, images, np.arange(4)) < 1e-5
  path = tflite.convert_tflite(version_dir, str(tmp_path / f"{g_output}.tflite"), "none")
  stats = tflite.compare_tflite(path, g, images, np.arange(4))
  assert stats["max_abs"] < 1e-4, stats
  if edit_gain is not None:   # the exports did scale the edit: the plain G differs
    plain = models.with_edit_gain(g, None)
    with pytest.raises(signatures.ExportError, match="differs"):
      export.verify_saved_model(version_dir, plain, images, np.arange(4))


def test_int8_needs_representative_images(version_dir, tmp_path):
  with pytest.raises(errors.UserError, match="representative"):
    tflite.convert_tflite(version_dir, str(tmp_path / "x.tflite"), "int8")
  with pytest.raises(errors.UserError, match="quantize must be one of"):
    tflite.convert_tflite(version_dir, str(tmp_path / "x.tflite"), "int4")


# ---------------------------------------------------------------------------------------
# Command line.


@pytest.fixture(scope="module")
def run_dir(generator, tmp_path_factory):
  path = str(tmp_path_factory.mktemp("run"))
  runs.prepare_run_dir(path, runs.RunConfig(TINY, EMOTIONS))
  runs.save_checkpoint(path, 40, {"generator": generator.weights})
  return path


def test_main_export_saved_model(run_dir, generator, tmp_path, main_py):
  # main_py: `python main.py ...` forked from a process that imported TensorFlow once.
  result = main_py("export", f"--run_dir={run_dir}", f"--export_dir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  version_dir = tmp_path / "faceexpr" / "1"
  assert (version_dir / "saved_model.pb").is_file()
  assert "Verified" in result.stderr and str(version_dir) in result.stderr
  meta = tf.saved_model.load(str(version_dir)).signatures["metadata"]()
  assert int(meta["step"]) == 40


def test_main_export_missing_run_dir_is_one_error_line(tmp_path, main_py):
  result = main_py("export", f"--run_dir={tmp_path}/nope", f"--export_dir={tmp_path}")
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert lines == [f"error: {tmp_path}/nope: no such run directory"]


def test_run_tflite_in_process(run_dir, tmp_path):
  """The --format=tflite path of run() (in-process: a subprocess costs a TF import)."""
  with conftest.mode_flags(export, run_dir=run_dir, export_dir=str(tmp_path),
                          format="tflite", quantize="int8", representative_data="synthetic",
                          representative_count=40, version=None, checkpoint="40"):
    assert export.run() == 0
  assert sorted(os.listdir(tmp_path)) == ["faceexpr_int8.tflite", "faceexpr_labels.txt"]
  assert (tmp_path / "faceexpr_labels.txt").read_text().split() == list(EMOTIONS)
  with conftest.mode_flags(export, run_dir=run_dir, export_dir=str(tmp_path),
                          format="tflite", quantize="int8", representative_data=None):
    with pytest.raises(errors.UserError, match="needs --representative_data"):
      export.run()
  with conftest.mode_flags(export, run_dir=run_dir, format="saved_model", quantize="int8"):
    with pytest.raises(errors.UserError, match="--quantize applies to --format=tflite"):
      export.run()


def test_example_script_runs_the_tflite(tflite_files, generator, tmp_path):
  face = export.probe_images(1, 48, 1, seed=21)
  cv2.imwrite(str(tmp_path / "face.png"), face[0])
  (tmp_path / "labels.txt").write_text("".join(f"{e}\n" for e in EMOTIONS))
  result = _run([sys.executable, "examples/run_tflite.py", f"--model={tflite_files['none']}",
                 f"--labels={tmp_path / 'labels.txt'}", f"--image={tmp_path / 'face.png'}",
                 "--emotion=sad", f"--out={tmp_path / 'sad.png'}"])
  assert result.returncode == 0, result.stderr[-2000:]
  got = cv2.imread(str(tmp_path / "sad.png"), cv2.IMREAD_UNCHANGED).astype(int)
  expected = signatures.to_uint8(_keras(generator, signatures.to_unit_range(face), np.array([2])))
  assert np.abs(got - expected.numpy()[0, ..., 0].astype(int)).max() <= 1
