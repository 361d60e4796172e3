"""Procedural synthetic faces whose expression translation is known exactly.

Every identity is a fixed set of random face parameters (shape, tones, hair,
eye spacing, nose, mouth size, a low-amplitude noise texture). An expression
changes only the expression features: brows, eye opening and mouth. So the
"true" translation of an identity from one expression to another is simply
the same identity rendered with the other expression, which makes this set a
quick, fully controlled stand-in for FER2013.

Geometry lives in normalised image coordinates (x, y in [-1, 1], y down), so
any `image_size` works. Shapes are drawn as approximate signed distance fields
turned into coverage over one pixel, which anti-aliases every edge.
"""

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.data import faceset

DEFAULT_EMOTIONS = emotions_lib.DEFAULT_EMOTIONS

# Texture grids are stored per identity at a fixed resolution and upsampled at
# render time, so one identity looks the same at every image size.
_COARSE_TEXTURE = 6
_FINE_TEXTURE = 24
# Identities are rendered in chunks to keep temporaries small (cache friendly).
_CHUNK = 512
_DARK = 28.0  # Ink for brows, pupils, eye outlines and the open mouth.
_SCLERA = 232.0
_O_ASPECT = 0.75  # Width / height of the surprised "O" mouth.


@dataclasses.dataclass(frozen=True, eq=False)
class Identities:
  """Per-identity face parameters; every field has the identity as first axis.

  Lengths are in normalised units (the image spans [-1, 1]); positions of eyes,
  nose and mouth are relative to the face centre. Gray levels are 0..255.
  """
  face_x: np.ndarray  # Face centre offset.
  face_y: np.ndarray
  face_w: np.ndarray  # Face ellipse semi-axes.
  face_h: np.ndarray
  skin: np.ndarray
  background: np.ndarray
  light: np.ndarray  # Left-right lighting gradient of the face, gray levels.
  hair: np.ndarray
  hairline: np.ndarray  # Hairline height as a fraction of face_h above centre.
  hair_curve: np.ndarray  # >0: hair comes lower at the temples.
  eye_dx: np.ndarray  # Half the distance between the eye centres.
  eye_y: np.ndarray
  eye_w: np.ndarray  # Eye semi-axes at neutral opening.
  eye_h: np.ndarray
  brow_gap: np.ndarray  # Neutral brow height above the eye centre.
  brow_len: np.ndarray  # Half length of a brow.
  brow_thick: np.ndarray  # Half thickness of a brow.
  nose_y: np.ndarray
  nose_w: np.ndarray  # Half distance between nostrils.
  mouth_y: np.ndarray
  mouth_w: np.ndarray  # Half width of the neutral mouth.
  lip_thick: np.ndarray  # Half thickness of the closed mouth line.
  texture_coarse: np.ndarray  # [n, 6, 6] gray-level offsets.
  texture_fine: np.ndarray  # [n, 24, 24] gray-level offsets.

  def __len__(self) -> int:
    return int(self.face_x.shape[0])

  def subset(self, index) -> "Identities":
    return Identities(**{f.name: getattr(self, f.name)[index]
                         for f in dataclasses.fields(self)})


class _Expression(NamedTuple):
  """How an expression moves the features, relative to neutral."""
  eye_open: float  # Multiplies the eye height.
  brow_raise: float  # Moves both brows up.
  brow_tilt: float  # >0: inner ends down (angry V); <0: inner ends up (sad).
  brow_arch: float  # >0: brow middle up.
  mouth_curve: float  # >0: corners up (smile); <0: corners down (frown).
  mouth_open: float  # Half height of the opening at the mouth centre.
  mouth_width: float  # Multiplies the identity's mouth width.
  mouth_tilt: float  # >0: the image-right corner goes up (one-sided sneer).
  mouth_round: float = 0.0  # Half height of an added oval "O" mouth.


# Bold on purpose: a small GAN on a CPU has to pick these up in minutes.
_EXPRESSIONS = {
    "Neutral": _Expression(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "Angry": _Expression(0.55, -0.04, 0.11, 0.0, -0.07, 0.035, 0.95, 0.0),
    "Happy": _Expression(0.5, 0.03, 0.0, 0.03, 0.17, 0.065, 1.15, 0.0),
    "Sad": _Expression(0.8, 0.02, -0.10, 0.0, -0.13, 0.0, 0.9, 0.0),
    "Surprise": _Expression(1.7, 0.13, 0.0, 0.05, 0.0, 0.0, 0.4, 0.0, 0.17),
    "Fear": _Expression(1.45, 0.09, -0.07, 0.02, -0.05, 0.06, 1.1, 0.0),
    "Disgust": _Expression(0.6, -0.04, 0.05, 0.0, -0.04, 0.02, 0.9, 0.08),
}


def sample_identities(n: int, seed: int) -> Identities:
  """Draws `n` random identities; the same (n, seed) always gives the same."""
  rng = np.random.default_rng(seed)

  def uniform(lo, hi):
    return rng.uniform(lo, hi, size=n).astype(np.float32)

  skin = uniform(145.0, 215.0)
  # Keep the face clearly brighter than the background whatever the draw.
  background = (15.0 + rng.uniform(0.0, 1.0, size=n) * (skin - 70.0)).astype(
      np.float32)
  return Identities(
      face_x=uniform(-0.05, 0.05),
      face_y=uniform(-0.02, 0.06),
      face_w=uniform(0.62, 0.74),
      face_h=uniform(0.80, 0.90),
      skin=skin,
      background=background,
      light=uniform(-18.0, 18.0),
      hair=uniform(35.0, 115.0),
      hairline=uniform(0.58, 0.78),
      hair_curve=uniform(-0.1, 0.35),
      eye_dx=uniform(0.25, 0.31),
      eye_y=uniform(-0.10, -0.03),
      eye_w=uniform(0.10, 0.13),
      eye_h=uniform(0.065, 0.08),
      brow_gap=uniform(0.15, 0.19),
      brow_len=uniform(0.12, 0.16),
      brow_thick=uniform(0.06, 0.075),
      nose_y=uniform(0.14, 0.22),
      nose_w=uniform(0.055, 0.085),
      mouth_y=uniform(0.40, 0.48),
      mouth_w=uniform(0.19, 0.25),
      lip_thick=uniform(0.05, 0.062),
      texture_coarse=rng.normal(
          0.0, 2.5, size=(n, _COARSE_TEXTURE, _COARSE_TEXTURE)).astype(
              np.float32),
      texture_fine=rng.normal(
          0.0, 1.0, size=(n, _FINE_TEXTURE, _FINE_TEXTURE)).astype(np.float32),
  )


def render(identities: Identities, emotion_names: Sequence[str],
           image_size: int = 48) -> np.ndarray:
  """Renders every identity in every expression.

  Args:
    identities: from `sample_identities`.
    emotion_names: FER2013 emotion names, any case.
    image_size: output height and width in pixels.

  Returns:
    uint8 [len(identities), len(emotion_names), image_size, image_size, 1].
  """
  names = [emotions_lib.canonical(name) for name in emotion_names]
  expressions = [_EXPRESSIONS[name] for name in names]
  n, k = len(identities), len(expressions)
  out = np.empty((n, k, image_size, image_size, 1), np.uint8)
  for start in range(0, n, _CHUNK):
    chunk = identities.subset(slice(start, start + _CHUNK))
    out[start:start + len(chunk), ..., 0] = _render_chunk(
        chunk, expressions, image_size)
  return out


def synthetic_faceset(num_identities: int, seed: int,
                      emotions: Sequence[str] = DEFAULT_EMOTIONS,
                      image_size: int = 48):
  """Synthetic faces as a `faceset.FaceSet`, identity-major.

  Image i shows identity i // K in expression i % K, K = len(emotions), and
  its class id is that expression's index in `emotions`.
  """
  names = emotions_lib.parse_emotions(emotions)
  images = render(sample_identities(num_identities, seed), names, image_size)
  k = len(names)
  return faceset.FaceSet(
      images=images.reshape((num_identities * k,) + images.shape[2:]),
      labels=np.tile(np.arange(k, dtype=np.int32), num_identities),
      emotions=names,
      source=f"synthetic ({num_identities} identities, seed {seed})",
      identities=np.repeat(np.arange(num_identities, dtype=np.int32), k),
  )


# ---------------------------------------------------------------------------
# Rendering internals. Arrays are [n, rows, cols]; per-identity scalars are
# reshaped to [n, 1, 1] so that x ([1, 1, cols]) and y ([1, rows, 1]) broadcast.


def _col(values: np.ndarray) -> np.ndarray:
  return np.asarray(values, np.float32)[:, None, None]


def _coverage(sd: np.ndarray, pixel: float) -> np.ndarray:
  """Signed distance (negative inside) -> fraction of the pixel covered."""
  return np.clip(0.5 - sd * (1.0 / pixel), 0.0, 1.0)


def _paint(img: np.ndarray, cover: np.ndarray, level) -> None:
  img += cover * (level - img)


def _ellipse_sd(dx, dy, a, b):
  """Approximate signed distance to an axis-aligned ellipse (exact near it)."""
  ua, ub = dx / a, dy / b
  k = np.sqrt(ua * ua + ub * ub)
  grad = np.sqrt((ua / a) ** 2 + (ub / b) ** 2) + 1e-6
  return (k - 1.0) * k / grad


def _stroke_sd(x, y, x0, half_len, y0, a1, a2, half_thick, half_gap):
  """Signed distance to a thick parabolic stroke, optionally opened up.

  The centre line is y0 + a1 t + a2 t^2 for t = (x - x0) / half_len in [-1, 1]
  with round caps at both ends. `half_gap` opens the stroke into a filled lens
  whose half height at the middle is half_gap (elliptic profile), which is how
  open mouths are drawn.
  """
  t = (x - x0) / half_len
  tc = np.clip(t, -1.0, 1.0)
  centre = y0 + (a1 + a2 * tc) * tc
  slope = (a1 + 2.0 * a2 * tc) / half_len
  gap = half_gap * np.sqrt(1.0 - tc * tc)
  dy = y - centre
  # Vertical distance scaled by the centre line's slope. The gap's own slope
  # is left out on purpose: it is unbounded at the ends, where dividing by it
  # would smear coverage far above and below the tips.
  inner = (np.abs(dy) - gap - half_thick) / np.sqrt(1.0 + slope * slope)
  # Past an end, the distance to the end point (the gap is zero there).
  end_dx = (np.abs(t) - 1.0) * half_len
  cap = np.sqrt(end_dx * end_dx + dy * dy) - half_thick
  return np.where(np.abs(t) <= 1.0, inner, cap)


def _grid(image_size: int) -> np.ndarray:
  return (np.arange(image_size, dtype=np.float32) + 0.5) * (
      2.0 / image_size) - 1.0


def _window(lo: float, hi: float, image_size: int) -> slice:
  """Pixel index range covering normalised [lo, hi] plus a one-pixel margin."""
  scale = image_size / 2.0
  start = int(np.floor((lo + 1.0) * scale)) - 1
  stop = int(np.ceil((hi + 1.0) * scale)) + 1
  return slice(max(start, 0), min(stop, image_size))


def _upsample_matrix(size: int, grid: int) -> np.ndarray:
  """Bilinear weights [size, grid] that upsample a grid to `size` pixels."""
  pos = (np.arange(size, dtype=np.float32) + 0.5) * (grid / size) - 0.5
  pos = np.clip(pos, 0.0, grid - 1.0)
  low = np.minimum(np.floor(pos).astype(int), grid - 2)
  frac = pos - low
  weights = np.zeros((size, grid), np.float32)
  weights[np.arange(size), low] = 1.0 - frac
  weights[np.arange(size), low + 1] = frac
  return weights


def _texture(ids: Identities, image_size: int) -> np.ndarray:
  coarse = _upsample_matrix(image_size, _COARSE_TEXTURE)
  fine = _upsample_matrix(image_size, _FINE_TEXTURE)
  return (coarse @ ids.texture_coarse @ coarse.T
          + fine @ ids.texture_fine @ fine.T)


def _render_base(ids: Identities, image_size: int) -> np.ndarray:
  """Everything that belongs to the identity: background, face, hair, nose."""
  pixel = 2.0 / image_size
  g = _grid(image_size)
  x, y = g[None, None, :], g[None, :, None]
  fx, fy = _col(ids.face_x), _col(ids.face_y)
  fw, fh = _col(ids.face_w), _col(ids.face_h)
  dx, dy = x - fx, y - fy

  img = np.broadcast_to(_col(ids.background),
                        (len(ids), image_size, image_size)).copy()
  face = _coverage(_ellipse_sd(dx, dy, fw, fh), pixel)
  _paint(img, face, _col(ids.skin) + _col(ids.light) * dx / fw)

  # Hair: a slightly larger ellipse, kept above a curved hairline.
  hair_shape = _coverage(
      _ellipse_sd(dx, dy + 0.03, fw * 1.08, fh * 1.06), pixel)
  hairline = (-_col(ids.hairline) + _col(ids.hair_curve) * (dx / fw) ** 2) * fh
  _paint(img, hair_shape * _coverage(y - fy - hairline, pixel), _col(ids.hair))

  # Nose: two nostrils and a soft shadow under the tip.
  nose_y = fy + _col(ids.nose_y)
  nostrils = _coverage(
      np.sqrt((np.abs(dx) - _col(ids.nose_w)) ** 2 + (y - nose_y) ** 2)
      - 0.035, pixel)
  _paint(img, nostrils, _col(ids.skin) - 75.0)
  tip = np.clip(1.0 - _ellipse_sd(dx, y - nose_y + 0.05, _col(ids.nose_w) * 1.6,
                                  0.06) / 0.05, 0.0, 1.0)
  _paint(img, 0.25 * tip, _col(ids.skin) - 45.0)
  return img


def _paint_eyes_and_brows(img, ids: Identities, ex: _Expression,
                          image_size: int) -> None:
  pixel = 2.0 / image_size
  g = _grid(image_size)
  fx, fy = ids.face_x, ids.face_y
  outline = 0.035
  # One window holds both eyes and both brows for every identity of the chunk.
  reach = ids.eye_dx + np.maximum(ids.eye_w + outline,
                                  ids.brow_len + ids.brow_thick)
  top = (fy + ids.eye_y - ids.brow_gap - ex.brow_raise - abs(ex.brow_tilt)
         - ex.brow_arch - ids.brow_thick)
  bottom = fy + ids.eye_y + np.maximum(
      ids.eye_h * ex.eye_open + outline,
      -ids.brow_gap - ex.brow_raise + abs(ex.brow_tilt) + ids.brow_thick)
  rows = _window(float(top.min()), float(bottom.max()), image_size)
  cols = _window(float((fx - reach).min()), float((fx + reach).max()),
                 image_size)
  x, y = g[None, None, cols], g[None, rows, None]
  view = img[:, rows, cols]  # A view: painting it paints `img`.

  # Mirror about the face centre: one computation draws both sides.
  ax = np.abs(x - _col(fx))
  ey = _col(fy + ids.eye_y)
  eye_sd = _ellipse_sd(ax - _col(ids.eye_dx), y - ey, _col(ids.eye_w),
                       _col(ids.eye_h * ex.eye_open))
  _paint(view, _coverage(eye_sd - outline, pixel), _DARK)
  sclera = _coverage(eye_sd, pixel)
  _paint(view, sclera, _SCLERA)
  iris = _coverage(np.sqrt((ax - _col(ids.eye_dx)) ** 2 + (y - ey) ** 2)
                   - _col(ids.eye_w) * 0.55, pixel)
  _paint(view, np.minimum(iris, sclera), _DARK)

  # t = -1 at the inner end: +tilt pushes the inner end down.
  brow_y = ey - _col(ids.brow_gap) - ex.brow_raise - ex.brow_arch
  brow_sd = _stroke_sd(ax, y, _col(ids.eye_dx), _col(ids.brow_len), brow_y,
                       -ex.brow_tilt, ex.brow_arch, _col(ids.brow_thick), 0.0)
  _paint(view, _coverage(brow_sd, pixel), _DARK)


def _paint_mouth(img, ids: Identities, ex: _Expression,
                 image_size: int) -> None:
  pixel = 2.0 / image_size
  g = _grid(image_size)
  half_w = ids.mouth_w * ex.mouth_width
  centre_y = ids.face_y + ids.mouth_y
  spread = (abs(ex.mouth_curve) + abs(ex.mouth_tilt)
            + max(ex.mouth_open, ex.mouth_round) + ids.lip_thick)
  reach = np.maximum(half_w, ex.mouth_round * _O_ASPECT) + ids.lip_thick
  rows = _window(float((centre_y - spread).min()),
                 float((centre_y + spread).max()), image_size)
  cols = _window(float((ids.face_x - reach).min()),
                 float((ids.face_x + reach).max()), image_size)
  x, y = g[None, None, cols], g[None, rows, None]
  # Centre line y0 - curve (t^2 - 1/3): corners move by `curve` relative to the
  # middle while the mouth's mean height stays put.
  sd = _stroke_sd(x, y, _col(ids.face_x), _col(half_w),
                  _col(centre_y) + ex.mouth_curve / 3.0, -ex.mouth_tilt,
                  -ex.mouth_curve, _col(ids.lip_thick), ex.mouth_open)
  if ex.mouth_round > 0.0:
    # A lens from _stroke_sd would be pointed at the sides; an O is an oval.
    oval = _ellipse_sd(x - _col(ids.face_x), y - _col(centre_y),
                       ex.mouth_round * _O_ASPECT, ex.mouth_round)
    sd = np.minimum(sd, oval)
  _paint(img[:, rows, cols], _coverage(sd, pixel), _DARK)


def _render_chunk(ids: Identities, expressions: Sequence[_Expression],
                  image_size: int) -> np.ndarray:
  base = _render_base(ids, image_size)
  texture = _texture(ids, image_size)
  out = np.empty((len(ids), len(expressions), image_size, image_size),
                 np.uint8)
  for k, ex in enumerate(expressions):
    img = base.copy()
    _paint_eyes_and_brows(img, ids, ex, image_size)
    _paint_mouth(img, ids, ex, image_size)
    img += texture
    out[:, k] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
  return out
