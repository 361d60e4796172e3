"""Differentiable augmentation of D's inputs (DiffAugment, Zhao et al. 2020), keras.ops only.

The same random transform family is applied to real and generated images before D sees
them, in D's update and in G's, so D cannot overfit a small data set by memorising real
faces, and G gets gradients through the transform (every op here is differentiable in the
image). Policies, as the paper's, for gray or colour images in [-1, 1]:

  color        brightness + U(-0.5, 0.5); contrast x U(0.5, 1.5) about each image's mean
               (and saturation x U(0, 2) about the gray value for colour images)
  translation  shift by up to 1/8 of the side in each axis, filling with 0 (mid-gray)
  cutout       zero a square of half the side at a random centre

Each image draws its own parameters from a keras.random.SeedGenerator, so a run that
checkpoints the generator's state resumes the same stream.
"""

from __future__ import annotations

import keras
from keras import ops

POLICIES = ("color", "translation", "cutout")


class PolicyError(ValueError):
  pass


def parse_policy(text) -> tuple[str, ...]:
  """'color,translation' or ('color', 'translation') -> ('color', 'translation');
  '', () or None -> () (off)."""
  parts = (text or "").split(",") if isinstance(text, str) or text is None else text
  names = tuple(n.strip() for n in parts if n.strip())
  unknown = [n for n in names if n not in POLICIES]
  if unknown:
    raise PolicyError(f"--diffaug: unknown policy {', '.join(map(repr, unknown))} "
                      f"(choose from {', '.join(POLICIES)}, comma-separated, or '' for off)")
  if len(set(names)) != len(names):
    raise PolicyError(f"--diffaug: a policy is named twice in {text!r}")
  return names


# --- deterministic transforms (parameters given per image) ----------------------------

def _shift_matrix(shift, size):
  """(N, size, size) matrices S with S[n, i, j] = 1 where j == i - shift[n] is in range,
  so S @ x moves rows down by `shift` (zeros come in)."""
  rows = ops.arange(size, dtype="int32")[None, :] - ops.cast(shift, "int32")[:, None]
  inside = ops.logical_and(rows >= 0, rows < size)
  picked = ops.one_hot(ops.clip(rows, 0, size - 1), size)
  return picked * ops.cast(inside, picked.dtype)[:, :, None]


def translate(x, shift_y, shift_x):
  """Moves image n down by shift_y[n] and right by shift_x[n] pixels (integers), filling
  with 0. As matrix products, so gradients flow to the pixels that stay in view."""
  _, h, w, c = x.shape
  sy = ops.cast(_shift_matrix(shift_y, h), x.dtype)
  sx = ops.cast(_shift_matrix(shift_x, w), x.dtype)
  channels_first = ops.transpose(x, (0, 3, 1, 2))                  # (N, C, H, W)
  moved = ops.matmul(ops.matmul(sy[:, None], channels_first),
                     ops.transpose(sx, (0, 2, 1))[:, None])
  return ops.transpose(moved, (0, 2, 3, 1))


def cutout_mask(center_y, center_x, height, width, size):
  """(N, H, W, 1): 0 inside a size x size square whose top-left corner is
  (center - size // 2), 1 elsewhere."""
  ys = ops.arange(height, dtype="int32")[None, :] - ops.cast(center_y, "int32")[:, None]
  xs = ops.arange(width, dtype="int32")[None, :] - ops.cast(center_x, "int32")[:, None]
  lo, hi = -(size // 2), size - size // 2
  in_y = ops.logical_and(ys >= lo, ys < hi)[:, :, None]
  in_x = ops.logical_and(xs >= lo, xs < hi)[:, None, :]
  return ops.cast(ops.logical_not(ops.logical_and(in_y, in_x)), "float32")[..., None]


def color(x, brightness, contrast, saturation=None):
  """Per image: x + brightness, then (x - mean) * contrast + mean; for colour images the
  saturation factor scales each pixel's distance from its gray value first."""
  b = ops.cast(brightness, x.dtype)[:, None, None, None]
  x = x + b
  if saturation is not None and x.shape[-1] > 1:
    gray = ops.mean(x, axis=-1, keepdims=True)
    x = (x - gray) * ops.cast(saturation, x.dtype)[:, None, None, None] + gray
  mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) * ops.cast(contrast, x.dtype)[:, None, None, None] + mean


# --- random augmentation --------------------------------------------------------------

def diff_augment(x, policy, seed):
  """x (N, H, W, C) augmented by each policy in order; `seed` a SeedGenerator (or int)."""
  if not policy:
    return x
  n = ops.shape(x)[0]
  _, h, w, _ = x.shape
  for name in policy:
    if name == "color":
      brightness = keras.random.uniform((n,), -0.5, 0.5, seed=seed)
      saturation = keras.random.uniform((n,), 0.0, 2.0, seed=seed)
      contrast = keras.random.uniform((n,), 0.5, 1.5, seed=seed)
      x = color(x, brightness, contrast, saturation)
    elif name == "translation":
      reach_y, reach_x = h // 8, w // 8
      shift_y = keras.random.randint((n,), -reach_y, reach_y + 1, seed=seed)
      shift_x = keras.random.randint((n,), -reach_x, reach_x + 1, seed=seed)
      x = translate(x, shift_y, shift_x)
    elif name == "cutout":
      size = h // 2
      center_y = keras.random.randint((n,), 0, h + (1 - size % 2), seed=seed)
      center_x = keras.random.randint((n,), 0, w + (1 - size % 2), seed=seed)
      x = x * ops.cast(cutout_mask(center_y, center_x, h, w, size), x.dtype)
    else:
      raise PolicyError(f"unknown DiffAugment policy {name!r}")
  return x
