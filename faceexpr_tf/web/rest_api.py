"""TF Serving's REST API in front of a loaded generator, plus /healthz (FastAPI routes).

    POST /v1/models/<name>[/versions/<v>]:predict   {"signature_name", "instances"|"inputs"}
    GET  /v1/models/<name>[/versions/<v>]           version status
    GET  /v1/models/<name>[/versions/<v>]/metadata  every signature's inputs and outputs
    GET  /healthz                                   model, queue depth, batches run

The JSON is TF Serving's, for the signatures export.py writes (serving_default,
translate_ids, translate_all, translate_bytes; metadata has no inputs, so TF Serving's
REST API cannot call it, and neither can this one): row ("instances") and columnar
("inputs") formats, {"b64": ...} for binary strings in and for `*_bytes` outputs out, a
single output unnamed. So a client written for TF Serving (faceexpr_tf/serving_client.py)
works unchanged. Bad input answers 4xx with {"error": "..."}.

One extension: serving_default and translate_bytes take an optional `intensity` input
(float per example, 0..1; default 1, what TF Serving computes), see intensity.py.

Every forward pass goes through one Batcher: a single model thread fed by a bounded
queue, which merges the requests waiting within a few milliseconds into one batch. A
full queue answers 503; FastAPI runs these (sync) routes in its bounded thread pool.
"""

import base64
import concurrent.futures
import dataclasses
import queue
import threading
import time

import cv2
import fastapi
import numpy as np
from absl import logging
from fastapi import responses

from faceexpr_tf import errors
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.photos import faces
from faceexpr_tf.photos import intensity as intensity_lib
from faceexpr_tf.serving import translators

MAX_REQUEST_IMAGES = 64          # examples per :predict request
MAX_BODY_BYTES = 16 << 20        # a request body
MAX_IMAGE_PIXELS = 40_000_000    # a decoded image_bytes image (a 16 MB PNG can hold 1e9)
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")
_B64 = "b64"


class RequestError(errors.UserError):
  """Bad input: answered with this status and {"error": message}."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


# ---------------------------------------------------------------------------------------
# The model thread.


@dataclasses.dataclass
class _Job:
  images: np.ndarray       # float32 [n, S, S, C] in [-1, 1]
  labels: np.ndarray       # float32 [n, K]
  future: concurrent.futures.Future


class Batcher:
  """One thread runs the model; requests wait in a bounded queue and are merged.

  The thread takes the oldest job, then any others that arrive within max_wait_s, up to
  max_batch images, and runs them as one forward pass. submit() raises RequestError
  (503) when max_queue jobs are already waiting: load is shed, never queued unbounded.
  """

  def __init__(self, translator: translators.Translator, max_batch: int = 64,
               max_wait_s: float = 0.005, max_queue: int = 256):
    self.translator = translator
    self.max_batch = max_batch
    self.max_wait_s = max_wait_s
    self._queue = queue.Queue(max_queue)
    self.batches = 0
    self.examples = 0
    self._closed = threading.Event()
    if hasattr(translator, "compile_forward"):  # Keras: a tf.function, traced here
      translator.compile_forward()
      k, shape = translator.num_classes, (translator.image_size, translator.image_size,
                                          translator.channels)
      for n in (1, 2):  # after two shapes the trace takes any batch size
        translator.forward_labels(np.zeros((n,) + shape, np.float32),
                                  np.eye(k, dtype=np.float32)[np.zeros(n, int)])
    self._thread = threading.Thread(target=self._loop, name="faceexpr-model", daemon=True)
    self._thread.start()

  @property
  def waiting(self) -> int:
    return self._queue.qsize()

  def submit(self, images: np.ndarray, labels: np.ndarray) -> concurrent.futures.Future:
    if self._closed.is_set():
      raise RequestError("the server is shutting down", 503)
    job = _Job(np.asarray(images, np.float32), np.asarray(labels, np.float32),
               concurrent.futures.Future())
    try:
      self._queue.put_nowait(job)
    except queue.Full:
      raise RequestError(f"server busy: {self._queue.maxsize} requests already waiting; "
                         "retry later", 503) from None
    return job.future

  def run(self, images: np.ndarray, labels: np.ndarray, timeout: float = 120.0
          ) -> np.ndarray:
    """Blocking: float [-1, 1] images and label vectors -> G's float output."""
    try:
      return self.submit(images, labels).result(timeout)
    except concurrent.futures.TimeoutError:
      raise RequestError(f"the model did not answer within {timeout:.0f} s", 503) from None

  def close(self):
    self._closed.set()
    self._thread.join(timeout=5)

  def _take(self) -> list[_Job]:
    jobs = [self._queue.get(timeout=0.2)]
    count = len(jobs[0].images)
    deadline = time.monotonic() + self.max_wait_s
    while count < self.max_batch:
      try:
        job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
      except queue.Empty:
        break
      jobs.append(job)
      count += len(job.images)
    return jobs

  def _loop(self):
    while not self._closed.is_set():
      try:
        jobs = self._take()
      except queue.Empty:
        continue
      try:
        out = self.translator.forward_labels(np.concatenate([j.images for j in jobs]),
                                             np.concatenate([j.labels for j in jobs]))
      except Exception as e:  # pylint: disable=broad-except  (answered, never kills the thread)
        for job in jobs:
          job.future.set_exception(e)
        continue
      self.batches += 1
      self.examples += len(out)
      start = 0
      for job in jobs:
        job.future.set_result(out[start:start + len(job.images)])
        start += len(job.images)


# ---------------------------------------------------------------------------------------
# Signatures (export.py's contract).


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
_OPTIONAL = {"serving_default": ("intensity",), "translate_bytes": ("intensity",)}


def _columns(body, inputs: dict, optional: tuple) -> dict[str, list]:
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
    return isinstance(value, dict) and set(value) != {_B64}

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


def _string(value, what: str) -> bytes:
  if isinstance(value, dict) and set(value) == {_B64}:
    try:
      return base64.b64decode(value[_B64], validate=True)
    except (ValueError, TypeError):
      raise RequestError(f"{what}: invalid base64") from None
  if isinstance(value, str):
    return value.encode("utf-8")
  raise RequestError(f"{what}: expected a string or {{\"b64\": ...}}, got "
                     f"{type(value).__name__}")


def _array(values: list, tensor: Tensor, what: str) -> np.ndarray:
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


class Api:
  """Answers :predict bodies for one translator through one Batcher."""

  def __init__(self, batcher: Batcher, model_name: str, version: int):
    self.batcher = batcher
    self.translator = batcher.translator
    self.model_name = model_name
    self.version = int(version)
    self.signatures = signatures(self.translator)
    self._estimate = None

  def _target_ids(self, values: list) -> np.ndarray:
    ids = []
    for i, value in enumerate(values):
      name = _string(value, f"target[{i}]").decode("utf-8", "replace")
      try:
        ids.append(emotions_lib.class_id(name.strip(), self.translator.emotions))
      except errors.UserError:
        raise RequestError(f"unknown emotion name in target (this model knows "
                           f"{', '.join(self.translator.emotions)}, any case); bad: "
                           f"[{name}]") from None
    return np.asarray(ids, np.int32)

  def _labels(self, faces_u8: np.ndarray, ids: np.ndarray, alphas: list | None
              ) -> np.ndarray:
    k = self.translator.num_classes
    onehot = np.eye(k, dtype=np.float32)[ids]
    if alphas is None:
      return onehot
    alphas = _array(alphas, Tensor("float32", (-1,)), "intensity")
    bad = (alphas < 0) | (alphas > 1)
    if bad.any():
      raise RequestError(f"intensity must be in [0, 1]; bad: {alphas[bad].tolist()}")
    if np.all(alphas == 1):
      return onehot
    if not self.translator.takes_label_vectors:
      raise RequestError(f"{self.translator.source} takes class ids only: intensity must "
                         "be 1 (serve a Keras generator for other intensities)")
    if self._estimate is None:
      self._estimate = intensity_lib.source_estimator(self.translator)
    source = self._estimate(faces_u8)
    return (1 - alphas[:, None]) * source + alphas[:, None] * onehot

  def _forward(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return self.batcher.run(images, labels)

  def predict(self, body) -> dict:
    """A :predict request body (parsed JSON) -> the response body."""
    if not isinstance(body, dict):
      raise RequestError("the request body must be a JSON object")
    name = body.get("signature_name") or "serving_default"
    if name not in self.signatures:
      raise RequestError(f"Serving signature name: \"{name}\" not found in signature def "
                         f"(this model has {', '.join(self.signatures)})")
    inputs, outputs = self.signatures[name]
    if not inputs:
      raise RequestError(f"Failed to get input map for signature: {name} (it has no "
                         "inputs; TF Serving's REST API cannot call it either)")
    columns = _columns(body, inputs, _OPTIONAL.get(name, ()))
    alphas = columns.get("intensity")
    t = self.translator
    if name == "translate_bytes":
      u8 = np.stack([decode_image_bytes(_string(v, f"image_bytes[{i}]"), t,
                                        f"image_bytes[{i}]")
                     for i, v in enumerate(columns["image_bytes"])])
    elif name != "translate_ids":
      u8 = _array(columns["image"], inputs["image"], "image")
    if name == "translate_ids":
      images = _array(columns["image"], inputs["image"], "image")
      ids = _array(columns["target"], inputs["target"], "target")
      if ids.min() < 0 or ids.max() >= t.num_classes:
        raise RequestError(f"target class id out of range [0, {t.num_classes}) (classes: "
                           f"{', '.join(t.emotions)}); bad ids: "
                           f"{sorted(set(ids[(ids < 0) | (ids >= t.num_classes)].tolist()))}")
      result = self._forward(images, np.eye(t.num_classes, dtype=np.float32)[ids])
    elif name == "translate_all":
      k = t.num_classes
      repeated = np.repeat(u8, k, axis=0)
      labels = np.tile(np.eye(k, dtype=np.float32), (len(u8), 1))
      out = translators.to_uint8(self._forward(translators.to_model_range(repeated), labels))
      result = out.reshape((len(u8), k) + u8.shape[1:])
    else:
      ids = self._target_ids(columns["target"])
      if len(ids) != len(u8):
        raise RequestError(f"{name}: batch sizes differ (each image needs exactly one "
                           "target)")
      out = translators.to_uint8(self._forward(translators.to_model_range(u8),
                                             self._labels(u8, ids, alphas)))
      result = [encode_png(o) for o in out] if name == "translate_bytes" else out
    return _response(next(iter(outputs)), result, row_format="instances" in body)

  def status(self, name: str, version: int | None = None) -> dict:
    self.check_model(name, version)
    return {"model_version_status": [{
        "version": str(self.version), "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""}}]}

  def metadata(self, name: str, version: int | None = None) -> dict:
    self.check_model(name, version)
    dtypes = {"uint8": "DT_UINT8", "float32": "DT_FLOAT", "int32": "DT_INT32",
              "int64": "DT_INT64", "string": "DT_STRING"}

    def info(tensors: dict, prefix: str) -> dict:
      return {n: {"dtype": dtypes[t.dtype], "name": f"{prefix}_{n}:0", "tensor_shape": {
          "dim": [{"size": str(d), "name": ""} for d in t.shape], "unknown_rank": False}}
              for n, t in tensors.items()}

    defs = {sig: {"inputs": info(ins, sig), "outputs": info(outs, "StatefulPartitionedCall"),
                  "method_name": "tensorflow/serving/predict"}
            for sig, (ins, outs) in self.signatures.items()}
    return {"model_spec": {"name": self.model_name, "signature_name": "",
                           "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": defs}}}

  def check_model(self, name: str, version: int | None):
    if name != self.model_name or version not in (None, self.version):
      which = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
      raise RequestError(f"Servable not found for request: {which} (this server has "
                         f"{self.model_name}, version {self.version})", 404)

  def health(self) -> dict:
    t = self.translator
    return {"status": "ok", "model": t.source, "model_name": self.model_name,
            "version": self.version, "emotions": list(t.emotions), "step": t.step,
            "waiting": self.batcher.waiting, "batches": self.batcher.batches,
            "examples": self.batcher.examples}


def _json_value(name: str, value):
  """Numpy/bytes -> JSON as TF Serving writes it: b64 only for outputs named *_bytes."""
  if isinstance(value, (bytes, bytearray)):
    if name.endswith("_bytes"):
      return {_B64: base64.b64encode(bytes(value)).decode("ascii")}
    return bytes(value).decode("utf-8", "replace")
  if isinstance(value, np.ndarray):
    return value.tolist()
  return [_json_value(name, v) for v in value] if isinstance(value, list) else value


def _response(output: str, batch, row_format: bool) -> dict:
  # One output: TF Serving drops its name (predictions is a plain list, outputs a value).
  if row_format:
    return {"predictions": [_json_value(output, row) for row in batch]}
  return {"outputs": _json_value(output, list(batch))}


# ---------------------------------------------------------------------------------------
# Routes.


def router(api: Api) -> fastapi.APIRouter:
  routes = fastapi.APIRouter()

  def error(status: int, message: str):
    return responses.JSONResponse({"error": message}, status_code=status)

  def answer(fn, *args):
    try:
      return fn(*args)
    except RequestError as e:
      return error(e.status, str(e))
    except errors.UserError as e:
      return error(400, str(e))
    except Exception as e:  # pylint: disable=broad-except  (the server stays up)
      logging.exception("request failed")
      return error(500, f"internal error: {type(e).__name__}: {e}")

  def read_json(request_body: bytes):
    import json  # pylint: disable=g-import-not-at-top
    if len(request_body) > MAX_BODY_BYTES:
      raise RequestError(f"request body of {len(request_body):,} bytes is over the limit "
                         f"of {MAX_BODY_BYTES:,}", 413)
    try:
      return json.loads(request_body)
    except (ValueError, UnicodeDecodeError) as e:
      raise RequestError(f"the body is not valid JSON ({e})") from None

  async def body_of(request: fastapi.Request) -> bytes:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
      raise RequestError(f"request body of {int(length):,} bytes is over the limit of "
                         f"{MAX_BODY_BYTES:,}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
      size += len(chunk)
      if size > MAX_BODY_BYTES:
        raise RequestError(f"request body is over the limit of {MAX_BODY_BYTES:,} bytes",
                           413)
      chunks.append(chunk)
    return b"".join(chunks)

  async def predict(request: fastapi.Request, name: str, version: int | None):
    import anyio  # pylint: disable=g-import-not-at-top  (fastapi's dependency)
    try:
      api.check_model(name, version)
      raw = await body_of(request)
    except RequestError as e:
      return error(e.status, str(e))
    # The work (decode, wait for the model thread, encode) runs in anyio's bounded
    # worker pool, never on the event loop.
    return await anyio.to_thread.run_sync(lambda: answer(
        lambda: api.predict(read_json(raw))))

  @routes.post("/v1/models/{name}:predict")
  async def predict_latest(request: fastapi.Request, name: str):
    return await predict(request, name, None)

  @routes.post("/v1/models/{name}/versions/{version}:predict")
  async def predict_version(request: fastapi.Request, name: str, version: int):
    return await predict(request, name, version)

  @routes.get("/v1/models/{name}/metadata")
  def metadata_latest(name: str):
    return answer(api.metadata, name, None)

  @routes.get("/v1/models/{name}/versions/{version}/metadata")
  def metadata_version(name: str, version: int):
    return answer(api.metadata, name, version)

  @routes.get("/v1/models/{name}")
  def status_latest(name: str):
    return answer(api.status, name, None)

  @routes.get("/v1/models/{name}/versions/{version}")
  def status_version(name: str, version: int):
    return answer(api.status, name, version)

  @routes.get("/healthz")
  def healthz():
    return api.health()

  return routes
