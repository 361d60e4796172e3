"""Callbacks fire on crossing a multiple of their interval, whatever --steps_per_execution."""

import logging as py_logging
import os

import keras
import numpy as np
import pytest
from absl import logging

from faceexpr_tf.store import runs
from faceexpr_tf.training import callbacks


class _ScriptedModel:
  """What the callbacks read from a StarGAN: its step, variables and inference G."""

  def __init__(self):
    self.step = keras.Variable(0, dtype="int64", trainable=False)
    self.weight = keras.Variable(np.zeros(3, np.float32), name="w")
    self.stop_training = False

  def checkpoint_groups(self):
    return {"generator": [self.weight]}

  def inference_generator(self, x, c, training=False):
    return x


def _drive(callback, steps, model):
  """Runs the callback as fit() does with steps_per_execution: it sees only these steps."""
  callback.set_model(model)
  callback.on_train_begin()
  for i, step in enumerate(steps):
    model.step.assign(step)
    callback.on_train_batch_end(i, {"loss": 1.0})


@pytest.mark.parametrize("previous,step,every,expected", [
    (None, 6, 3, True), (None, 5, 3, False), (3, 6, 5, True), (6, 9, 5, False),
    (9, 12, 5, True), (0, 15, 5, True), (5, 9, 0, False), (4, 5, 5, True)])
def test_crossed(previous, step, every, expected):
  assert callbacks.crossed(previous, step, every) is expected


def test_checkpoints_when_steps_per_execution_does_not_divide_the_interval(tmp_path):
  model = _ScriptedModel()
  saver = callbacks.Checkpointer(str(tmp_path), every=5, keep=10, steps_per_epoch=100)
  _drive(saver, [3, 6, 9, 12, 15, 18], model)      # steps_per_execution=3: never 5 or 10
  assert [s for s, _ in runs.list_checkpoints(str(tmp_path))] == [6, 12, 15]


def test_a_resumed_fit_does_not_refire_at_its_start_step(tmp_path):
  model = _ScriptedModel()
  model.step.assign(10)                              # resumed right after the step-10 save
  saver = callbacks.Checkpointer(str(tmp_path), every=5, keep=10, steps_per_epoch=100)
  _drive(saver, [13, 16], model)
  assert [s for s, _ in runs.list_checkpoints(str(tmp_path))] == [16]


def test_samples_and_progress_lines_on_crossing(tmp_path, caplog):
  model = _ScriptedModel()
  images = np.zeros((2, 8, 8, 1), np.uint8)
  writer = callbacks.SampleWriter(str(tmp_path), images, ("Happy", "Sad"), every=4,
                                  log_every=0)
  _drive(writer, [3, 6, 9, 12], model)
  assert sorted(os.listdir(tmp_path / "samples")) == [
      "step-000000006.png", "step-000000009.png", "step-000000012.png"]
  progress = callbacks.Progress(0, 12, 8, every=4)
  # Python's INFO (absl's logging.INFO is 0, i.e. NOTSET), on the absl logger itself: an
  # earlier test in the process may have set absl's verbosity to warning.
  with caplog.at_level(py_logging.INFO, logger="absl"):
    _drive(progress, [3, 6, 9, 12], model)
  assert [line.split()[1] for line in caplog.messages if line.startswith("step ")] == [
      "6/12", "9/12", "12/12"]
