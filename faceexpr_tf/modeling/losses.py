"""StarGAN's loss terms as pure functions of logits and images (keras.ops only).

Conventions: D outputs logits. For the paper's log loss the sigmoid is folded into
softplus, which is the numerically stable form of the same expressions:
  -log sigmoid(t)      = softplus(-t)
  -log(1 - sigmoid(t)) = softplus(t)

Paper (eq. 1-6):  L_adv = E[log D_src(x)] + E[log(1 - D_src(G(x, c)))]
  L_D = -L_adv + lambda_cls * L_cls^r
  L_G =  L_adv + lambda_cls * L_cls^f + lambda_rec * L_rec
"""

import math

from keras import ops


def _mean(x):
  return ops.mean(ops.cast(x, "float32"))


# --- the attention mask (g_output="attention"; A = 1 keeps the input's pixel) ----------

def mask_area(mask):
  """E[1 - A]: the share of the face G edits; penalising it confines the edit."""
  return _mean(1.0 - ops.cast(mask, "float32"))


def total_variation(mask):
  """E|A(i+1, j) - A(i, j)| + E|A(i, j+1) - A(i, j)| over [N, H, W, C] masks: rough,
  speckled masks cost more than smooth regions."""
  mask = ops.cast(mask, "float32")
  return (_mean(ops.abs(mask[:, 1:] - mask[:, :-1]))
          + _mean(ops.abs(mask[:, :, 1:] - mask[:, :, :-1])))


# --- the paper's log loss -------------------------------------------------------------

def log_d_loss_real(real_logits):
  """-E[log D_src(x)]: D's loss on real images."""
  return _mean(ops.softplus(-ops.cast(real_logits, "float32")))


def log_d_loss_fake(fake_logits):
  """-E[log(1 - D_src(G(x, c)))]: D's loss on generated images."""
  return _mean(ops.softplus(ops.cast(fake_logits, "float32")))


def log_g_loss(fake_logits, saturating=False):
  """G's adversarial loss.

  saturating=True is the paper's term as written, E[log(1 - D(G))], minimised by G. Its
  gradient vanishes while D confidently rejects fakes (early training), so by default G
  minimises -E[log D(G)] instead: the same fixed point (Goodfellow et al. 2014, sec. 3).
  """
  fake_logits = ops.cast(fake_logits, "float32")
  if saturating:
    return -_mean(ops.softplus(fake_logits))
  return _mean(ops.softplus(-fake_logits))


# --- official StarGAN's WGAN-GP ---------------------------------------------------------

def wgan_d_loss_real(real_logits):
  return -_mean(real_logits)


def wgan_d_loss_fake(fake_logits):
  return _mean(fake_logits)


def wgan_g_loss(fake_logits):
  return -_mean(fake_logits)


def gradient_penalty(gradients):
  """E[(||grad_x D(x_hat)||_2 - 1)^2], from the gradients at the interpolates [N, ...]."""
  g = ops.reshape(ops.cast(gradients, "float32"), (ops.shape(gradients)[0], -1))
  norm = ops.sqrt(ops.sum(ops.square(g), axis=1) + 1e-12)
  return ops.mean(ops.square(norm - 1.0))


def r1_penalty(gradients):
  """R1 (Mescheder et al. 2018, as StarGAN v2): 0.5 E[||grad_x D(x)||^2] at real faces, from
  the gradients of D's real/fake output at the real images [N, ...]."""
  g = ops.reshape(ops.cast(gradients, "float32"), (ops.shape(gradients)[0], -1))
  return 0.5 * ops.mean(ops.sum(ops.square(g), axis=1))


# --- shared terms -----------------------------------------------------------------------

def _cross_entropy(class_logits, labels):
  """Each example's softmax cross-entropy against its integer label."""
  return ops.sparse_categorical_crossentropy(labels, ops.cast(class_logits, "float32"),
                                             from_logits=True)


def classification_loss(class_logits, labels):
  """Softmax cross-entropy of D_cls against integer labels (emotions are exclusive)."""
  return _mean(_cross_entropy(class_logits, labels))


def capped_classification_loss(class_logits, labels, confidence=1.0):
  """Cross-entropy that stops at `confidence`: E max(0, -log p(label) + log confidence).

  A face the classifier already reads as its label with probability `confidence` or more
  adds nothing (and no gradient): G is pushed until the expression reads, not on toward a
  caricature that reads with certainty. confidence=1 is classification_loss exactly.
  """
  if confidence >= 1.0:
    return classification_loss(class_logits, labels)
  return _mean(ops.relu(_cross_entropy(class_logits, labels) + math.log(confidence)))


def reconstruction_loss(images, reconstructed):
  """L_rec = E|x - G(G(x, c), c')|_1."""
  return _mean(ops.abs(ops.cast(images, "float32") - ops.cast(reconstructed, "float32")))


def accuracy(class_logits, labels):
  return _mean(ops.equal(ops.argmax(class_logits, axis=-1), ops.cast(labels, "int64")))
