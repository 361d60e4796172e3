"""FaceSet -> tf.data: reproducible training batches (seed, step) and evaluation batches.

Images stay uint8 [N, H, W, 1] in memory (FER2013 is ~65 MB that way) and are
only scaled to float32 [-1, 1] per batch inside the input pipeline.
"""

import numpy as np
import tensorflow as tf

from faceexpr_tf.data import faceset



def steps_per_epoch(faces: faceset.FaceSet, batch_size: int) -> int:
  """Full batches per epoch (the remainder is dropped)."""
  steps = len(faces) // batch_size
  if steps == 0:
    raise faceset.DataError(f"{faces.source}: {len(faces)} images is less than one "
                    f"batch of {batch_size}")
  return steps


def make_train_dataset(faces: faceset.FaceSet, batch_size: int, *, seed: int,
                       start_step: int = 0, num_steps: int | None = None,
                       flip: bool = True,
                       same_target_rate: float = 0.0) -> tf.data.Dataset:
  """Shuffled training batches, reproducible from (seed, global step).

  Epoch e visits the images in the order stateless_shuffle(range(N), [seed, e])
  in full batches; global batch b = e * steps_per_epoch + i. The stream starts
  at batch `start_step`, so a resumed run sees exactly the batches it would
  have seen, and yields `num_steps` batches (None: forever).

  Targets: with probability `same_target_rate` an example's target is its own
  emotion (G is asked for the emotion the face already shows, as a user asking a
  smiling face for Happy; 1/K is a uniform draw over all K emotions, as the
  official StarGAN's permuted labels roughly are), otherwise one of the other
  emotions, uniformly.

  Yields:
    (images float32 [B, H, W, 1] in [-1, 1], label_org int32 [B],
     label_trg int32 [B]), both the targets and the horizontal flips drawn from
    (seed, b); label_trg != label_org for every example when same_target_rate is 0.
  """
  num_classes = _check_classes(faces)
  if not 0.0 <= same_target_rate <= 1.0:
    raise ValueError(f"same_target_rate must be in [0, 1], got {same_target_rate}")
  spe = steps_per_epoch(faces, batch_size)
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}")
  with tf.device("/cpu:0"):  # The input pipeline runs on the host anyway.
    images = tf.convert_to_tensor(faces.images)
    labels = tf.convert_to_tensor(faces.labels, tf.int32)
  n = len(faces)
  seed = int(seed)

  def epoch_batches(epoch):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int32),
        seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    index = tf.reshape(order[:spe * batch_size], [spe, batch_size])
    step = epoch * spe + tf.range(spe, dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices((step, index))

  def make_batch(step, index):
    target_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(
        tf.stack([tf.constant(seed, tf.int64), step]), num=2))
    label_org = tf.gather(labels, index)
    label_trg = _shifted_targets(label_org, num_classes, target_seed, same_target_rate)
    batch = tf.gather(images, index)
    if flip:
      mirror = tf.random.stateless_uniform([batch_size], seed=flip_seed) < 0.5
      batch = tf.where(mirror[:, None, None, None],
                       tf.reverse(batch, axis=[2]), batch)
    shape = (batch_size,) + faces.images.shape[1:]
    return (tf.ensure_shape(_scale(batch), shape),
            tf.ensure_shape(label_org, [batch_size]),
            tf.ensure_shape(label_trg, [batch_size]))

  start_epoch, offset = divmod(int(start_step), spe)
  ds = tf.data.Dataset.counter(start_epoch).flat_map(epoch_batches)
  ds = ds.skip(offset)
  if num_steps is not None:
    ds = ds.take(num_steps)
  ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(faces: faceset.FaceSet, batch_size: int, *,
                      seed: int = 0) -> tf.data.Dataset:
  """Every image once, in order, batched (last batch may be short), no flip.

  Targets are fixed by `seed` and always differ from the source label.
  """
  num_classes = _check_classes(faces)
  rng = np.random.default_rng(seed)
  shift = rng.integers(1, num_classes, size=len(faces), dtype=np.int32)
  targets = ((faces.labels + shift) % num_classes).astype(np.int32)
  ds = tf.data.Dataset.from_tensor_slices(
      (faces.images, faces.labels.astype(np.int32), targets))
  ds = ds.batch(batch_size).map(lambda x, org, trg: (_scale(x), org, trg))
  return ds.prefetch(tf.data.AUTOTUNE)


def _check_classes(faces: faceset.FaceSet) -> int:
  num_classes = len(faces.emotions)
  if num_classes < 2:
    raise faceset.DataError(f"{faces.source}: translating needs at least 2 emotions, "
                    f"got {', '.join(faces.emotions)}")
  return num_classes


def _shifted_targets(label_org, num_classes: int, seed, same_rate: float = 0.0):
  """Random target classes: the source class with probability same_rate, else another."""
  shift = tf.random.stateless_uniform(tf.shape(label_org), seed=seed, minval=1,
                                      maxval=num_classes, dtype=tf.int32)
  if same_rate:  # A second draw, so rate 0 keeps the targets of earlier runs exactly.
    same_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    keep = tf.random.stateless_uniform(tf.shape(label_org), seed=same_seed) < same_rate
    shift = tf.where(keep, 0, shift)
  return (label_org + shift) % num_classes


def _scale(images):
  return tf.cast(images, tf.float32) / 127.5 - 1.0
