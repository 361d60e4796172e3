"""Pictures: grids of faces with titles, face boxes on photos, PNG files (OpenCV)."""

import cv2
import numpy as np

from faceexpr_tf import errors

_HEADER_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GAP = 4  # pixels between grid cells
_OVERVIEW_MAX_SIDE = 800


def to_rgb(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 3:
    return image
  return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)


def enlarge(face: np.ndarray, size: int, interpolation=cv2.INTER_CUBIC) -> np.ndarray:
  """A model-sized face -> RGB uint8 [size, size, 3]."""
  return cv2.resize(to_rgb(face), (size, size), interpolation=interpolation)


def _put_centered(canvas, text, center_x, height, max_width):
  scale = 0.6
  (width, _), _ = cv2.getTextSize(text, _HEADER_FONT, scale, 1)
  if width > max_width:
    scale *= max_width / width
  (width, text_h), _ = cv2.getTextSize(text, _HEADER_FONT, scale, 1)
  origin = (int(center_x - width / 2), int((height + text_h) / 2))
  cv2.putText(canvas, text, origin, _HEADER_FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def make_grid(cells: np.ndarray, titles, scale: int = 4, separator_after: int = 1
               ) -> np.ndarray:
  """Rows of faces under one header of column titles: RGB uint8.

  Args:
    cells: uint8 [rows, columns, S, S, C].
    titles: one per column.
    scale: enlargement of each cell (nearest neighbour, so no pixel is invented).
    separator_after: a gray rule after this many columns (the inputs; the rest are the
      model's), 0 for none.
  """
  rows, columns, side = cells.shape[0], cells.shape[1], cells.shape[2] * scale
  header = 28
  width = columns * side + (columns + 1) * _GAP
  canvas = np.full((header + rows * (side + _GAP), width, 3), 255, np.uint8)
  for j, title in enumerate(titles):
    _put_centered(canvas, title, _GAP + j * (side + _GAP) + side / 2, header, side - 4)
  for i in range(rows):
    top = header + i * (side + _GAP)
    for j in range(columns):
      left = _GAP + j * (side + _GAP)
      canvas[top:top + side, left:left + side] = enlarge(cells[i, j], side, cv2.INTER_NEAREST)
  if separator_after:
    rule = separator_after * (side + _GAP) + _GAP // 2 - 1
    canvas[header:, rule:rule + 2] = 160
  return canvas


def draw_boxes(image: np.ndarray, boxes) -> np.ndarray:
  """The photo (downscaled to at most 800 px) with numbered face boxes: RGB uint8."""
  rgb = to_rgb(image)
  ratio = min(1.0, _OVERVIEW_MAX_SIDE / max(rgb.shape[:2]))
  if ratio < 1.0:
    rgb = cv2.resize(rgb, (round(rgb.shape[1] * ratio), round(rgb.shape[0] * ratio)),
                     interpolation=cv2.INTER_AREA)
  else:
    rgb = rgb.copy()
  thickness = max(1, round(max(rgb.shape[:2]) / 300))
  for i, (x, y, w, h) in enumerate(boxes):
    p1 = (round(x * ratio), round(y * ratio))
    p2 = (round((x + w) * ratio), round((y + h) * ratio))
    cv2.rectangle(rgb, p1, p2, (255, 64, 0), thickness)
    # The number sits above the box (inside it only at the top edge), off the face.
    label_y = p1[1] - 4 * thickness if p1[1] > 24 * thickness else p1[1] + 18 * thickness
    cv2.putText(rgb, str(i), (p1[0] + 2, label_y), _HEADER_FONT, 0.6 * thickness,
                (255, 64, 0), thickness, cv2.LINE_AA)
  return rgb


def write_png(path: str, rgb: np.ndarray):
  image = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
  if not cv2.imwrite(path, image):
    raise errors.UserError(f"{path}: cannot write (is the --out folder writable?)")


def confusion_image(matrix: np.ndarray, names, title: str = "", cell: int = 72
                    ) -> np.ndarray:
  """A confusion matrix (counts [true, predicted]) as an RGB picture: each cell shaded by
  its row share and labelled with the share and count; rows are true classes."""
  matrix = np.asarray(matrix)
  k = len(names)
  shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
  left, top = 96, 56
  canvas = np.full((top + k * cell + 8, left + k * cell + 8, 3), 255, np.uint8)
  cv2.putText(canvas, title or "rows: true, columns: predicted", (4, 18), _HEADER_FONT,
              0.45, (0, 0, 0), 1, cv2.LINE_AA)
  for j, name in enumerate(names):
    _put_centered(canvas[24:top], name, left + j * cell + cell / 2, top - 24, cell - 4)
  for i, name in enumerate(names):
    y = top + i * cell
    cv2.putText(canvas, name[:10], (4, y + cell // 2 + 5), _HEADER_FONT, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    for j in range(k):
      x = left + j * cell
      shade = int(255 - 200 * shares[i, j])
      canvas[y + 1:y + cell - 1, x + 1:x + cell - 1] = (shade, shade, 255)
      ink = (255, 255, 255) if shares[i, j] > 0.55 else (0, 0, 0)
      for line, text in enumerate((f"{100 * shares[i, j]:.0f}%", str(int(matrix[i, j])))):
        (tw, _), _ = cv2.getTextSize(text, _HEADER_FONT, 0.45, 1)
        cv2.putText(canvas, text, (int(x + cell / 2 - tw / 2), y + cell // 2 - 4 + 18 * line),
                    _HEADER_FONT, 0.45, ink, 1, cv2.LINE_AA)
  return canvas
