"""Photo files in and out: upright pixels, the same format back, and provenance inside.

read_photo decodes a file (or bytes) with Pillow, refusing a huge one before decoding,
turns it upright by its EXIF orientation, and remembers what writing it back needs:
format, ICC profile, EXIF. write_photo writes an edited photo in the input's format
(JPEG at quality 95 with full-resolution colour, PNG lossless, WebP, TIFF), and every file
it writes says it was edited: a PNG text chunk, or EXIF ImageDescription (JPEG, WebP,
TIFF), holding `PROVENANCE_PREFIX` and a JSON record (tool, model, emotion, intensity).
read_provenance reads it back. GIF and BMP inputs come back as PNG: a GIF's 256 colours
would repaint the whole photo, and BMP has no place for the provenance.
"""

import dataclasses
import io
import json
import os

import numpy as np
import PIL.Image
import PIL.ImageOps
import PIL.PngImagePlugin

from faceexpr_tf import version
from faceexpr_tf import errors
from faceexpr_tf.data import images
from faceexpr_tf.photos import faces as faces_lib

PROVENANCE_PREFIX = "Edited by faceexpr-tf (a GAN changed the facial expression): "
PNG_KEY = "faceexpr-tf"
_IMAGE_DESCRIPTION = 0x010E      # EXIF tags
_SOFTWARE = 0x0131
_ORIENTATION = 0x0112
JPEG_QUALITY = 95
# Format -> (format written, extension of the outputs).
_WRITTEN = {"JPEG": ("JPEG", None), "PNG": ("PNG", None), "WEBP": ("WEBP", None),
            "TIFF": ("TIFF", None), "MPO": ("JPEG", ".jpg"), "GIF": ("PNG", ".png"),
            "BMP": ("PNG", ".png")}


@dataclasses.dataclass
class Photo:
  """A decoded photo, upright, and what writing an edit of it back needs."""
  pixels: np.ndarray            # uint8 [H, W] (gray), [H, W, 3] (RGB) or [H, W, 4] (RGBA)
  format: str                   # what it is written as: JPEG, PNG, WEBP, TIFF
  extension: str                # of the outputs, with the dot: the input's where it can
  name: str = "photo"
  icc_profile: bytes | None = None
  exif: bytes | None = None     # the input's EXIF, orientation reset to upright
  note: str | None = None       # a line to log (format changed, bit depth reduced)


def read_photo(path: str) -> Photo:
  """A photo file -> Photo; faces.ImageReadError naming the file for anything wrong."""
  if not os.path.exists(path):
    raise faces_lib.ImageReadError(f"{path}: no such file")
  if os.path.isdir(path):
    raise faces_lib.ImageReadError(f"{path}: is a directory, not an image")
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise faces_lib.ImageReadError(f"{path}: cannot read ({e.strerror or e})") from None
  return decode_photo(data, path)


def decode_photo(data: bytes, name: str = "photo") -> Photo:
  """Photo file bytes -> Photo (name is used in messages and for the extension)."""
  try:
    images.check_size(name, data[:1 << 16])  # before a decoder allocates it all
  except images.ImageTooLargeError as e:
    raise faces_lib.ImageReadError(str(e)) from None
  if data.startswith(b"\xff\xd8") and b"\xff\xd9" not in data[-4096:]:
    raise faces_lib.ImageReadError(f"{name}: truncated JPEG (no end-of-image marker): the "
                                   "rest of the picture is missing")
  try:
    image = PIL.Image.open(io.BytesIO(data))
    image.load()
  except PIL.Image.DecompressionBombError:
    raise faces_lib.ImageReadError(f"{name}: too large to decode (limit "
                                   f"{images.MAX_PIXELS // 1_000_000} megapixels)") from None
  except Exception:  # pylint: disable=broad-except  (Pillow raises many kinds)
    ext = os.path.splitext(name)[1].lower()
    why = ("corrupt or truncated image" if ext in faces_lib.IMAGE_EXTENSIONS or not ext
           else "unsupported format (not a PNG, JPEG, WebP, TIFF, BMP or GIF image)")
    raise faces_lib.ImageReadError(f"{name}: {why}") from None
  if image.width * image.height > images.MAX_PIXELS:
    raise faces_lib.ImageReadError(f"{name}: {image.width}x{image.height} pixels is too "
                                   f"large (limit {images.MAX_PIXELS // 1_000_000} "
                                   "megapixels); shrink it first")
  source_format = image.format or "PNG"
  # An ICC profile describes the file's own colour space: a CMYK one would mislabel RGB.
  icc = image.info.get("icc_profile") if image.mode in ("L", "RGB", "RGBA", "P") else None
  try:
    if source_format == "TIFF":  # a copy: TIFF's own structural tags must not become EXIF
      upright = PIL.ImageOps.exif_transpose(image)
    else:  # in place: an upright photo is not copied (32 ms, 36 MB at 12 MP)
      PIL.ImageOps.exif_transpose(image, in_place=True)  # also drops the orientation tag
      upright = image
    exif = upright.getexif()
    if _ORIENTATION in exif:
      exif[_ORIENTATION] = 1
    exif_bytes = exif.tobytes() if len(exif) else None
  except Exception:  # pylint: disable=broad-except  (a broken EXIF block: keep the pixels)
    upright, exif_bytes = image, None
  pixels, note = _pixels(upright, name)
  written, extension = _WRITTEN.get(source_format, ("PNG", ".png"))
  if extension is None:
    extension = os.path.splitext(name)[1].lower() or _default_extension(written)
  elif source_format not in ("MPO",):
    note = note or f"{name}: {source_format} input, written back as PNG"
  return Photo(pixels, written, extension, os.path.basename(name), icc, exif_bytes, note)


def _default_extension(fmt: str) -> str:
  return {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif"}[fmt]


def _pixels(image: PIL.Image.Image, name: str) -> tuple[np.ndarray, str | None]:
  """uint8 pixels in L, RGB or RGBA; a note when the file held more (16 bits, CMYK)."""
  mode, note = image.mode, None
  if mode in ("L", "RGB", "RGBA"):
    return np.asarray(image), None
  if mode == "P" or mode == "PA":
    target = "RGBA" if "transparency" in image.info or mode == "PA" else "RGB"
  elif mode == "LA":
    target = "RGBA"
  elif mode in ("I;16", "I;16B", "I;16L", "I", "F"):
    target, note = "L", f"{name}: its {mode} (high bit depth) pixels are edited as 8-bit gray"
    array = np.asarray(image, np.float64)
    top = 65535.0 if array.max() > 255 else 1.0 if mode == "F" and array.max() <= 1 else 255.0
    return np.clip(np.rint(array / top * 255), 0, 255).astype(np.uint8), note
  else:  # CMYK, YCbCr, 1, ...
    target = "RGB"
    if mode not in ("1",):
      note = f"{name}: its {mode} pixels are edited as RGB"
  return np.asarray(image.convert(target)), note


def provenance(model: str, emotion: str, intensity: float | str, faces: int) -> dict:
  """The record an edited photo carries."""
  return {"tool": "faceexpr-tf", "version": version.__version__,
          "edit": "facial expression changed by a generative model (StarGAN)",
          "model": model, "emotion": emotion,
          "intensity": intensity if isinstance(intensity, str) else float(intensity),
          "faces_edited": int(faces)}


def provenance_text(record: dict) -> str:
  return PROVENANCE_PREFIX + json.dumps(record, sort_keys=True)


def encode_photo(pixels: np.ndarray, photo: Photo, record: dict | None) -> bytes:
  """An edited photo's pixels -> file bytes in photo's format, carrying `record`."""
  image = PIL.Image.fromarray(np.ascontiguousarray(pixels))
  text = None if record is None else provenance_text(record)
  options = {}
  if photo.icc_profile:
    options["icc_profile"] = photo.icc_profile
  fmt = photo.format
  if fmt == "PNG":
    info = PIL.PngImagePlugin.PngInfo()
    if text is not None:
      info.add_itxt(PNG_KEY, text)
      info.add_text("Software", f"faceexpr-tf {version.__version__}")
    options["pnginfo"] = info
    if photo.exif:
      options["exif"] = photo.exif
  else:
    exif = PIL.Image.Exif()
    if photo.exif:
      exif.load(photo.exif)
    if text is not None:
      exif[_IMAGE_DESCRIPTION] = text
      exif[_SOFTWARE] = f"faceexpr-tf {version.__version__}"
    options["exif"] = exif.tobytes()
    if fmt == "JPEG":
      if image.mode == "RGBA":
        image = image.convert("RGB")
      options.update(quality=JPEG_QUALITY, subsampling=0)
    elif fmt == "WEBP":
      options.update(quality=JPEG_QUALITY, method=4)
    elif fmt == "TIFF":
      options.update(compression="tiff_lzw")
  buffer = io.BytesIO()
  image.save(buffer, fmt, **options)
  return buffer.getvalue()


def write_photo(path: str, pixels: np.ndarray, photo: Photo, record: dict | None):
  """Writes encode_photo's bytes to path (through a temporary name: never half a file)."""
  data = encode_photo(pixels, photo, record)
  partial = f"{path}.partial"
  try:
    with open(partial, "wb") as f:
      f.write(data)
    os.replace(partial, path)
  except OSError as e:
    raise errors.UserError(f"{path}: cannot write ({e.strerror or e}; is the --out folder "
                           "writable?)") from None


def read_provenance(source) -> dict | None:
  """The record in a file written here (a path or bytes), or None when it has none."""
  with PIL.Image.open(source if isinstance(source, str) else io.BytesIO(source)) as image:
    texts = [image.info.get(PNG_KEY), image.info.get("comment"),
             image.getexif().get(_IMAGE_DESCRIPTION)]
  for text in texts:
    if isinstance(text, bytes):
      text = text.decode("utf-8", "replace")
    if isinstance(text, str) and text.startswith(PROVENANCE_PREFIX):
      return json.loads(text[len(PROVENANCE_PREFIX):])
  return None
