"""StarGAN as a keras.Model: compile(g_optimizer, d_optimizer) and a train_step for fit().

One train_step = one D update, then (every n_critic steps) one G update, as official
StarGAN's solver. The training step counter is the D optimizer's iteration count, so it is
saved and restored with the optimizer state.

Correct on every device:
- Under a tf.distribute strategy each replica sees its share of the global batch and the
  optimizers sum the replicas' gradients, so each replica's loss is divided by the number
  of replicas (as Keras' own compile()/fit() losses are): one update equals one device's
  on the same global batch (tests/test_distribute.py).
- Under mixed_float16 both optimizers are wrapped in keras.optimizers.LossScaleOptimizer
  (float16 gradients underflow otherwise), and the gradient penalty's inner gradient is
  scaled by the same factor.
"""

import keras
import tensorflow as tf

from faceexpr_tf.modeling import diffaugment
from faceexpr_tf.modeling import losses
from faceexpr_tf.modeling import models

GAN_LOSSES = ("log", "wgan-gp")

# Log keys: TensorBoard groups scalars by the part before "/".
TRAIN_METRICS = ("D/loss", "D/loss_real", "D/loss_fake", "D/loss_cls", "D/loss_gp",
                 "D/loss_r1", "G/loss", "G/loss_fake", "G/loss_rec", "G/loss_cls", "G/loss_id",
                 "G/loss_guide", "G/loss_mask", "G/loss_mask_tv", "D/accuracy")
EVAL_METRICS = ("D/accuracy", "G/loss_rec", "G/fake_accuracy")
G_LOGS = tuple(name for name in TRAIN_METRICS if name.startswith("G/"))  # one G update's


@keras.saving.register_keras_serializable(package="faceexpr_tf")
class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Official StarGAN's schedule: constant, then linearly to 0 over the last half."""

  def __init__(self, base, total_steps, decay_from=0.5):
    self.base, self.total_steps, self.decay_from = base, int(total_steps), decay_from

  def __call__(self, step):
    start = self.decay_from * self.total_steps
    left = 1.0 - (tf.cast(step, tf.float32) - start) / max(self.total_steps - start, 1.0)
    return self.base * tf.clip_by_value(left, 0.0, 1.0)

  def get_config(self):
    return {"base": self.base, "total_steps": self.total_steps,
            "decay_from": self.decay_from}


def _inner(optimizer):
  """The optimizer under a LossScaleOptimizer (or the optimizer itself)."""
  return getattr(optimizer, "inner_optimizer", optimizer)


def _per_replica(loss):
  """A replica's share of the loss: the optimizer sums gradients over replicas."""
  replicas = tf.distribute.get_strategy().num_replicas_in_sync
  return loss / replicas if replicas > 1 else loss


def _logs(values):
  """A step's logs, as fit() can reduce them over the replicas.

  Keras 3 (3.15) reduces a multi-worker step's outputs with strategy.reduce(MEAN, axis=0),
  which needs a batch axis: there the scalars get one.
  """
  strategy = tf.distribute.get_strategy()
  multi_worker = (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                  and strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access
  return {k: tf.reshape(v, [1]) for k, v in values.items()} if multi_worker else values


class StarGAN(keras.Model):

  def __init__(self, generator, discriminator, *, gan_loss="log", lambda_cls=1.0,
               lambda_rec=10.0, lambda_gp=10.0, n_critic=1, saturating_g=False, lambda_id=0.0,
               g_ema_decay=0.0, guide=None, lambda_guide=0.0, guide_confidence=1.0,
               lambda_r1=0.0, diffaug="", diffaug_seed=0, lambda_mask=0.0,
               lambda_mask_tv=0.0, **kwargs):
    super().__init__(**kwargs)
    if gan_loss not in GAN_LOSSES:
      raise ValueError(f"gan_loss must be one of {GAN_LOSSES}, got {gan_loss!r}")
    if n_critic < 1:
      raise ValueError(f"n_critic must be >= 1, got {n_critic}")
    self.generator = generator
    self.discriminator = discriminator
    self.num_classes = generator.config.num_classes
    self.gan_loss = gan_loss
    self.lambda_cls = lambda_cls
    self.lambda_rec = lambda_rec
    self.lambda_gp = lambda_gp
    if lambda_r1 < 0:
      raise ValueError(f"lambda_r1 must be >= 0, got {lambda_r1}")
    self.lambda_r1 = lambda_r1
    self.n_critic = n_critic
    self.saturating_g = saturating_g
    self.lambda_id = lambda_id
    # g_output="attention": weights of the mask's edit area and roughness in G's loss.
    self.lambda_mask, self.lambda_mask_tv = lambda_mask, lambda_mask_tv
    if not 0.0 <= g_ema_decay < 1.0:
      raise ValueError(f"g_ema_decay must be in [0, 1), got {g_ema_decay}")
    self.g_ema_decay = g_ema_decay
    self.generator_ema = None
    # A frozen expression classifier whose reading of G(x, c) G is also trained to make c
    # (not in the paper). Its own augmentation layers run on the fakes (training=True),
    # so G cannot win with a pattern that a shift or a flip destroys; its batch norms stay
    # in inference mode because it is frozen. Judge such a G with another classifier.
    if lambda_guide and guide is None:
      raise ValueError("lambda_guide > 0 needs a guide classifier")
    self.guide = guide
    self.lambda_guide = lambda_guide if guide is not None else 0.0
    if guide is not None:
      guide.trainable = False
    # The guide's loss stops once it reads the target with this probability (1: never,
    # plain cross-entropy): G makes the expression read, not a caricature of it.
    if not 0.0 < guide_confidence <= 1.0:
      raise ValueError(f"guide_confidence must be in (0, 1], got {guide_confidence}")
    self.guide_confidence = guide_confidence
    # DiffAugment: every image D sees in training, real or fake, goes through the same
    # random differentiable transform family (not in the paper; off by default).
    self.diffaug = diffaugment.parse_policy(diffaug)
    self.diffaug_seed = keras.random.SeedGenerator(diffaug_seed) if self.diffaug else None
    self.trackers = {name: keras.metrics.Mean(name=name) for name in TRAIN_METRICS}
    self.trackers["G/fake_accuracy"] = keras.metrics.Mean(name="G/fake_accuracy")

  def compile(self, g_optimizer, d_optimizer, loss_scaling=None, **kwargs):
    """loss_scaling: wrap both optimizers in a LossScaleOptimizer (None: when the global
    Keras policy is mixed_float16)."""
    super().compile(**kwargs)
    if loss_scaling is None:
      loss_scaling = keras.mixed_precision.global_policy().name == "mixed_float16"
    if loss_scaling:
      g_optimizer, d_optimizer = (
          opt if isinstance(opt, keras.optimizers.LossScaleOptimizer)
          else keras.optimizers.LossScaleOptimizer(opt) for opt in (g_optimizer, d_optimizer))
    self.g_optimizer = g_optimizer
    self.d_optimizer = d_optimizer
    # Built now, not lazily at the first apply: the G update may sit inside a tf.cond
    # (n_critic > 1), where variables cannot be created, and checkpoints need the slots.
    g_optimizer.build(self.generator.trainable_variables)
    d_optimizer.build(self.discriminator.trainable_variables)
    if self.g_ema_decay:
      # A moving average of G's weights (as StarGAN v2): samples, reports and exports use
      # it; it averages out the grain that GAN training oscillates through.
      self.generator_ema = models.Generator(self.generator.config, name="generator_ema")
      self.generator_ema.build()
      self.reset_ema()
    # G and D come built; saying so keeps fit() under a tf.distribute strategy from
    # tracing call() symbolically to build the model (which it cannot: call takes a pair).
    self.built = True

  def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    # Keras 3's TF trainer (3.15) reduces a first batch over the replicas here, only to
    # build an unbuilt model; under MultiWorkerMirroredStrategy that reduce of an
    # (images, labels, labels) batch fails ("Attempt to convert a value (PerReplica...").
    # StarGAN is built once compiled (G and D come built), so there is nothing to do.
    if not self.built:
      super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

  def reset_ema(self):
    """Starts the moving average at G's current weights (also after a restore)."""
    if self.generator_ema is not None:
      for ema, var in zip(self.generator_ema.weights, self.generator.weights):
        ema.assign(var)

  @property
  def inference_generator(self):
    """The generator to show and ship: the EMA copy when there is one."""
    return self.generator_ema if self.generator_ema is not None else self.generator

  @property
  def metrics(self):
    return list(self.trackers.values())

  @property
  def step(self):
    """Training steps done so far (one per D update)."""
    return self.d_optimizer.iterations

  def checkpoint_groups(self):
    """Everything a resumed run needs, by group, for runs.save_checkpoint/restore_latest.

    The optimizer groups hold the plain Adam state whether or not loss scaling is on, so
    a float32 run resumes in mixed_float16 and back; the loss scale has its own groups.
    """
    groups = {"generator": self.generator.weights,
              "discriminator": self.discriminator.weights,
              "g_optimizer": _inner(self.g_optimizer).variables,
              "d_optimizer": _inner(self.d_optimizer).variables}
    if self.generator_ema is not None:
      groups["generator_ema"] = self.generator_ema.weights
    if self.diffaug_seed is not None:
      groups["diffaug_seed"] = [self.diffaug_seed.state]
    for name, opt in (("g_loss_scale", self.g_optimizer), ("d_loss_scale", self.d_optimizer)):
      if isinstance(opt, keras.optimizers.LossScaleOptimizer):
        groups[name] = [opt.step_counter, opt.dynamic_scale]
    return groups

  def call(self, inputs, training=None):
    images, target_onehot = inputs
    return self.generator(images, target_onehot, training=training)

  # --- losses ---------------------------------------------------------------------------

  def _d_adversarial(self, real_src, fake_src):
    if self.gan_loss == "log":
      return losses.log_d_loss_real(real_src), losses.log_d_loss_fake(fake_src)
    return losses.wgan_d_loss_real(real_src), losses.wgan_d_loss_fake(fake_src)

  def _g_adversarial(self, fake_src):
    if self.gan_loss == "log":
      return losses.log_g_loss(fake_src, saturating=self.saturating_g)
    return losses.wgan_g_loss(fake_src)

  def _d_view(self, x):
    """What D is shown of images in training: x, or x under DiffAugment."""
    return diffaugment.diff_augment(x, self.diffaug, self.diffaug_seed)

  def _d_input_gradient(self, x):
    """D's outputs at x, and the gradient of the sum of its real/fake outputs w.r.t. x
    (unscaled: under loss scaling the inner gradient flows through float16 too)."""
    with tf.GradientTape() as tape:
      tape.watch(x)
      src, cls = self.discriminator(x, training=True)
      total = self.d_optimizer.scale_loss(tf.reduce_sum(tf.cast(src, tf.float32)))
    grads = tape.gradient(total, x)
    if isinstance(self.d_optimizer, keras.optimizers.LossScaleOptimizer):
      grads = tf.cast(grads, tf.float32) / tf.convert_to_tensor(self.d_optimizer.dynamic_scale)
    return src, cls, grads

  def _gradient_penalty(self, x_real, x_fake):
    alpha = tf.random.uniform([tf.shape(x_real)[0], 1, 1, 1])
    x_hat = alpha * x_real + (1.0 - alpha) * x_fake
    return losses.gradient_penalty(self._d_input_gradient(x_hat)[2])

  def _real_with_r1(self, x_real):
    """D on the real faces, and the R1 penalty at them (0 when lambda_r1 is 0)."""
    if not self.lambda_r1:
      real_src, real_cls = self.discriminator(x_real, training=True)
      return real_src, real_cls, tf.constant(0.0)
    real_src, real_cls, grads = self._d_input_gradient(x_real)
    return real_src, real_cls, losses.r1_penalty(grads)

  # --- steps ----------------------------------------------------------------------------

  def _d_step(self, x_real, label_org, x_fake):
    # Penalties (GP, R1) are taken at the images D is shown, as DiffAugment and ADA do.
    x_real, x_fake = self._d_view(x_real), self._d_view(x_fake)
    with tf.GradientTape() as tape:
      real_src, real_cls, loss_r1 = self._real_with_r1(x_real)
      fake_src, _ = self.discriminator(x_fake, training=True)
      loss_real, loss_fake = self._d_adversarial(real_src, fake_src)
      loss_cls = losses.classification_loss(real_cls, label_org)
      loss = loss_real + loss_fake + self.lambda_cls * loss_cls + self.lambda_r1 * loss_r1
      if self.gan_loss == "wgan-gp":
        loss_gp = self._gradient_penalty(x_real, x_fake)
        loss += self.lambda_gp * loss_gp
      else:
        loss_gp = tf.constant(0.0)
      scaled = self.d_optimizer.scale_loss(_per_replica(loss))
    variables = self.discriminator.trainable_variables
    self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
    return {"D/loss": loss, "D/loss_real": loss_real, "D/loss_fake": loss_fake, "D/loss_cls": loss_cls,
            "D/loss_gp": loss_gp, "D/loss_r1": loss_r1, "D/accuracy": losses.accuracy(real_cls, label_org)}

  def _g_step(self, x_real, label_trg, onehot_org, onehot_trg, d_update=None, apply=True):
    """One G update; with `d_update`, D's update runs first on this step's own fake.

    D's update leaves G unchanged, so the fake D learns from is exactly the one G is then
    scored on (D already updated, as official StarGAN): computing it once under G's tape
    saves a G forward pass per step. Returns (G logs, D logs or None); with apply=False
    (G logs, G's gradients) and nothing is updated.
    """
    d_logs = None
    with tf.GradientTape() as tape:
      x_fake, mask_fake = self.generator.edit(x_real, onehot_trg, training=True)
      if d_update is not None:
        with tape.stop_recording():
          d_logs = d_update(tf.stop_gradient(x_fake))
      fake_src, fake_cls = self.discriminator(self._d_view(x_fake), training=True)
      x_rec, mask_rec = self.generator.edit(x_fake, onehot_org, training=True)
      loss_fake = self._g_adversarial(fake_src)
      loss_cls = losses.classification_loss(fake_cls, label_trg)
      loss_rec = losses.reconstruction_loss(x_real, x_rec)
      loss = loss_fake + self.lambda_cls * loss_cls + self.lambda_rec * loss_rec
      loss_mask = loss_mask_tv = tf.constant(0.0)
      if mask_fake is not None:  # GANimation's terms, on both of G's passes
        loss_mask = losses.mask_area(mask_fake) + losses.mask_area(mask_rec)
        loss_mask_tv = losses.total_variation(mask_fake) + losses.total_variation(mask_rec)
        loss += self.lambda_mask * loss_mask + self.lambda_mask_tv * loss_mask_tv
      if self.lambda_guide:
        loss_guide = losses.capped_classification_loss(
            self.guide(x_fake, training=True), label_trg, self.guide_confidence)
        loss += self.lambda_guide * loss_guide
      else:
        loss_guide = tf.constant(0.0)
      if self.lambda_id:
        # Not in the paper: CycleGAN's identity term, G(x, c_org) = x. Instance norm hides
        # a face's absolute brightness from G; this teaches it to keep it early on.
        loss_id = losses.reconstruction_loss(
            x_real, self.generator(x_real, onehot_org, training=True))
        loss += self.lambda_id * loss_id
      else:
        loss_id = tf.constant(0.0)
      scaled = self.g_optimizer.scale_loss(_per_replica(loss))
    grads = tape.gradient(scaled, self.generator.trainable_variables)
    logs = {"G/loss": loss, "G/loss_fake": loss_fake, "G/loss_rec": loss_rec,
            "G/loss_cls": loss_cls, "G/loss_id": loss_id, "G/loss_guide": loss_guide,
            "G/loss_mask": loss_mask, "G/loss_mask_tv": loss_mask_tv}
    if not apply:
      return logs, grads
    self._apply_g(grads)
    return logs, d_logs

  def _apply_g(self, grads):
    """G's optimizer step on `grads`, then the moving average."""
    self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_variables))
    if self.generator_ema is not None:
      decay = self.g_ema_decay
      for ema, var in zip(self.generator_ema.weights, self.generator.weights):
        ema.assign(decay * ema + (1.0 - decay) * var)
    return tf.constant(True)

  def _g_step_if(self, do_g, x_real, label_trg, onehot_org, onehot_trg):
    """The G step when `do_g` (the same on every replica), else zero logs."""
    zero = {name: tf.constant(0.0) for name in G_LOGS}  # the same keys as _g_step's logs
    if tf.distribute.get_strategy().num_replicas_in_sync == 1:
      return tf.cond(do_g, lambda: self._g_step(x_real, label_trg, onehot_org, onehot_trg)[0],
                     lambda: zero)
    # Several replicas: a cond in a replica may not hold the gradients' all-reduce
    # (MirroredStrategy refuses a merge_call there). So the cond computes G's gradients
    # (no sync), and the update runs under a cond in cross-replica context, as Keras'
    # LossScaleOptimizer does.
    variables = self.generator.trainable_variables
    logs, grads = tf.cond(
        do_g, lambda: self._g_step(x_real, label_trg, onehot_org, onehot_trg, apply=False),
        lambda: (zero, [tf.zeros_like(v) for v in variables]))

    def cross_replica(strategy, do_g, grads):
      first = strategy.experimental_local_results(do_g)[0]
      tf.cond(first,
              lambda: strategy.extended.call_for_each_replica(self._apply_g, args=(grads,)),
              lambda: strategy.extended.call_for_each_replica(lambda g: tf.constant(False),
                                                              args=(grads,)))

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(do_g, grads))
    return logs

  def train_step(self, data):
    x_real, label_org, label_trg = data
    onehot_org = tf.one_hot(label_org, self.num_classes)
    onehot_trg = tf.one_hot(label_trg, self.num_classes)
    if self.n_critic == 1:
      g_logs, logs = self._g_step(
          x_real, label_trg, onehot_org, onehot_trg,
          d_update=lambda x_fake: self._d_step(x_real, label_org, x_fake))
      g_weight = 1.0
    else:
      logs = self._d_step(x_real, label_org,
                          self.generator(x_real, onehot_trg, training=True))
      # As official StarGAN: G steps after every n_critic-th D step, (i + 1) % n_critic == 0.
      # The read is ordered after the D update (automatic control dependencies).
      done = tf.convert_to_tensor(self.d_optimizer.iterations)
      do_g = tf.equal(done % self.n_critic, 0)
      g_logs = self._g_step_if(do_g, x_real, label_trg, onehot_org, onehot_trg)
      g_weight = tf.cast(do_g, tf.float32)
    for name, value in logs.items():
      self.trackers[name].update_state(value)
    for name, value in g_logs.items():
      # A skipped G step must not drag the running means towards zero.
      self.trackers[name].update_state(value, sample_weight=g_weight)
    return _logs({name: self.trackers[name].result() for name in TRAIN_METRICS})

  def test_step(self, data):
    """Validation: D's class accuracy on real images, G's cycle L1, and how often D
    classifies G(x, c) as the target c."""
    x_real, label_org, label_trg = data
    onehot_org = tf.one_hot(label_org, self.num_classes)
    onehot_trg = tf.one_hot(label_trg, self.num_classes)
    _, real_cls = self.discriminator(x_real, training=False)
    x_fake = self.generator(x_real, onehot_trg, training=False)
    _, fake_cls = self.discriminator(x_fake, training=False)
    x_rec = self.generator(x_fake, onehot_org, training=False)
    self.trackers["D/accuracy"].update_state(losses.accuracy(real_cls, label_org))
    self.trackers["G/loss_rec"].update_state(losses.reconstruction_loss(x_real, x_rec))
    self.trackers["G/fake_accuracy"].update_state(losses.accuracy(fake_cls, label_trg))
    return _logs({name: self.trackers[name].result() for name in EVAL_METRICS})
