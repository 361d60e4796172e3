import ast
import inspect

import numpy as np
import pytest

from faceexpr_tf.modeling import models

TINY = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8)


@pytest.mark.parametrize("config", [
    models.ModelConfig(),                                     # official G, 48 px D
    models.ModelConfig(g_conv_dim=32, g_repeat_num=3, upsample="resize"),
    models.ModelConfig(g_conv_dim=16, g_repeat_num=2, g_output="residual"),
    models.ModelConfig(g_conv_dim=16, g_repeat_num=2, g_output="attention"),
    models.ModelConfig(image_size=64, num_classes=7, d_conv_dim=16, d_repeat_num=4),
    models.ModelConfig(image_size=128, channels=3, num_classes=5, d_repeat_num=6),  # CelebA
])
def test_parameter_counts_match_official_stargan_formulas(config):
  g, d = models.build_models(config)
  assert g.count_params() == models.expected_generator_params(config)
  assert d.count_params() == models.expected_discriminator_params(config)


def test_default_generator_is_official_size():
  # Official StarGAN G with 1 input channel and 4 classes, counted by hand.
  assert models.expected_generator_params(models.ModelConfig()) == 8_414_848
  assert models.expected_discriminator_params(models.ModelConfig()) == 2_777_536


def test_output_shapes_and_ranges():
  g, d = models.build_models(models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8))
  x = np.random.default_rng(0).uniform(-1, 1, (3, 48, 48, 1)).astype(np.float32)
  y = np.asarray(g(x, np.eye(4, dtype=np.float32)[[0, 1, 3]]))
  assert y.shape == (3, 48, 48, 1) and y.dtype == np.float32
  assert np.abs(y).max() <= 1.0
  src, cls = d(x)
  assert tuple(src.shape) == (3, 3, 3, 1)   # 48 px / 2**4 = 3x3 PatchGAN map
  assert tuple(cls.shape) == (3, 4)
  assert TINY.d_kernel_size == 3


def test_target_changes_output():
  g, _ = models.build_models(TINY)
  x = np.random.default_rng(1).uniform(-1, 1, (1, 48, 48, 1)).astype(np.float32)
  outs = [np.asarray(g(x, np.eye(4, dtype=np.float32)[[c]])) for c in range(4)]
  assert all(np.abs(outs[0] - o).max() > 1e-4 for o in outs[1:])


def test_residual_generator_starts_as_identity_and_learns_an_edit():
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  g, _ = models.build_models(models.ModelConfig(g_conv_dim=8, g_repeat_num=1,
                                                d_conv_dim=8, g_output="residual"))
  x = np.random.default_rng(3).uniform(-1, 1, (2, 48, 48, 1)).astype(np.float32)
  x[0, :2, :2] = [[1.0], [-1.0]]                     # saturated pixels stay finite
  c = np.eye(4, dtype=np.float32)[[0, 2]]
  np.testing.assert_allclose(np.asarray(g(x, c)), np.clip(x, -0.999, 0.999), atol=1e-5)
  # The zero-initialised last conv still gets a gradient, so G can move off identity.
  with tf.GradientTape() as tape:
    loss = keras.ops.mean(keras.ops.abs(g(x, c) - 0.5))
  grads = dict(zip([v.path for v in g.trainable_variables],
                   tape.gradient(loss, g.trainable_variables)))
  assert float(np.abs(grads["generator/conv_out/kernel"]).max()) > 0


def test_edit_gain_scales_what_g_changes_per_emotion_and_travels_in_the_keras_file(tmp_path):
  import keras  # pylint: disable=g-import-not-at-top
  config = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8, g_output="residual")
  keras.utils.set_random_seed(2)
  g = models.Generator(config)
  g.build()
  g.get_layer("conv_out").kernel.assign(
      np.random.default_rng(0).normal(0, 0.05, g.get_layer("conv_out").kernel.shape))
  gain = (0.5, 1.5, 1.0, 2.0)
  gained = models.with_edit_gain(g, gain)
  x = np.random.default_rng(4).uniform(-0.9, 0.9, (4, 48, 48, 1)).astype(np.float32)
  onehot = np.eye(4, dtype=np.float32)
  plain = np.asarray(g(x, onehot))
  want = np.clip(x + np.asarray(gain, np.float32)[:, None, None, None] * (plain - x), -1, 1)
  np.testing.assert_allclose(np.asarray(gained(x, onehot)), want, atol=1e-6)
  assert np.abs(plain[0] - x[0]).max() > 1e-3          # there is an edit to scale
  # A blend of two emotions (intensity) gets the blend of their factors.
  blend = np.asarray([[0.25, 0.75, 0, 0]], np.float32)
  np.testing.assert_allclose(
      np.asarray(gained(x[:1], blend)),
      np.clip(x[:1] + 1.25 * (np.asarray(g(x[:1], blend)) - x[:1]), -1, 1), atol=1e-6)
  # Saved and reloaded: the same factors, the same faces; files without it load as before.
  gained.save(tmp_path / "g.keras")
  loaded = keras.models.load_model(tmp_path / "g.keras")
  assert loaded.edit_gain == gain
  np.testing.assert_array_equal(np.asarray(loaded(x, onehot)), np.asarray(gained(x, onehot)))
  assert "edit_gain" not in g.get_config() and models.Generator.from_config(
      g.get_config()).edit_gain is None
  # All factors 1 is the plain G; no factor may be missing, zero, negative or not finite.
  assert models.with_edit_gain(g, (1, 1, 1, 1)).edit_gain is None
  for bad, message in (((1, 1, 1), "one factor per emotion"), ((1, 0, 1, 1), "> 0"),
                       ((1, -2, 1, 1), "> 0"), ((1, float("nan"), 1, 1), "> 0")):
    with pytest.raises(ValueError, match=message):
      models.Generator(config, edit_gain=bad)


def test_attention_generator_starts_as_identity_and_its_mask_decides_where_it_edits():
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  g = models.Generator(models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8,
                                          g_output="attention"))
  g.build()
  x = np.random.default_rng(4).uniform(-0.99, 0.99, (2, 48, 48, 1)).astype(np.float32)
  c = np.eye(4, dtype=np.float32)[[1, 3]]
  out, mask = (np.asarray(t) for t in g.edit(x, c))
  np.testing.assert_allclose(out, x, atol=1e-5)              # identity, whatever A is
  assert mask.shape == (2, 48, 48, 1) and np.allclose(mask, 0.5)
  np.testing.assert_array_equal(np.asarray(g(x, c)), out)   # call() is edit()'s image
  # Give the colour an edit: the output moves (by (1 - A) of it) and the mask learns.
  kernel = np.zeros(g.get_layer("conv_out").kernel.shape, np.float32)
  kernel[3, 3, :, 0] = 0.3                                  # colour: an edit everywhere
  g.get_layer("conv_out").kernel.assign(kernel)
  edited = np.asarray(g(x, c))
  assert np.abs(edited - x).max() > 0.01
  with tf.GradientTape() as tape:
    loss = keras.ops.mean(g.edit(x, c)[1])
  grads = dict(zip([v.path for v in g.trainable_variables],
                   tape.gradient(loss, g.trainable_variables)))
  assert float(np.abs(grads["generator/conv_out/kernel"][..., 1]).max()) > 0


def test_group_norm_minus_one_is_instance_norm():
  import keras  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(2).normal(3, 2, (2, 6, 6, 5)).astype(np.float32)
  y = np.asarray(keras.layers.GroupNormalization(groups=-1, epsilon=1e-5)(x))
  mean = x.mean(axis=(1, 2), keepdims=True)
  var = x.var(axis=(1, 2), keepdims=True)
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)


def test_networks_are_backend_agnostic():
  # G and D must also run under JAX: Keras layers and keras.ops only.
  tree = ast.parse(inspect.getsource(models))
  imported = {alias.name.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, (ast.Import, ast.ImportFrom))
              for alias in (node.names if isinstance(node, ast.Import) else
                            [type("m", (), {"name": node.module or ""})])}
  assert "tensorflow" not in imported and "keras" in imported


def test_bad_configs_are_refused():
  with pytest.raises(ValueError, match="upsample"):
    models.ModelConfig(upsample="bilinear")
  with pytest.raises(ValueError, match="g_output"):
    models.ModelConfig(g_output="mask")
  with pytest.raises(ValueError, match="divisible"):
    models.ModelConfig(image_size=40)
