import keras
import numpy as np
import pytest
import tensorflow as tf

from faceexpr_tf.data import pipeline
from faceexpr_tf.data import synthetic
from faceexpr_tf.modeling import models
from faceexpr_tf.modeling import stargan

TINY = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8)


def _model(lr=1e-4, config=TINY, **kwargs):
  keras.utils.set_random_seed(0)
  g, d = models.build_models(config)
  model = stargan.StarGAN(g, d, **kwargs)
  model.compile(g_optimizer=keras.optimizers.Adam(lr, 0.5, 0.999),
                d_optimizer=keras.optimizers.Adam(lr, 0.5, 0.999))
  return model


def _batch(n=8, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, (n, 48, 48, 1)).astype(np.float32)
  org = rng.integers(0, 4, n).astype(np.int32)
  return x, org, ((org + 1) % 4).astype(np.int32)


def _snapshot(net):
  return [w.numpy().copy() for w in net.trainable_weights]


def _changed(before, net):
  return all(not np.array_equal(b, w.numpy()) for b, w in zip(before, net.trainable_weights))


def _first_step(model):
  """(model, G's and D's weights before, fit()'s history) of one fit() step on _batch()."""
  g0, d0 = _snapshot(model.generator), _snapshot(model.discriminator)
  history = model.fit(tf.data.Dataset.from_tensors(_batch()), epochs=1, verbose=0)
  return model, (g0, d0), history


@pytest.fixture(scope="module")
def default_step():
  """_first_step(_model()): the default model's first step, which three tests read (each
  fit() of a new model traces its train step anew: ~10 s on two busy cores). Read only."""
  return _first_step(_model())


@pytest.mark.parametrize("gan_loss", ["log", "wgan-gp"])
def test_one_train_step_changes_both_networks(gan_loss, request):
  if gan_loss == "log":  # the default loss: _model(gan_loss="log") is _model()
    model, (g0, d0), history = request.getfixturevalue("default_step")
  else:
    model, (g0, d0), history = _first_step(_model(gan_loss=gan_loss))
  assert _changed(g0, model.generator) and _changed(d0, model.discriminator)
  assert int(model.step.numpy()) == 1 and int(model.g_optimizer.iterations.numpy()) == 1
  logs = {k: v[-1] for k, v in history.history.items()}
  assert set(stargan.TRAIN_METRICS) <= set(logs)
  assert all(np.isfinite(v) for v in logs.values())
  if gan_loss == "wgan-gp":
    assert logs["D/loss_gp"] > 0
  else:
    assert logs["D/loss_gp"] == 0
    # Untrained D is near indifferent: log losses near log 2, class loss near log 4.
    assert logs["D/loss_real"] == pytest.approx(np.log(2), abs=0.1)
    assert logs["D/loss_cls"] == pytest.approx(np.log(4), abs=0.2)


def test_step_equals_official_order_d_update_then_g_update():
  # train_step computes G(x, c) once for both updates; the official solver computes it
  # for D, updates D, then computes it again for G. Same numbers either way.
  fused, reference = _model(), _model()
  x, org, trg = (tf.constant(a) for a in _batch(seed=4))
  fused.train_step((x, org, trg))
  onehot_org, onehot_trg = tf.one_hot(org, 4), tf.one_hot(trg, 4)
  reference._d_step(x, org, reference.generator(x, onehot_trg, training=True))
  reference._g_step(x, trg, onehot_org, onehot_trg)
  for net in ("generator", "discriminator"):
    for a, b in zip(getattr(fused, net).weights, getattr(reference, net).weights):
      np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=f"{net} {a.path}")
  assert not np.array_equal(fused.generator.weights[0].numpy(),
                            _model().generator.weights[0].numpy())


def test_n_critic_updates_g_every_nth_step():
  model = _model(gan_loss="wgan-gp", n_critic=3)
  ds = tf.data.Dataset.from_tensors(_batch()).repeat(7)
  model.fit(ds, epochs=1, verbose=0)
  assert int(model.step.numpy()) == 7
  # Official StarGAN's schedule: G after D steps 3 and 6, (i + 1) % n_critic == 0.
  assert int(model.g_optimizer.iterations.numpy()) == 2


def test_short_run_on_synthetic_faces_lowers_reconstruction_loss():
  # 40 steps (~0.25 s each on two busy cores): the cycle L1 is at 0.48 of its start by
  # then (0.62 after 20 steps, 0.42 after 60), and D's accuracy over the run at ~0.6.
  faces = synthetic.synthetic_faceset(32, seed=0)
  model = _model(lr=5e-4)
  val = pipeline.make_eval_dataset(faces, 32)
  before = model.evaluate(val, verbose=0, return_dict=True)["G/loss_rec"]
  stream = pipeline.make_train_dataset(faces, 16, seed=0, num_steps=40)
  history = model.fit(stream, epochs=1, verbose=0)
  after = model.evaluate(val, verbose=0, return_dict=True)["G/loss_rec"]
  assert after < 0.6 * before, (before, after)
  assert history.history["D/accuracy"][-1] > 0.3    # D starts learning the classes


def test_test_step_reports_eval_metrics():
  model = _model()
  logs = model.evaluate(tf.data.Dataset.from_tensors(_batch()), verbose=0, return_dict=True)
  assert set(logs) >= set(stargan.EVAL_METRICS)
  assert 0 <= logs["D/accuracy"] <= 1 and logs["G/loss_rec"] > 0


def test_bad_arguments():
  g, d = models.build_models(TINY)
  with pytest.raises(ValueError, match="gan_loss"):
    stargan.StarGAN(g, d, gan_loss="hinge")
  with pytest.raises(ValueError, match="n_critic"):
    stargan.StarGAN(g, d, n_critic=0)
  for bad in (0.0, 1.5):
    with pytest.raises(ValueError, match="guide_confidence"):
      stargan.StarGAN(g, d, guide_confidence=bad)


def _uniform_guide():
  """A guide that gives every emotion 1/4, whatever the face: its loss is log 4."""
  return keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(),
                           keras.layers.Dense(4, kernel_initializer="zeros")])


@pytest.mark.parametrize("confidence,expected", [
    (1.0, np.log(4)),                 # plain cross-entropy
    (0.5, np.log(4) + np.log(0.5)),   # p(target) = 1/4 is short of 0.5 by log 2
    (0.2, 0.0),                       # 1/4 already reads: no loss, no push
])
def test_guide_confidence_caps_the_guide_s_loss_in_the_train_step(confidence, expected):
  model = _model(guide=_uniform_guide(), lambda_guide=1.0, guide_confidence=confidence)
  history = model.fit(tf.data.Dataset.from_tensors(_batch()), epochs=1, verbose=0)
  logs = {k: v[-1] for k, v in history.history.items()}
  assert logs["G/loss_guide"] == pytest.approx(expected, abs=1e-5)
  assert logs["G/loss"] == pytest.approx(
      logs["G/loss_fake"] + logs["G/loss_cls"] + 10 * logs["G/loss_rec"] + expected,
      rel=1e-5)


def test_identity_term_is_off_by_default_and_reported_when_on(default_step):
  off = default_step[2]                            # _model()'s first fit() on _batch()
  assert off.history["G/loss_id"][-1] == 0.0
  on = _model(lambda_id=5.0)
  history = on.fit(tf.data.Dataset.from_tensors(_batch()), epochs=1, verbose=0)
  loss_id = history.history["G/loss_id"][-1]
  # An untrained G is far from the identity: |G(x, c_org) - x| is of the order of |x|.
  assert 0.1 < loss_id < 2.0
  logs = {k: v[-1] for k, v in history.history.items()}
  expected = (logs["G/loss_fake"] + logs["G/loss_cls"] + 10 * logs["G/loss_rec"]
              + 5 * loss_id)
  assert logs["G/loss"] == pytest.approx(expected, rel=1e-5)


def test_attention_mask_terms_are_in_g_s_loss(default_step):
  off = {k: v[-1] for k, v in default_step[2].history.items()}   # an image G: no mask
  assert off["G/loss_mask"] == 0.0 and off["G/loss_mask_tv"] == 0.0
  import dataclasses  # pylint: disable=g-import-not-at-top
  model = _model(config=dataclasses.replace(TINY, g_output="attention"), lambda_mask=0.5,
                 lambda_mask_tv=2.0)
  history = model.fit(tf.data.Dataset.from_tensors(_batch()), epochs=1, verbose=0)
  logs = {k: v[-1] for k, v in history.history.items()}
  # At init A = 0.5 everywhere on both of G's passes: area 0.5 + 0.5, no variation.
  assert logs["G/loss_mask"] == pytest.approx(1.0, abs=1e-3)
  assert 0.0 <= logs["G/loss_mask_tv"] < 1e-3
  expected = (logs["G/loss_fake"] + logs["G/loss_cls"] + 10 * logs["G/loss_rec"]
              + 0.5 * logs["G/loss_mask"] + 2.0 * logs["G/loss_mask_tv"])
  assert logs["G/loss"] == pytest.approx(expected, rel=1e-5)
  # The identity at init: the cycle is exact, so the reconstruction term starts near 0.
  assert logs["G/loss_rec"] < 1e-3


def test_generator_moving_average():
  model = _model(g_ema_decay=0.5)
  before = [w.numpy().copy() for w in model.generator.weights]
  for ema, w in zip(model.generator_ema.weights, before):
    np.testing.assert_array_equal(ema.numpy(), w)          # starts at G
  model.fit(tf.data.Dataset.from_tensors(_batch()), epochs=1, verbose=0)
  for ema, w0, w1 in zip(model.generator_ema.weights, before, model.generator.weights):
    np.testing.assert_allclose(ema.numpy(), 0.5 * w0 + 0.5 * w1.numpy(), rtol=1e-5, atol=1e-7)
  assert "generator_ema" in model.checkpoint_groups()
  assert model.inference_generator is model.generator_ema
  assert _model().inference_generator is not None and _model().generator_ema is None


@pytest.fixture
def float16_policy():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_float16_scales_both_losses_and_still_trains(float16_policy):
  model = _model(gan_loss="wgan-gp")
  for opt in (model.g_optimizer, model.d_optimizer):
    assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
    # The loss the tape differentiates is multiplied by the dynamic scale (2**15 at first).
    assert float(opt.scale_loss(tf.constant(3.0))) == 3.0 * 2 ** 15
  assert model.generator.compute_dtype == "float16"
  g0, d0 = _snapshot(model.generator), _snapshot(model.discriminator)
  history = model.fit(tf.data.Dataset.from_tensors(_batch()).repeat(3), epochs=1, verbose=0)
  assert all(np.isfinite(v[-1]) for v in history.history.values())
  # Steps count inner Adam updates: a step skipped for overflowing gradients would not.
  assert int(model.step.numpy()) >= 1 and int(model.g_optimizer.iterations.numpy()) >= 1
  assert _changed(g0, model.generator) and _changed(d0, model.discriminator)
  groups = model.checkpoint_groups()
  # Checkpoints keep plain Adam state (same layout as float32) plus the two loss scales.
  assert len(groups["g_optimizer"]) == len(_model_f32_groups()["g_optimizer"])
  assert {"g_loss_scale", "d_loss_scale"} <= set(groups)


def _model_f32_groups():
  policy = keras.mixed_precision.global_policy().name
  keras.mixed_precision.set_global_policy("float32")
  try:
    return _model().checkpoint_groups()
  finally:
    keras.mixed_precision.set_global_policy(policy)


def test_float32_has_no_loss_scaling():
  model = _model()
  assert not isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
  assert float(model.g_optimizer.scale_loss(tf.constant(3.0))) == 3.0
  assert "g_loss_scale" not in model.checkpoint_groups()


def _sgd_model(**compile_kwargs):
  keras.utils.set_random_seed(0)
  g, d = models.build_models(TINY)
  model = stargan.StarGAN(g, d)
  model.compile(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1), **compile_kwargs)
  return model


def _update(before, net):
  return np.concatenate([(w.numpy() - b).ravel() for b, w in zip(before, net.trainable_weights)])


def test_jit_compiled_step_equals_the_eager_step():
  """~20 s on CPUs: XLA compiles the whole train step."""
  # The XLA path is what GPUs run (--jit_compile=auto); it must compute the same update.
  # SGD, so the update is the gradient itself (Adam's first steps are sign-like and
  # would magnify rounding in near-zero gradients).
  batch = tf.data.Dataset.from_tensors(_batch(seed=3))
  eager, jitted = _sgd_model(run_eagerly=True), _sgd_model(jit_compile=True)
  assert jitted.jit_compile and eager.run_eagerly and not eager.jit_compile
  start = {net: _snapshot(getattr(eager, net)) for net in ("generator", "discriminator")}
  eager_logs = eager.fit(batch, epochs=1, verbose=0).history
  jit_logs = jitted.fit(batch, epochs=1, verbose=0).history
  assert int(jitted.step.numpy()) == 1
  for net in ("generator", "discriminator"):
    u_eager = _update(start[net], getattr(eager, net))
    u_jit = _update(start[net], getattr(jitted, net))
    assert np.linalg.norm(u_eager) > 1e-3                   # the step did move the weights
    assert np.linalg.norm(u_jit - u_eager) <= 1e-4 * np.linalg.norm(u_eager), net
  for key in ("D/loss", "G/loss"):
    assert jit_logs[key][-1] == pytest.approx(eager_logs[key][-1], rel=1e-5)


def test_r1_penalty_of_known_gradients():
  from faceexpr_tf.modeling import losses
  grads = np.ones((2, 3, 3, 1), np.float32)
  grads[1] *= 2.0
  # 0.5 * mean over faces of the squared norm: 0.5 * (9 + 36) / 2.
  assert float(losses.r1_penalty(grads)) == pytest.approx(11.25)


def test_r1_logged_value_is_the_penalty_at_the_real_faces_and_moves_d(default_step):
  batch = _batch()
  x_real = tf.constant(batch[0])
  model = _model(lambda_r1=1.0)
  with tf.GradientTape() as tape:
    tape.watch(x_real)
    src, _ = model.discriminator(x_real, training=True)
    total = tf.reduce_sum(src)
  expected = 0.5 * np.mean(np.sum(np.square(tape.gradient(total, x_real).numpy()),
                                  axis=(1, 2, 3)))
  history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
  assert expected > 0
  assert history.history["D/loss_r1"][-1] == pytest.approx(expected, rel=1e-4)
  # Off by default: logged as 0, and the same D update as before the term existed.
  plain, zero = default_step[0], _model(lambda_r1=0.0)   # plain: _model() fit on batch
  zero.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
  for a, b in zip(plain.discriminator.weights, zero.discriminator.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  # With the penalty, D's update differs from the plain one.
  r1 = model.discriminator.trainable_weights
  assert any(not np.allclose(a.numpy(), b.numpy()) for a, b in
             zip(r1, plain.discriminator.trainable_weights))
