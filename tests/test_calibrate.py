import json
import os

import keras
import numpy as np
import pytest

from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.evaluation import calibrate
from faceexpr_tf.evaluation import gain_search
from faceexpr_tf.evaluation import scoring
from faceexpr_tf.modeling import models
from faceexpr_tf.serving import pretrained
from faceexpr_tf.serving import translators

EMOTIONS = emotions_lib.DEFAULT_EMOTIONS
# Pixel (0, 0) of a face of emotion c sits at MARK[c] (plus noise): how strongly it shows.
MARK = np.asarray([40.0, 80.0, 120.0, 160.0])


def _faces(count, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.choice(4, count)
  images = rng.integers(60, 200, (count, 48, 48, 1)).astype(np.float64)
  images[:, 0, 0, 0] = MARK[labels] + rng.normal(0, 4, count)
  return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels


class _MarkJudge:
  """Reads the emotion whose MARK is nearest pixel (0, 0); features: that pixel and four
  noise pixels; names no emotions."""
  emotions = None

  def __call__(self, images):
    x = images.reshape(len(images), -1).astype(np.float64)
    logits = -np.abs(x[:, :1] - MARK[None]) / 10
    return np.concatenate([x[:, :1] / 40, x[:, 1:5] / 64], axis=1), logits


class _PartWay(translators.Translator):
  """Moves the mark `strength` of the way from the face's emotion to the target's: 0.5
  makes every expression half as strong as real faces show it, 1.25 a caricature."""

  def __init__(self, strength):
    super().__init__(EMOTIONS, 48, 1, "part way")
    self.strength = strength

  takes_label_vectors = True

  def _forward_labels(self, images, labels):
    out = images.copy()
    mark = (images[:, 0, 0, 0] + 1) * 127.5
    source = np.abs(mark[:, None] - MARK[None]).argmin(1)
    out[:, 0, 0, 0] += self.strength * (labels @ MARK - MARK[source]) / 127.5
    return out

  def _forward(self, images, target_ids):
    return self._forward_labels(images, np.eye(4, dtype=np.float32)[target_ids])


@pytest.mark.parametrize("strength,gain", [(0.5, 2.0), (1.0, 1.0), (1.25, 0.8)])
def test_the_factor_makes_each_emotion_as_strong_as_real_faces_show_it(strength, gain):
  images, labels = _faces(800)
  result = calibrate.measure_gains(_PartWay(strength), _MarkJudge(), images, labels)
  assert result["gains"] == [gain] * 4
  for name in EMOTIONS:
    row = result["emotions"][name]
    assert row["gain"] == gain and row["fd_ratio"] <= row["fd_ratio_at_1"]
    assert [g for g, _ in row["curve"]] == list(calibrate.GRID)
    if strength != 1.0:   # the plain edit sits further from real faces than the factor's
      assert row["fd_ratio_at_1"] > row["fd_ratio"]


def test_an_emotion_already_as_real_as_real_faces_keeps_factor_1():
  # A G that makes every expression 90% as strong as real faces: the factor 1.1 would sit
  # closest for each emotion, but only Surprise (the mark moved furthest) is measurably off
  # at 1; the other three are within their real-vs-real floor and keep G's own edit.
  images, labels = _faces(800)
  result = calibrate.measure_gains(_PartWay(0.9), _MarkJudge(), images, labels)
  assert result["gains"] == [1.0, 1.0, 1.0, 1.1]
  for name in EMOTIONS:
    row = result["emotions"][name]
    assert min(row["curve"], key=lambda point: point[1])[0] == 1.1
    kept = name != "Surprise"
    assert (row["fd_ratio_at_1"] <= 1.0) == kept
    assert ("within the real-vs-real floor" in row.get("note", "")) == kept


def test_an_emotion_with_too_few_faces_keeps_factor_1():
  images, labels = _faces(800)
  keep = (labels != 3) | (np.arange(len(labels)) % 20 == 0)   # a dozen Surprise faces
  result = calibrate.measure_gains(_PartWay(0.5), _MarkJudge(), images[keep], labels[keep])
  assert result["gains"] == [2.0, 2.0, 2.0, 1.0]
  assert "too few faces" in result["emotions"]["Surprise"]["note"]


def test_scale_edit_is_what_the_gained_generator_computes():
  keras.utils.set_random_seed(5)
  g = models.Generator(models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8))
  g.build()
  x = np.random.default_rng(2).uniform(-1, 1, (4, 48, 48, 1)).astype(np.float32)
  onehot = np.eye(4, dtype=np.float32)
  plain = np.asarray(g(x, onehot))
  gained = models.with_edit_gain(g, (1.4, 1.4, 1.4, 1.4))
  np.testing.assert_array_equal(gain_search.scale_edit(x, plain, 1.4),
                                translators.to_uint8(np.asarray(gained(x, onehot))))


def test_scores_are_what_evaluate_reports_for_the_gained_generator(random_residual_g):
  images, labels = _faces(160)
  g = random_residual_g(scale=0.3)
  judge = _MarkJudge()
  grid = (0.5, 1.0, 1.5, 2.0)
  measured = gain_search.measure(translators.KerasTranslator(g, EMOTIONS, "g"), judge,
                                 images, labels, grid)
  for gains in [(1.0, 1.0, 1.0, 1.0), (0.5, 2.0, 1.0, 1.5)]:
    predicted = gain_search.scores(measured, gains)
    gained = translators.KerasTranslator(models.with_edit_gain(g, gains), EMOTIONS, "g")
    actual, arrays = scoring.score(gained, judge, images, labels, cycle=False)
    assert predicted["target_accuracy"] == pytest.approx(actual["target_accuracy"], abs=1e-12)
    assert predicted["judge_real_accuracy"] == actual["judge_real_accuracy"]
    assert predicted["ssim"] == pytest.approx(actual["ssim"], abs=1e-9)
    assert predicted["fd_ratio"] == pytest.approx(actual["fd"] / actual["fd_floor"], rel=1e-6)
    tr = arrays["translations"]
    pairs = {(s, t): arrays["hit"][(tr.source_label == s) & (tr.target == t)].mean()
             for s in range(4) for t in range(4) if s != t}
    assert predicted["lowest_pair"] == pytest.approx(min(pairs.values()))
    assert pairs[tuple(predicted["lowest_pair_classes"])] == min(pairs.values())
  # The factors moved what evaluate sees: the two rows differ.
  assert gain_search.scores(measured, (0.5, 2.0, 1.0, 1.5))["ssim"] != pytest.approx(
      gain_search.scores(measured, (1.0,) * 4)["ssim"])


def _csv(path, count=240):
  images, labels = _faces(count, seed=3)
  fer_ids = [emotions_lib.fer_id(e) for e in EMOTIONS]
  rows = ["emotion,pixels,Usage"] + [
      f"{fer_ids[c]},{' '.join(map(str, image.reshape(-1)))},PublicTest"
      for image, c in zip(images, labels)]
  path.write_text("\n".join(rows) + "\n")
  return str(path)


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory, random_residual_g):
  path = str(tmp_path_factory.mktemp("g") / "g.keras")
  pretrained.save_generator(random_residual_g(0), path, {"emotions": list(EMOTIONS), "step": 7})
  return path


def test_calibrate_cli_writes_a_generator_with_the_measured_gains(tiny_generator, tiny_judge,
                                                                   tmp_path, main_py):
  judge = tiny_judge
  out = tmp_path / "cal"
  result = main_py("calibrate", f"--model={tiny_generator}", f"--data={_csv(tmp_path / 'f.csv')}",
                   f"--classifier={judge}", f"--out={out}")
  assert result.returncode == 0, result.stderr[-2000:]
  measured = json.load(open(out / "calibration.json"))
  assert set(measured["emotions"]) == set(EMOTIONS) and len(measured["gains"]) == 4
  assert all(g in calibrate.GRID for g in measured["gains"])
  g, record = pretrained.load_generator(str(out / "generator.keras"))
  assert record["edit_gain"] == measured["gains"] and record["step"] == 7
  assert g.edit_gain == models.check_edit_gain(measured["gains"], 4)
  report = open(out / "report.md").read()
  for name, gain in zip(EMOTIONS, measured["gains"]):
    assert f"| {name} | **{gain:.1f}** |" in report
  assert os.path.getsize(out / "gains.png") > 1000
  # The calibrated generator is a .keras generator like any other: evaluate takes it.
  scored = main_py("evaluate", f"--model={out / 'generator.keras'}",
                   f"--data={tmp_path / 'f.csv'}", f"--classifier={judge}",
                   f"--out={tmp_path / 'ev'}", "--eval_faces=8")
  assert scored.returncode == 0, scored.stderr[-2000:]


def test_calibrate_rule_aims_writes_the_combination_it_scored(tiny_generator, tiny_judge,
                                                              tmp_path, main_py):
  # Aims every combination meets: the most real one is chosen, and evaluate on the same
  # faces reports what the search said it would.
  csv = _csv(tmp_path / "f.csv")
  out = tmp_path / "cal"
  result = main_py("calibrate", "--rule=aims", f"--model={tiny_generator}", f"--data={csv}",
                   f"--classifier={tiny_judge}", f"--out={out}", "--min_ssim=0",
                   "--min_pair_accuracy=0", "--max_fd_ratio=1e9", "--min_accuracy_vs_real=0")
  assert result.returncode == 0, result.stderr[-2000:]
  measured = json.load(open(out / "calibration.json"))
  assert measured["rule"] == "aims" and measured["candidates"] == len(calibrate.GRID) ** 4
  assert all(g in calibrate.GRID for g in measured["gains"])
  g, record = pretrained.load_generator(str(out / "generator.keras"))
  assert record["edit_gain"] == measured["gains"]
  assert record["calibration"]["rule"] == "aims"
  assert g.edit_gain == models.check_edit_gain(measured["gains"], 4)
  assert "| **chosen** | " + ", ".join(f"{x:g}" for x in measured["gains"]) in open(
      out / "report.md").read()
  scored = main_py("evaluate", f"--model={out / 'generator.keras'}", f"--data={csv}",
                   f"--classifier={tiny_judge}", f"--out={tmp_path / 'ev'}", "--eval_faces=0")
  assert scored.returncode == 0, scored.stderr[-2000:]
  metrics_json = json.load(open(tmp_path / "ev" / "metrics.json"))
  expected = measured["scores"]
  assert metrics_json["target_accuracy"] == pytest.approx(expected["target_accuracy"])
  assert metrics_json["ssim"] == pytest.approx(expected["ssim"], abs=1e-6)
  assert metrics_json["fd"] / metrics_json["fd_floor"] == pytest.approx(
      expected["fd_ratio"], rel=1e-4)


def test_calibrate_rule_aims_that_none_meets_says_how_far_in_an_error_line(
    tiny_generator, tiny_judge, tmp_path, main_py):
  out = tmp_path / "cal"
  result = main_py("calibrate", "--rule=aims", f"--model={tiny_generator}",
                   f"--data={_csv(tmp_path / 'f.csv')}", f"--classifier={tiny_judge}",
                   f"--out={out}", "--min_ssim=1", "--min_pair_accuracy=0",
                   "--min_accuracy_vs_real=0", "--max_fd_ratio=1e9")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  # Progress lines came before it: the error is the last line, and the only one.
  lines = result.stderr.strip().splitlines()
  assert [line for line in lines if line.startswith("error:")] == lines[-1:], result.stderr
  assert "no edit gain meets SSIM >= 1" in result.stderr and "SSIM reaches 0." in \
      result.stderr
  assert not os.path.exists(out / "generator.keras")
  report = open(out / "report.md").read()
  assert "No combination meets every aim" in report
  assert "the highest SSIM with the other aims met" in report
  assert json.load(open(out / "calibration.json"))["gains"] is None


@pytest.mark.parametrize("args,message", [
    (["--data=synthetic"], "calibrate needs real faces"),
    (["--model={tmp}", "--data={csv}"], "calibrate needs a Keras generator"),
    (["--model={tmp}/missing.keras", "--data={csv}"], "missing.keras"),
])
def test_calibrate_bad_input_is_one_line(tmp_path, main_py, args, message):
  csv = _csv(tmp_path / "f.csv", count=40)
  result = main_py("calibrate", *[a.format(tmp=tmp_path, csv=csv) for a in args])
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, \
      result.stderr


def test_intensity_brings_the_edit_gain_in_with_the_expression(random_residual_g):
  # With factors on G's edit, intensity a scales the edit toward t by 1 + a (g_t - 1): at
  # 0 the face is G's own reconstruction, as without factors (not the reconstruction
  # scaled by the factor of the emotion the face shows), at 1 the calibrated translation.
  from faceexpr_tf.photos import intensity  # pylint: disable=g-import-not-at-top
  g = random_residual_g(4)
  gain = np.asarray([0.5, 1.5, 1.0, 2.0], np.float32)
  gained = translators.KerasTranslator(models.with_edit_gain(g, gain), EMOTIONS, "gained")
  plain = translators.KerasTranslator(g, EMOTIONS, "plain")
  faces = _faces(8, seed=9)[0]
  source = np.tile(np.asarray([[0.1, 0.7, 0.1, 0.1]], np.float32), (8, 1))  # "Happy"
  targets = np.arange(8) % 4
  x = translators.to_model_range(faces)
  for alpha in (0.0, 0.5):
    labels = intensity.blend(source, targets, alpha)
    moved = plain.forward_labels(x, labels)
    ramp = (1 + alpha * (gain[targets] - 1))[:, None, None, None]
    np.testing.assert_array_equal(
        intensity.translate(gained, faces, targets, alpha, source),
        gain_search.scale_edit(x, moved, 1.0) if alpha == 0 else translators.to_uint8(
            np.clip(x + ramp * (moved - x), -1, 1)))
  np.testing.assert_array_equal(intensity.translate(plain, faces, targets, 0.0, source),
                                intensity.translate(gained, faces, targets, 0.0, source))
  np.testing.assert_array_equal(intensity.translate(gained, faces, targets, 1.0, source),
                                gained.translate(faces, targets))
  # The strip of steps: its last column is the calibrated translation, its first G's own.
  strip = intensity.steps(gained, faces[0], source=source[:1])
  np.testing.assert_array_equal(strip[:, -1], gained.translate_all(faces[:1])[0])
  np.testing.assert_array_equal(strip[:, 0], intensity.steps(plain, faces[0],
                                                             source=source[:1])[:, 0])
  assert intensity.edit_gain(plain, targets, 0.5) is None
  # Each row's gain can also be given directly, and must match the rows.
  np.testing.assert_allclose(gained.label_gain(np.eye(4)), gain)
  with pytest.raises(ValueError, match="8 images but 3 gains"):
    gained.forward_labels(x, np.eye(4, dtype=np.float32)[targets], np.ones(3))
