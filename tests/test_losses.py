import math

import numpy as np
import pytest

from faceexpr_tf.modeling import losses


def f(x):
  return float(np.asarray(x))


def test_log_losses_by_hand():
  t = np.array([2.0, -1.0], np.float32)
  sig = 1 / (1 + np.exp(-t))
  assert f(losses.log_d_loss_real(t)) == pytest.approx(np.mean(-np.log(sig)), rel=1e-6)
  assert f(losses.log_d_loss_fake(t)) == pytest.approx(np.mean(-np.log(1 - sig)), rel=1e-6)
  assert f(losses.log_g_loss(t)) == pytest.approx(np.mean(-np.log(sig)), rel=1e-6)
  assert f(losses.log_g_loss(t, saturating=True)) == pytest.approx(np.mean(np.log(1 - sig)),
                                                                   rel=1e-6)
  # At D's indifference point every log term is log 2.
  assert f(losses.log_d_loss_real(np.zeros((4, 3, 3, 1)))) == pytest.approx(math.log(2))


def test_log_losses_are_stable_for_extreme_logits():
  t = np.array([80.0, -80.0], np.float32)
  for fn in (losses.log_d_loss_real, losses.log_d_loss_fake, losses.log_g_loss):
    assert math.isfinite(f(fn(t)))
  assert f(losses.log_d_loss_real(np.array([80.0]))) == pytest.approx(0.0, abs=1e-6)
  assert f(losses.log_d_loss_fake(np.array([80.0]))) == pytest.approx(80.0, rel=1e-6)


def test_wgan_losses_by_hand():
  real, fake = np.array([1.0, 3.0]), np.array([-2.0, 0.0])
  assert f(losses.wgan_d_loss_real(real)) == pytest.approx(-2.0)
  assert f(losses.wgan_d_loss_fake(fake)) == pytest.approx(-1.0)
  assert f(losses.wgan_g_loss(fake)) == pytest.approx(1.0)


def test_gradient_penalty_by_hand():
  unit = np.zeros((2, 4, 4, 1), np.float32)
  unit[:, 0, 0, 0] = 1.0                                   # norm 1 -> no penalty
  assert f(losses.gradient_penalty(unit)) == pytest.approx(0.0, abs=1e-6)
  assert f(losses.gradient_penalty(np.zeros((2, 4, 4, 1)))) == pytest.approx(1.0, rel=1e-5)
  three = np.full((1, 3, 3, 1), 1.0, np.float32)           # norm 3 -> (3 - 1)^2
  assert f(losses.gradient_penalty(three)) == pytest.approx(4.0, rel=1e-5)


def test_classification_loss_and_accuracy():
  assert f(losses.classification_loss(np.zeros((3, 4)), np.array([0, 1, 3]))) == \
      pytest.approx(math.log(4), rel=1e-6)
  logits = np.array([[5.0, 0, 0, 0], [0, 0, 5.0, 0]])
  expected = -np.log(np.exp(5) / (np.exp(5) + 3))
  assert f(losses.classification_loss(logits, np.array([0, 2]))) == pytest.approx(expected,
                                                                                 rel=1e-5)
  assert f(losses.accuracy(logits, np.array([0, 1]))) == pytest.approx(0.5)


def test_capped_classification_loss_by_hand():
  # p(label) = e^5 / (e^5 + 3) = 0.980 for the first face, 1/4 for the second.
  logits = np.array([[5.0, 0, 0, 0], [0, 0, 0, 0]])
  labels = np.array([0, 1])
  ce = np.array([-np.log(np.exp(5) / (np.exp(5) + 3)), np.log(4)])
  assert f(losses.capped_classification_loss(logits, labels, 1.0)) == pytest.approx(
      f(losses.classification_loss(logits, labels)), rel=1e-6)
  # At 0.9 the first face already reads (0.980 >= 0.9): only the second counts.
  assert f(losses.capped_classification_loss(logits, labels, 0.9)) == pytest.approx(
      (ce[1] + np.log(0.9)) / 2, rel=1e-5)
  # At 0.2 both read: nothing left to push.
  assert f(losses.capped_classification_loss(logits, labels, 0.2)) == 0.0


def test_capped_classification_loss_has_no_gradient_past_the_cap():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  logits = tf.Variable([[5.0, 0, 0, 0], [0, 0, 0, 0]])
  with tf.GradientTape() as tape:
    loss = losses.capped_classification_loss(logits, np.array([0, 1]), 0.9)
  grad = tape.gradient(loss, logits).numpy()
  assert np.all(grad[0] == 0)              # read with 0.98: left alone
  assert grad[1, 1] < 0                    # the unread face's label logit is pushed up


def test_reconstruction_loss():
  x = np.zeros((2, 4, 4, 1), np.float32)
  y = x.copy()
  y[0] = 1.0
  assert f(losses.reconstruction_loss(x, y)) == pytest.approx(0.5)
  assert f(losses.reconstruction_loss(x, x)) == 0.0


def test_mask_terms_by_hand():
  mask = np.ones((1, 3, 3, 1), np.float32)
  mask[0, 1, 1, 0] = 0.0                     # one edited pixel of nine
  assert float(losses.mask_area(mask)) == pytest.approx(1 / 9)
  # Vertical differences: 2 of 6 pairs are 1; horizontal: the same.
  assert float(losses.total_variation(mask)) == pytest.approx(2 / 6 + 2 / 6)
  assert float(losses.total_variation(np.full((2, 4, 4, 1), 0.3, np.float32))) == 0.0
