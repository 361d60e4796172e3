"""Keras callbacks of a training run: checkpoints, sample grids, TensorBoard, progress."""

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.data import visualize
from faceexpr_tf.evaluation import scoring
from faceexpr_tf.modeling import models
from faceexpr_tf.serving import translators
from faceexpr_tf.store import runs


class TrainingDiverged(errors.UserError):
  """A loss became NaN or Inf; nothing after the last good checkpoint is kept."""


def _global_step(model) -> int:
  return int(model.step.numpy())


def crossed(previous: int | None, step: int, every: int) -> bool:
  """Whether the steps (previous, step] hold a multiple of `every` (0 = never).

  With --steps_per_execution=k the callbacks see every k-th step only, so a multiple of
  `every` that k does not divide is crossed, never landed on."""
  if not every:
    return False
  if previous is None:
    return step % every == 0
  return step // every > previous // every


class _StepCallback(keras.callbacks.Callback):
  """Remembers the step its last batch ended at, to fire on crossing multiples."""

  def __init__(self):
    super().__init__()
    self._previous = None

  def on_train_begin(self, logs=None):
    self._previous = _global_step(self.model)

  def _advance(self) -> tuple[int | None, int]:
    """(previous step seen, current step); the current becomes the previous."""
    previous, step = self._previous, _global_step(self.model)
    self._previous = step
    return previous, step


def _finite(logs) -> bool:
  return all(math.isfinite(float(v)) for v in (logs or {}).values())


class NanGuard(keras.callbacks.Callback):
  """Stops the run at the first non-finite loss, before anything saves that state."""

  def on_train_batch_end(self, batch, logs=None):
    if not _finite(logs):
      bad = ", ".join(k for k, v in logs.items() if not math.isfinite(float(v)))
      raise TrainingDiverged(
          f"non-finite loss at step {_global_step(self.model)} ({bad}); the last good "
          "checkpoint is kept. Lower the learning rate or check the data, then resume.")


class Checkpointer(_StepCallback):
  """Saves G, D and both optimizers every `every` steps; `save()` also at the end/on stop."""

  def __init__(self, run_dir, every, keep, steps_per_epoch):
    super().__init__()
    self.run_dir, self.every, self.keep = run_dir, every, keep
    self.steps_per_epoch = steps_per_epoch
    self.last_saved = None

  def save(self):
    step = _global_step(self.model)
    if step == self.last_saved:
      return None
    path = runs.save_checkpoint(
        self.run_dir, step, self.model.checkpoint_groups(),
        meta={"epoch": step // self.steps_per_epoch, "time": time.time()}, keep=self.keep)
    self.last_saved = step
    logging.info("Saved checkpoint %s", path)
    return path

  def on_train_batch_end(self, batch, logs=None):
    previous, step = self._advance()
    if crossed(previous, step, self.every):
      self.save()


class SampleWriter(_StepCallback):
  """Every `every` steps: a PNG grid (input, then each target emotion) of a fixed batch,
  the same grid as a TensorBoard image, and the training losses as TensorBoard scalars.
  An attention G's grid adds its masks, one column per emotion: white where G edits
  (1 - A), black where it keeps the input."""

  def __init__(self, run_dir, images, emotions, every, log_every):
    super().__init__()
    self.images = np.asarray(images)            # uint8 [n, H, W, C], fixed for the run
    self.emotions = tuple(emotions)
    self.every, self.log_every = every, log_every
    self.sample_dir = os.path.join(run_dir, "samples")
    self.writer = tf.summary.create_file_writer(os.path.join(run_dir, "logs", "train"))
    os.makedirs(self.sample_dir, exist_ok=True)

  def grid(self):
    """uint8 [n, 1 + K (+ K masks), H, W, C]: each input and its translation to every
    emotion (then, for an attention G, where it edits)."""
    x = translators.to_model_range(self.images)
    k, n = len(self.emotions), len(x)
    g = self.model.inference_generator
    columns = [x] + [np.asarray(g(x, np.eye(k, dtype=np.float32)[[c] * n], training=False))
                     for c in range(k)]
    masks = models.edit_masks(g, x, k)
    if masks is not None:  # 1 - A in [0, 1] -> [-1, 1], shown like an image
      masks = np.asarray(masks) * 2.0 - 1.0
      columns += [np.broadcast_to(masks[:, c], x.shape) for c in range(k)]
    cells = np.stack(columns, axis=1)
    return translators.to_uint8(cells)

  def titles(self, columns: int) -> list[str]:
    masks = [f"edit: {e}" for e in self.emotions] if columns > 1 + len(self.emotions) else []
    return ["input", *self.emotions, *masks]

  def write_sample(self, step):
    cells = self.grid()
    picture = visualize.make_grid(cells, self.titles(cells.shape[1]), scale=2)
    path = os.path.join(self.sample_dir, f"step-{step:09d}.png")
    visualize.write_png(path, picture)
    with self.writer.as_default(step=step):
      tf.summary.image("samples", picture[None], max_outputs=1)
    return path

  def on_train_batch_end(self, batch, logs=None):
    previous, step = self._advance()
    if crossed(previous, step, self.log_every):
      with self.writer.as_default(step=step):
        for name, value in (logs or {}).items():
          tf.summary.scalar(name, float(value))
    if crossed(previous, step, self.every):
      self.write_sample(step)

  def on_epoch_end(self, epoch, logs=None):
    step = _global_step(self.model)
    with self.writer.as_default(step=step):
      for name, value in (logs or {}).items():
        if name.startswith("val_"):
          tf.summary.scalar("validation/" + name[4:], float(value))
    self.writer.flush()


def read_scores(path: str) -> list[dict]:
  """The rows of a run's scores.jsonl, oldest first ([] when there is none yet)."""
  history = []
  if os.path.isfile(path):
    with open(path) as f:
      for line in f:
        try:
          history.append(json.loads(line))
        except ValueError:
          pass  # a line cut short by a kill
  return history


class ScoreKeeper(_StepCallback):
  """Every `every` steps: scores the shown G (the EMA copy when on) on fixed validation
  faces with an independent judge (scoring.score without the cycle pass), logs the scores
  to TensorBoard ("score/...") and to run_dir/scores.jsonl, and keeps checkpoints/best.npz
  under `rule`. A resumed run reads scores.jsonl back, so it never replaces a better best.
  """

  def __init__(self, run_dir, judge, images, labels, emotions, every,
               rule=scoring.BestRule(), writer=None):
    super().__init__()
    self.run_dir, self.judge, self.every, self.rule = run_dir, judge, every, rule
    self.images, self.labels = np.asarray(images), np.asarray(labels)
    self.emotions = tuple(emotions)
    self.real = judge(self.images)  # the real faces' features and logits, once
    self.history_path = os.path.join(run_dir, "scores.jsonl")
    self.writer = writer or tf.summary.create_file_writer(
        os.path.join(run_dir, "logs", "train"))
    self.history = read_scores(self.history_path)
    best = scoring.choose_best(self.history, rule)
    self.best = None if best is None else self.history[best]

  def score_now(self, step):
    translator = translators.KerasTranslator(self.model.inference_generator, self.emotions,
                                             "training G", step)
    t0 = time.time()
    scores, _ = scoring.score(translator, self.judge, self.images, self.labels,
                              cycle=False, real=self.real)
    scores["step"], scores["seconds"] = int(step), round(time.time() - t0, 1)
    scores["eligible"] = self.rule.eligible(scores)
    with open(self.history_path, "a") as f:
      f.write(json.dumps(scores) + "\n")
    self.history.append(scores)
    with self.writer.as_default(step=step):
      for key in ("target_accuracy", "do_nothing_target_accuracy", "ssim",
                  "pixel_correlation", "fd", "fd_floor", "kid", "own_emotion_ssim",
                  "own_emotion_fd"):
        tf.summary.scalar("score/" + key, scores[key])
    kept = ""
    if self.rule.better(scores, self.best):
      groups = {name: values for name, values in self.model.checkpoint_groups().items()
                if name in ("generator", "generator_ema", "discriminator")}
      runs.save_checkpoint(self.run_dir, step, groups, meta={"scores": scores},
                           name=runs.BEST_CHECKPOINT)
      self.best = scores
      kept = " -> new best checkpoint"
    logging.info("Scores at step %d (%d faces, %.0f s): target accuracy %.3f (do nothing "
                 "%.3f), SSIM %.3f, pixel correlation %.2f, FD %.3g (floor %.3g); own emotion: "
                 "SSIM %.3f, FD %.3g%s%s",
                 step, scores["faces"], scores["seconds"], scores["target_accuracy"],
                 scores["do_nothing_target_accuracy"], scores["ssim"],
                 scores["pixel_correlation"], scores["fd"], scores["fd_floor"],
                 scores["own_emotion_ssim"], scores["own_emotion_fd"], kept,
                 "" if scores["eligible"] else f" [not eligible: "
                 f"{self.rule.why_not(scores)}]")
    return scores

  def on_train_batch_end(self, batch, logs=None):
    previous, step = self._advance()
    if crossed(previous, step, self.every):
      self.score_now(step)


class Progress(_StepCallback):
  """A log line every `every` steps with overall progress, speed and ETA: the run's one
  progress display (trainer.py keeps Keras's per-epoch bar off unless --verbose asks).

  Without a time limit: `step 500/25000 (2%) 119.6 img/s ETA 1h49m | <losses>`. With one
  (--max_minutes) the line also shows the training time used and left, and its ETA and
  percentage read against whichever bound stops the run first: the time limit, or the
  steps left at the current rate. Time counts from the end of the first step (which includes
  tracing), the same clock the time limit stops the run by.
  """

  def __init__(self, start_step, total_steps, batch_size, every, time_limit_s=0,
               clock=time.time):
    super().__init__()
    self.start_step, self.total, self.batch_size = start_step, total_steps, batch_size
    self.every, self.time_limit_s, self.clock = every, time_limit_s, clock
    self.t0 = None
    self.time_limit_hit = False

  def on_train_batch_end(self, batch, logs=None):
    previous, step = self._advance()
    if self.t0 is None:  # the first step includes tracing; time from after it
      self.t0, self.step0 = self.clock(), step
      return
    elapsed = self.clock() - self.t0
    if self.time_limit_s and elapsed > self.time_limit_s:
      logging.warning("Time limit reached at step %d; stopping (rerun to continue).", step)
      self.time_limit_hit = True
      self.model.stop_training = True
    if crossed(previous, step, self.every) and step > self.step0:
      losses = " ".join(f"{k}={float(v):.3f}" for k, v in (logs or {}).items())
      logging.info("%s | %s", self.line(step, elapsed), losses)

  def line(self, step: int, elapsed: float) -> str:
    """The progress part of the log line at `step`, `elapsed` seconds after the first."""
    rate = (step - self.step0) / max(elapsed, 1e-9)         # steps per second
    steps_eta = max(self.total - step, 0) / rate
    speed = f"{rate * self.batch_size:.1f} img/s"
    if not self.time_limit_s:
      return (f"step {step}/{self.total} ({100 * step / self.total:.0f}%) {speed} "
              f"ETA {_duration(steps_eta)}")
    left = max(self.time_limit_s - elapsed, 0.0)
    times = f"{_duration(elapsed)} used, {_duration(left)} left"
    if left < steps_eta:  # the time limit stops the run first
      share = min(elapsed / self.time_limit_s, 1.0)
      return (f"step {step} ({100 * share:.0f}% of {_duration(self.time_limit_s)}) {speed}, "
              f"{times}, ETA {_duration(left)} (time limit)")
    return (f"step {step}/{self.total} ({100 * step / self.total:.0f}%) {speed}, {times}, "
            f"ETA {_duration(steps_eta)} (steps)")


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  if seconds >= 3600:
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
  return f"{seconds // 60}m{seconds % 60:02d}s"
