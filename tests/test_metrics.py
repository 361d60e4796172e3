import numpy as np
import pytest
from skimage.metrics import structural_similarity

from faceexpr_tf.evaluation import metrics


def faces(n=4, seed=0):
  rng = np.random.default_rng(seed)
  base = rng.integers(0, 256, (n, 48, 48, 1)).astype(np.uint8)
  return base


def test_ssim_of_identical_images_is_one():
  x = faces()
  np.testing.assert_allclose(metrics.ssim(x, x), 1.0, atol=1e-12)


def test_ssim_matches_scikit_image_gaussian_ssim():
  x = faces(3, 1)
  noise = np.random.default_rng(2).normal(0, 25, x.shape)
  y = np.clip(x + noise, 0, 255).astype(np.uint8)
  ours = metrics.ssim(x, y)
  for i in range(3):
    ref = structural_similarity(x[i, ..., 0], y[i, ..., 0], gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert ours[i] == pytest.approx(ref, abs=0.02)
  assert np.all(ours < 0.99)


def test_pixel_correlation_flags_inversion():
  x = faces()
  np.testing.assert_allclose(metrics.pixel_correlation(x, 255 - x), -1.0, atol=1e-9)
  np.testing.assert_allclose(metrics.pixel_correlation(x, x * 0.5 + 10), 1.0, atol=1e-9)


def test_psnr_and_l1_known_values():
  x = np.zeros((1, 4, 4, 1))
  y = np.full((1, 4, 4, 1), 10.0)
  assert metrics.l1(x, y)[0] == pytest.approx(10.0)
  assert metrics.psnr(x, y)[0] == pytest.approx(10 * np.log10(255 ** 2 / 100))
  assert metrics.psnr(x, x)[0] == 100.0


def test_frechet_distance_of_a_set_with_itself_is_zero():
  f = np.random.default_rng(0).normal(size=(500, 16))
  assert metrics.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_gaussians_matches_the_formula():
  # Diagonal covariances: FD = |mu_a - mu_b|^2 + sum (sqrt(var_a) - sqrt(var_b))^2.
  rng = np.random.default_rng(1)
  a = rng.normal(0, 1, (200_000, 3))
  b = rng.normal(0, 1, (200_000, 3)) * np.array([2.0, 1.0, 3.0]) + np.array([1.0, 0, 0])
  expected = 1.0 + (2 - 1) ** 2 + 0 + (3 - 1) ** 2
  assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_kid_is_unbiased_on_one_distribution_and_positive_between_two():
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
  same, std = metrics.kid(a, b, subsets=30, subset_size=200)
  assert abs(same) < 3 * std + 1e-3
  shifted, _ = metrics.kid(a, b + 1.0, subsets=30, subset_size=200)
  assert shifted > 20 * max(abs(same), 1e-4)


def test_frechet_distance_from_moments_is_the_same_distance():
  rng = np.random.default_rng(3)
  a, b = rng.normal(0, 1, (300, 6)), rng.normal(0.4, 1.3, (200, 6))
  direct = metrics.frechet_distance(a, b)
  moments = metrics.frechet_distance_moments(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                             np.cov(b, rowvar=False))
  assert moments == pytest.approx(direct, rel=1e-10) and direct > 0.5
