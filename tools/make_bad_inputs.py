"""Writes the bad-input corpus under tests/data/bad_inputs (small files; run to refresh).

    python tools/make_bad_inputs.py [--out tests/data/bad_inputs]

Every file is a kind of input users hand the project by mistake or by bad luck: broken
csv rows of every kind, truncated gzip, header-only and empty csv files, files that are
not images, 0-byte files, gray/RGBA/16-bit PNGs, CMYK and progressive JPEGs, an
EXIF-rotated photo, photos with no face, two faces, a face cut by the border, corrupt,
truncated and foreign checkpoints and .tflite files. tests/test_bad_inputs.py feeds each
to the code that reads it. The 20000x20000 PNG is not stored: the tests write its header
at run time (tests/test_images.py huge_png_header), a few hundred bytes. Deterministic:
rerunning rewrites the same bytes (JPEG encoders aside).
"""

import argparse
import gzip
import io
import os
import struct
import zipfile
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "bad_inputs")
HEADER = "emotion,pixels,Usage\n"


def _pixels(seed=0, n=48 * 48):
  # Values 0-9 keep the files small; the parser's range checks are what is tested.
  return " ".join(str(v) for v in np.random.default_rng(seed).integers(0, 10, n))


def _good_rows(k=1, first=0):
  """k valid rows of the default emotions (FER2013 ids 0, 3, 4, 5)."""
  return "".join(f"{(0, 3, 4, 5)[(first + i) % 4]},{_pixels(first + i)},Training\n"
                 for i in range(k))


# One broken row of each kind, between good rows: (file name, bad line).
BAD_ROWS = {
    "label_not_a_number.csv": f"happy,{_pixels(9)},Training\n",
    "label_out_of_range.csv": f"9,{_pixels(9)},Training\n",
    "label_negative.csv": f"-1,{_pixels(9)},Training\n",
    "label_empty.csv": f",{_pixels(9)},Training\n",
    "too_few_pixels.csv": f"3,{_pixels(9, 48 * 48 - 1)},Training\n",
    "too_many_pixels.csv": f"3,{_pixels(9, 48 * 48 + 1)},Training\n",
    "pixels_empty.csv": "3,,Training\n",
    "pixel_over_255.csv": f"3,256 {_pixels(9, 48 * 48 - 1)},Training\n",
    "pixel_negative.csv": f"3,-4 {_pixels(9, 48 * 48 - 1)},Training\n",
    "pixel_not_a_number.csv": f"3,x7 {_pixels(9, 48 * 48 - 1)},Training\n",
    "pixel_fraction.csv": f"3,1.5 {_pixels(9, 48 * 48 - 1)},Training\n",
    "missing_field.csv": f"3,{_pixels(9)}\n",
    "extra_field.csv": f"3,{_pixels(9)},Training,surplus\n",
    "unterminated_quote.csv": f"3,\"{_pixels(9)},Training\n",
}


def csv_files() -> dict[str, bytes]:
  # Line 1 the header, line 2 a good row, line 3 the bad row, line 4 a good row.
  files = {name: (HEADER + _good_rows(1) + row + _good_rows(1, 1)).encode()
           for name, row in BAD_ROWS.items()}
  files["binary_garbage_row.csv"] = (HEADER + _good_rows(1)).encode() + (
      b"\x00\x01\x02\xff\xfe garbage\n") + _good_rows(1, 1).encode()
  files["non_utf8_row.csv"] = (HEADER + _good_rows(1)).encode() + (
      b"3,\xe9\xe8 " + _pixels(9, 48 * 48 - 1).encode() + b",Training\n") + _good_rows(
          1, 1).encode()
  files["header_only.csv"] = HEADER.encode()
  files["empty.csv"] = b""
  files["no_pixels_column.csv"] = b"emotion,Usage\n3,Training\n"
  files["not_a_csv.csv"] = bytes(range(256)) * 4
  whole = gzip.compress((HEADER + _good_rows(8)).encode(), mtime=0)
  assert len(whole) > 2000
  files["truncated.csv.gz"] = whole[:len(whole) // 2]
  files["not_gzip.csv.gz"] = (HEADER + _good_rows(2)).encode()
  files["ok_reference.csv"] = (HEADER + _good_rows(4)).encode()  # loads: the control
  files["empty.csv.gz"] = b""
  return files


def _face(size=96):
  """The astronaut's face (scikit-image's bundled photo), RGB uint8 [size, size, 3]."""
  import cv2  # pylint: disable=g-import-not-at-top
  from skimage import data  # pylint: disable=g-import-not-at-top
  photo = data.astronaut()
  crop = photo[20:230, 130:340]       # the face with a margin (detected there by tests)
  return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def _encode(ext, rgb_or_gray, **params):
  import cv2  # pylint: disable=g-import-not-at-top
  image = rgb_or_gray
  if image.ndim == 3 and image.shape[2] == 3:
    image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
  elif image.ndim == 3 and image.shape[2] == 4:
    image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
  flags = []
  for key, value in params.items():
    flags += [getattr(cv2, key), value]
  ok, buf = cv2.imencode(ext, image, flags)
  assert ok, ext
  return buf.tobytes()


def _pil_jpeg(rgb, **save_args):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  image = Image.fromarray(rgb)
  if save_args.pop("cmyk", False):
    image = image.convert("CMYK")
  image.save(buf, "JPEG", **save_args)
  return buf.getvalue()


def image_files() -> dict[str, bytes]:
  """Odd but valid images (each must translate) and broken ones (each a clear line)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  face = _face()
  gray = face.mean(axis=2).astype(np.uint8)
  files = {}
  # Valid, unusual encodings: each must be read and translated.
  files["ok_gray.png"] = _encode(".png", gray)
  files["ok_rgba.png"] = _encode(".png", np.dstack([face, np.full(face.shape[:2], 200,
                                                                  np.uint8)]))
  files["ok_gray16.png"] = _encode(".png", gray.astype(np.uint16) * 257)
  files["ok_cmyk.jpg"] = _pil_jpeg(face, cmyk=True, quality=90)
  files["ok_progressive.jpg"] = _pil_jpeg(face, progressive=True, quality=90)
  exif = Image.Exif()
  exif[0x0112] = 6                       # stored turned; EXIF says turn 90 degrees clockwise
  files["ok_exif_rotated.jpg"] = _pil_jpeg(np.ascontiguousarray(np.rot90(face, 1)),
                                           exif=exif.tobytes(), quality=90)
  two = np.concatenate([face, face[:, ::-1]], axis=1)
  files["ok_two_faces.png"] = _encode(".png", two)
  border = np.zeros((96, 160, 3), np.uint8)
  border[:, :84] = face[:, 12:]           # the face against the left border: its crop pads
  files["ok_face_at_border.png"] = _encode(".png", border)
  # Broken: one clear line each, the others still processed.
  landscape = np.zeros((80, 120, 3), np.uint8)
  landscape[40:] = (40, 120, 40)
  landscape[:40] = (120, 170, 230)
  files["bad_no_face.png"] = _encode(".png", landscape)
  files["bad_empty.png"] = b""
  files["bad_text.jpg"] = b"this is not a picture\n" * 10
  whole = _encode(".png", face)
  files["bad_truncated.png"] = whole[:len(whole) // 3]
  jpeg = _pil_jpeg(face, quality=90)
  files["bad_truncated.jpg"] = jpeg[:200]
  files["bad_pdf_named.png"] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
  return files


def checkpoint_files() -> dict[str, bytes]:
  """Files named like checkpoints that are not (real ones are truncated at test time)."""
  buf = io.BytesIO()
  np.savez(buf, weights=np.zeros((3, 3), np.float32))     # an npz from something else
  foreign = buf.getvalue()
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as z:
    z.writestr("readme.txt", "a zip, not a checkpoint")
  return {"ckpt-000000001.npz": b"", "ckpt-000000002.npz": b"not a checkpoint\n",
          "ckpt-000000003.npz": foreign, "ckpt-000000004.npz": buf.getvalue(),
          "ckpt-000000005.npz": foreign[:len(foreign) // 2]}


def tflite_files() -> dict[str, bytes]:
  """Files named .tflite that are not TFLite models (or are cut short)."""
  # A FlatBuffer root offset, the TFL3 identifier, then nothing sensible.
  fake = struct.pack("<I", 16) + b"TFL3" + bytes(range(64))
  return {"empty.tflite": b"", "text.tflite": b"not a model\n", "fake_header.tflite": fake,
          "png_named.tflite": b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
          "zip_named.tflite": zlib.compress(b"x" * 100)}


def write(out: str = DEFAULT_OUT) -> dict[str, list[str]]:
  written = {}
  for folder, files in (("csv", csv_files()), ("images", image_files()),
                        ("checkpoints", checkpoint_files()), ("tflite", tflite_files())):
    os.makedirs(os.path.join(out, folder), exist_ok=True)
    for name, blob in files.items():
      with open(os.path.join(out, folder, name), "wb") as f:
        f.write(blob)
    written[folder] = sorted(files)
  return written


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=DEFAULT_OUT)
  args = parser.parse_args()
  written = write(args.out)
  total = sum(os.path.getsize(os.path.join(args.out, folder, name))
              for folder, names in written.items() for name in names)
  print(f"{sum(map(len, written.values()))} files, {total / 1024:.0f} KiB in {args.out}")


if __name__ == "__main__":
  main()
