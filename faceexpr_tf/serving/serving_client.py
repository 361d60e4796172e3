r"""A small client for the generator served by TF Serving (REST or gRPC).

  python -m faceexpr_tf.serving.serving_client --server=localhost:8501 \
      --image=face.png --emotion=Happy --out=happy.png
  python -m faceexpr_tf.serving.serving_client --grpc --server=localhost:8500 ...

It sends the photo's file bytes to the `translate_bytes` signature (the server decodes,
grays and resizes it, so the client needs neither TensorFlow nor an image library) and
writes the PNG that comes back.

The request builders and response parsers are pure functions, so tests check them
against the exported SavedModel without a server. REST needs only the standard library
and numpy; gRPC needs tensorflow and tensorflow-serving-api (imported only when used).
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

import numpy as np
from absl import flags
from absl import logging

from faceexpr_tf import cli
from faceexpr_tf import errors
from faceexpr_tf import optional
from faceexpr_tf.serving import serving_flags

# Output names and dtypes per signature (see faceexpr_tf/serving/export.py). JSON carries no
# dtype, and TF Serving drops the output name when a signature has a single output.
SIGNATURE_OUTPUTS = {
    "serving_default": {"image": np.uint8},
    "translate_ids": {"image": np.float32},
    "translate_all": {"images": np.uint8},
    "translate_bytes": {"png_bytes": bytes},
    "metadata": {"class_names": bytes, "image_size": np.int32, "channels": np.int32,
                 "model_version": np.int64, "step": np.int64},
}
_B64 = "b64"

# This mode's flags, apart from every other mode's: main.py parses them only when
# the mode runs, so their defaults never depend on what else was imported.
FLAGS = flags.FlagValues()
_SERVER = flags.DEFINE_string(
    "server", "localhost:8501", "TF Serving host:port (REST is 8501, gRPC 8500 in the "
    "docker image).", flag_values=FLAGS)
_GRPC = flags.DEFINE_bool("grpc", False, "Use gRPC instead of REST.", flag_values=FLAGS)
_MODEL_NAME = serving_flags.define_model_name(FLAGS)
_VERSION = flags.DEFINE_integer("version", None, "Model version (default: the newest "
                                "the server has loaded).", flag_values=FLAGS)
_IMAGE = flags.DEFINE_string("image", None, "Face photo: PNG, JPEG, BMP or GIF, any "
                             "size, colour or gray (a tight face crop works best).",
                             flag_values=FLAGS)
_EMOTION = flags.DEFINE_string("emotion", None, "Target emotion name, e.g. Happy.",
                               flag_values=FLAGS)
_OUT = flags.DEFINE_string("out", None, "Where to write the translated PNG.", flag_values=FLAGS)
_TIMEOUT = flags.DEFINE_float("timeout", 30.0, "Request timeout in seconds.", flag_values=FLAGS)


class ServingError(errors.UserError):
  """The server could not be reached or refused the request; the message says why."""


# ---------------------------------------------------------------------------------------
# REST.


def _to_json_value(value):
  """Numpy/bytes/str (nested) -> JSON-ready: bytes become {"b64": ...} as TF Serving wants."""
  if isinstance(value, (bytes, bytearray)):
    return {_B64: base64.b64encode(bytes(value)).decode("ascii")}
  if isinstance(value, np.ndarray):
    if value.dtype.kind in "SO":
      return [_to_json_value(v) for v in value]
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (list, tuple)):
    return [_to_json_value(v) for v in value]
  return value


def rest_request(signature_name: str, inputs: Mapping[str, object],
                 row_format: bool = True) -> dict:
  """The JSON object for POST /v1/models/<name>:predict.

  Args:
    signature_name: e.g. "serving_default" or "translate_bytes".
    inputs: {input name: batched value}; bytes values are sent as {"b64": ...}.
    row_format: "instances" (one object per example; every input must share the batch
      size) or, if False, "inputs" (columnar: one list per input).
  """
  if not inputs:
    # TF Serving answers "Failed to get input map for signature" for these.
    raise ServingError(f"signature {signature_name!r} has no inputs; TF Serving's REST "
                       "API cannot call it (use gRPC)")
  request = {"signature_name": signature_name}
  if not row_format:
    request["inputs"] = {name: _to_json_value(value) for name, value in inputs.items()}
    return request
  columns = {name: list(value) for name, value in inputs.items()}
  sizes = {len(col) for col in columns.values()}
  if len(sizes) != 1:
    raise ServingError(f"inputs {', '.join(columns)} have different batch sizes "
                       f"({', '.join(str(len(c)) for c in columns.values())})")
  request["instances"] = [{name: _to_json_value(col[i]) for name, col in columns.items()}
                          for i in range(sizes.pop())]
  return request


def rest_request_json(signature_name: str, inputs: Mapping[str, object],
                      row_format: bool = True) -> str:
  return json.dumps(rest_request(signature_name, inputs, row_format))


def _one_line(message) -> str:
  # TF error messages span lines (node names, stack hints); the user sees one line.
  return " ".join(str(message).split())


def _from_json_value(value):
  if isinstance(value, dict) and set(value) == {_B64}:
    return base64.b64decode(value[_B64])
  if isinstance(value, list):
    return [_from_json_value(v) for v in value]
  return value


def _as_array(value, dtype):
  if dtype is bytes:
    return np.array(value, dtype=object)
  return np.asarray(value, dtype=dtype)


def parse_rest_response(body, signature_name: str = "serving_default"
                        ) -> dict[str, np.ndarray]:
  """A :predict response (str, bytes or parsed dict) -> {output name: numpy array}.

  String outputs come back as object arrays of bytes ({"b64"} values decoded).

  Raises:
    ServingError: the response is TF Serving's {"error": ...}.
  """
  if isinstance(body, (bytes, bytearray, str)):
    body = json.loads(body)
  if "error" in body:
    raise ServingError(f"TF Serving: {_one_line(body['error'])}")
  dtypes = SIGNATURE_OUTPUTS.get(signature_name, {})
  if "predictions" in body:            # row format
    rows = _from_json_value(body["predictions"])
    if rows and isinstance(rows[0], dict):
      columns = {name: [row[name] for row in rows] for name in rows[0]}
    else:
      columns = {_single_output(signature_name, dtypes): rows}
  elif "outputs" in body:              # columnar format
    outputs = _from_json_value(body["outputs"])
    if isinstance(outputs, dict) and len(dtypes) != 1:
      columns = outputs
    else:
      columns = {_single_output(signature_name, dtypes): outputs}
  else:
    raise ServingError(f"unexpected response (no predictions/outputs): {str(body)[:200]}")
  return {name: _as_array(value, dtypes.get(name)) for name, value in columns.items()}


def _single_output(signature_name: str, dtypes: dict) -> str:
  if len(dtypes) != 1:
    raise ServingError(f"cannot name the single output of signature {signature_name!r}")
  return next(iter(dtypes))


def predict_url(server: str, model_name: str, version: int | None = None) -> str:
  base = server if "://" in server else f"http://{server}"
  path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version else "")
  return f"{base.rstrip('/')}{path}:predict"


def predict_rest(server: str, model_name: str, signature_name: str,
                 inputs: Mapping[str, object], version: int | None = None,
                 timeout: float = 30.0) -> dict[str, np.ndarray]:
  """POSTs a :predict request and returns the parsed outputs."""
  url = predict_url(server, model_name, version)
  data = rest_request_json(signature_name, inputs).encode()
  request = urllib.request.Request(url, data=data,
                                   headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      body = response.read()
  except urllib.error.HTTPError as e:
    # TF Serving puts the reason in a JSON body: {"error": "..."}.
    body = e.read()
    try:
      parse_rest_response(body, signature_name)
    except (ServingError, ValueError) as parsed:
      raise ServingError(f"{url}: HTTP {e.code}: {parsed}") from None
    raise ServingError(f"{url}: HTTP {e.code}") from None
  except (urllib.error.URLError, OSError) as e:
    reason = getattr(e, "reason", e)
    raise ServingError(f"{url}: cannot reach TF Serving ({reason})") from None
  return parse_rest_response(body, signature_name)


# ---------------------------------------------------------------------------------------
# gRPC.


def _tensor_proto(value):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if isinstance(value, (bytes, str)):
    value = [value]            # a lone string is a batch of one
  if isinstance(value, np.ndarray) and value.dtype.kind == "U":
    value = np.char.encode(value, "utf-8")
  elif isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
    value = [v.encode() for v in value]
  return tf.make_tensor_proto(value)


_GRPC_PURPOSE = "for --grpc (REST, the default, needs no extra package)"


def grpc_predict_request(signature_name: str, inputs: Mapping[str, object],
                         model_name: str = "faceexpr", version: int | None = None):
  """A tensorflow_serving PredictRequest; numpy dtypes are kept (pass int32 ids as int32)."""
  predict_pb2 = optional.require("tensorflow_serving.apis.predict_pb2", _GRPC_PURPOSE)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  if version:
    request.model_spec.version.value = int(version)
  for name, value in inputs.items():
    request.inputs[name].CopyFrom(_tensor_proto(value))
  return request


def parse_grpc_response(response) -> dict[str, np.ndarray]:
  """A PredictResponse -> {output name: numpy array} (strings as bytes objects)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def predict_grpc(server: str, model_name: str, signature_name: str,
                 inputs: Mapping[str, object], version: int | None = None,
                 timeout: float = 30.0) -> dict[str, np.ndarray]:
  """Sends a PredictRequest over gRPC and returns the outputs (the only way to metadata)."""
  grpc = optional.require("grpc", _GRPC_PURPOSE)
  prediction_service_pb2_grpc = optional.require(
      "tensorflow_serving.apis.prediction_service_pb2_grpc", _GRPC_PURPOSE)
  request = grpc_predict_request(signature_name, inputs, model_name, version)
  # PNGs of big batches exceed gRPC's 4 MB default message size.
  options = [("grpc.max_receive_message_length", 64 << 20),
             ("grpc.max_send_message_length", 64 << 20)]
  with grpc.insecure_channel(server, options=options) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
      response = stub.Predict(request, timeout=timeout)
    except grpc.RpcError as e:
      raise ServingError(f"{server}: gRPC {e.code().name}: {_one_line(e.details())}"
                         ) from None
  return parse_grpc_response(response)


# ---------------------------------------------------------------------------------------
# Command line.


def translate_file(server: str, image_path: str, emotion: str, *, use_grpc: bool = False,
                   model_name: str = "faceexpr", version: int | None = None,
                   timeout: float = 30.0) -> bytes:
  """Sends an image file to translate_bytes; returns the translated PNG's bytes."""
  try:
    with open(image_path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ServingError(f"{image_path}: {e.strerror}") from None
  predict = predict_grpc if use_grpc else predict_rest
  outputs = predict(server, model_name, "translate_bytes",
                    {"image_bytes": [data], "target": [emotion]}, version, timeout)
  return bytes(outputs["png_bytes"][0])


def main(argv):
  del argv
  try:
    for flag in (_IMAGE, _EMOTION, _OUT):
      if not flag.value:
        raise ServingError(f"--{flag.name} is required")
    png = translate_file(_SERVER.value, _IMAGE.value, _EMOTION.value,
                         use_grpc=_GRPC.value, model_name=_MODEL_NAME.value,
                         version=_VERSION.value, timeout=_TIMEOUT.value)
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "wb") as f:
      f.write(png)
  except errors.UserError as e:
    sys.stderr.write(f"error: {e}\n")
    return 2
  logging.info("Wrote %s (%d bytes)", _OUT.value, len(png))
  return 0


if __name__ == "__main__":
  cli.run(FLAGS, main)
