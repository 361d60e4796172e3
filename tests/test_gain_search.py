import itertools

import numpy as np
import pytest

from faceexpr_tf.evaluation import gain_search
from faceexpr_tf.evaluation import metrics


def _handmade(seed=0):
  """Two emotions, three factors, made-up measurements with real feature samples: toward
  emotion t at factor j, target accuracy acc[t][j], SSIM ssim[t][j], features shifted by
  shift[t][j]. Returns (Measured, brute) where brute(aims) scores every combination
  directly from the samples and returns ((FD / floor, change), gains) of the best one."""
  acc = [[0.60, 0.75, 0.90], [0.70, 0.80, 0.95]]
  ssim = [[0.95, 0.92, 0.88], [0.94, 0.91, 0.87]]
  shift = [[1.5, 0.3, 0.9], [1.2, 0.8, 0.1]]
  rng = np.random.default_rng(seed)
  real = rng.normal(0, 1, (400, 3))
  samples = {(t, j): rng.normal(0, 1, (150, 3)) + [shift[t][j], 0, 0]
             for t in range(2) for j in range(3)}
  grid = (0.8, 1.0, 1.2)
  m = gain_search.Measured(
      grid=grid, num_classes=2, classes=np.arange(2),
      hits=np.asarray([[[0, round(100 * a)] for a in acc[0]],
                       [[round(100 * a), 0] for a in acc[1]]]),
      counts=np.asarray([[0, 100], [100, 0]]),
      ssim_sum=100 * np.asarray(ssim),
      feature_sum=np.asarray([[samples[t, j].sum(0) for j in range(3)] for t in range(2)]),
      feature_outer=np.asarray([[samples[t, j].T @ samples[t, j] for j in range(3)]
                                for t in range(2)]),
      realism_count=np.asarray([150, 150]), real_mean=real.mean(0),
      real_cov=np.cov(real, rowvar=False), floor=0.05, judge_real_accuracy=0.7)

  def brute(aims):
    """Every combination scored directly from the samples: the lowest FD meeting `aims`."""
    rows = []
    for j0, j1 in itertools.product(range(3), repeat=2):
      fd = metrics.frechet_distance(real, np.concatenate([samples[0, j0], samples[1, j1]]))
      a = (acc[0][j0] + acc[1][j1]) / 2
      rows.append(((fd / 0.05, abs(grid[j0] - 1) + abs(grid[j1] - 1)), [grid[j0], grid[j1]],
                   a >= aims.min_accuracy_vs_real * 0.7 - 1e-9
                   and (ssim[0][j0] + ssim[1][j1]) / 2 >= aims.min_ssim - 1e-9
                   and min(acc[0][j0], acc[1][j1]) >= aims.min_pair_accuracy - 1e-9
                   and fd / 0.05 <= aims.max_fd_ratio))
    ok = sorted((key, gains) for key, gains, good in rows if good)
    return ok[0] if ok else None
  return m, brute


@pytest.mark.parametrize("aims", [
    gain_search.Aims(min_ssim=0.9, min_pair_accuracy=0.7, max_fd_ratio=1000),
    gain_search.Aims(min_ssim=0.0, min_pair_accuracy=0.0, max_fd_ratio=1000),
    gain_search.Aims(min_ssim=0.9, min_pair_accuracy=0.75, max_fd_ratio=1000),
    gain_search.Aims(min_ssim=0.89, min_pair_accuracy=0.7, max_fd_ratio=1000,
                     min_accuracy_vs_real=1.2),
])
def test_search_chooses_the_most_real_combination_that_meets_the_aims(aims):
  m, brute = _handmade()
  found = gain_search.search(m, aims)
  expected = brute(aims)
  assert expected is not None
  assert found["gains"] == expected[1]
  assert found["scores"]["fd_ratio"] == pytest.approx(expected[0][0], rel=1e-6)
  # The aims bind: the plain lowest FD over all combinations is not always the answer.
  if aims.min_ssim == 0.9 and aims.min_pair_accuracy == 0.7:
    assert found["gains"] != brute(gain_search.Aims(0.0, 0.0, 1000))[1]


def test_search_that_meets_no_combination_reports_how_far_each_aim_gets():
  m, brute = _handmade()
  aims = gain_search.Aims(min_ssim=0.93, min_pair_accuracy=0.8, max_fd_ratio=1000)
  assert brute(aims) is None
  found = gain_search.search(m, aims)
  assert found["gains"] is None and found["scores"] is None
  frontier = found["frontier"]
  # With the pairs (>= 80%) and accuracy met, the best SSIM is (1.2, 1.0)'s 0.895; with
  # SSIM (>= 0.93) and accuracy (>= 70%) met, the best lowest pair is (1.0, 0.8)'s 70%.
  assert frontier["ssim"]["gains"] == [1.2, 1.0]
  assert frontier["ssim"]["ssim"] == pytest.approx(0.895)
  assert frontier["pair"]["gains"] == [1.0, 0.8]
  assert frontier["pair"]["lowest_pair"] == pytest.approx(0.7)
  # Accuracy cannot be traded for the other two: nothing reaches SSIM 0.93 and pairs 80%.
  assert frontier["accuracy"] is None and frontier["fd"] is None


def test_realism_bound_never_exceeds_the_fd():
  m, _ = _handmade()
  realism = gain_search._Realism(m)
  combos = np.asarray(list(itertools.product(range(3), repeat=2)))
  bound = realism.lower_bound(combos)
  assert all(b <= realism(c) + 1e-9 for b, c in zip(bound, combos))
  assert bound.max() > 0
