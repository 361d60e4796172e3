"""One way to turn image bytes into upright pixels, the same in every path.

`translate` reads photos with OpenCV, which turns JPEGs upright by their EXIF orientation
tag. Training image folders (folders.py) and the SavedModel's translate_bytes signature
(export.py) decode with tf.io.decode_image, which ignores the tag: a phone photo came out
sideways there. `decode` below is tf.io.decode_image followed by the same EXIF
orientation, written in TensorFlow ops only, so it runs eagerly (folders.py) and inside a
SavedModel graph (export.py, TF Serving) alike.

`check_size` reads the width and height from a file's header, so a 20000x20000 PNG is
refused before any decoder allocates its pixels.
"""

import struct

import tensorflow as tf

from faceexpr_tf import errors

# Decoders allocate H x W x C bytes up front; above this a file is refused unread. 40 MP
# is a 7300 x 5500 photo, more than any phone takes; faces are cropped to 48 x 48 anyway.
MAX_PIXELS = 40_000_000
# JPEG puts its APP1/Exif segment first or right after APP0 (JFIF): look this far.
_EXIF_SEARCH = 1 << 17
_MAX_IFD_ENTRIES = 64
_ORIENTATION_TAG = 0x0112


class ImageTooLargeError(errors.UserError):
  """An image whose header announces more pixels than MAX_PIXELS."""


def exif_orientation(data) -> tf.Tensor:
  """EXIF orientation (1..8) of JPEG bytes (a scalar tf.string); 1 when absent or invalid.

  Finds the APP1 "Exif" segment, reads the TIFF header's byte order and the orientation
  tag of IFD0, with fixed-size vector ops (no loops), safe on any bytes: an index past the
  end reads a clamped byte and the result is then marked invalid.
  """
  b = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
  n = tf.shape(b)[0]
  padded = tf.concat([b, [0]], axis=0)  # reads past the end land on this 0

  def at(i):
    return tf.gather(padded, tf.clip_by_value(i, 0, n))

  # FF E1 <length:2> "Exif" 00 00 within the first _EXIF_SEARCH bytes.
  pattern = {0: 0xFF, 1: 0xE1, 4: 0x45, 5: 0x78, 6: 0x69, 7: 0x66, 8: 0, 9: 0}
  width = tf.clip_by_value(n - 10, 0, _EXIF_SEARCH)
  match = tf.ones([width], tf.bool)
  for offset, value in pattern.items():
    match &= tf.equal(b[offset:offset + width], value)
  found = tf.reduce_any(match)
  match = tf.concat([match, [False]], axis=0)  # argmax needs one element
  tiff = tf.argmax(tf.cast(match, tf.int32), output_type=tf.int32) + 10
  little = tf.equal(at(tiff), 0x49) & tf.equal(at(tiff + 1), 0x49)
  big = tf.equal(at(tiff), 0x4D) & tf.equal(at(tiff + 1), 0x4D)

  def u16(i):
    return tf.where(little, at(i) + 256 * at(i + 1), 256 * at(i) + at(i + 1))

  def u32(i):
    return tf.where(little, u16(i) + 65536 * u16(i + 2), 65536 * u16(i) + u16(i + 2))

  ifd = tiff + u32(tiff + 4)
  count = u16(ifd)
  j = tf.range(_MAX_IFD_ENTRIES, dtype=tf.int32)
  entry = ifd + 2 + 12 * j
  hit = tf.equal(u16(entry), _ORIENTATION_TAG) & (j < count) & (entry + 12 <= n)
  value = tf.gather(u16(entry + 8), tf.argmax(tf.cast(hit, tf.int32), output_type=tf.int32))
  is_jpeg = (n > 4) & tf.equal(at(0), 0xFF) & tf.equal(at(1), 0xD8)
  valid = (is_jpeg & found & (little | big) & tf.reduce_any(hit) & (value >= 1)
           & (value <= 8) & (ifd + 2 <= n))
  return tf.where(valid, value, 1)


def orient(image: tf.Tensor, orientation) -> tf.Tensor:
  """[H, W, C] pixels stored with EXIF `orientation` -> the upright picture (as PIL's
  ImageOps.exif_transpose and OpenCV's imread do)."""
  def transpose(x):
    return tf.transpose(x, [1, 0, 2])

  branches = [
      lambda: image,                                   # 1: upright
      lambda: image[:, ::-1],                          # 2: mirrored
      lambda: image[::-1, ::-1],                       # 3: upside down
      lambda: image[::-1],                             # 4: mirrored upside down
      lambda: transpose(image),                        # 5: transposed
      lambda: tf.image.rot90(image, k=3),              # 6: needs 90 degrees clockwise
      lambda: transpose(image)[::-1, ::-1],            # 7: transverse
      lambda: tf.image.rot90(image, k=1),              # 8: needs 90 degrees anticlockwise
  ]
  return tf.switch_case(tf.clip_by_value(tf.cast(orientation, tf.int32), 1, 8) - 1,
                        branches)


def decode(data, channels: int = 0) -> tf.Tensor:
  """Image bytes (PNG, JPEG, GIF's first frame, BMP) -> upright uint8 [H, W, C].

  tf.io.decode_image plus the EXIF orientation; channels as tf.io.decode_image's.
  """
  image = tf.io.decode_image(data, channels=channels, expand_animations=False)
  return orient(image, exif_orientation(data))


def announced_pixels(data) -> tf.Tensor:
  """Width x height (int64) that PNG, GIF, BMP or JPEG bytes (a scalar tf.string) announce
  in their header; 0 for other bytes. The graph twin of header_size, for a SavedModel to
  refuse a huge upload before decoding it."""
  head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 32), b"\0" * 32]),
                           0, 32)
  b = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

  def le(i, n):
    return sum(b[i + k] * 256 ** k for k in range(n))

  def be(i, n):
    return sum(b[i + k] * 256 ** (n - 1 - k) for k in range(n))

  def starts(magic):
    return tf.reduce_all(tf.equal(b[:len(magic)], list(magic)))

  def signed32(v):
    return tf.abs(tf.where(v >= 2 ** 31, v - 2 ** 32, v))

  jpeg_pixels = tf.cond(
      starts(b"\xff\xd8\xff"),
      lambda: tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)),
      lambda: tf.constant(0, tf.int64))
  return tf.case([(starts(b"\x89PNG"), lambda: be(16, 4) * be(20, 4)),
                  (starts(b"GIF8"), lambda: le(6, 2) * le(8, 2)),
                  (starts(b"BM"), lambda: signed32(le(18, 4)) * signed32(le(22, 4)))],
                 default=lambda: jpeg_pixels)


def header_size(head: bytes) -> tuple[int, int] | None:
  """(width, height) from the first bytes of a PNG, GIF, BMP or JPEG file, or None when
  the header does not say (unknown format, or a JPEG whose size comes later)."""
  if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
    return struct.unpack(">II", head[16:24])
  if head[:4] == b"GIF8" and len(head) >= 10:
    return struct.unpack("<HH", head[6:10])
  if head[:2] == b"BM" and len(head) >= 26:
    width, height = struct.unpack("<ii", head[18:26])
    return abs(width), abs(height)
  if head[:2] == b"\xff\xd8":
    return _jpeg_size(head)
  return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
  i = 2
  while i + 9 < len(head):
    if head[i] != 0xFF:
      return None
    marker = head[i + 1]
    if marker == 0xFF:
      i += 1
      continue
    length = struct.unpack(">H", head[i + 2:i + 4])[0]
    if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
      height, width = struct.unpack(">HH", head[i + 5:i + 9])
      return width, height
    i += 2 + length
  return None


def check_size(path: str, head: bytes, max_pixels: int = MAX_PIXELS):
  """Raises ImageTooLargeError when the header of `path` announces over max_pixels."""
  size = header_size(head)
  if size and size[0] * size[1] > max_pixels:
    raise ImageTooLargeError(
        f"{path}: {size[0]}x{size[1]} pixels is too large to decode (limit "
        f"{max_pixels // 1_000_000} megapixels); shrink it first")


def read_head(path: str, length: int = 1 << 16) -> bytes:
  with open(path, "rb") as f:
    return f.read(length)
