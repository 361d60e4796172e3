import json
import os

import numpy as np
import pytest
from absl import logging

from faceexpr_tf.modeling import models
from faceexpr_tf.store import locks
from faceexpr_tf.store import runs

TINY = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8)
EMOTIONS = ("Angry", "Happy", "Sad", "Surprise")


def _models(seed):
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(seed)
  return models.build_models(TINY)


def test_checkpoint_round_trip_is_exact(tmp_path):
  g, d = _models(0)
  runs.save_checkpoint(str(tmp_path), 7, {"generator": g.weights, "discriminator": d.weights},
                       meta={"epoch": 1})
  g2, d2 = _models(1)
  assert not np.allclose(g.weights[0].numpy(), g2.weights[0].numpy())
  meta = runs.restore_latest(str(tmp_path), {"generator": g2.weights,
                                             "discriminator": d2.weights})
  assert meta["step"] == 7 and meta["epoch"] == 1
  for a, b in zip(g.weights + d.weights, g2.weights + d2.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_keeps_newest_k_and_no_temporary_files(tmp_path):
  g, _ = _models(0)
  for step in (1, 2, 3, 4, 5):
    runs.save_checkpoint(str(tmp_path), step, {"generator": g.weights}, keep=2)
  assert [s for s, _ in runs.list_checkpoints(str(tmp_path))] == [4, 5]
  assert not [n for n in os.listdir(runs.checkpoint_dir(str(tmp_path))) if n.endswith(".tmp")]


def test_corrupt_latest_falls_back_to_previous(tmp_path, caplog):
  g, _ = _models(0)
  runs.save_checkpoint(str(tmp_path), 1, {"generator": g.weights})
  expected = [w.numpy().copy() for w in g.weights]
  g.weights[0].assign(g.weights[0].numpy() + 1)
  newest = runs.save_checkpoint(str(tmp_path), 2, {"generator": g.weights})
  with open(newest, "r+b") as f:           # a half-written file, e.g. disk full
    f.truncate(os.path.getsize(newest) // 2)
  g2, _ = _models(3)
  with caplog.at_level(logging.WARNING):
    meta = runs.restore_latest(str(tmp_path), {"generator": g2.weights})
  assert meta["step"] == 1
  assert "corrupt" in caplog.text and "ckpt-000000002" in caplog.text
  for a, b in zip(expected, g2.weights):
    np.testing.assert_array_equal(a, b.numpy())


def test_all_corrupt_is_a_clear_error(tmp_path):
  g, _ = _models(0)
  path = runs.save_checkpoint(str(tmp_path), 1, {"generator": g.weights})
  with open(path, "wb") as f:
    f.write(b"not a checkpoint")
  with pytest.raises(runs.RunDirError, match="no readable checkpoint"):
    runs.restore_latest(str(tmp_path), {"generator": g.weights})


def test_shape_mismatch_is_refused_before_any_assignment(tmp_path):
  g, _ = _models(0)
  runs.save_checkpoint(str(tmp_path), 1, {"generator": g.weights})
  other = models.Generator(models.ModelConfig(g_conv_dim=16, g_repeat_num=1))
  other.build()
  before = other.weights[0].numpy().copy()
  with pytest.raises(runs.RunDirError, match="shape"):
    runs.restore_latest(str(tmp_path), {"generator": other.weights})
  np.testing.assert_array_equal(before, other.weights[0].numpy())


def test_run_dir_refuses_other_model_flags(tmp_path):
  run_dir = str(tmp_path / "run")
  assert runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS)) is False
  assert runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS, {"lr": 1})) is True
  with pytest.raises(runs.RunDirError, match="g_conv_dim=8 \\(now 16\\)"):
    runs.prepare_run_dir(run_dir, runs.RunConfig(
        models.ModelConfig(g_conv_dim=16, g_repeat_num=1, d_conv_dim=8), EMOTIONS))
  with pytest.raises(runs.RunDirError, match="emotions"):
    runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, ("Happy", "Sad")))
  assert json.load(open(os.path.join(run_dir, "config.json")))["model"]["g_conv_dim"] == 8


def test_a_resume_with_other_training_flags_records_them_and_keeps_the_earlier(tmp_path):
  # A later stage (a copied run continued with other flags) must not ship with the flags
  # of the stage it was copied from.
  run_dir = str(tmp_path / "run")
  first = {"lr": 1, "diffaug": "", "emotions": ("Angry", "Happy")}   # a tuple, as trainer's
  runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS, first))
  runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS, first))
  assert runs.read_config(run_dir).earlier_training == ()       # same flags: unchanged
  runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS, {"lr": 1, "diffaug": ""}))
  runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS, {"lr": 2, "diffaug": "color"}))
  runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS, {"lr": 3, "diffaug": "color"}))
  config = runs.read_config(run_dir)
  assert config.training == {"lr": 3, "diffaug": "color"}
  assert config.earlier_training == ({"lr": 1, "diffaug": "", "emotions": ["Angry", "Happy"]},
                                     {"lr": 1, "diffaug": ""}, {"lr": 2, "diffaug": "color"})
  assert config.model == TINY and config.emotions == tuple(EMOTIONS)


def test_load_generator_for_inference(tmp_path):
  run_dir = str(tmp_path)
  runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS))
  g, _ = _models(0)
  runs.save_checkpoint(run_dir, 3, {"generator": g.weights})
  g.weights[0].assign(g.weights[0].numpy() * 2)
  runs.save_checkpoint(run_dir, 9, {"generator": g.weights})
  x = np.random.default_rng(0).uniform(-1, 1, (2, 48, 48, 1)).astype(np.float32)
  c = np.eye(4, dtype=np.float32)[[1, 2]]
  loaded, config, step = runs.load_generator(run_dir)
  assert step == 9 and config.emotions == EMOTIONS
  np.testing.assert_array_equal(np.asarray(loaded(x, c)), np.asarray(g(x, c)))
  _, _, step = runs.load_generator(run_dir, checkpoint=3)
  assert step == 3
  with pytest.raises(runs.RunDirError, match="no checkpoint for step 4"):
    runs.load_generator(run_dir, checkpoint=4)
  with pytest.raises(runs.RunDirError, match="no such run directory"):
    runs.load_generator(str(tmp_path / "nope"))


def test_load_models_takes_g_and_d_from_one_readable_checkpoint(tmp_path):
  run_dir = str(tmp_path)
  runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS))
  g, d = _models(0)
  runs.save_checkpoint(run_dir, 4, {"generator": g.weights, "discriminator": d.weights})
  expected = [w.numpy().copy() for w in g.weights + d.weights]
  for w in g.weights[:1] + d.weights[:1]:
    w.assign(w.numpy() + 1)
  newest = runs.save_checkpoint(run_dir, 8, {"generator": g.weights,
                                             "discriminator": d.weights})
  with open(newest, "r+b") as f:
    f.truncate(os.path.getsize(newest) // 2)
  g2, d2, config, step = runs.load_models(run_dir)
  assert step == 4 and config.model == TINY
  for a, b in zip(expected, g2.weights + d2.weights):
    np.testing.assert_array_equal(a, b.numpy())
  runs.save_checkpoint(run_dir, 9, {"generator": g.weights})   # G only: D is required
  with pytest.raises(runs.RunDirError, match="discriminator"):
    runs.load_models(run_dir, checkpoint=9)


def test_checkpoint_argument_forms(tmp_path):
  run_dir = str(tmp_path)
  g, _ = _models(0)
  path = runs.save_checkpoint(run_dir, 12, {"generator": g.weights})
  assert runs.resolve_checkpoint(run_dir) == path
  assert runs.resolve_checkpoint(run_dir, "12") == path       # as a flag gives it
  assert runs.resolve_checkpoint(run_dir, 12) == path
  assert runs.resolve_checkpoint(run_dir, path) == path
  with pytest.raises(runs.RunDirError, match="not a step number"):
    runs.resolve_checkpoint(run_dir, "nope.npz")


def _two_layer_model(order, extra=False):
  """A model whose two same-shaped layers are created (and so listed) in `order`."""
  import keras  # pylint: disable=g-import-not-at-top

  class TwoLayers(keras.Model):
    def __init__(self):
      super().__init__(name="m")
      for name in order + ("c" if extra else ""):
        setattr(self, name, keras.layers.Dense(3, name=name))

    def call(self, x):
      x = self.b(self.a(x))
      return self.c(x) if extra else x

  model = TwoLayers()
  model(np.zeros((1, 3), np.float32))
  optimizer = keras.optimizers.Adam()
  optimizer.build(model.trainable_variables)
  return model, optimizer


def _randomize(variables, seed):
  rng = np.random.default_rng(seed)
  for v in variables:
    v.assign(rng.normal(size=v.shape).astype(v.dtype))


def test_restore_matches_variables_by_path_not_order(tmp_path):
  saved, saved_opt = _two_layer_model("ab")
  _randomize(saved.weights + saved_opt.variables, 0)
  runs.save_checkpoint(str(tmp_path), 1, {"model": saved.weights,
                                          "optimizer": saved_opt.variables})
  loaded, loaded_opt = _two_layer_model("ba")   # same shapes, other creation order
  assert [v.path for v in loaded.weights] != [v.path for v in saved.weights]
  runs.restore_latest(str(tmp_path), {"model": loaded.weights,
                                      "optimizer": loaded_opt.variables})
  by_path = {v.path: v.numpy() for v in saved.weights}
  for v in loaded.weights:
    np.testing.assert_array_equal(v.numpy(), by_path[v.path])
  # Adam's slots are named after their variables, under another optimizer name ("adam_N").
  slots = {v.path.split("/", 1)[1]: v.numpy() for v in saved_opt.variables}
  for v in loaded_opt.variables:
    np.testing.assert_array_equal(v.numpy(), slots[v.path.split("/", 1)[1]])
  np.testing.assert_array_equal(loaded(np.ones((1, 3))), saved(np.ones((1, 3))))


def test_generator_variables_in_another_order_load_the_right_values(tmp_path):
  g, _ = _models(0)
  runs.save_checkpoint(str(tmp_path), 2, {"generator": g.weights})
  g2, _ = _models(1)
  runs.restore_latest(str(tmp_path), {"generator": list(reversed(g2.weights))})
  x = np.random.default_rng(0).uniform(-1, 1, (2, 48, 48, 1)).astype(np.float32)
  c = np.eye(4, dtype=np.float32)[[1, 2]]
  np.testing.assert_array_equal(np.asarray(g2(x, c)), np.asarray(g(x, c)))


def test_missing_extra_or_reshaped_variable_is_one_clear_line(tmp_path):
  saved, _ = _two_layer_model("ab")
  runs.save_checkpoint(str(tmp_path), 1, {"model": saved.weights})
  bigger, _ = _two_layer_model("ab", extra=True)
  before = [v.numpy().copy() for v in bigger.weights]
  with pytest.raises(runs.RunDirError, match=r"\[model\].*missing m/c/kernel, m/c/bias") as e:
    runs.restore_latest(str(tmp_path), {"model": bigger.weights})
  assert "\n" not in str(e.value)
  for a, v in zip(before, bigger.weights):      # nothing assigned
    np.testing.assert_array_equal(a, v.numpy())
  runs.save_checkpoint(str(tmp_path), 2, {"model": bigger.weights})
  with pytest.raises(runs.RunDirError, match="not in the model m/c/kernel"):
    runs.restore_latest(str(tmp_path), {"model": saved.weights})


def test_a_second_process_is_refused_the_run_dir_until_the_first_dies(tmp_path):
  import signal  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  run_dir = str(tmp_path / "run")
  os.makedirs(run_dir)
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from faceexpr_tf.store import locks; "
       f"locks.lock_dir({run_dir!r}); print('locked', flush=True); time.sleep(60)"],
      stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(locks.LockedError, match=f"in use by another process \\(pid "
                       f"{holder.pid}\\)") as e:
      runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS))
    assert "\n" not in str(e.value)
    assert not os.path.exists(os.path.join(run_dir, runs.CONFIG_FILE))  # nothing written
  finally:
    holder.send_signal(signal.SIGKILL)        # no chance to clean up: the OS frees the lock
    holder.wait()
  assert runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS)) is False
  assert runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS)) is True  # same process
