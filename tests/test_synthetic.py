"""Tests for faceexpr_tf.synthetic: procedural faces with known translations."""

import itertools

import numpy as np
import pytest

from faceexpr_tf.data import emotions
from faceexpr_tf.data import faceset
from faceexpr_tf.data import synthetic

ALL = emotions.FER2013_EMOTIONS
DEFAULTS = emotions.DEFAULT_EMOTIONS


@pytest.fixture(scope="module")
def faces_all():
  """12 identities in all 7 expressions, as int32 [12, 7, 48, 48]."""
  ids = synthetic.sample_identities(12, seed=3)
  return synthetic.render(ids, ALL)[..., 0].astype(np.int32)


def _expression(faces, name):
  return faces[:, ALL.index(name)]


def test_sample_identities_is_deterministic():
  a = synthetic.sample_identities(5, seed=7)
  b = synthetic.sample_identities(5, seed=7)
  c = synthetic.sample_identities(5, seed=8)
  assert len(a) == 5
  np.testing.assert_array_equal(a.face_w, b.face_w)
  np.testing.assert_array_equal(a.texture_fine, b.texture_fine)
  assert not np.array_equal(a.face_w, c.face_w)


def test_render_shape_dtype_and_determinism():
  ids = synthetic.sample_identities(3, seed=0)
  first = synthetic.render(ids, DEFAULTS)
  assert first.shape == (3, 4, 48, 48, 1)
  assert first.dtype == np.uint8
  np.testing.assert_array_equal(first, synthetic.render(ids, DEFAULTS))
  # Names are case-insensitive and the order of the output follows the input.
  swapped = synthetic.render(ids, ["happy", "ANGRY"])
  np.testing.assert_array_equal(swapped[:, 0], first[:, 1])
  np.testing.assert_array_equal(swapped[:, 1], first[:, 0])


def test_render_uses_the_dynamic_range(faces_all):
  # Dark features on bright skin: strong contrast in every image.
  assert (faces_all.max(axis=(2, 3)) - faces_all.min(axis=(2, 3)) > 120).all()


def test_unknown_emotion_is_rejected():
  with pytest.raises(emotions.UnknownEmotionError):
    synthetic.render(synthetic.sample_identities(1, 0), ["Bored"])


@pytest.mark.parametrize("size", [32, 64])
def test_render_other_sizes(size):
  images = synthetic.render(synthetic.sample_identities(2, 0), DEFAULTS, size)
  assert images.shape == (2, 4, size, size, 1)


def test_geometry_scales_with_image_size():
  ids = synthetic.sample_identities(4, seed=1)
  small = synthetic.render(ids, DEFAULTS, 48)[..., 0].astype(np.float32)
  large = synthetic.render(ids, DEFAULTS, 96)[..., 0].astype(np.float32)
  pooled = large.reshape(4, 4, 48, 2, 48, 2).mean(axis=(3, 5))
  # Same face drawn at twice the resolution: 2x2 averages nearly match.
  assert np.abs(pooled - small).mean() < 2.0


def test_expression_changes_only_expression_regions(faces_all):
  for a, b in itertools.combinations(range(len(ALL)), 2):
    changed = faces_all[:, a] != faces_all[:, b]
    # A minority of pixels: brows, eyes and mouth only.
    assert changed.mean(axis=(1, 2)).max() < 0.25, (ALL[a], ALL[b])
    # Background, hair top and chin are untouched, exactly.
    assert not changed[:, :6].any() and not changed[:, 44:].any()
    assert not changed[:, :, :5].any() and not changed[:, :, 43:].any()


def test_default_expressions_are_clearly_distinct(faces_all):
  for a, b in itertools.combinations(DEFAULTS, 2):
    diff = np.abs(_expression(faces_all, a) - _expression(faces_all, b))
    # Per identity: many pixels change by a lot, not just a faint shift.
    assert (diff > 60).sum(axis=(1, 2)).min() >= 60, (a, b)
    assert diff.mean(axis=(1, 2)).min() > 4.0, (a, b)


def test_all_seven_expressions_are_distinct(faces_all):
  for a, b in itertools.combinations(range(len(ALL)), 2):
    diff = np.abs(faces_all[:, a] - faces_all[:, b])
    assert (diff > 60).sum(axis=(1, 2)).min() >= 30, (ALL[a], ALL[b])


def test_features_move_the_expected_way(faces_all):
  # Smile vs frown: Happy's mouth corners are up, so relative to Sad the
  # lower face differs; Surprise raises the brows into the forehead.
  happy, sad = _expression(faces_all, "Happy"), _expression(faces_all, "Sad")
  surprise = _expression(faces_all, "Surprise")
  neutral = _expression(faces_all, "Neutral")
  lower = np.abs(happy - sad)[:, 30:].sum()
  assert lower > np.abs(happy - sad)[:, :30].sum() * 0.5
  # Raised brows make the forehead band darker than in the neutral face.
  assert (surprise[:, 11:17] < neutral[:, 11:17] - 40).sum() > 12 * 10


def test_different_identities_differ(faces_all):
  neutral = _expression(faces_all, "Neutral")
  for a, b in itertools.combinations(range(len(neutral)), 2):
    assert np.abs(neutral[a] - neutral[b]).mean() > 5.0


def test_synthetic_faceset_layout():
  faces = synthetic.synthetic_faceset(5, seed=2, emotions=("Sad", "Happy"))
  assert isinstance(faces, faceset.FaceSet)
  assert len(faces) == 10
  assert faces.emotions == ("Sad", "Happy")
  assert faces.images.shape == (10, 48, 48, 1)
  assert faces.images.dtype == np.uint8
  assert faces.labels.dtype == np.int32
  np.testing.assert_array_equal(faces.labels, [0, 1] * 5)
  np.testing.assert_array_equal(faces.identities, np.repeat(np.arange(5), 2))
  assert faces.class_counts() == {"Sad": 5, "Happy": 5}
  rendered = synthetic.render(synthetic.sample_identities(5, 2),
                              ("Sad", "Happy"))
  np.testing.assert_array_equal(faces.images, rendered.reshape(10, 48, 48, 1))


def test_synthetic_faceset_defaults_and_size():
  faces = synthetic.synthetic_faceset(3, seed=0, image_size=32)
  assert faces.emotions == DEFAULTS
  assert faces.images.shape == (12, 32, 32, 1)
