import keras
import numpy as np
import pytest

from faceexpr_tf import errors
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.data import synthetic
from faceexpr_tf.evaluation import classifier as classifier_lib
from faceexpr_tf.evaluation import scoring
from faceexpr_tf.serving import translators

EMOTIONS = emotions_lib.DEFAULT_EMOTIONS


def scores(target, ssim=0.85, corr=0.9, fd=1.0, floor=1.0, do_nothing=0.07):
  return {"target_accuracy": target, "ssim": ssim, "pixel_correlation": corr, "fd": fd,
          "fd_floor": floor, "do_nothing_target_accuracy": do_nothing}


def test_best_rule_never_picks_a_do_nothing_or_inverting_generator():
  history = [
      scores(0.07, ssim=1.0, corr=1.0),                  # do nothing: no gain
      scores(0.55, ssim=-0.2, corr=-0.66),               # inverts faces (issue 8)
      scores(0.60, ssim=0.75, corr=0.3),                 # scrambled
      scores(0.70, ssim=0.80, corr=0.9, fd=5.0),         # artefacts: FD 5x the floor
      scores(0.12, ssim=0.97, corr=0.99),                # invisible edits: tiny gain
  ]
  assert scoring.choose_best(history) is None
  for s in history:
    assert not scoring.BestRule().eligible(s)
    assert scoring.BestRule().why_not(s) != "eligible"


def test_best_rule_picks_the_highest_eligible_target_accuracy_first_on_ties():
  history = [scores(0.30), scores(0.9, ssim=0.5), scores(0.45), scores(0.45), scores(0.40)]
  assert scoring.choose_best(history) == 2
  rule = scoring.BestRule()
  assert rule.better(history[2], None)
  assert not rule.better(history[3], history[2])
  assert not rule.better(history[1], history[2])


class _Fixed(translators.Translator):
  """Returns a fixed function of the input: identity or inversion."""

  def __init__(self, fn):
    super().__init__(EMOTIONS, 48, 1, "test")
    self.fn = fn

  def _forward(self, images, target_ids):
    return self.fn(images)


@pytest.fixture(scope="module")
def judge():
  keras.utils.set_random_seed(0)
  model = classifier_lib.build_classifier(classifier_lib.ClassifierConfig(width=8))
  return scoring.Judge(model, {}, "untrained")


@pytest.fixture(scope="module")
def faces():
  return synthetic.synthetic_faceset(12, 0, EMOTIONS)


def test_score_of_an_identity_generator(judge, faces):
  out, arrays = scoring.score(_Fixed(lambda x: x), judge, faces.images, faces.labels)
  assert out["translations"] == len(faces) * 3
  assert out["ssim"] == pytest.approx(1.0)
  assert out["pixel_correlation"] == pytest.approx(1.0)
  assert out["l1"] == pytest.approx(0.0, abs=1e-6)
  assert out["cycle_l1"] == pytest.approx(0.0, abs=1e-6)
  # Doing nothing: the judge reads the target exactly as often as in the input.
  assert out["target_accuracy"] == pytest.approx(out["do_nothing_target_accuracy"])
  assert not scoring.BestRule().eligible(out)
  for key in ("fd", "fd_floor", "kid", "kid_floor", "judge_real_accuracy"):
    assert np.isfinite(out[key])
  tr = arrays["translations"]
  assert np.all(tr.target != tr.source_label)
  assert set(np.bincount(tr.source)) == {3}
  # Asked for the emotion each face shows, it returns the face: the floor exactly.
  assert out["own_emotion_ssim"] == pytest.approx(1.0)
  assert out["own_emotion_l1"] == pytest.approx(0.0, abs=1e-6)
  assert out["own_emotion_fd"] == pytest.approx(out["fd_floor"])
  assert out["own_emotion_accuracy"] == pytest.approx(out["judge_real_accuracy"])


def test_score_flags_an_inverting_generator(judge, faces):
  out, _ = scoring.score(_Fixed(lambda x: -x), judge, faces.images, faces.labels,
                         cycle=False)
  assert out["pixel_correlation"] < -0.99
  assert out["inverted_share"] == 1.0
  assert "cycle_l1" not in out
  assert not scoring.BestRule().eligible(out)


def test_balanced_pick():
  labels = np.array([0] * 10 + [1] * 3 + [2] * 10)
  pick = scoring.balanced_pick(labels, 9, seed=1)
  assert len(pick) == 9 and len(set(pick)) == 9
  assert sorted(np.bincount(labels[pick]).tolist()) == [3, 3, 3]
  assert len(scoring.balanced_pick(labels, 100)) == 23


def test_matched_mix_draws_the_reference_mix_without_replacement():
  targets = np.array([0] * 30 + [1] * 10 + [2] * 40)
  reference = np.array([0] * 50 + [1] * 25 + [2] * 25)     # mix 2 : 1 : 1
  pick = scoring.matched_mix(targets, reference, seed=3)
  assert len(set(pick.tolist())) == len(pick)
  # Class 1 (10 available, a quarter of the mix) bounds the sample at 40: 20, 10, 10.
  assert np.bincount(targets[pick]).tolist() == [20, 10, 10]
  assert not np.array_equal(pick, scoring.matched_mix(targets, reference, seed=4))
  # Nothing to match with: every index.
  assert len(scoring.matched_mix(np.zeros(5, int), np.ones(5, int))) == 5


class _MarkJudge:
  """Reads a face's emotion from pixel (0, 0) (40 x class); features: the class one-hot
  (scaled) and four noise pixels, so the classes lie far apart, as in a real judge."""

  def __call__(self, images):
    x = images.reshape(len(images), -1).astype(np.float64)
    cls = np.rint(x[:, 0] / 40).astype(int)
    onehot = np.eye(4)[cls]
    return np.concatenate([4 * onehot, x[:, 1:5] / 64], axis=1), 10 * onehot


def _mark_faces(classes, rng):
  images = rng.integers(0, 256, (len(classes), 48, 48, 1)).astype(np.uint8)
  images[:, 0, 0, 0] = 40 * np.asarray(classes)
  return images


def test_realism_of_a_perfect_generator_on_unbalanced_emotions_is_at_the_floor():
  # Every translation is a new, real-looking face of its target emotion. With emotions as
  # unbalanced as FER2013's, translating to every other emotion gives another mix than
  # the real faces'; unless the compared translations are drawn in the real mix, this
  # perfect G would score far above the real-vs-real floor.
  rng = np.random.default_rng(0)
  labels = rng.choice(4, 600, p=[0.5, 0.3, 0.1, 0.1])

  class Perfect:
    num_classes = 4

    def translate(self, images, target):
      return _mark_faces(target, rng)

  out, _ = scoring.score(Perfect(), _MarkJudge(), _mark_faces(labels, rng), labels,
                         cycle=False)
  assert out["target_accuracy"] == 1.0
  assert out["fd"] < 2 * out["fd_floor"]
  assert 0 < out["realism_translations"] < out["translations"]


def test_own_emotion_scores_tell_a_g_that_keeps_a_face_from_one_that_exaggerates_it():
  # Both Gs write the target's mark, so both read as the target; asked for the emotion a
  # face already shows, one returns the face and the other still "applies the edit"
  # (overwrites the pixels the judge's features see), which only the own-emotion scores show.
  rng = np.random.default_rng(3)
  labels = rng.choice(4, 400)
  real = _mark_faces(labels, rng)

  class Editing:
    num_classes, emotions = 4, list(EMOTIONS)

    def __init__(self, keeps_own):
      self.keeps_own = keeps_own

    def translate(self, images, target):
      out = images.copy()
      out[:, 0, 0, 0] = 40 * np.asarray(target)
      edit = np.ones(len(out), bool) if not self.keeps_own else (
          images[:, 0, 0, 0] != out[:, 0, 0, 0])
      out[edit, 0, 1:5, 0] = 255
      return out

  keeps, _ = scoring.score(Editing(True), _MarkJudge(), real, labels, cycle=False)
  exaggerates, _ = scoring.score(Editing(False), _MarkJudge(), real, labels, cycle=False)
  assert keeps["target_accuracy"] == exaggerates["target_accuracy"] == 1.0
  assert keeps["own_emotion_ssim"] == 1.0 and exaggerates["own_emotion_ssim"] < 1.0
  assert keeps["own_emotion_fd"] == pytest.approx(keeps["fd_floor"])
  assert exaggerates["own_emotion_fd"] > 10 * exaggerates["fd_floor"]
  assert keeps["own_emotion_accuracy"] == exaggerates["own_emotion_accuracy"] == 1.0


class _StrengthJudge:
  """Reads the emotion from pixel (0, 0) (40 x class) and how strongly from pixel (0, 1):
  the read class's logit is that pixel / 25, the others' 0."""

  def __call__(self, images):
    x = images.reshape(len(images), -1).astype(np.float64)
    onehot = np.eye(4)[np.rint(x[:, 0] / 40).astype(int)]
    return onehot, onehot * (x[:, 1:2] / 25)


def test_strength_tells_an_under_made_expression_from_a_caricature():
  # Real faces read with logit 8; one G writes the target at logit 2 (under-made), the
  # other at 10.2 (a caricature): both read as the target every time, so only the judge's
  # probability of it tells them apart.
  rng = np.random.default_rng(5)
  labels = rng.choice(4, 200)
  real = _mark_faces(labels, rng)
  real[:, 0, 1, 0] = 200

  class Marking:
    num_classes, emotions = 4, list(EMOTIONS)

    def __init__(self, strength):
      self.strength = strength

    def translate(self, images, target):
      out = images.copy()
      out[:, 0, 0, 0] = 40 * np.asarray(target)
      out[:, 0, 1, 0] = self.strength
      return out

  under, _ = scoring.score(Marking(50), _StrengthJudge(), real, labels, cycle=False)
  over, _ = scoring.score(Marking(255), _StrengthJudge(), real, labels, cycle=False)
  assert under["target_accuracy"] == over["target_accuracy"] == 1.0
  p = lambda logit: np.exp(logit) / (np.exp(logit) + 3)
  for c in range(4):
    assert under["real_prob_median_by_class"][c] == pytest.approx(p(8.0))
    assert under["target_prob_median_by_target"][c] == pytest.approx(p(2.0))
    assert over["target_prob_median_by_target"][c] == pytest.approx(p(10.2))


def test_judge_classes_match_by_emotion_name():
  five = ["Angry", "Happy", "Neutral", "Sad", "Surprise"]
  assert scoring.judge_classes(five, EMOTIONS).tolist() == [0, 1, 3, 4]
  assert scoring.judge_classes(EMOTIONS, EMOTIONS).tolist() == [0, 1, 2, 3]
  assert scoring.judge_classes(None, EMOTIONS).tolist() == [0, 1, 2, 3]   # unnamed: same ids
  # A judge without Neutral: -1, its faces and targets are left out of the scores.
  assert scoring.judge_classes(EMOTIONS, five).tolist() == [0, 1, -1, 2, 3]
  with pytest.raises(errors.UserError, match="classifies Angry, Neutral: it knows 1 of "
                     "Angry, Happy, Sad, Surprise, too few to judge"):
    scoring.judge_classes(["Angry", "Neutral"], EMOTIONS)


class _FiveJudge(_MarkJudge):
  """_MarkJudge with Neutral among its classes: Angry, Happy, Neutral, Sad, Surprise."""

  emotions = ["Angry", "Happy", "Neutral", "Sad", "Surprise"]

  def __call__(self, images):
    x = images.reshape(len(images), -1).astype(np.float64)
    onehot = np.eye(5)[np.rint(x[:, 0] / 40).astype(int)]
    return np.concatenate([4 * onehot, x[:, 1:5] / 64], axis=1), 10 * onehot


def test_a_judge_with_more_emotions_scores_by_name_and_counts_its_others_as_misses():
  rng = np.random.default_rng(1)
  labels = rng.choice(4, 200)
  to_five = np.array([0, 1, 3, 4])            # G's Angry, Happy, Sad, Surprise

  class Marking:
    """Marks each translation with the judge's class `mark(target)`."""
    num_classes, emotions = 4, list(EMOTIONS)

    def __init__(self, mark):
      self.mark = mark

    def translate(self, images, target):
      return _mark_faces(self.mark(np.asarray(target)), rng)

  real = _mark_faces(to_five[labels], rng)
  right, _ = scoring.score(Marking(lambda t: to_five[t]), _FiveJudge(), real, labels,
                           cycle=False)
  assert right["target_accuracy"] == 1.0 and right["judge_real_accuracy"] == 1.0
  assert right["do_nothing_target_accuracy"] == 0.0
  assert right["judge_real_accuracy_by_class"] == {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}
  # Read as Neutral (a class G does not have): every translation misses. Read by id
  # instead of name, G's class 2 (Sad) would have counted as the judge's class 2.
  neutral, arrays = scoring.score(Marking(lambda t: np.full_like(t, 2)), _FiveJudge(), real,
                                  labels, cycle=False)
  assert neutral["target_accuracy"] == 0.0
  assert np.all(arrays["target_prob"] < 0.01)


def test_a_judge_with_fewer_emotions_scores_only_the_ones_it_knows():
  # A four-class judge on a five-class G (Neutral at G's id 2): Neutral faces and Neutral
  # targets are left out, so the scores are the four-emotion ones.
  rng = np.random.default_rng(2)
  labels = rng.choice(5, 300)
  to_four = np.array([0, 1, -1, 2, 3])   # G's id -> the judge's (Neutral: unknown)

  class FiveClassG:
    num_classes, emotions = 5, ["Angry", "Happy", "Neutral", "Sad", "Surprise"]
    asked = []

    def translate(self, images, target):
      self.asked.extend(np.asarray(target).tolist())
      return _mark_faces(to_four[np.asarray(target)], rng)

  class FourJudge(_MarkJudge):
    emotions = list(EMOTIONS)

  real = _mark_faces(np.maximum(to_four[labels], 0), rng)
  g = FiveClassG()
  out, arrays = scoring.score(g, FourJudge(), real, labels, cycle=False)
  four = np.flatnonzero(labels != 2)
  assert out["faces"] == len(four) and out["translations"] == 3 * len(four)
  assert 2 not in g.asked and out["judged_classes"] == [0, 1, 3, 4]
  assert out["target_accuracy"] == 1.0 and out["judge_real_accuracy"] == 1.0
  assert sorted(out["target_accuracy_by_target"]) == [0, 1, 3, 4]
  assert sorted(out["judge_real_accuracy_by_class"]) == [0, 1, 3, 4]
  tr = arrays["translations"]
  # Sources index the caller's faces, Neutral ones never among them.
  assert np.array_equal(labels[tr.source], tr.source_label)
  assert set(tr.source.tolist()) == set(four.tolist())
