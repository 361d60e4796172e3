"""Image and distribution metrics, as pure numpy functions (OpenCV for the blur).

Per image pair (images uint8 [N, H, W, 1] or float; `data_range` is the pixel span):
  l1, psnr, ssim (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03),
  pixel_correlation (Pearson r of the pixels; -1 for an inverted face).
Between two sets of feature vectors [N, D]:
  frechet_distance (FID's formula on whatever features are given; frechet_distance_moments
  from each set's mean and covariance),
  kid (squared MMD with the cubic polynomial kernel, unbiased, averaged over subsets).
"""

import cv2
import numpy as np


def _flat(images) -> np.ndarray:
  x = np.asarray(images, np.float64)
  return x.reshape(len(x), -1)


def l1(a, b) -> np.ndarray:
  """Mean absolute difference per image, in the images' units."""
  return np.abs(_flat(a) - _flat(b)).mean(axis=1)


def psnr(a, b, data_range: float = 255.0) -> np.ndarray:
  """Peak signal-to-noise ratio per image in dB (capped at 100 for identical images)."""
  mse = ((_flat(a) - _flat(b)) ** 2).mean(axis=1)
  with np.errstate(divide="ignore"):
    value = 10 * np.log10(data_range ** 2 / np.maximum(mse, 1e-20))
  return np.minimum(value, 100.0)


def pixel_correlation(a, b) -> np.ndarray:
  """Pearson correlation of the pixels of each pair; 0 where an image is constant."""
  x, y = _flat(a), _flat(b)
  x = x - x.mean(axis=1, keepdims=True)
  y = y - y.mean(axis=1, keepdims=True)
  denom = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
  return np.where(denom > 0, (x * y).sum(axis=1) / np.maximum(denom, 1e-30), 0.0)


def _blur(x: np.ndarray) -> np.ndarray:
  return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)


def ssim(a, b, data_range: float = 255.0) -> np.ndarray:
  """Mean structural similarity per image pair (gray; a channel axis of 1 is fine)."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  out = np.empty(len(a))
  for i in range(len(a)):
    x, y = a[i].reshape(a.shape[1], a.shape[2]), b[i].reshape(b.shape[1], b.shape[2])
    mx, my = _blur(x), _blur(y)
    sxx = _blur(x * x) - mx * mx
    syy = _blur(y * y) - my * my
    sxy = _blur(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    out[i] = (num / den).mean()
  return out


def sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
  """The symmetric square root of a positive semi-definite matrix (negative round-off
  eigenvalues clipped to 0)."""
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(features_a, features_b) -> float:
  """|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^1/2) between two feature sets.

  tr((C_a C_b)^1/2) is computed as tr((C_a^1/2 C_b C_a^1/2)^1/2), which has the same
  eigenvalues and stays symmetric (no complex parts from round-off).
  """
  a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f"feature sets must be [N, D] with equal D: {a.shape} vs {b.shape}")
  if len(a) < 2 or len(b) < 2:
    raise ValueError("each feature set needs at least 2 vectors")
  return frechet_distance_moments(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                  np.cov(b, rowvar=False))


def frechet_distance_moments(mu_a, cov_a, mu_b, cov_b, root_a=None) -> float:
  """frechet_distance from each set's mean and covariance (`root_a`: C_a^1/2 when known,
  for many sets compared with one)."""
  root_a = sqrtm_psd(cov_a) if root_a is None else root_a
  middle = root_a @ cov_b @ root_a
  middle = np.linalg.eigvalsh((middle + middle.T) / 2)
  value = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(
      np.clip(middle, 0, None)).sum()
  return float(max(value, 0.0))


def kid(features_a, features_b, subsets: int = 20, subset_size: int = 500,
        seed: int = 0) -> tuple[float, float]:
  """Kernel inception distance on the given features: (mean, std) over random subsets of
  min(subset_size, N_a, N_b) vectors; unbiased MMD^2, so ~0 for two samples of one set."""
  a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
  n = min(subset_size, len(a), len(b))
  if n < 2:
    raise ValueError("KID needs at least 2 vectors in each set")
  d = a.shape[1]
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(subsets):
    x = a[rng.choice(len(a), n, replace=False)]
    y = b[rng.choice(len(b), n, replace=False)]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    mmd = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) +
           (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())
    values.append(mmd)
  return float(np.mean(values)), float(np.std(values))
