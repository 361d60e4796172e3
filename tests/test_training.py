"""Training runs end to end: checkpoints, exact resume, kill/SIGTERM, divergence."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import conftest
from faceexpr_tf.modeling import models
from faceexpr_tf.store import runs
from faceexpr_tf.training import callbacks
from faceexpr_tf.training import devices
from faceexpr_tf.training import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8)  # = tiny_train_config's

# Every trainer.train() here traces the train step anew (~10 s on two busy cores, for a
# run of any length), so the plain 10-step run, _config(run_dir) itself, is trained once
# per session (conftest.py's tiny_run): tests that only read a run read that one; tests that
# resume or change a run train a copy of it (conftest.copy_run) instead of a run of their own.


def _config(run_dir, **overrides):
  """conftest.tiny_train_config: the TINY model, 4 steps per epoch, 10 steps."""
  return conftest.tiny_train_config(run_dir, **overrides)


def _weights(run_dir):
  _, path = runs.list_checkpoints(str(run_dir))[-1]
  _, arrays = runs.read_checkpoint(path, ["generator", "discriminator", "g_optimizer",
                                          "d_optimizer"])
  return arrays


def test_train_writes_checkpoints_samples_and_logs(tiny_run, tmp_path):
  run_dir, summary = tiny_run                     # trainer.train(_config(run_dir))
  assert summary["step"] == 10 and summary["stopped_by"] == "done"
  assert [s for s, _ in runs.list_checkpoints(str(run_dir))] == [4, 8, 10]
  assert sorted(os.listdir(run_dir / "samples")) == ["step-000000005.png",
                                                     "step-000000010.png"]
  assert os.listdir(run_dir / "logs" / "train")
  # Nothing more to do when rerun at the end.
  again = conftest.copy_run(run_dir, tmp_path / "run")
  assert trainer.train(_config(again))["stopped_by"] == "done"


@pytest.mark.parametrize("extra", [
    {}, {"diffaug": "color,translation,cutout"},
    {"model": dataclasses.replace(TINY, g_output="attention"), "lambda_mask": 0.5}],
                         ids=["plain", "diffaug", "attention"])
def test_resume_matches_an_uninterrupted_run_exactly(tmp_path, extra, request):
  # 8 synthetic identities x 4 = 32 images = 4 steps per epoch: 10 steps cross 2 epoch
  # boundaries, and the interrupted run stops mid-epoch (step 6). With DiffAugment the
  # augmentation's random state is part of the checkpoint; an attention G adds its mask
  # terms. Three trainer.train() calls (~10 s of tracing each) for each; the plain straight
  # run is tiny_run.
  if extra:
    straight = tmp_path / "straight"
    trainer.train(_config(straight, **extra))
  else:
    straight = request.getfixturevalue("tiny_run")[0]   # trainer.train(_config(straight))
  trainer.train(_config(tmp_path / "split", max_steps=6, checkpoint_every=0, **extra))
  assert [s for s, _ in runs.list_checkpoints(str(tmp_path / "split"))] == [6]
  summary = trainer.train(_config(tmp_path / "split", **extra))
  assert summary["step"] == 10
  straight, split = _weights(straight), _weights(tmp_path / "split")
  for group in straight:
    assert len(straight[group]) == len(split[group])
    for a, b in zip(straight[group], split[group]):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=group)


def test_diverged_run_keeps_last_good_checkpoint(tiny_run, tmp_path):
  run_dir = conftest.copy_run(tiny_run[0], tmp_path / "run")   # trained to step 10
  good = _weights(run_dir)
  with pytest.raises(callbacks.TrainingDiverged, match="non-finite loss at step 11"):
    trainer.train(_config(run_dir, max_steps=14, lambda_rec=float("nan")))
  assert [s for s, _ in runs.list_checkpoints(str(run_dir))] == [4, 8, 10]
  for a, b in zip(good["generator"], _weights(run_dir)["generator"]):
    np.testing.assert_array_equal(a, b)


def test_refuses_run_dir_with_other_model_flags(tiny_run, tmp_path):
  run_dir = conftest.copy_run(tiny_run[0], tmp_path / "run")
  with pytest.raises(runs.RunDirError, match="different model flags"):
    trainer.train(_config(run_dir, model=dataclasses.replace(TINY, g_conv_dim=16)))


# --- the command line, in subprocesses ---------------------------------------------------
# A run that a test signals (SIGKILL, SIGTERM) is a fresh `python main.py` (_cli); other
# command lines run through conftest.py's main_py, forked from a process that imported
# TensorFlow once (the same main.main(): flags, exit status, output), not ~10 s of import.

def _cli(*args, **kwargs):
  env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kwargs)


def _smoke_args(run_dir, *extra):
  return ["train", f"--flagfile={os.path.join(ROOT, 'flags', 'smoke.flags')}",
          f"--run_dir={run_dir}", *extra]


def test_cli_smoke_run_writes_a_report(tmp_path, main_py):
  """flags/smoke.flags end to end (~15 s): 12 steps with validation, then the report."""
  proc = main_py(*_smoke_args(tmp_path / "run"), timeout=300)
  out = proc.stdout + proc.stderr
  assert proc.returncode == 0, out
  assert "Traceback" not in out
  for name in ("config.json", "report/metrics.json", "report/samples.png", "report/report.md"):
    assert os.path.exists(tmp_path / "run" / name), name
  assert runs.list_checkpoints(str(tmp_path / "run"))[-1][0] == 12


def _wait_for_checkpoint(run_dir, proc, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if runs.list_checkpoints(str(run_dir)):
      return
    assert proc.poll() is None, proc.stdout.read()
    time.sleep(0.2)
  raise AssertionError("no checkpoint appeared")


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, main_py):
  """~25 s: the run SIGKILLed is a fresh `python main.py` (~10 s of import), and the rerun
  that resumes it traces its train step again (forked: main_py)."""
  run_dir = tmp_path / "run"
  args = _smoke_args(run_dir, "--max_steps=100000", "--checkpoint_every=3", "--report=false")
  proc = _cli(*args)
  _wait_for_checkpoint(run_dir, proc)
  proc.kill()                                  # SIGKILL: no chance to save anything
  proc.communicate()
  saved = runs.list_checkpoints(str(run_dir))[-1][0]
  assert saved % 3 == 0
  proc = main_py(*_smoke_args(run_dir, f"--max_steps={saved + 2}", "--report=false"),
                 timeout=300)
  out = proc.stdout + proc.stderr
  assert proc.returncode == 0, out
  assert f"Resuming at step {saved} of {saved + 2}" in out
  assert runs.list_checkpoints(str(run_dir))[-1][0] == saved + 2


def test_sigterm_saves_a_checkpoint_and_exits(tmp_path):
  """The run signalled is a fresh `python main.py`: ~10 s of import before it trains."""
  run_dir = tmp_path / "run"
  proc = _cli(*_smoke_args(run_dir, "--max_steps=100000", "--checkpoint_every=1000000",
                           "--sample_every=2", "--report=false"))
  deadline = time.time() + 240
  while not (os.path.isdir(run_dir / "samples") and os.listdir(run_dir / "samples")):
    assert time.time() < deadline and proc.poll() is None
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 130, out
  assert "Stopped by SIGTERM" in out and "Traceback" not in out
  assert runs.list_checkpoints(str(run_dir))[-1][0] >= 2


@pytest.mark.parametrize("args, message", [
    (["--data=/nonexistent/fer2013.csv"], "/nonexistent/fer2013.csv: no such file"),
    (["--emotions=Happy,Bored"], "unknown emotion 'Bored'"),
    (["--precision=float64"], "precision"),
])
def test_cli_bad_input_is_one_error_line(tmp_path, args, message, main_py):
  proc = main_py(*_smoke_args(tmp_path / "run", *args), timeout=120)
  out = proc.stdout + proc.stderr
  assert proc.returncode != 0
  assert message in out and "Traceback" not in out


def test_moving_average_generator_is_what_inference_loads(tmp_path, tiny_run):
  """Two trainer.train() calls (~10 s of tracing each): a run with the average from the
  start, and tiny_run (made without it) resumed with it switched on."""
  trainer.train(_config(tmp_path, max_steps=3, g_ema_decay=0.9))
  arrays = _weights(tmp_path)
  _, path = runs.list_checkpoints(str(tmp_path))[-1]
  _, with_ema = runs.read_checkpoint(path, ["generator_ema"])
  generator, _, step = runs.load_generator(str(tmp_path))
  assert step == 3
  for var, ema, raw in zip(generator.weights, with_ema["generator_ema"], arrays["generator"]):
    np.testing.assert_array_equal(var.numpy(), ema)
  assert any(not np.array_equal(e, r) for e, r in zip(with_ema["generator_ema"],
                                                      arrays["generator"]))
  # Switching the average on when resuming a run made without it starts it at G.
  without = conftest.copy_run(tiny_run[0], tmp_path / "b")      # no EMA, step 10
  summary = trainer.train(_config(without, max_steps=11, g_ema_decay=0.9))
  assert summary["step"] == 11


def _tiny_judge(path):
  import keras  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.evaluation import classifier as classifier_lib
  keras.utils.set_random_seed(2)
  classifier_lib.build_classifier(classifier_lib.ClassifierConfig(width=4)).save(path)
  return path


def test_a_judge_is_matched_to_the_run_by_emotion_name(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  from faceexpr_tf import errors  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.store import keras_files  # pylint: disable=g-import-not-at-top
  judge = _tiny_judge(str(tmp_path / "judge.keras"))   # four classes, named below
  with open(keras_files.record_path(judge), "w") as f:
    json.dump({"emotions": ["Angry", "Disgust", "Fear", "Neutral"]}, f)
  cfg = _config(tmp_path / "run", judge=judge, eval_every=4)
  with pytest.raises(errors.UserError, match=r"^--judge=.*judge.keras classifies Angry, "
                     r"Disgust, Fear, Neutral: it knows 1 of Angry, Happy, Sad, Surprise, "
                     r"too few to judge$"):
    trainer._scorer(cfg, object(), None)  # pylint: disable=protected-access


def test_a_judge_without_neutral_scores_a_five_class_run_on_its_four(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.data import synthetic  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.store import keras_files  # pylint: disable=g-import-not-at-top
  judge = _tiny_judge(str(tmp_path / "judge.keras"))
  with open(keras_files.record_path(judge), "w") as f:
    json.dump({"emotions": ["Angry", "Happy", "Sad", "Surprise"]}, f)
  five = ("Angry", "Happy", "Neutral", "Sad", "Surprise")
  faces = synthetic.synthetic_faceset(8, 0, five)          # 8 faces of each emotion
  cfg = _config(tmp_path / "run", judge=judge, eval_every=4, eval_faces=20, emotions=five)
  keeper = trainer._scorer(cfg, faces, None)  # pylint: disable=protected-access
  # --eval_faces faces, all of emotions the judge knows: five of each of the four.
  assert len(keeper.labels) == 20
  assert np.bincount(keeper.labels, minlength=5).tolist() == [5, 5, 0, 5, 5]


def test_a_guide_must_classify_the_runs_emotions_in_its_order(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  from faceexpr_tf import errors  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.store import keras_files  # pylint: disable=g-import-not-at-top
  guide = _tiny_judge(str(tmp_path / "guide.keras"))   # four classes, named below
  five = ("Angry", "Happy", "Neutral", "Sad", "Surprise")
  cfg = _config(tmp_path / "run", guide=guide, lambda_guide=1.0, emotions=five)
  plan = devices.plan(precision="float32", jit_compile="false")
  with pytest.raises(errors.UserError, match=r"^--guide=.*guide.keras: classifies 4 "
                     r"emotions, the run trains Angry, Happy, Neutral, Sad, Surprise"):
    trainer.build_stargan(cfg, plan)
  with open(keras_files.record_path(guide), "w") as f:   # same count, another order
    json.dump({"emotions": ["Happy", "Angry", "Sad", "Surprise"]}, f)
  cfg = _config(tmp_path / "run", guide=guide, lambda_guide=1.0)
  with pytest.raises(errors.UserError, match=r"classifies Happy, Angry, Sad, Surprise, "
                     r"the run trains Angry, Happy, Sad, Surprise"):
    trainer.build_stargan(cfg, plan)


def test_guide_confidence_reaches_the_model(tmp_path):
  guide = _tiny_judge(str(tmp_path / "guide.keras"))
  plan = devices.plan(precision="float32", jit_compile="false")
  cfg = _config(tmp_path / "run", guide=guide, lambda_guide=1.0, guide_confidence=0.7)
  assert trainer.build_stargan(cfg, plan).guide_confidence == 0.7
  assert trainer.build_stargan(_config(tmp_path / "run2", guide=guide, lambda_guide=1.0),
                               plan).guide_confidence == 1.0


def test_scoring_while_training_logs_scores_and_keeps_the_best(tmp_path, monkeypatch):
  import json  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.evaluation import scoring  # pylint: disable=g-import-not-at-top
  judge = _tiny_judge(str(tmp_path / "judge.keras"))
  # A rule every checkpoint passes, so the test sees a best being kept and replaced;
  # the real rule is tested on scripted scores in test_scoring.py.
  monkeypatch.setattr(scoring.BestRule, "eligible", lambda self, s: True)
  cfg = _config(tmp_path / "run", judge=judge, eval_every=4, eval_faces=16,
                guide=judge, lambda_guide=1.0, lr_decay=True, g_ema_decay=0.9,
                validate=False)  # scoring still loads the validation faces
  trainer.train(cfg)
  lines = (tmp_path / "run" / "scores.jsonl").read_text().splitlines()
  history = [json.loads(line) for line in lines]
  assert [h["step"] for h in history] == [4, 8, 10]  # 10: the final G is scored too
  assert all(h["faces"] == 16 and 0 <= h["target_accuracy"] <= 1 for h in history)
  assert all(0 < h["own_emotion_ssim"] <= 1 and h["own_emotion_fd"] >= 0 for h in history)
  best = runs.best_checkpoint(str(tmp_path / "run"))
  meta, arrays = runs.read_checkpoint(best, ["generator", "generator_ema", "discriminator"])
  chosen = max(history, key=lambda h: h["target_accuracy"])
  assert meta["scores"]["target_accuracy"] == chosen["target_accuracy"]
  # Inference loaders use the best unless told otherwise.
  assert runs.load_generator(str(tmp_path / "run"))[2] == meta["step"]
  assert runs.load_generator(str(tmp_path / "run"), "latest")[2] == 10
  assert runs.resolve_checkpoint(str(tmp_path / "run"), "best") == best
  # A resumed run reads its history back and keeps the same best.
  keeper = callbacks.ScoreKeeper(str(tmp_path / "run"), scoring.load_judge(judge),
                                 np.zeros((4, 48, 48, 1), np.uint8), np.arange(4),
                                 cfg.emotions, 4)
  assert keeper.best["step"] == chosen["step"]


def test_best_checkpoint_without_scoring_is_a_clear_error(tiny_run):
  with pytest.raises(runs.RunDirError, match="no best checkpoint"):
    runs.resolve_checkpoint(str(tiny_run[0]), "best")        # trained without scoring


def test_resume_across_precisions_keeps_the_optimizer_state(tmp_path, tiny_run):
  """Two resumes of a copy of tiny_run (float32), each tracing its train step (~10 s)."""
  # Checkpoints hold plain Adam state in every precision (the loss scale has its own
  # groups), so a float32 run resumes under mixed_float16 (loss scaling on) and back.
  import keras  # pylint: disable=g-import-not-at-top
  run_dir = conftest.copy_run(tiny_run[0], tmp_path / "run")    # float32, step 10
  try:
    summary = trainer.train(_config(run_dir, max_steps=12, checkpoint_every=0,
                                     precision="mixed_float16"))
    assert summary["step"] == 12
    _, path = runs.list_checkpoints(str(run_dir))[-1]
    _, arrays = runs.read_checkpoint(path, ["d_optimizer"], optional=["d_loss_scale"])
    assert int(arrays["d_optimizer"][0]) == 12         # Adam's own step count went on
    assert "d_loss_scale" in arrays                    # the loss scale is saved too
    assert trainer.train(_config(run_dir, max_steps=13, checkpoint_every=0))["step"] == 13
  finally:
    keras.mixed_precision.set_global_policy("float32")


# --- one progress display ----------------------------------------------------------------

def test_default_verbosity_shows_progress_lines_and_no_keras_epoch_lines(tmp_path, capfd,
                                                                          caplog):
  import logging as py_logging  # pylint: disable=g-import-not-at-top
  # 4 steps per epoch: 6 steps are two fit() calls, the second of 2 steps.
  with caplog.at_level(py_logging.INFO, logger="absl"):
    summary = trainer.train(_config(tmp_path, max_steps=6, verbose="auto", log_every=2,
                                    checkpoint_every=0, sample_every=0))
  assert summary["step"] == 6
  out, err = capfd.readouterr()
  assert "Epoch 1/1" not in out + err and "Epoch 2/2" not in out + err
  assert [m.split()[1] for m in caplog.messages if m.startswith("step ")] == [
      "2/6", "4/6", "6/6"]
  assert "Epoch 2: 2 steps in" in caplog.text


def test_verbose_flag_still_asks_keras_for_its_bar():
  assert trainer._verbosity("auto", progress_lines=True) == 0
  assert trainer._verbosity("1", progress_lines=True) == 1
  assert trainer._verbosity("2", progress_lines=True) == 2
  assert trainer._verbosity("0", progress_lines=False) == 0
  assert trainer._verbosity("auto", progress_lines=False) in (1, 2)  # 1 on a terminal


def test_a_time_limited_epoch_logs_the_steps_it_ran(tmp_path, caplog):
  import logging as py_logging  # pylint: disable=g-import-not-at-top
  with caplog.at_level(py_logging.INFO, logger="absl"):
    summary = trainer.train(_config(tmp_path, max_steps=1000, max_minutes=1e-4,
                                    checkpoint_every=0, sample_every=0, validate=False))
  assert summary["stopped_by"] == "time_limit" and summary["step"] < 4
  assert f"Epoch 1: {summary['step']} of 4 steps in" in caplog.text


def test_attention_run_trains_and_its_samples_show_the_masks(tmp_path, tiny_run):
  """One short run with --g_output=attention (~10 s of tracing): its mask terms move G's
  loss, and the sample grid has a mask column per emotion."""
  import cv2  # pylint: disable=g-import-not-at-top
  model = dataclasses.replace(TINY, g_output="attention")
  summary = trainer.train(_config(tmp_path, model=model, max_steps=5, sample_every=5,
                                  lambda_mask=0.5, lambda_mask_tv=0.2))
  assert summary["step"] == 5
  grid = cv2.imread(str(tmp_path / "samples" / "step-000000005.png"))
  plain = cv2.imread(str(tiny_run[0] / "samples" / "step-000000005.png"))
  # input + 4 emotions + 4 masks columns, against input + 4 for a plain G: 9/5 as wide.
  assert grid.shape[1] / plain.shape[1] == pytest.approx(9 / 5, rel=0.03)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_same_target_rate_reaches_the_training_batches(tmp_path, rate):
  # The flag's path from TrainConfig to the batches train_step sees (pipeline tests check
  # the draw itself): rate 1 asks every face for its own emotion, rate 0 never.
  cfg = _config(tmp_path / "run", same_target_rate=rate)
  faces, _ = trainer._load_data(cfg)
  stream = trainer._train_stream(cfg, devices.plan("float32", "false", "auto"), faces, 0, 8)
  org = np.concatenate([b[1].numpy() for b in stream])
  trg = np.concatenate([b[2].numpy() for b in stream])
  assert len(org) == 8 * cfg.batch_size
  assert (trg == org).all() if rate else (trg != org).all()
