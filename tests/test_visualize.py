import numpy as np

from faceexpr_tf.data import visualize

GAP = visualize._GAP


def test_make_grid_layout_one_row():
  cells = np.concatenate([np.zeros((1, 48, 48, 1), np.uint8),
                          np.full((2, 48, 48, 1), 200, np.uint8)])[None]
  grid = visualize.make_grid(cells, ["input", "Happy", "Surprise"], scale=2)
  assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
  height, width = grid.shape[:2]
  assert width == 3 * 96 + 4 * GAP and height > 96
  body = grid[height - GAP - 96:height - GAP]
  assert (body[:, GAP:GAP + 96] == 0).all()
  assert (body[:, -GAP - 96:-GAP] == 200).all()
  header = grid[:height - GAP - 96]
  assert (header < 128).any() and (header == 255).mean() > 0.7  # dark text on white


def test_make_grid_rows_keep_their_pixels():
  cells = np.arange(3 * 2 * 4 * 4, dtype=np.uint8).reshape(3, 2, 4, 4, 1)
  grid = visualize.make_grid(cells, ["a", "b"], scale=1, separator_after=0)
  header = grid.shape[0] - 3 * (4 + GAP)
  for i in range(3):
    for j in range(2):
      top, left = header + i * (4 + GAP), GAP + j * (4 + GAP)
      np.testing.assert_array_equal(grid[top:top + 4, left:left + 4, 0], cells[i, j, ..., 0])
