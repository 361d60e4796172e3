import os
import sys

# Tests import the package from the checkout, installed or not.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as main.py: faster convs on CPU


import contextlib  # pylint: disable=g-import-not-at-top,wrong-import-position
import copy  # pylint: disable=g-import-not-at-top,wrong-import-position
import importlib  # pylint: disable=g-import-not-at-top,wrong-import-position

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

# Every module that holds a mode's flags (FLAGS, a FlagValues of its own): main.py's modes
# and the TF Serving client's `python -m` entry point.
MODE_MODULES = ("faceexpr_tf.training.train", "faceexpr_tf.evaluation.classifier_training",
                "faceexpr_tf.evaluation.evaluate", "faceexpr_tf.evaluation.calibrate",
                "faceexpr_tf.serving.export",
                "faceexpr_tf.photos.translate", "faceexpr_tf.benchmark.benchmark",
                "faceexpr_tf.web.serve", "faceexpr_tf.serving.serving_client")


@contextlib.contextmanager
def mode_flags(module, parsed: bool = False, **values):
  """A mode's flags marked parsed and set to `values`, all restored afterwards.

  parsed=True sets each value from its command-line text, as `--name=value` would (the
  flag then counts as present); otherwise values are assigned as Python values.
  """
  fv = module.FLAGS
  saved = {name: copy.deepcopy(fv[name].__dict__) for name in fv}
  was_parsed = fv.is_parsed()
  fv.mark_as_parsed()
  try:
    for name, value in values.items():
      if parsed:
        fv[name].parse(value)
      else:
        fv[name].value = value
    yield fv
  finally:
    for name, state in saved.items():
      fv[name].__dict__.clear()
      fv[name].__dict__.update(state)
    if not was_parsed:
      fv.unparse_flags()


@pytest.fixture
def parsed_flags():
  """Every mode's flags marked parsed, restored after the test (tests that call run())."""
  with contextlib.ExitStack() as stack:
    for name in MODE_MODULES:
      stack.enter_context(mode_flags(importlib.import_module(name)))
    yield


@pytest.fixture(scope="session")
def main_py(tmp_path_factory):
  """`main_py(mode, *flags, cwd=None, timeout=300)`: `python main.py mode *flags` as
  subprocess.run(..., capture_output=True, text=True) gives it (a CompletedProcess), in a
  process forked from one that imported TensorFlow and the modes once (forked_main.py):
  the command line, exit status and output without a ~10 s import per command."""
  import forked_main  # pylint: disable=g-import-not-at-top
  server = forked_main.ForkedMain(str(tmp_path_factory.mktemp("main_py")))
  yield server
  server.close()


@pytest.fixture(scope="session")
def tiny_judge(tmp_path_factory):
  """The path of a tiny untrained vgg judge (width 8, seed 1), saved once."""
  import keras  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.evaluation import classifier  # pylint: disable=g-import-not-at-top
  path = str(tmp_path_factory.mktemp("judge") / "judge.keras")
  keras.utils.set_random_seed(1)
  classifier.build_classifier(classifier.ClassifierConfig(width=8)).save(path)
  return path


@pytest.fixture(scope="session")
def random_residual_g():
  """`random_residual_g(seed=0, scale=0.05)`: a tiny residual G whose last conv is random,
  drawn with that scale (an untrained residual G edits nothing); a new one each call."""
  def make(seed=0, scale=0.05):
    import keras  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from faceexpr_tf.modeling import models  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(seed)
    g = models.Generator(models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8,
                                            g_output="residual"))
    g.build()
    kernel = g.get_layer("conv_out").kernel
    kernel.assign(np.random.default_rng(seed).normal(0, scale, kernel.shape))
    return g
  return make


@pytest.fixture(scope="session")
def tiny_saved_model(tmp_path_factory):
  """(G, version dir): a tiny random G (seed 0, step 1) exported once as a SavedModel
  (an export traces every signature: seconds each time)."""
  import keras  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.data import emotions  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.modeling import models  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.serving import export  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  g = models.Generator(models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8))
  g.build()
  base = str(tmp_path_factory.mktemp("tiny_saved_model"))
  return g, export.export_saved_model(g, emotions.DEFAULT_EMOTIONS, base, step=1)


@pytest.fixture(scope="session")
def tiny_loaded(tiny_saved_model):
  """tiny_saved_model loaded with tf.saved_model.load once (a load takes seconds); its
  signatures are read-only, so the tests that call them can share it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.saved_model.load(tiny_saved_model[1])


@pytest.fixture(scope="session")
def tiny_tflite(tiny_saved_model, tmp_path_factory):
  """`tiny_tflite(quantize="none")`: the path of tiny_saved_model converted to a .tflite
  with that quantize mode, converted on first use and kept for the session (a conversion
  takes seconds); int8 and int16x8 calibrate on 120 probe images (seed 11)."""
  from faceexpr_tf.serving import export  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.serving import tflite  # pylint: disable=g-import-not-at-top
  folder = tmp_path_factory.mktemp("tiny_tflite")
  files = {}

  def convert(quantize="none"):
    if quantize not in files:
      calibration = export.probe_images(120, 48, 1, seed=11)
      files[quantize] = tflite.convert_tflite(tiny_saved_model[1],
                                              str(folder / f"{quantize}.tflite"), quantize,
                                              calibration)
    return files[quantize]
  return convert


def tiny_train_config(run_dir, **overrides):
  """A TrainConfig for the tests' tiny run: G and D 8 wide, 8 synthetic identities x 4
  emotions = 32 faces = 4 steps per epoch of 8, 10 steps (crossing 2 epoch boundaries),
  checkpoints every 4 steps, samples and log lines every 5, on one device (whatever the
  GPUs), float32, no XLA, no report."""
  from faceexpr_tf.modeling import models  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.training import trainer  # pylint: disable=g-import-not-at-top
  base = dict(run_dir=str(run_dir), model=models.ModelConfig(g_conv_dim=8, g_repeat_num=1,
                                                             d_conv_dim=8),
              emotions=("Angry", "Happy", "Sad", "Surprise"), synthetic_identities=8,
              batch_size=8, max_steps=10, checkpoint_every=4, sample_every=5, log_every=5,
              precision="float32", jit_compile="false", strategy="default", verbose="0",
              report=False)
  base.update(overrides)
  return trainer.TrainConfig(**base)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  """(run dir, summary) of tiny_train_config's 10 steps, trained once per session (a
  trainer.train() of the tiny model costs ~10 s of tracing, whatever its length): the
  checkpoints of steps 4, 8 and 10, sample grids of steps 5 and 10, TensorBoard logs.
  Tests only read it; one that resumes or changes a run trains a copy (copy_run)."""
  from faceexpr_tf.training import trainer  # pylint: disable=g-import-not-at-top
  run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
  return run_dir, trainer.train(tiny_train_config(run_dir))


def copy_run(run_dir, to):
  """A copy of the run dir `run_dir` at `to` (a path that does not exist yet), to train on."""
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(run_dir, to)
  return to
