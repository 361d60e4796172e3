"""POST /v1/photos:edit: a whole photo in, the same photo back with its faces' expression
changed, beside TF Serving's contract (rest_api.py, unchanged).

    curl -sS --data-binary @me.jpg -H "Content-Type: image/jpeg" -o me_Happy.jpg \\
      "http://127.0.0.1:8080/v1/photos:edit?emotion=Happy&intensity=0.8"

Query: `emotion` (required: one the model knows, any case) and `intensity` (optional: a
number in [0, 1], default 1; below 1 needs a Keras generator). Body: the photo file's
bytes (JPEG, PNG, WebP, TIFF, BMP, GIF; at most MAX_PHOTO_BYTES and 40 megapixels), sent
as Content-Type image/* or application/octet-stream (or none).

200: every face found (photos/editor.py: largest first, at most 10) edited in place, the
photo at its full resolution in its own format (photos/photo_files.py: JPEG stays JPEG,
PNG stays PNG, WebP, TIFF; GIF and BMP come back as PNG), EXIF and ICC profile kept and
the provenance inside (PNG text chunk or EXIF ImageDescription: tool, model, emotion,
intensity, faces edited). Headers: X-Faces-Found, X-Faces-Edited, X-Emotion, X-Intensity,
and X-Edit-Note when there is something to say. A photo with no face to edit answers 200
too, with the bytes sent back unchanged, X-Faces-Edited: 0 and X-Edit-Note saying why.

Bad input is a 4xx with {"error": "one line"}: 400 (missing or unknown emotion, an
intensity that is not a number in [0, 1], an unknown query parameter, an empty body, not
an image or a corrupt one), 413 (over MAX_PHOTO_BYTES or 40 megapixels), 415 (another
Content-Type); 503 when the model thread is busy. Nothing a client sends ends in a 500
or a traceback in the log. The work runs in anyio's worker pool and every forward pass
goes through the server's one model thread (the editor's `run` is Batcher.run).
"""

import dataclasses
import io
import math
import threading
import warnings

import fastapi
import numpy as np
import PIL.Image
from absl import logging
from fastapi import responses

from faceexpr_tf import errors
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.data import images
from faceexpr_tf.photos import editor as editor_lib
from faceexpr_tf.photos import faces as faces_lib
from faceexpr_tf.photos import photo_files
from faceexpr_tf.web import predict_json
from faceexpr_tf.web import rest_api

ROUTE = "/v1/photos:edit"
MAX_PHOTO_BYTES = 20 << 20       # as the page's upload limit
PARAMETERS = ("emotion", "intensity")
ACCEPTED_TYPES = "image/* or application/octet-stream"
_MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
                "TIFF": "image/tiff"}
# What the bytes sent back unchanged are, by their first bytes.
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG", "image/png"), (b"GIF8", "image/gif"),
          (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))
_NAME = "photo"                  # the body's name in messages


class SerializedDetector:
  """A face detector taken by one request at a time: the page and the REST route share
  one, from several worker threads, and MTCNN's networks are not meant for that."""

  def __init__(self, detector):
    self.detector = detector
    self.name = detector.name
    self._lock = threading.Lock()

  def detect(self, image: np.ndarray):
    with self._lock:
      return self.detector.detect(image)


@dataclasses.dataclass
class EditedPhoto:
  """The answer to one edit: the file's bytes, its media type and the headers."""
  data: bytes
  media_type: str
  headers: dict[str, str]


def _header(text: str) -> str:
  """A header value: one line of ASCII (starlette writes headers as latin-1)."""
  return " ".join(str(text).split()).encode("ascii", "backslashreplace").decode("ascii")


def media_type_of(data: bytes) -> str:
  for magic, media_type in _MAGIC:
    if data.startswith(magic):
      return media_type
  if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
    return "image/webp"
  return "application/octet-stream"


def check_content_type(value: str | None):
  """415 unless the body is declared a photo (image/*, application/octet-stream, or not
  declared at all)."""
  kind = (value or "").split(";")[0].strip().lower()
  if kind and not (kind.startswith("image/") or kind == "application/octet-stream"):
    raise predict_json.RequestError(
        f"Content-Type {kind} is not a photo: send the photo file's bytes as the body, as "
        f"{ACCEPTED_TYPES} (curl: --data-binary @photo.jpg -H 'Content-Type: image/jpeg')",
        415)


def _check_pixels(data: bytes):
  """413 before decoding when the header announces over images.MAX_PIXELS pixels."""
  size = images.header_size(data[:1 << 16])
  if size is None:
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
        with PIL.Image.open(io.BytesIO(data)) as image:   # reads the header only
          size = image.size
    except PIL.Image.DecompressionBombError:
      raise predict_json.RequestError(
          f"{_NAME}: too large (over {images.MAX_PIXELS // 1_000_000} megapixels); shrink "
          "it first", 413) from None
    except Exception:  # pylint: disable=broad-except  (decode_photo words it)
      return
  if size[0] * size[1] > images.MAX_PIXELS:
    raise predict_json.RequestError(
        f"{_NAME}: {size[0]}x{size[1]} pixels is over the limit of "
        f"{images.MAX_PIXELS // 1_000_000} megapixels; shrink it first", 413)


def decode(data: bytes) -> photo_files.Photo:
  """The body's bytes -> Photo; RequestError (400 or 413) for anything that is not one."""
  if not data:
    raise predict_json.RequestError("empty body: send the photo file's bytes (curl: "
                                    "--data-binary @photo.jpg)")
  _check_pixels(data)
  try:
    return photo_files.decode_photo(data, _NAME)
  except faces_lib.ImageReadError as e:
    raise predict_json.RequestError(str(e)) from None
  except Exception as e:  # pylint: disable=broad-except  (e.g. a broken EXIF block)
    logging.warning("%s: cannot read the photo sent (%s: %s)", ROUTE, type(e).__name__, e)
    raise predict_json.RequestError(f"{_NAME}: cannot read this image ({type(e).__name__}); "
                                    "send a PNG, JPEG, WebP or TIFF photo") from None


class PhotoApi:
  """Edits whole photos for the route, with one PhotoEditor (its run: Batcher.run)."""

  def __init__(self, editor: editor_lib.PhotoEditor):
    self.editor = editor
    self.translator = editor.translator

  def parse_query(self, items) -> tuple[str, float]:
    """(query name, value) pairs -> (the emotion's own name, intensity)."""
    given = {}
    for name, value in items:
      if name not in PARAMETERS:
        raise predict_json.RequestError(f"unknown query parameter {name!r} (this endpoint "
                                        f"takes {' and '.join(PARAMETERS)})")
      if name in given:
        raise predict_json.RequestError(f"query parameter {name!r} given twice (one "
                                        "emotion per request)")
      given[name] = value
    t = self.translator
    emotion = given.get("emotion", "").strip()
    if not emotion:
      raise predict_json.RequestError(f"missing query parameter emotion (one of "
                                      f"{', '.join(t.emotions)}), e.g. ?emotion={t.emotions[0]}")
    try:
      emotion = t.emotions[emotions_lib.class_id(emotion, t.emotions)]
    except errors.UserError:
      raise predict_json.RequestError(f"unknown emotion {emotion[:40]!r} (this model knows "
                                      f"{', '.join(t.emotions)}, any case)") from None
    text = given.get("intensity", "1").strip()
    try:
      intensity = float(text)
    except ValueError:
      intensity = math.nan
    if not 0.0 <= intensity <= 1.0:   # also NaN and what is not a number
      raise predict_json.RequestError(f"intensity must be a number in [0, 1] (0: the "
                                      f"input, 1: the full expression), got {text[:40]!r}")
    if intensity < 1 and not t.takes_label_vectors:
      raise predict_json.RequestError(f"{t.source} takes class ids only: intensity must be "
                                      "1 (serve a Keras generator for other intensities)")
    return emotion, intensity

  def edit(self, data: bytes, emotion: str, intensity: float) -> EditedPhoto:
    photo = decode(data)
    edits = self.editor.edit_all(photo.pixels, [emotion], intensity)
    count = len(edits.edited)
    headers = {"X-Faces-Found": str(len(edits.faces)), "X-Faces-Edited": str(count),
               "X-Emotion": emotion, "X-Intensity": f"{intensity:g}"}
    if not count:
      why = ("no face found (a larger, frontal, well-lit face works best)" if not edits.faces
             else editor_lib.no_edit_reason(edits.faces))
      headers["X-Edit-Note"] = _header(f"{why}: the photo is returned unchanged")
      return EditedPhoto(data, media_type_of(data), headers)
    record = photo_files.provenance(self.translator.source, emotion, intensity, count)
    body = photo_files.encode_photo(edits.photos[emotion], photo, record)
    if photo.note:
      headers["X-Edit-Note"] = _header(photo.note)
    headers["Content-Disposition"] = f'inline; filename="photo_{emotion}{photo.extension}"'
    return EditedPhoto(body, _MEDIA_TYPES[photo.format], headers)


def router(api: PhotoApi) -> fastapi.APIRouter:
  routes = fastapi.APIRouter()

  def respond(raw: bytes, emotion: str, intensity: float):
    edited = api.edit(raw, emotion, intensity)
    return responses.Response(edited.data, media_type=edited.media_type,
                              headers=edited.headers)

  @routes.post(ROUTE)
  async def edit_photo(request: fastapi.Request):
    import anyio  # pylint: disable=g-import-not-at-top  (fastapi's dependency)
    try:
      emotion, intensity = api.parse_query(request.query_params.multi_items())
      check_content_type(request.headers.get("content-type"))
      raw = await rest_api.read_body(request, MAX_PHOTO_BYTES)
    except predict_json.RequestError as e:
      return rest_api.error_response(e.status, str(e))
    # Decoding, detection, encoding and the wait for the model thread: a worker thread.
    return await anyio.to_thread.run_sync(
        lambda: rest_api.answer(respond, raw, emotion, intensity))

  return routes
