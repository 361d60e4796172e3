"""TF Serving's :predict JSON for export.py's signatures: request bodies in, tensors out.

Row ("instances") and columnar ("inputs") formats, {"b64": ...} for binary strings,
every input checked against its signature's dtype and shape, and RequestError, the bad
input answered as a 4xx (or 503) with {"error": message}. rest_api.py routes the
requests; this module only reads and writes their JSON.
"""

import base64
import dataclasses

import cv2
import numpy as np

from faceexpr_tf import errors
from faceexpr_tf.photos import faces
from faceexpr_tf.serving import translators

MAX_REQUEST_IMAGES = 64          # examples per :predict request
MAX_IMAGE_PIXELS = 40_000_000    # a decoded image_bytes image (a 16 MB PNG can hold 1e9)
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")
B64 = "b64"


class RequestError(errors.UserError):
  """Bad input: answered with this status and {"error": message}."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status



@dataclasses.dataclass(frozen=True)
class Tensor:
  dtype: str                # numpy name, or "string"
  shape: tuple              # -1: any (the batch)


def signatures(translator: translators.Translator) -> dict[str, tuple[dict, dict]]:
  """{signature: ({input: Tensor}, {output: Tensor})}, as the exported signatures
  (signatures.py)."""
  s, c, k = translator.image_size, translator.channels, translator.num_classes
  image = (-1, s, s, c)
  names = Tensor("string", (-1,))
  return {
      "serving_default": ({"image": Tensor("uint8", image), "target": names},
                          {"image": Tensor("uint8", image)}),
      "translate_ids": ({"image": Tensor("float32", image), "target": Tensor("int32", (-1,))},
                        {"image": Tensor("float32", image)}),
      "translate_all": ({"image": Tensor("uint8", image)},
                        {"images": Tensor("uint8", (-1, k, s, s, c))}),
      "translate_bytes": ({"image_bytes": names, "target": names},
                          {"png_bytes": Tensor("string", (-1,))}),
      "metadata": ({}, {"class_names": Tensor("string", (k,)),
                        "image_size": Tensor("int32", ()), "channels": Tensor("int32", ()),
                        "model_version": Tensor("int64", ()), "step": Tensor("int64", ())}),
  }


# Optional inputs beyond TF Serving's contract.
OPTIONAL = {"serving_default": ("intensity",), "translate_bytes": ("intensity",)}


def columns(body, inputs: dict, optional: tuple) -> dict[str, list]:
  """A :predict body -> {input name: list of per-example JSON values}."""
  if not isinstance(body, dict):
    raise RequestError("the request body must be a JSON object")
  if ("instances" in body) == ("inputs" in body):
    raise RequestError("the request must have exactly one of 'instances' (row format) or "
                       "'inputs' (columnar format)")
  names = list(inputs)
  allowed = set(names) | set(optional)
  single = len(names) == 1

  def named(value) -> bool:
    return isinstance(value, dict) and set(value) != {B64}

  if "instances" in body:
    rows = body["instances"]
    if not isinstance(rows, list):
      raise RequestError("'instances' must be a list, one entry per example")
    columns = {name: [] for name in allowed}
    for i, row in enumerate(rows):
      if not named(row):
        if not single:
          raise RequestError(f"instances[{i}]: give an object with the inputs "
                             f"{', '.join(names)}")
        row = {names[0]: row}
      _check_names(row, names, allowed, f"instances[{i}]")
      for name in allowed:
        if name in row:
          columns[name].append(row[name])
    columns = {n: col for n, col in columns.items() if col}
    for name in optional:
      if name in columns and len(columns[name]) != len(rows):
        raise RequestError(f"'{name}' must be given for every instance or none")
  else:
    given = body["inputs"]
    columns = given if named(given) else ({names[0]: given} if single else None)
    if columns is None:
      raise RequestError(f"'inputs' must be an object with the inputs {', '.join(names)}")
    _check_names(columns, names, allowed, "inputs")
    for name, col in columns.items():
      if not isinstance(col, list):
        raise RequestError(f"inputs['{name}'] must be a list (batch first)")
    sizes = {len(col) for col in columns.values()}
    if len(sizes) > 1:
      raise RequestError(f"inputs have different batch sizes "
                         f"({', '.join(f'{n}: {len(c)}' for n, c in columns.items())})")
  count = len(next(iter(columns.values()), []))
  if count == 0:
    raise RequestError("empty batch: send at least one example")
  if count > MAX_REQUEST_IMAGES:
    raise RequestError(f"batch of {count} examples is over this server's limit of "
                       f"{MAX_REQUEST_IMAGES} per request; split it", 413)
  return columns


def _check_names(row: dict, names: list, allowed: set, where: str):
  missing = [n for n in names if n not in row]
  unknown = sorted(set(row) - allowed)
  if missing or unknown:
    raise RequestError(f"{where}: " + "; ".join(
        ([f"missing input {', '.join(missing)}"] if missing else [])
        + ([f"unknown input {', '.join(unknown)}"] if unknown else []))
        + f" (the signature takes {', '.join(names)})")


def string(value, what: str) -> bytes:
  if isinstance(value, dict) and set(value) == {B64}:
    try:
      return base64.b64decode(value[B64], validate=True)
    except (ValueError, TypeError):
      raise RequestError(f"{what}: invalid base64") from None
  if isinstance(value, str):
    return value.encode("utf-8")
  raise RequestError(f"{what}: expected a string or {{\"b64\": ...}}, got "
                     f"{type(value).__name__}")


def array(values: list, tensor: Tensor, what: str) -> np.ndarray:
  try:
    array = np.asarray(values, np.float64)
  except (ValueError, TypeError):
    raise RequestError(f"{what}: not a numeric array of one shape (ragged or non-numbers)"
                       ) from None
  want = tensor.shape
  if array.ndim != len(want) or any(w not in (-1, g) for w, g in zip(want, array.shape)):
    shown = ", ".join("N" if w == -1 else str(w) for w in want)
    raise RequestError(f"{what}: expected shape [{shown}], got {list(array.shape)}")
  if not np.all(np.isfinite(array)):
    raise RequestError(f"{what}: NaN or infinite values")
  if tensor.dtype in ("uint8", "int32"):
    info = np.iinfo(tensor.dtype)
    if np.any(array != np.round(array)) or array.min() < info.min or array.max() > info.max:
      raise RequestError(f"{what}: {tensor.dtype} values must be integers in "
                         f"[{info.min}, {info.max}]")
  return array.astype(tensor.dtype)


def decode_image_bytes(data: bytes, translator: translators.Translator, what: str
                       ) -> np.ndarray:
  """PNG/JPEG/BMP/GIF bytes -> uint8 [S, S, C] as translate_bytes does: the whole image,
  upright by its EXIF orientation (images.decode, the SavedModel's decoder), made the
  model's size by faces.to_model_input (gray; area shrink, linear growth)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.data import images  # pylint: disable=g-import-not-at-top
  if not data.startswith(_IMAGE_MAGIC):
    raise RequestError(f"{what}: not a PNG, JPEG, BMP or GIF image")
  size = images.header_size(data[:1 << 16])
  if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
    raise RequestError(f"{what}: {size[0]}x{size[1]} pixels is over the limit of "
                       f"{MAX_IMAGE_PIXELS:,}", 413)
  try:
    rgb = images.decode(data, channels=3).numpy()
  except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, ValueError) as e:
    raise RequestError(f"{what}: corrupt or truncated image ({type(e).__name__})") from None
  if rgb.shape[0] * rgb.shape[1] > MAX_IMAGE_PIXELS:
    raise RequestError(f"{what}: {rgb.shape[1]}x{rgb.shape[0]} pixels is over the limit "
                       f"of {MAX_IMAGE_PIXELS:,}", 413)
  return faces.to_model_input(rgb, translator.image_size, translator.channels)


def encode_png(image: np.ndarray) -> bytes:
  image = np.asarray(image)
  if image.shape[-1] == 3:
    image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
  ok, png = cv2.imencode(".png", image)
  if not ok:
    raise RuntimeError("PNG encoding failed")
  return png.tobytes()
