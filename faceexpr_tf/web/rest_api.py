"""TF Serving's REST API in front of a loaded generator, plus /healthz (FastAPI routes).

    POST /v1/models/<name>[/versions/<v>]:predict   {"signature_name", "instances"|"inputs"}
    GET  /v1/models/<name>[/versions/<v>]           version status
    GET  /v1/models/<name>[/versions/<v>]/metadata  every signature's inputs and outputs
    GET  /healthz                                   model, queue depth, batches run

The JSON is TF Serving's, for the signatures export.py writes (serving_default,
translate_ids, translate_all, translate_bytes; metadata has no inputs, so TF Serving's
REST API cannot call it, and neither can this one): row ("instances") and columnar
("inputs") formats, {"b64": ...} for binary strings in and for `*_bytes` outputs out, a
single output unnamed. So a client written for TF Serving (faceexpr_tf/serving/serving_client.py)
works unchanged. Bad input answers 4xx with {"error": "..."} (a body nested too deeply
for the JSON decoder included: 400, not a RecursionError).

One extension: serving_default and translate_bytes take an optional `intensity` input
(float per example, 0..1; default 1, what TF Serving computes), see intensity.py.

Every forward pass goes through one batcher.Batcher: a single model thread fed by a bounded
queue, which merges the requests waiting within a few milliseconds into one batch. A
full queue answers 503; FastAPI runs these (sync) routes in its bounded thread pool.
Beside TF Serving's contract, photo_api.py answers POST /v1/photos:edit (a whole photo
in, the photo edited back) with the helpers here (read_body, answer, error_response).
"""

import base64
import json

import fastapi
import numpy as np
from absl import logging
from fastapi import responses

from faceexpr_tf import errors
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.photos import intensity as intensity_lib
from faceexpr_tf.serving import translators
from faceexpr_tf.web import batcher as batcher_lib
from faceexpr_tf.web import predict_json

MAX_BODY_BYTES = 16 << 20        # a request body


class Api:
  """Answers :predict bodies for one translator through one batcher_lib.Batcher."""

  def __init__(self, batcher: batcher_lib.Batcher, model_name: str, version: int):
    self.batcher = batcher
    self.translator = batcher.translator
    self.model_name = model_name
    self.version = int(version)
    self.signatures = predict_json.signatures(self.translator)
    self._estimate = None

  def _target_ids(self, values: list) -> np.ndarray:
    ids = []
    for i, value in enumerate(values):
      name = predict_json.string(value, f"target[{i}]").decode("utf-8", "replace")
      try:
        ids.append(emotions_lib.class_id(name.strip(), self.translator.emotions))
      except errors.UserError:
        raise predict_json.RequestError(f"unknown emotion name in target (this model knows "
                           f"{', '.join(self.translator.emotions)}, any case); bad: "
                           f"[{name}]") from None
    return np.asarray(ids, np.int32)

  def _labels(self, faces_u8: np.ndarray, ids: np.ndarray, alphas: list | None
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """(label vectors, each row's gain on G's edit or None: intensity.edit_gain)."""
    k = self.translator.num_classes
    onehot = np.eye(k, dtype=np.float32)[ids]
    if alphas is None:
      return onehot, None
    alphas = predict_json.array(alphas, predict_json.Tensor("float32", (-1,)), "intensity")
    bad = (alphas < 0) | (alphas > 1)
    if bad.any():
      raise predict_json.RequestError(f"intensity must be in [0, 1]; bad: {alphas[bad].tolist()}")
    if np.all(alphas == 1):
      return onehot, None
    if not self.translator.takes_label_vectors:
      raise predict_json.RequestError(f"{self.translator.source} takes class ids only: "
                                      "intensity must be 1 (serve a Keras generator for "
                                      "other intensities)")
    if self._estimate is None:
      self._estimate = intensity_lib.source_estimator(self.translator)
    source = self._estimate(faces_u8)
    return (intensity_lib.blend(source, ids, alphas),
            intensity_lib.edit_gain(self.translator, ids, alphas))

  def _forward(self, images: np.ndarray, labels: np.ndarray, gain=None) -> np.ndarray:
    return self.batcher.run(images, labels, gain)

  def predict(self, body) -> dict:
    """A :predict request body (parsed JSON) -> the response body."""
    if not isinstance(body, dict):
      raise predict_json.RequestError("the request body must be a JSON object")
    name = body.get("signature_name") or "serving_default"
    if name not in self.signatures:
      raise predict_json.RequestError(f"Serving signature name: \"{name}\" not found in "
                                      f"signature def (this model has "
                                      f"{', '.join(self.signatures)})")
    inputs, outputs = self.signatures[name]
    if not inputs:
      raise predict_json.RequestError(f"Failed to get input map for signature: {name} (it has no "
                         "inputs; TF Serving's REST API cannot call it either)")
    columns = predict_json.columns(body, inputs, predict_json.OPTIONAL.get(name, ()))
    alphas = columns.get("intensity")
    t = self.translator
    if name == "translate_bytes":
      u8 = np.stack([predict_json.decode_image_bytes(predict_json.string(v, f"image_bytes[{i}]"), t,
                                        f"image_bytes[{i}]")
                     for i, v in enumerate(columns["image_bytes"])])
    elif name != "translate_ids":
      u8 = predict_json.array(columns["image"], inputs["image"], "image")
    if name == "translate_ids":
      images = predict_json.array(columns["image"], inputs["image"], "image")
      ids = predict_json.array(columns["target"], inputs["target"], "target")
      if ids.min() < 0 or ids.max() >= t.num_classes:
        bad = sorted(set(ids[(ids < 0) | (ids >= t.num_classes)].tolist()))
        raise predict_json.RequestError(f"target class id out of range [0, {t.num_classes}) "
                                        f"(classes: {', '.join(t.emotions)}); bad ids: {bad}")
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
        raise predict_json.RequestError(f"{name}: batch sizes differ (each image needs exactly one "
                           "target)")
      out = translators.to_uint8(self._forward(translators.to_model_range(u8),
                                             *self._labels(u8, ids, alphas)))
      result = [predict_json.encode_png(o) for o in out] if name == "translate_bytes" else out
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
      raise predict_json.RequestError(f"Servable not found for request: {which} (this server has "
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
      return {predict_json.B64: base64.b64encode(bytes(value)).decode("ascii")}
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


def error_response(status: int, message: str) -> responses.JSONResponse:
  return responses.JSONResponse({"error": message}, status_code=status)


def answer(fn, *args):
  """fn(*args), or the JSON error it raised: 4xx (or 503) for bad input, 500 otherwise."""
  try:
    return fn(*args)
  except predict_json.RequestError as e:
    return error_response(e.status, str(e))
  except errors.UserError as e:
    return error_response(400, str(e))
  except Exception as e:  # pylint: disable=broad-except  (the server stays up)
    logging.exception("request failed")
    return error_response(500, f"internal error: {type(e).__name__}: {e}")


def read_json(request_body: bytes):
  """A :predict body -> parsed JSON; RequestError (one line) for anything that is not."""
  if len(request_body) > MAX_BODY_BYTES:
    raise predict_json.RequestError(f"request body of {len(request_body):,} bytes is over "
                                    f"the limit of {MAX_BODY_BYTES:,}", 413)
  try:
    return json.loads(request_body)
  except (ValueError, UnicodeDecodeError) as e:
    raise predict_json.RequestError(f"the body is not valid JSON ({e})") from None
  except RecursionError:  # e.g. 50,000 nested arrays: the decoder's recursion limit
    raise predict_json.RequestError("the body is nested too deeply to parse (JSON arrays "
                                    "or objects about 1,000 levels deep or more)") from None


async def read_body(request: fastapi.Request, limit: int = MAX_BODY_BYTES) -> bytes:
  """The request's body, refused (413) as soon as it is known to be over `limit` bytes."""
  length = request.headers.get("content-length")
  if length and length.isdigit() and int(length) > limit:
    raise predict_json.RequestError(f"request body of {int(length):,} bytes is over the "
                                    f"limit of {limit:,}", 413)
  chunks, size = [], 0
  async for chunk in request.stream():
    size += len(chunk)
    if size > limit:
      raise predict_json.RequestError(f"request body is over the limit of {limit:,} bytes",
                                      413)
    chunks.append(chunk)
  return b"".join(chunks)


def router(api: Api) -> fastapi.APIRouter:
  routes = fastapi.APIRouter()

  async def predict(request: fastapi.Request, name: str, version: int | None):
    import anyio  # pylint: disable=g-import-not-at-top  (fastapi's dependency)
    try:
      api.check_model(name, version)
      raw = await read_body(request)
    except predict_json.RequestError as e:
      return error_response(e.status, str(e))
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
