"""Faults: kills at random moments (a short tools/faults.py run), a full disk, a read-only
run dir, missing permissions. Each ends in one clear line and loses no saved work."""

import contextlib
import os
import random
import subprocess
import sys
import threading

import numpy as np
import pytest

from faceexpr_tf import errors
from faceexpr_tf.modeling import models
from faceexpr_tf.store import locks
from faceexpr_tf.store import runs
from faceexpr_tf.training import callbacks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import faults  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

TINY = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8)
EMOTIONS = ("Angry", "Happy", "Sad", "Surprise")


@pytest.fixture(scope="module")
def classifier_fault_run(tmp_path_factory):
  """The train_classifier faults of tools/faults.py (a SIGKILL right after an epoch's
  backup and a SIGTERM, then a rerun to the end), started in a thread with counts of
  their own: they run alongside the train faults, as `python tools/faults.py` runs them
  (most of each launch is a fresh interpreter importing TensorFlow, so the two overlap
  well). Yields (thread, counts, errors); the thread is joined at the end."""
  counts, errors_seen = faults.Counts(), []
  work = str(tmp_path_factory.mktemp("classifier_faults"))

  def faults_then_done():
    try:
      faults.classifier_faults(work, 1, 1, random.Random(2), counts)
    except Exception as e:  # pylint: disable=broad-except
      errors_seen.append(repr(e))

  thread = threading.Thread(target=faults_then_done, daemon=True)
  thread.start()
  yield thread, counts, errors_seen
  thread.join()


def test_short_fault_injection_run_resumes_and_loses_nothing(classifier_fault_run, tmp_path):
  """One SIGKILL, at a moment drawn at random for each run (right after a checkpoint file
  appears, while one is being written, or right after a sample grid appears), and one
  Ctrl-C, in an order the seed shuffles; each restart's resume is checked, then a last run
  trains to the end and must equal an uninterrupted reference run.

  One to two minutes on 2 cores (two with other work on them), because each of the three
  launches in a row (killed, stopped, finished) is a fresh `main.py train`: a TensorFlow
  import and a traced train step, 20-45 s each here. The reference run and the
  train_classifier faults (classifier_fault_run) run beside them."""
  del classifier_fault_run  # started: it runs alongside
  seed = random.SystemRandom().randrange(10_000)
  kill = random.Random(seed).choice(["after_checkpoint", "during_checkpoint_write",
                                     "after_sample"])
  where = f" (seed={seed}, kill_kinds=[{kill!r}])"
  counts = faults.run(kills=1, terms=0, ints=1, export_kills=0, seed=seed,
                      work=str(tmp_path), second=False, startup_s=10.0, log=lambda _: None,
                      classifier_kills=0, classifier_stops=0, kill_kinds=[kill])
  assert not counts.failures, faults.report(counts) + where
  assert counts.sigkills == 1 and counts.sigints == 1, faults.report(counts) + where
  assert counts.restarts_resumed == counts.restarts == 2, faults.report(counts) + where
  assert counts.corrupt_checkpoints == 0 and counts.checkpoints_checked > 0, where
  assert counts.final_weights_match, faults.report(counts) + where


def test_short_classifier_fault_run_resumes_and_leaves_no_half_written_file(
    classifier_fault_run):
  """train_classifier: a SIGKILL right after an epoch's backup and a SIGTERM, each rerun
  resumes at the backed-up epoch, every model file left loads, the last rerun finishes.

  Three fresh `main.py train_classifier` launches in a row (killed, stopped, finished):
  tens of seconds, mostly spent beside the train faults of the test above."""
  thread, counts, errors_seen = classifier_fault_run
  thread.join(timeout=1200)
  assert not thread.is_alive(), "the train_classifier faults did not end in 20 minutes"
  assert not errors_seen, errors_seen
  assert not counts.failures, faults.report(counts, classifier_only=True)
  assert counts.classifier_sigkills == 1 and counts.classifier_stops == 1
  assert counts.classifier_restarts_resumed == counts.classifier_restarts == 2
  assert counts.corrupt_classifier_files == 0 and counts.classifier_files_checked >= 3


def _tiny_classifier():
  import keras  # pylint: disable=g-import-not-at-top
  inputs = keras.Input((4,))
  return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def test_classifier_files_are_replaced_whole_or_not_at_all(tmp_path):
  """A write that dies half-way (a kill, a full disk) leaves the previous file intact."""
  from faceexpr_tf.evaluation import classifier_training  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.store import keras_files  # pylint: disable=g-import-not-at-top
  model = _tiny_classifier()
  path = str(tmp_path / "best.keras")
  classifier_training._save_keras(model, path)  # pylint: disable=protected-access
  before = open(path, "rb").read()

  def dies_half_way(target, **unused):
    with open(target, "wb") as f:
      f.write(before[:len(before) // 2])
    raise OSError(28, "No space left on device")

  model.save = dies_half_way
  with pytest.raises(OSError):
    classifier_training._save_keras(model, path)  # pylint: disable=protected-access
  assert open(path, "rb").read() == before
  assert os.listdir(tmp_path) == ["best.keras"]     # the partial temp file removed
  keras_files.load(path, "classifier")


def test_classifier_rerun_keeps_the_best_from_before_the_kill(tmp_path):
  from faceexpr_tf.evaluation import classifier_training  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "checkpoints" / "best.keras")
  os.makedirs(os.path.dirname(path))
  first = classifier_training._KeepBest(path)  # pylint: disable=protected-access
  first.set_model(_tiny_classifier())
  first.on_train_begin()
  first.on_epoch_end(0, {"val_accuracy": 0.8})
  saved = open(path, "rb").read()
  rerun = classifier_training._KeepBest(path)  # pylint: disable=protected-access
  rerun.set_model(_tiny_classifier())
  rerun.on_train_begin()
  rerun.on_epoch_end(3, {"val_accuracy": 0.6})    # worse than before the kill: kept
  assert open(path, "rb").read() == saved
  assert rerun.best_epoch == 1                      # what the record reports
  rerun.on_epoch_end(4, {"val_accuracy": 0.9})
  assert open(path, "rb").read() != saved
  assert rerun.best_epoch == 5


@contextlib.contextmanager
def _tmpfs(path, size):
  """A size-limited file system at `path` (root only)."""
  if os.geteuid() != 0:
    pytest.skip("mounting a size-limited tmpfs needs root")
  os.makedirs(path, exist_ok=True)
  if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                    capture_output=True).returncode:
    pytest.skip("mount -t tmpfs is not allowed here (a container without CAP_SYS_ADMIN?)")
  try:
    yield path
  finally:
    locks.unlock_dir(str(path / "run"))
    subprocess.run(["umount", "-l", str(path)], check=False)


def _remount(path, mode):
  subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


class _Model:
  def __init__(self, weights):
    import keras  # pylint: disable=g-import-not-at-top
    self.step = keras.Variable(0, dtype="int64", trainable=False)
    self.weights = weights

  def checkpoint_groups(self):
    return {"generator": self.weights}


def test_disk_full_at_a_checkpoint_is_one_line_and_keeps_the_previous(tmp_path):
  with _tmpfs(tmp_path / "mnt", "2m") as mnt:
    run_dir = str(mnt / "run")
    runs.prepare_run_dir(run_dir, runs.RunConfig(TINY, EMOTIONS))
    g, _ = models.build_models(TINY)
    saver = callbacks.Checkpointer(run_dir, every=5, keep=3, steps_per_epoch=100)
    model = _Model(g.weights)
    saver.set_model(model)
    saver.on_train_begin()
    model.step.assign(5)
    saver.on_train_batch_end(0)
    saved = [w.numpy().copy() for w in g.weights]
    with open(mnt / "filler", "wb") as f:     # fill the disk
      with contextlib.suppress(OSError):
        while True:
          f.write(b"\0" * 65536)
          f.flush()
    for w in g.weights:
      w.assign(w.numpy() + 1)
    model.step.assign(10)
    with pytest.raises(errors.UserError, match="ckpt-000000010.npz: cannot write \\(No "
                       "space left on device\\); nothing saved before was changed") as e:
      saver.on_train_batch_end(1)
    assert "\n" not in str(e.value)
    assert [s for s, _ in runs.list_checkpoints(run_dir)] == [5]
    assert not [n for n in os.listdir(runs.checkpoint_dir(run_dir)) if n.endswith(".tmp")]
    g2, _ = models.build_models(TINY)
    runs.restore_latest(run_dir, {"generator": g2.weights})
    for a, b in zip(saved, g2.weights):
      np.testing.assert_array_equal(a, b.numpy())


def test_read_only_run_dir_is_one_line_before_training_and_keeps_the_checkpoint(tmp_path,
                                                                                main_py):
  with _tmpfs(tmp_path / "mnt", "8m") as mnt:
    run_dir = mnt / "run"
    args = faults.train_args(str(run_dir), 4)
    g, _ = models.build_models(TINY)
    os.makedirs(run_dir)
    path = runs.save_checkpoint(str(run_dir), 3, {"generator": g.weights})
    with open(path, "rb") as f:
      before = f.read()
    _remount(mnt, "ro")
    # `python main.py train ...` (args[2:]), forked from a process that imported TF once.
    proc = main_py(*args[2:], cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {run_dir}: cannot write to this --run_dir (Read-only file system)")
    assert "Traceback" not in proc.stderr
    with open(path, "rb") as f:
      assert f.read() == before


def test_missing_permissions_is_one_line(tmp_path):
  if os.geteuid() == 0:
    pytest.skip("root ignores file permissions; the read-only mount test covers this "
                "error path")
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  run_dir.chmod(0o500)
  try:
    with pytest.raises(errors.UserError, match="cannot write to this --run_dir "
                       "\\(Permission denied\\)"):
      runs.prepare_run_dir(str(run_dir), runs.RunConfig(TINY, EMOTIONS))
  finally:
    run_dir.chmod(0o700)
