"""Fault injection: kill `main.py train` (`export`, `train_classifier`) at random moments,
restart, check.

    python tools/faults.py     # 20 SIGKILLs, 2 SIGTERMs, 2 Ctrl-Cs, 3 export kills, and
                               # 2 SIGKILLs + a SIGTERM + a Ctrl-C of train_classifier
    python tools/faults.py --kills=3 --terms=1 --ints=0 --export_kills=1   # a short version

One tiny synthetic training run (flags/smoke.flags, tiny networks) is interrupted again
and again and restarted with the same command each time; a second, uninterrupted run with
the same seed is the reference. SIGKILLs land right after a checkpoint file appears, while
one is being written (its .tmp file seen), right after a sample grid appears, and at
random offsets (during start-up too). Checked after every interruption:

  - the restart resumes (its log says "Resuming at step S" or, before any checkpoint,
    "Starting at step 0"), from the newest checkpoint on disk: S >= every checkpoint step
    seen before the kill, and the step reached before the kill minus S is at most one
    --checkpoint_every (the work a hard kill may cost);
  - every checkpoint file on disk loads (CRC-checked): none is corrupt;
  - SIGTERM and Ctrl-C (SIGINT) exit with 130 after saving the step they stopped at, and
    the restart resumes at exactly that step (nothing lost);
  - a second `train` on the same run dir while one runs is refused (exit 2, one line);
  - at the end the interrupted run's weights and optimizer state equal the reference run's
    (within the tolerance tests/test_training.py uses for in-process resume: rtol 1e-5,
    atol 1e-6, as float sums may be reordered by threads; the measured difference is
    printed);
  - an `export` killed at random moments never leaves an integer version dir that is
    incomplete (TF Serving loads any integer dir it sees): each one present loads;
  - `train_classifier` (tiny, synthetic; run alongside the rest) killed right after an
    epoch's backup or at a random moment, or stopped by SIGTERM / Ctrl-C (exit 130):
    each rerun of the same command resumes at the last epoch its backup records (the
    epoch in progress is trained again: Keras' backup is per epoch), and every model
    file it leaves (best.keras, classifier.keras, the backup's record) loads: none is
    half-written.

Prints the counts and writes them as JSON (--json). Exit status 1 when any check failed.
"""

import argparse
import dataclasses
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

if __name__ == "__main__":  # this script reads checkpoints: TensorFlow starts here too
  from faceexpr_tf import quiet  # pylint: disable=g-import-not-at-top
  quiet.install()

import numpy as np  # noqa: E402  pylint: disable=wrong-import-position

from faceexpr_tf.store import runs  # noqa: E402  pylint: disable=wrong-import-position

CHECKPOINT_EVERY = 4
# Where a SIGKILL of train lands: right after a new checkpoint file appears, while one is
# being written (its .tmp seen), right after a new sample grid appears, at a random offset.
KILL_KINDS = ("after_checkpoint", "during_checkpoint_write", "after_sample", "random")
GROUPS = ["generator", "discriminator", "g_optimizer", "d_optimizer"]
_RESUME_RE = re.compile(r"(Resuming|Starting) at step (\d+) of (\d+)")
_PROGRESS_RE = re.compile(r"step (\d+)(?:/\d+)? \(")   # step-bounded and time-bounded lines
_STOPPED_RE = re.compile(r"Stopped by (SIGTERM|Ctrl-C) at step (\d+)")


def train_args(run_dir: str, max_steps: int, seed: int = 0) -> list[str]:
  return [sys.executable, os.path.join(ROOT, "main.py"), "train",
          f"--flagfile={os.path.join(ROOT, 'flags', 'smoke.flags')}",
          f"--run_dir={run_dir}", f"--max_steps={max_steps}",
          f"--checkpoint_every={CHECKPOINT_EVERY}", "--sample_every=3", "--log_every=1",
          "--keep_checkpoints=3", "--synthetic_identities=8", "--report=false",
          "--validate=false", "--jit_compile=false", f"--seed={seed}", "--verbose=2"]


def _env():
  return {**os.environ, "PYTHONPATH": ROOT, "CUDA_VISIBLE_DEVICES": ""}


def _default_sigint():
  # A shell without job control starts background commands with SIGINT ignored, and a
  # child inherits that: Python would then never raise KeyboardInterrupt, and the Ctrl-C
  # faults would be lost when this script itself runs in the background (`... &`, CI).
  signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclasses.dataclass
class Counts:
  sigkills: int = 0
  sigkills_after_checkpoint: int = 0
  sigkills_during_checkpoint_write: int = 0
  sigkills_after_sample: int = 0
  sigkills_at_random_offsets: int = 0
  kills_during_startup: int = 0         # before the restart logged its resume step
  sigterms: int = 0
  sigints: int = 0
  restarts: int = 0
  restarts_resumed: int = 0
  steps_redone_after_kills: int = 0     # steps trained again after hard kills
  max_steps_redone_per_kill: int = 0
  steps_lost_after_sigterm_or_ctrl_c: int = 0
  checkpoints_checked: int = 0
  corrupt_checkpoints: int = 0
  second_writers_refused: int = 0
  second_writers_tried: int = 0
  export_kills: int = 0
  incomplete_export_versions: int = 0
  classifier_sigkills: int = 0
  classifier_stops: int = 0             # SIGTERM or Ctrl-C of train_classifier
  classifier_restarts: int = 0
  classifier_restarts_resumed: int = 0
  classifier_epochs_redone: int = 0
  classifier_files_checked: int = 0
  corrupt_classifier_files: int = 0
  final_max_abs_difference: float = -1.0
  final_weights_match: bool = False
  failures: list = dataclasses.field(default_factory=list)


class Launch:
  """One `main.py` process with its output in a log file."""

  def __init__(self, args, log_path):
    self.log_path = log_path
    self.log = open(log_path, "w")
    self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                 env=_env(), preexec_fn=_default_sigint)
    self.started = time.time()

  def text(self) -> str:
    with open(self.log_path, errors="replace") as f:
      return f.read()

  def wait(self, timeout=600) -> int:
    try:
      rc = self.proc.wait(timeout=timeout)
    finally:
      self.log.close()
    return rc

  def running(self) -> bool:
    return self.proc.poll() is None


def _checkpoint_files(run_dir):
  return sorted(glob.glob(os.path.join(runs.checkpoint_dir(run_dir), "ckpt-*")))


def _steps(run_dir) -> list[int]:
  return [s for s, _ in runs.list_checkpoints(run_dir)]


def _wait_until(cond, launch: Launch, timeout: float, poll: float = 0.005) -> bool:
  deadline = time.time() + timeout
  while time.time() < deadline:
    if cond():
      return True
    if not launch.running():
      return False
    time.sleep(poll)
  return False


def _reached(text: str) -> int:
  """The highest step the log shows as trained (progress lines, log_every=1)."""
  found = [int(m) for m in _PROGRESS_RE.findall(text)]
  return max(found, default=0)


def check_checkpoints(run_dir, counts: Counts):
  for _, path in runs.list_checkpoints(run_dir):
    counts.checkpoints_checked += 1
    try:
      runs.read_checkpoint(path, GROUPS)
    except runs.RunDirError as e:
      counts.corrupt_checkpoints += 1
      counts.failures.append(f"corrupt checkpoint: {e}")


def interrupt_once(kind: str, run_dir: str, max_steps: int, log_path: str,
                   startup_s: float, rng: random.Random, counts: Counts) -> dict:
  """Starts training, interrupts it by `kind`; returns what the next restart must show."""
  before = set(_checkpoint_files(run_dir))
  samples_dir = os.path.join(run_dir, "samples")
  samples_before = set(os.listdir(samples_dir)) if os.path.isdir(samples_dir) else set()
  launch = Launch(train_args(run_dir, max_steps), log_path)
  new_files = lambda: set(_checkpoint_files(run_dir)) - before  # noqa: E731
  how = kind
  if kind == "after_checkpoint":
    _wait_until(lambda: any(f.endswith(".npz") for f in new_files()), launch, 300)
  elif kind == "during_checkpoint_write":
    if not _wait_until(lambda: any(f.endswith(".tmp") for f in new_files()), launch, 300,
                       poll=0.0005):
      how = "after_checkpoint"  # the write was too quick to catch; killed right after
  elif kind == "after_sample":
    _wait_until(lambda: os.path.isdir(samples_dir) and bool(
        set(os.listdir(samples_dir)) - samples_before), launch, 300)
  elif kind == "random":
    _wait_until(lambda: False, launch, rng.uniform(0.2, 1.0) * startup_s + rng.uniform(0, 2))
  elif kind in ("sigterm", "sigint"):
    _wait_until(lambda: _reached(launch.text()) > 0, launch, 300, poll=0.05)
  if not launch.running():  # finished before the fault: nothing interrupted
    launch.wait()
    return {"finished": True, "text": launch.text()}
  if kind in ("sigterm", "sigint"):
    launch.proc.send_signal(signal.SIGTERM if kind == "sigterm" else signal.SIGINT)
    rc = launch.wait(timeout=300)
    text = launch.text()
    stopped = _STOPPED_RE.search(text)
    setattr(counts, kind + "s", getattr(counts, kind + "s") + 1)
    if rc != 130 or not stopped or "Traceback" in text:
      counts.failures.append(f"{kind}: exit {rc}, stop line {bool(stopped)}; see {log_path}")
      return {"expect_exact": None, "text": text}
    step = int(stopped.group(2))
    if not _steps(run_dir) or _steps(run_dir)[-1] != step:
      counts.failures.append(f"{kind}: stopped at step {step} but newest checkpoint is "
                             f"{_steps(run_dir)[-1:]}")
    return {"expect_exact": step, "text": text}
  launch.proc.kill()
  launch.wait()
  counts.sigkills += 1
  field = {"after_checkpoint": "sigkills_after_checkpoint",
           "during_checkpoint_write": "sigkills_during_checkpoint_write",
           "after_sample": "sigkills_after_sample",
           "random": "sigkills_at_random_offsets"}[how]
  setattr(counts, field, getattr(counts, field) + 1)
  text = launch.text()
  return {"expect_at_least": max(_steps(run_dir), default=0), "reached": _reached(text),
          "text": text}


def check_resume(expectation: dict, text: str, counts: Counts, where: str):
  """The restart's log against what the interruption left."""
  counts.restarts += 1
  m = _RESUME_RE.search(text)
  if not m:
    counts.failures.append(f"restart did not start or resume; see {where}")
    return
  step = int(m.group(2))
  if "expect_exact" in expectation:
    want = expectation["expect_exact"]
    if want is not None and step != want:
      counts.failures.append(f"resumed at {step} after a clean stop at {want}; see {where}")
      counts.steps_lost_after_sigterm_or_ctrl_c += max(want - step, 0)
      return
  else:
    if step < expectation["expect_at_least"]:
      counts.failures.append(f"resumed at {step}, older than checkpoint "
                             f"{expectation['expect_at_least']}; see {where}")
      return
    redone = max(expectation["reached"] - step, 0)
    counts.steps_redone_after_kills += redone
    counts.max_steps_redone_per_kill = max(counts.max_steps_redone_per_kill, redone)
    if redone > CHECKPOINT_EVERY:
      counts.failures.append(f"went back {redone} steps (> {CHECKPOINT_EVERY}); see {where}")
      return
  counts.restarts_resumed += 1


def second_writer(run_dir, max_steps, work, counts: Counts):
  """While one train holds run_dir, a second one must be refused (exit 2, one line)."""
  first = Launch(train_args(run_dir, max_steps), os.path.join(work, "writer-1.log"))
  _wait_until(lambda: os.path.exists(os.path.join(run_dir, ".lock")) and
              _reached(first.text()) > 0, first, 300, poll=0.05)
  second = Launch(train_args(run_dir, max_steps), os.path.join(work, "writer-2.log"))
  rc = second.wait(timeout=300)
  text = second.text()
  counts.second_writers_tried += 1
  if rc == 2 and "in use by another process" in text and "Traceback" not in text:
    counts.second_writers_refused += 1
  else:
    counts.failures.append(f"second writer: exit {rc}; see {second.log_path}")
  first.proc.kill()
  first.wait()
  counts.sigkills += 1
  counts.sigkills_at_random_offsets += 1
  return {"expect_at_least": max(_steps(run_dir), default=0), "reached": _reached(
      first.text()), "text": first.text()}


def _final_state(run_dir):
  _, path = runs.list_checkpoints(run_dir)[-1]
  return runs.read_checkpoint(path, GROUPS)[1]


def compare_final(reference_dir, run_dir, counts: Counts):
  ref, got = _final_state(reference_dir), _final_state(run_dir)
  worst, ok = 0.0, True
  for group in GROUPS:
    if len(ref[group]) != len(got[group]):
      ok = False
      continue
    for a, b in zip(ref[group], got[group]):
      worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0)
      ok &= bool(np.allclose(a, b, rtol=1e-5, atol=1e-6))
  counts.final_max_abs_difference = worst
  counts.final_weights_match = ok
  if not ok:
    counts.failures.append(f"final state differs from the uninterrupted run (max abs "
                           f"difference {worst:.3g})")


def export_faults(run_dir, work, kills, rng, counts: Counts):
  """Kills `export` at random moments; every integer version dir left must be whole."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  base = os.path.join(work, "exports")
  args = [sys.executable, os.path.join(ROOT, "main.py"), "export", f"--run_dir={run_dir}",
          f"--export_dir={base}", "--verify=false"]
  durations = []
  for i in range(kills + 1):
    launch = Launch(args, os.path.join(work, f"export-{i}.log"))
    if i < kills:
      limit = rng.uniform(0.3, 1.3) * (durations[0] if durations else 25.0)
      _wait_until(lambda: False, launch, limit)
      if launch.running():
        launch.proc.kill()
        counts.export_kills += 1
      launch.wait()
    else:
      rc = launch.wait()
      durations.append(time.time() - launch.started)
      if rc != 0:
        counts.failures.append(f"export failed (exit {rc}); see {launch.log_path}")
    model_dir = os.path.join(base, "faceexpr")
    for name in (os.listdir(model_dir) if os.path.isdir(model_dir) else []):
      if name.isdigit():
        try:
          tf.saved_model.load(os.path.join(model_dir, name)).signatures["metadata"]()
        except Exception as e:  # pylint: disable=broad-except
          counts.incomplete_export_versions += 1
          counts.failures.append(f"export version {name} does not load: {type(e).__name__}")


_CLF_RESUME_RE = re.compile(r"(Resuming|Starting) at epoch (\d+) of (\d+)")


def classifier_args(run_dir: str, epochs: int) -> list[str]:
  """A tiny `train_classifier` (the sizes tests/test_classifier.py uses), 3 steps an epoch."""
  return [sys.executable, os.path.join(ROOT, "main.py"), "train_classifier",
          "--data=synthetic", "--synthetic_identities=24", f"--run_dir={run_dir}",
          "--width=8", f"--epochs={epochs}", "--steps_per_epoch=3",
          "--batch_size=16", f"--patience={epochs}", "--max_minutes=0",
          "--augment=false"]


def _classifier_epoch(run_dir) -> int:
  """The last finished epoch the backup records (0 before the first)."""
  try:
    with open(os.path.join(run_dir, "backup", "training_metadata.json")) as f:
      return int(json.load(f)["epoch"])
  except (OSError, ValueError, KeyError):
    return 0


def check_classifier_files(run_dir, counts: Counts):
  """Every model file the classifier run left loads: none half-written."""
  from faceexpr_tf.store import keras_files  # pylint: disable=g-import-not-at-top
  paths = [os.path.join(run_dir, "checkpoints", "best.keras"),
           os.path.join(run_dir, "classifier.keras")]
  for path in paths:
    if not os.path.exists(path):
      continue
    counts.classifier_files_checked += 1
    try:
      keras_files.load(path, "classifier")
    except Exception as e:  # pylint: disable=broad-except
      counts.corrupt_classifier_files += 1
      counts.failures.append(f"train_classifier left a corrupt file: {e}")
  backup = os.path.join(run_dir, "backup", "training_metadata.json")
  if os.path.exists(backup):
    counts.classifier_files_checked += 1
    try:
      with open(backup) as f:
        json.load(f)
    except ValueError as e:
      counts.corrupt_classifier_files += 1
      counts.failures.append(f"{backup}: half-written ({e})")


def classifier_faults(work, kills, stops, rng, counts: Counts):
  """Interrupts `train_classifier` (SIGKILL right after an epoch's backup or at a random
  moment; SIGTERM and Ctrl-C alternately for `stops`), reruns the same command: each rerun
  must resume from the last finished epoch the backup records, and no model file may be
  left half-written; the last rerun must finish with a classifier.keras that loads."""
  run_dir = os.path.join(work, "classifier")
  kinds = ["after_epoch" if i % 2 == 0 else "random" for i in range(kills)]
  kinds += ["sigterm" if i % 2 == 0 else "sigint" for i in range(stops)]
  rng.shuffle(kinds)
  epochs = 2 + 2 * len(kinds)   # room for every fault to land before the run ends
  expected = None
  for i, kind in enumerate(kinds + ["final"]):
    before = _classifier_epoch(run_dir)
    launch = Launch(classifier_args(run_dir, epochs),
                    os.path.join(work, f"classifier-{i}-{kind}.log"))
    if kind == "final":
      rc = launch.wait()
      if rc != 0:
        counts.failures.append(f"train_classifier rerun failed (exit {rc}); see "
                               f"{launch.log_path}")
    else:
      if kind == "random":
        _wait_until(lambda: _CLF_RESUME_RE.search(launch.text()), launch, 300, poll=0.05)
        _wait_until(lambda: False, launch, rng.uniform(0.0, 3.0))
      else:  # one more epoch backed up (sigterm/sigint: then stop mid-epoch)
        _wait_until(lambda: _classifier_epoch(run_dir) > before, launch, 300, poll=0.002)
      if not launch.running():
        launch.wait()
        counts.failures.append(f"train_classifier finished before fault {i}: too short")
        break
      if kind in ("sigterm", "sigint"):
        launch.proc.send_signal(signal.SIGTERM if kind == "sigterm" else signal.SIGINT)
        rc = launch.wait(timeout=300)
        counts.classifier_stops += 1
        if rc != 130 or "Traceback" in launch.text():
          counts.failures.append(f"train_classifier {kind}: exit {rc}; see {launch.log_path}")
      else:
        launch.proc.kill()
        launch.wait()
        counts.classifier_sigkills += 1
    text = launch.text()
    m = _CLF_RESUME_RE.search(text)
    if expected is not None:
      counts.classifier_restarts += 1
      if m is None:
        counts.failures.append(f"train_classifier rerun did not start; see {launch.log_path}")
      elif int(m.group(2)) < expected:
        counts.failures.append(f"train_classifier resumed at epoch {m.group(2)}, before "
                               f"the backed-up epoch {expected}; see {launch.log_path}")
      else:
        counts.classifier_restarts_resumed += 1
    expected = _classifier_epoch(run_dir)
    check_classifier_files(run_dir, counts)
  if not os.path.exists(os.path.join(run_dir, "classifier.keras")):
    counts.failures.append("train_classifier never wrote classifier.keras")


def run(kills=20, terms=2, ints=2, export_kills=3, seed=0, work=None, second=True,
        startup_s=15.0, log=print, classifier_kills=2, classifier_stops=2,
        kill_kinds=KILL_KINDS) -> Counts:
  """Runs the faults (see the module doc); startup_s: about how long `main.py train` takes
  to reach its first step here (random kills fall within it or up to 2 s after).
  kill_kinds: the moments the `kills` SIGKILLs land at, taken in turn (default: all of
  KILL_KINDS); a shorter run can pass fewer, e.g. one drawn at random."""
  unknown = set(kill_kinds) - set(KILL_KINDS)
  if unknown or not kill_kinds:
    raise ValueError(f"kill_kinds: choose from {', '.join(KILL_KINDS)}, got {kill_kinds}")
  work = work or tempfile.mkdtemp(prefix="faults-")
  os.makedirs(work, exist_ok=True)
  rng = random.Random(seed)
  counts = Counts()
  max_steps = 16 + 6 * (kills + terms + ints)
  reference_dir, run_dir = os.path.join(work, "reference"), os.path.join(work, "faulted")
  log(f"work dir {work}; {max_steps} training steps, checkpoint every {CHECKPOINT_EVERY}")
  # The reference runs alongside the first interrupted launches, and the classifier's
  # faults alongside all of it (its own run dir and random stream; three processes at
  # most): most of each launch is start-up waiting, so the faults overlap well.
  reference = Launch(train_args(reference_dir, max_steps), os.path.join(work, "reference.log"))
  classifier = threading.Thread(target=classifier_faults, args=(
      work, classifier_kills, classifier_stops, random.Random(seed + 1), counts))
  if classifier_kills or classifier_stops:
    classifier.start()
  kinds = (list(kill_kinds) * kills)[:kills] + ["sigterm"] * terms + ["sigint"] * ints
  rng.shuffle(kinds)
  expectation = None
  for i, kind in enumerate(kinds):
    log_path = os.path.join(work, f"launch-{i:02d}-{kind}.log")
    result = interrupt_once(kind, run_dir, max_steps, log_path, startup_s, rng, counts)
    text = result["text"]
    if (expectation is not None and not result.get("finished")
        and not _RESUME_RE.search(text)):
      # Killed during start-up, before this restart could resume: the fault counts, and
      # the next restart must resume from what the earlier fault left.
      counts.kills_during_startup += 1
      log(f"  {i + 1:2d}/{len(kinds)} {kind:24s} killed during start-up")
      continue
    if expectation is not None:
      check_resume(expectation, text, counts, log_path)
    if result.get("finished"):
      log(f"  run finished before fault {i + 1}; stopping the faults early")
      expectation = None
      break
    expectation = result
    log(f"  {i + 1:2d}/{len(kinds)} {kind:24s} checkpoints {_steps(run_dir)[-3:]}")
    check_checkpoints(run_dir, counts)
  if second:
    result = second_writer(run_dir, max_steps, work, counts)
    if expectation is not None:
      check_resume(expectation, result["text"], counts, os.path.join(work, "writer-1.log"))
    expectation = result
    check_checkpoints(run_dir, counts)
  final = Launch(train_args(run_dir, max_steps), os.path.join(work, "final.log"))
  rc = final.wait()
  if expectation is not None:
    check_resume(expectation, final.text(), counts, final.log_path)
  if rc != 0:
    counts.failures.append(f"final run exit {rc}; see {final.log_path}")
  if reference.wait() != 0:
    counts.failures.append(f"reference run failed; see {reference.log_path}")
  check_checkpoints(run_dir, counts)
  if not counts.failures or runs.list_checkpoints(run_dir):
    compare_final(reference_dir, run_dir, counts)
  if export_kills:
    export_faults(run_dir, work, export_kills, rng, counts)
  if classifier.is_alive():
    classifier.join()
  return counts


def report(counts: Counts, classifier_only: bool = False) -> str:
  c = counts
  total = (c.sigkills + c.sigterms + c.sigints + c.export_kills + c.classifier_sigkills
           + c.classifier_stops)
  lines = [
      f"faults injected: {total} "
      f"({c.sigkills} SIGKILL of train: {c.sigkills_after_checkpoint} right after a "
      f"checkpoint, {c.sigkills_during_checkpoint_write} during a checkpoint write, "
      f"{c.sigkills_after_sample} right after a sample grid, {c.sigkills_at_random_offsets} "
      f"at random offsets ({c.kills_during_startup} of them during start-up); "
      f"{c.sigterms} SIGTERM; {c.sigints} Ctrl-C; {c.export_kills} SIGKILL of export; "
      f"{c.classifier_sigkills + c.classifier_stops} of train_classifier)",
      f"runs resumed: {c.restarts_resumed}/{c.restarts} restarts",
      f"work lost: {c.steps_lost_after_sigterm_or_ctrl_c} steps after SIGTERM/Ctrl-C; "
      f"{c.steps_redone_after_kills} steps redone after SIGKILLs (at most "
      f"{c.max_steps_redone_per_kill} per kill, limit {CHECKPOINT_EVERY} = "
      f"--checkpoint_every); final state equals the uninterrupted run: "
      f"{c.final_weights_match} (max abs difference {c.final_max_abs_difference:.3g})",
      f"checkpoints checked: {c.checkpoints_checked}, corrupt: {c.corrupt_checkpoints}",
      f"second writers refused: {c.second_writers_refused}/{c.second_writers_tried}",
      f"export versions left incomplete: {c.incomplete_export_versions}",
      f"train_classifier: {c.classifier_sigkills} SIGKILL, {c.classifier_stops} "
      f"SIGTERM/Ctrl-C; reruns resumed from the last backed-up epoch: "
      f"{c.classifier_restarts_resumed}/{c.classifier_restarts}; model files checked: "
      f"{c.classifier_files_checked}, half-written: {c.corrupt_classifier_files}",
  ]
  if classifier_only:
    lines = lines[-1:]
  lines += [f"FAILED: {f}" for f in c.failures]
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of train")
  parser.add_argument("--terms", type=int, default=2, help="SIGTERMs of train")
  parser.add_argument("--ints", type=int, default=2, help="Ctrl-C (SIGINT) of train")
  parser.add_argument("--export_kills", type=int, default=3, help="SIGKILLs of export")
  parser.add_argument("--classifier_kills", type=int, default=2,
                      help="SIGKILLs of train_classifier")
  parser.add_argument("--classifier_stops", type=int, default=2,
                      help="SIGTERMs and Ctrl-Cs (alternately) of train_classifier")
  parser.add_argument("--classifier_only", action="store_true",
                      help="only the train_classifier faults (about 3 minutes)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--startup_s", type=float, default=15.0, help="about how long "
                      "train takes to reach its first step on this machine")
  parser.add_argument("--work", default=None, help="work dir (default: a new temp dir)")
  parser.add_argument("--json", default=None, help="also write the counts here")
  parser.add_argument("--keep", action="store_true", help="keep the work dir")
  args = parser.parse_args()
  work = args.work or tempfile.mkdtemp(prefix="faults-")
  t0 = time.time()
  if args.classifier_only:
    counts = Counts()
    os.makedirs(work, exist_ok=True)
    classifier_faults(work, args.classifier_kills, args.classifier_stops,
                      random.Random(args.seed + 1), counts)
  else:
    counts = run(args.kills, args.terms, args.ints, args.export_kills, args.seed, work,
                 startup_s=args.startup_s, classifier_kills=args.classifier_kills,
                 classifier_stops=args.classifier_stops)
  print(report(counts, args.classifier_only))
  print(f"({time.time() - t0:.0f} s; logs in {work})")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dataclasses.asdict(counts), f, indent=2)
  if not args.keep and not counts.failures:
    shutil.rmtree(work, ignore_errors=True)
  return 1 if counts.failures else 0


if __name__ == "__main__":
  sys.exit(main())
