import json
import os

import keras
import numpy as np
import pytest

from faceexpr_tf import errors
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.data import synthetic
from faceexpr_tf.evaluation import evaluate
from faceexpr_tf.evaluation import scoring
from faceexpr_tf.modeling import models
from faceexpr_tf.serving import inference
from faceexpr_tf.store import runs

TINY = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8, g_output="residual")
EMOTIONS = emotions_lib.DEFAULT_EMOTIONS


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("run"))
  runs.prepare_run_dir(path, runs.RunConfig(TINY, EMOTIONS))
  keras.utils.set_random_seed(0)
  g, d = models.build_models(TINY)
  runs.save_checkpoint(path, 5, {"generator": g.weights, "discriminator": d.weights})
  return path


def test_untrained_residual_g_scores_exactly_the_do_nothing_baseline(run_dir):
  # A residual G starts as the identity, so against the truth it is "do nothing".
  g, config, _ = runs.load_generator(run_dir)
  metrics, truth, outputs = evaluate.synthetic_scores(g, config.emotions, num_identities=6)
  assert metrics["ratio"] == pytest.approx(1.0, abs=0.02)
  assert metrics["baseline_region"] > metrics["baseline"] > 0
  assert truth.shape == (6, 4, 48, 48, 1) and outputs.shape == (6, 4, 4, 48, 48, 1)
  # Held-out identities: not the ones a run with the same seed trains on.
  train = synthetic.render(synthetic.sample_identities(6, 0), EMOTIONS, 48)
  assert not np.array_equal(train, truth)


def test_synthetic_report_files(run_dir):
  metrics = evaluate.synthetic_report(run_dir, num_identities=4)
  report = os.path.join(run_dir, "report")
  assert json.load(open(os.path.join(report, "metrics.json")))["step"] == metrics["step"] == 5
  assert "do-nothing baseline" in open(os.path.join(report, "report.md")).read()
  assert os.path.getsize(os.path.join(report, "samples.png")) > 1000


def test_judged_report_on_a_few_csv_rows(run_dir, tmp_path):
  rng = np.random.default_rng(1)
  rows = ["emotion,pixels,Usage"]
  for label in (0, 3, 4, 5, 3, 0, 6):   # FER2013 ids; 6 (Neutral) is not selected
    rows.append(f"{label},{' '.join(map(str, rng.integers(0, 256, 48 * 48)))},PublicTest")
  csv = tmp_path / "fer.csv"
  csv.write_text("\n".join(rows) + "\n")
  metrics = evaluate.judged_report(run_dir, str(csv))
  assert metrics["images"] == 6 and metrics["step"] == 5
  assert 0 <= metrics["d_real_accuracy"] <= 1 and 0 <= metrics["d_fake_accuracy"] <= 1
  assert set(metrics["d_fake_accuracy_by_target"]) == set(EMOTIONS)
  # Identity G: the cycle gives the input back, up to the clip at +-0.999.
  assert metrics["cycle_l1"] < 1e-3
  assert os.path.exists(os.path.join(run_dir, "report", "samples.png"))


def _synthetic_csv(path, identities=6, seed=3):
  """A FER2013-layout csv of synthetic faces (PublicTest), plus a Neutral row."""
  faces = synthetic.synthetic_faceset(identities, seed, EMOTIONS)
  fer_ids = [emotions_lib.fer_id(e) for e in EMOTIONS]
  rows = ["emotion,pixels,Usage"]
  for image, label in zip(faces.images, faces.labels):
    rows.append(f"{fer_ids[label]},{' '.join(map(str, image.reshape(-1)))},PublicTest")
  rows.append(f"6,{' '.join(['128'] * 48 * 48)},PublicTest")
  path.write_text("\n".join(rows) + "\n")
  return str(path)


def test_evaluate_on_real_faces_writes_every_metric(run_dir, tiny_judge, tmp_path):
  csv = _synthetic_csv(tmp_path / "fer.csv")
  out = str(tmp_path / "report")
  translator = inference.load_translator(run_dir)
  scores = evaluate.real_report(translator, csv, out, judge=scoring.load_judge(tiny_judge),
                                show_progress=False)
  assert scores["faces"] == 24 and scores["translations"] == 72
  for key in ("target_accuracy", "do_nothing_target_accuracy", "judge_real_accuracy",
              "ssim", "pixel_correlation", "l1", "psnr", "cycle_l1", "fd", "fd_floor",
              "kid", "kid_floor", "target_accuracy_vs_real", "own_emotion_ssim",
              "own_emotion_fd", "own_emotion_accuracy"):
    assert np.isfinite(scores[key]), key
  assert len(scores["target_accuracy_by_pair"]) == 12
  for key in ("judge_real_accuracy_by_class", "target_prob_median_by_target",
              "real_prob_median_by_class"):
    assert set(scores[key]) == set(EMOTIONS), key
    assert all(0 <= v <= 1 for v in scores[key].values()), key
  # The untrained residual G is (nearly) the identity: same face, same judge reading.
  assert scores["ssim"] > 0.99 and scores["pixel_correlation"] > 0.99
  assert scores["target_accuracy"] == pytest.approx(scores["do_nothing_target_accuracy"],
                                                    abs=0.03)
  saved = json.load(open(os.path.join(out, "metrics.json")))
  assert saved["target_accuracy"] == scores["target_accuracy"]
  report = open(os.path.join(out, "report.md")).read()
  assert "target accuracy" in report and "real vs real" in report
  assert "G(x, c_org)" in report
  assert "| emotion | translations toward it | real faces of it |" in report
  assert scores["own_emotion_ssim"] > 0.99
  for name in ("samples.png", "worst.png", "pairs.csv"):
    assert os.path.getsize(os.path.join(out, name)) > 100, name
  assert not os.path.exists(os.path.join(out, "masks.png"))    # a residual G has no mask


def test_evaluate_shows_where_an_attention_g_edits(tiny_judge, tmp_path):
  import cv2  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.serving import translators  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  g = models.Generator(models.ModelConfig(g_conv_dim=8, g_repeat_num=1,
                                          g_output="attention"))
  g.build()
  csv = _synthetic_csv(tmp_path / "fer.csv", identities=2)
  out = str(tmp_path / "report")
  scores = evaluate.real_report(translators.KerasTranslator(g, EMOTIONS, "attention G"), csv,
                                out, judge=scoring.load_judge(tiny_judge), show_progress=False)
  assert scores["ssim"] > 0.99                          # identity at init, whatever A is
  masks = cv2.imread(os.path.join(out, "masks.png"), cv2.IMREAD_GRAYSCALE)
  samples = cv2.imread(os.path.join(out, "samples.png"), cv2.IMREAD_GRAYSCALE)
  assert masks.shape == samples.shape                   # input + one mask per emotion
  # At init A = 0.5: every mask cell is mid gray.
  cell = masks[40:80, samples.shape[1] // 2 - 20:samples.shape[1] // 2 + 20]
  assert abs(float(np.median(cell)) - 128) <= 2


def test_a_four_class_judge_scores_a_five_class_g_on_its_four_emotions(tmp_path):
  from faceexpr_tf.evaluation import classifier as classifier_lib
  from faceexpr_tf.serving import translators  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.store import keras_files  # pylint: disable=g-import-not-at-top
  judge = str(tmp_path / "judge.keras")
  keras.utils.set_random_seed(1)
  classifier_lib.build_classifier(classifier_lib.ClassifierConfig(width=8)).save(judge)
  with open(keras_files.record_path(judge), "w") as f:
    json.dump({"emotions": list(EMOTIONS)}, f)
  five = ("Angry", "Happy", "Neutral", "Sad", "Surprise")
  keras.utils.set_random_seed(0)
  g = models.Generator(models.ModelConfig(g_conv_dim=8, g_repeat_num=1, num_classes=5,
                                          g_output="residual"))
  g.build()
  csv = _synthetic_csv(tmp_path / "fer.csv")      # 24 faces of the four, one Neutral
  out = str(tmp_path / "report")
  scores = evaluate.real_report(translators.KerasTranslator(g, five, "five-class G"), csv,
                                out, judge=scoring.load_judge(judge), show_progress=False)
  # The Neutral face and Neutral targets are left out: the four-class numbers.
  assert scores["faces"] == 24 and scores["translations"] == 72
  assert scores["judged_emotions"] == list(EMOTIONS)
  assert set(scores["target_accuracy_by_target"]) == set(EMOTIONS)
  assert len(scores["target_accuracy_by_pair"]) == 12
  for name in ("report.md", "pairs.csv"):
    assert "Neutral" not in open(os.path.join(out, name)).read(), name
  # --score_emotions narrows further: two emotions, their faces only, one target each.
  two = evaluate.real_report(translators.KerasTranslator(g, five, "five-class G"), csv, out,
                             judge=scoring.load_judge(judge), show_progress=False,
                             score_emotions=["Happy", "Surprise"])
  assert two["judged_emotions"] == ["Happy", "Surprise"]
  assert two["faces"] == 12 and two["translations"] == 12
  with pytest.raises(errors.UserError, match="fewer than two emotions left to score"):
    evaluate.real_report(translators.KerasTranslator(g, five, "five-class G"), csv, out,
                         judge=scoring.load_judge(judge), show_progress=False,
                         score_emotions=["Happy", "Neutral"])


def test_evaluate_cli_on_csv_with_a_named_classifier(run_dir, tiny_judge, tmp_path, main_py):
  # `python main.py evaluate ...` through conftest.py's main_py: a process forked from one
  # that imported TensorFlow once (no ~10 s import for each of the two commands).
  csv = _synthetic_csv(tmp_path / "fer.csv", identities=4)
  out = tmp_path / "cli"
  result = main_py("evaluate", f"--run_dir={run_dir}", f"--data={csv}",
                   f"--classifier={tiny_judge}", f"--out={out}", "--eval_faces=8")
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.load(open(out / "metrics.json"))["faces"] == 8
  bad = main_py("evaluate", f"--run_dir={run_dir}", f"--data={csv}",
                f"--classifier={tmp_path / 'missing.keras'}")
  assert bad.returncode == 2 and "Traceback" not in bad.stderr
  assert "no such classifier file" in bad.stderr
