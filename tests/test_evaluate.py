import json
import os

import keras
import numpy as np
import pytest

from faceexpr_tf import emotions as emotions_lib
from faceexpr_tf import evaluate
from faceexpr_tf import models
from faceexpr_tf import runs
from faceexpr_tf import synthetic

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
