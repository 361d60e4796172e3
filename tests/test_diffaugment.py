"""DiffAugment: the transforms against numpy, their gradients, and D seeing them in training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from faceexpr_tf.modeling import diffaugment
from faceexpr_tf.modeling import models
from faceexpr_tf.modeling import stargan

TINY = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8)


def _images(n=4, size=48, channels=1, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, channels)).astype(
      np.float32)


def _numpy_shift(img, dy, dx):
  out = np.zeros_like(img)
  h, w = img.shape[:2]
  for i in range(h):
    for j in range(w):
      if 0 <= i - dy < h and 0 <= j - dx < w:
        out[i, j] = img[i - dy, j - dx]
  return out


def test_parse_policy():
  assert diffaugment.parse_policy("") == ()
  assert diffaugment.parse_policy(None) == ()
  assert diffaugment.parse_policy(" color, cutout ") == ("color", "cutout")
  assert diffaugment.parse_policy(("translation", "cutout")) == ("translation", "cutout")
  with pytest.raises(diffaugment.PolicyError, match=r"unknown policy 'blur'.*color, "
                     r"translation, cutout"):
    diffaugment.parse_policy("color,blur")
  with pytest.raises(diffaugment.PolicyError, match="named twice"):
    diffaugment.parse_policy("cutout,cutout")


def test_translate_is_a_zero_filled_shift_and_passes_gradients_to_what_stays():
  x = _images(n=4, size=12, channels=2)
  dy, dx = np.array([0, 3, -2, 12]), np.array([0, -5, 1, 2])
  got = diffaugment.translate(tf.constant(x), tf.constant(dy), tf.constant(dx)).numpy()
  for n in range(4):
    np.testing.assert_allclose(got[n], _numpy_shift(x[n], dy[n], dx[n]), atol=1e-6)
  np.testing.assert_array_equal(got[3], 0)  # moved out of view entirely
  xt = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(xt)
    total = tf.reduce_sum(diffaugment.translate(xt, tf.constant(dy), tf.constant(dx)))
  grad = tape.gradient(total, xt).numpy()
  for n in range(4):  # 1 where the pixel is still in view after the shift, else 0
    np.testing.assert_array_equal(grad[n], _numpy_shift(np.ones_like(x[n]), -dy[n], -dx[n]))


def test_cutout_mask_zeroes_one_square_clipped_at_the_border():
  mask = diffaugment.cutout_mask(tf.constant([24, 0, 47]), tf.constant([24, 10, 47]),
                                 48, 48, 24).numpy()[..., 0]
  assert mask.shape == (3, 48, 48)
  np.testing.assert_array_equal(mask[0, 12:36, 12:36], 0)
  assert mask[0].sum() == 48 * 48 - 24 * 24
  assert mask[1].sum() == 48 * 48 - 12 * 22        # clipped at the top: rows 0-11, cols 0-21
  np.testing.assert_array_equal(mask[1, :12, :22], 0)
  assert mask[2].sum() == 48 * 48 - 13 * 13        # bottom-right corner: rows, cols 35-47
  np.testing.assert_array_equal(mask[2, 35:, 35:], 0)


def test_color_brightness_then_contrast_about_the_mean():
  x = _images(n=2, size=6)
  b, c = np.array([0.25, -0.5], np.float32), np.array([1.5, 0.5], np.float32)
  got = diffaugment.color(tf.constant(x), tf.constant(b), tf.constant(c)).numpy()
  for n in range(2):
    y = x[n] + b[n]
    np.testing.assert_allclose(got[n], (y - y.mean()) * c[n] + y.mean(), atol=1e-6)
  rgb = _images(n=1, size=4, channels=3)
  grayish = diffaugment.color(tf.constant(rgb), tf.constant([0.0]), tf.constant([1.0]),
                              tf.constant([0.0])).numpy()
  np.testing.assert_allclose(grayish[0], np.repeat(rgb[0].mean(-1, keepdims=True), 3, -1),
                             atol=1e-6)


def test_random_augmentation_is_seeded_bounded_and_off_when_empty():
  x = np.zeros((64, 48, 48, 1), np.float32)
  x[:, 24, 24, 0] = 1.0  # one bright pixel: where it lands is the shift
  policy = ("translation",)
  a = diffaugment.diff_augment(tf.constant(x), policy, keras.random.SeedGenerator(3)).numpy()
  b = diffaugment.diff_augment(tf.constant(x), policy, keras.random.SeedGenerator(3)).numpy()
  np.testing.assert_array_equal(a, b)
  where = np.argwhere(a[..., 0] == 1.0)
  assert len(where) == 64                          # a shift of 6 keeps the centre in view
  shifts = where[:, 1:] - 24
  assert np.abs(shifts).max() <= 6 and len({tuple(s) for s in shifts}) > 10
  full = diffaugment.diff_augment(tf.constant(_images(n=64)), diffaugment.POLICIES,
                                  keras.random.SeedGenerator(0)).numpy()
  assert full.shape == (64, 48, 48, 1) and np.isfinite(full).all()
  assert (np.sum(full == 0.0, axis=(1, 2, 3)) >= 12 * 12).all()  # a cutout in every image
  x = _images()
  assert diffaugment.diff_augment(x, (), None) is x


# --- in training --------------------------------------------------------------------------

def _model(**kwargs):
  keras.utils.set_random_seed(0)
  g, d = models.build_models(TINY)
  model = stargan.StarGAN(g, d, **kwargs)
  model.compile(g_optimizer=keras.optimizers.Adam(1e-4, 0.5, 0.999),
                d_optimizer=keras.optimizers.Adam(1e-4, 0.5, 0.999))
  return model


def _batch(n=8):
  rng = np.random.default_rng(0)
  org = rng.integers(0, 4, n).astype(np.int32)
  return _images(n=n), org, ((org + 1) % 4).astype(np.int32)


def test_d_and_g_are_trained_on_augmented_images():
  x, org, trg = _batch()
  plain, aug = _model(), _model(diffaug=("translation", "cutout"))
  assert "diffaug_seed" in aug.checkpoint_groups()
  assert "diffaug_seed" not in plain.checkpoint_groups()
  onehot = lambda labels: tf.one_hot(labels, 4)  # pylint: disable=unnecessary-lambda-assignment
  # G's gradient through D (same G, same D): D scores the augmented fake.
  _, g_plain = plain._g_step(tf.constant(x), trg, onehot(org), onehot(trg), apply=False)
  _, g_aug = aug._g_step(tf.constant(x), trg, onehot(org), onehot(trg), apply=False)
  assert any(not np.allclose(a.numpy(), b.numpy()) for a, b in zip(g_plain, g_aug))
  # D's update: a different one, from augmented reals and fakes; the seed state moves.
  state = aug.diffaug_seed.state.numpy().copy()
  for m in (plain, aug):
    m.fit(tf.data.Dataset.from_tensors((x, org, trg)), epochs=1, verbose=0)
  assert any(not np.allclose(a.numpy(), b.numpy()) for a, b in
             zip(plain.discriminator.trainable_weights, aug.discriminator.trainable_weights))
  assert not np.array_equal(state, aug.diffaug_seed.state.numpy())
  with pytest.raises(diffaugment.PolicyError):
    _model(diffaug=("mixup",))
