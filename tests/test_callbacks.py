"""Callbacks fire on crossing a multiple of their interval, whatever --steps_per_execution."""

import logging as py_logging
import os

import keras
import numpy as np
import pytest

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


class _Clock:
  """A fake clock for Progress: each step of `_drive_timed` takes `seconds_per_step`."""

  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def _drive_timed(progress, steps, seconds_per_step, caplog):
  """Drives `progress` one step at a time on a fake clock; returns its progress lines."""
  model, clock = _ScriptedModel(), _Clock()
  progress.clock = clock
  progress.set_model(model)
  progress.on_train_begin()
  with caplog.at_level(py_logging.INFO, logger="absl"):
    for i, step in enumerate(steps):
      clock.now += seconds_per_step
      model.step.assign(step)
      progress.on_train_batch_end(i, {"loss": 1.0})
  return model, [m for m in caplog.messages if m.startswith("step ")]


def test_progress_of_a_time_bounded_run_reads_against_the_time_limit(caplog):
  # The demo: 8.5 minutes, 25,000,000 steps as the (never reached) step bound, 4 steps/s.
  progress = callbacks.Progress(0, 25_000_000, 32, every=100, time_limit_s=510)
  _, lines = _drive_timed(progress, range(1, 501), 0.25, caplog)
  assert len(lines) == 5
  # Step 500: 499 steps (timed from the end of step 1) in 124.75 s, 385.25 s left.
  assert lines[-1].startswith(
      "step 500 (24% of 8m30s) 128.0 img/s, 2m04s used, 6m25s left, ETA 6m25s (time limit)")


def test_progress_of_a_step_bounded_run_is_unchanged(caplog):
  progress = callbacks.Progress(0, 1000, 8, every=100)
  _, lines = _drive_timed(progress, range(1, 501), 0.5, caplog)
  # 499 steps in 249.5 s: 2 steps/s, 16 img/s; 500 steps left: 250 s.
  assert lines[-1] == "step 500/1000 (50%) 16.0 img/s ETA 4m10s | loss=1.000"


def test_progress_of_a_time_limited_run_that_the_steps_end_first(caplog):
  # 30 minutes allowed, but the 1000 steps end after about 8 minutes: ETA by steps.
  progress = callbacks.Progress(0, 1000, 8, every=100, time_limit_s=1800)
  model, lines = _drive_timed(progress, range(1, 501), 0.5, caplog)
  assert lines[-1].startswith(
      "step 500/1000 (50%) 16.0 img/s, 4m09s used, 25m50s left, ETA 4m10s (steps)")
  assert not progress.time_limit_hit and not model.stop_training


def test_progress_stops_the_run_past_its_time_limit(caplog):
  progress = callbacks.Progress(0, 25_000_000, 32, every=100, time_limit_s=60)
  model, _ = _drive_timed(progress, range(1, 240), 0.25, caplog)
  assert not progress.time_limit_hit                 # 238 steps after the first: 59.5 s
  progress.on_train_batch_end(239, {"loss": 1.0})    # the clock did not move: 59.5 s
  assert not progress.time_limit_hit
  progress.clock.now += 0.75                         # 60.25 s
  model.step.assign(240)
  progress.on_train_batch_end(240, {"loss": 1.0})
  assert progress.time_limit_hit and model.stop_training
  assert any(m.startswith("Time limit reached at step 240") for m in caplog.messages)
