"""The TF Serving client against the exported SavedModel, with TF Serving's wire formats.

No TF Serving binary is available here, so `_serve_rest` and `_serve_grpc` do what the
model server does around a signature call (tensorflow_serving/util/json_tensor.cc and
the Predict handler): JSON/TensorProto -> tensors, run the signature, tensors -> JSON/
PredictResponse. Everything else (request building, parsing, HTTP, gRPC) is the client's
real code path.
"""

import base64
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from concurrent import futures

import cv2
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from faceexpr_tf.serving import export
from faceexpr_tf.serving import serving_client
from faceexpr_tf.serving import signatures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP = 1  # the step conftest.py's tiny_saved_model is exported with


@pytest.fixture(scope="module")
def generator(tiny_saved_model):
  """A tiny random G, shared with other modules with its SavedModel (conftest.py)."""
  return tiny_saved_model[0]


@pytest.fixture(scope="module")
def loaded(tiny_loaded):
  return tiny_loaded


@pytest.fixture(scope="module")
def faces():
  return export.probe_images(3, 48, 1, seed=7)


# ---------------------------------------------------------------------------------------
# A stand-in for the model server's request handling.


def _json_to_numpy(value, dtype):
  """One input's JSON value -> numpy, decoding {"b64"} for strings as TF Serving does."""
  def decode(v):
    if isinstance(v, list):
      return [decode(x) for x in v]
    if isinstance(v, dict):
      if dtype != tf.string or set(v) != {"b64"}:
        raise ValueError(f"JSON Value: {v} not formatted correctly for base64 data")
      return base64.b64decode(v["b64"])
    if dtype == tf.string:
      if not isinstance(v, str):
        raise ValueError(f"JSON Value: {v} is not of expected type: DT_STRING")
      return v.encode()
    return v
  decoded = decode(value)
  if dtype == tf.string:
    return np.array(decoded, dtype=object)
  return np.array(decoded, dtype=dtype.as_numpy_dtype)


def _tensor_to_json(name, value):
  as_bytes = name.endswith("_bytes")     # TF Serving only looks at the name (DT_STRING)

  def encode(v):
    if isinstance(v, np.ndarray):
      return [encode(x) for x in v]
    if isinstance(v, bytes):
      return {"b64": base64.b64encode(v).decode()} if as_bytes else v.decode()
    return v.item() if isinstance(v, np.generic) else v
  return encode(value)


def _serve_rest(loaded, body: str) -> str:
  """TF Serving's :predict over JSON: request body -> response body."""
  try:
    request = json.loads(body)
    signature = loaded.signatures[request.get("signature_name", "serving_default")]
    specs = signature.structured_input_signature[1]
    if not specs:
      raise ValueError("Failed to get input map for signature")
    if "instances" in request:
      rows = request["instances"]
      if isinstance(rows[0], dict) and set(rows[0]) != {"b64"}:
        columns = {name: [row[name] for row in rows] for name in specs}
      else:
        (name,) = specs
        columns = {name: rows}
      row_format = True
    else:
      inputs = request["inputs"]
      columns = inputs if isinstance(inputs, dict) and set(inputs) != {"b64"} else {
          next(iter(specs)): inputs}
      row_format = False
    tensors = {name: tf.constant(_json_to_numpy(columns[name], spec.dtype), spec.dtype)
               for name, spec in specs.items()}
    outputs = {k: v.numpy() for k, v in signature(**tensors).items()}
  except (ValueError, KeyError, tf.errors.InvalidArgumentError) as e:
    return json.dumps({"error": getattr(e, "message", str(e))})
  if row_format:
    batch = {len(v) for v in outputs.values()}
    assert len(batch) == 1, "row format needs one batch size for every output"
    rows = [{name: _tensor_to_json(name, value[i]) for name, value in outputs.items()}
            for i in range(batch.pop())]
    if len(outputs) == 1:
      rows = [next(iter(row.values())) for row in rows]
    return json.dumps({"predictions": rows})
  columns = {name: _tensor_to_json(name, value) for name, value in outputs.items()}
  if len(columns) == 1:
    columns = next(iter(columns.values()))
  return json.dumps({"outputs": columns})


def _serve_grpc(loaded, request):
  """TF Serving's Predict over gRPC: PredictRequest -> PredictResponse."""
  signature = loaded.signatures[request.model_spec.signature_name or "serving_default"]
  tensors = {name: tf.constant(tf.make_ndarray(proto))
             for name, proto in request.inputs.items()}
  response = predict_pb2.PredictResponse()
  response.model_spec.CopyFrom(request.model_spec)
  for name, value in signature(**tensors).items():
    response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
  return response


def _keras_uint8(generator, faces, ids):
  out = generator(signatures.to_unit_range(faces), tf.one_hot(ids, 4))
  return signatures.to_uint8(out).numpy().astype(int)


def _png(image):
  return cv2.imencode(".png", image)[1].tobytes()


# ---------------------------------------------------------------------------------------
# REST.


def test_rest_request_json_uses_b64_for_bytes_and_plain_strings_for_names():
  body = json.loads(serving_client.rest_request_json(
      "translate_bytes", {"image_bytes": [b"\x89PNG\x00\xff"], "target": ["Happy"]}))
  assert body == {"signature_name": "translate_bytes",
                  "instances": [{"image_bytes": {"b64": "iVBORwD/"}, "target": "Happy"}]}
  columnar = json.loads(serving_client.rest_request_json(
      "serving_default", {"image": np.zeros((2, 1, 2, 1), np.uint8),
                          "target": np.array(["Sad", "Angry"])}, row_format=False))
  assert columnar == {"signature_name": "serving_default",
                      "inputs": {"image": [[[[0], [0]]], [[[0], [0]]]],
                                 "target": ["Sad", "Angry"]}}


def test_rest_request_refuses_what_tf_serving_would():
  with pytest.raises(serving_client.ServingError, match="no inputs.*gRPC"):
    serving_client.rest_request_json("metadata", {})
  with pytest.raises(serving_client.ServingError, match="different batch sizes"):
    serving_client.rest_request("serving_default", {"image": np.zeros((2, 48, 48, 1)),
                                                    "target": ["Sad"]})


@pytest.mark.parametrize("row_format", [True, False])
def test_rest_round_trip_serving_default(loaded, generator, faces, row_format):
  request = serving_client.rest_request_json(
      "serving_default", {"image": faces, "target": ["happy", "SAD", "Surprise"]},
      row_format=row_format)
  out = serving_client.parse_rest_response(_serve_rest(loaded, request), "serving_default")
  assert out["image"].dtype == np.uint8 and out["image"].shape == (3, 48, 48, 1)
  expected = _keras_uint8(generator, faces, np.array([1, 2, 3]))
  assert np.abs(out["image"].astype(int) - expected).max() <= 1


@pytest.mark.parametrize("row_format", [True, False])
def test_rest_round_trip_translate_bytes(loaded, faces, row_format):
  pngs = [_png(faces[0]), _png(cv2.resize(faces[1], (100, 100)))]
  request = serving_client.rest_request_json(
      "translate_bytes", {"image_bytes": pngs, "target": ["Angry", "happy"]},
      row_format=row_format)
  response = _serve_rest(loaded, request)
  assert '"b64"' in response       # png_bytes ends in _bytes: TF Serving base64s it
  out = serving_client.parse_rest_response(response, "translate_bytes")
  direct = loaded.signatures["translate_bytes"](
      image_bytes=tf.constant(pngs), target=tf.constant(["Angry", "happy"]))["png_bytes"]
  assert list(out["png_bytes"]) == list(direct.numpy())
  image = cv2.imdecode(np.frombuffer(out["png_bytes"][1], np.uint8), cv2.IMREAD_UNCHANGED)
  assert image.shape == (48, 48)


def test_rest_round_trip_translate_all_and_ids(loaded, generator, faces):
  out = serving_client.parse_rest_response(
      _serve_rest(loaded, serving_client.rest_request_json("translate_all",
                                                           {"image": faces})),
      "translate_all")
  assert out["images"].shape == (3, 4, 48, 48, 1) and out["images"].dtype == np.uint8
  x = signatures.to_unit_range(faces)
  out = serving_client.parse_rest_response(
      _serve_rest(loaded, serving_client.rest_request_json(
          "translate_ids", {"image": x, "target": np.array([3, 0, 1], np.int32)})),
      "translate_ids")
  expected = np.asarray(generator(x, tf.one_hot([3, 0, 1], 4)))
  # JSON floats are printed to round-trip exactly.
  np.testing.assert_allclose(out["image"], expected, atol=1e-5)


def test_rest_error_response_raises_with_server_message(loaded, faces):
  request = serving_client.rest_request_json(
      "serving_default", {"image": faces[:1], "target": ["Grumpy"]})
  with pytest.raises(serving_client.ServingError, match="unknown emotion.*Grumpy"):
    serving_client.parse_rest_response(_serve_rest(loaded, request))


# ---------------------------------------------------------------------------------------
# gRPC.


def test_grpc_request_proto(faces):
  request = serving_client.grpc_predict_request(
      "serving_default", {"image": faces, "target": ["Happy", "Sad", "Angry"]},
      model_name="faceexpr", version=3)
  assert request.model_spec.name == "faceexpr"
  assert request.model_spec.signature_name == "serving_default"
  assert request.model_spec.version.value == 3
  image = request.inputs["image"]
  assert image.dtype == tf.uint8.as_datatype_enum
  assert [d.size for d in image.tensor_shape.dim] == [3, 48, 48, 1]
  assert list(request.inputs["target"].string_val) == [b"Happy", b"Sad", b"Angry"]


def test_grpc_round_trip_every_signature(loaded, generator, faces):
  def call(signature, inputs):
    request = serving_client.grpc_predict_request(signature, inputs)
    # What goes over the wire is the serialised proto.
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    return serving_client.parse_grpc_response(_serve_grpc(loaded, request))

  out = call("serving_default", {"image": faces, "target": ["happy", "sad", "angry"]})
  assert np.abs(out["image"].astype(int)
                - _keras_uint8(generator, faces, np.array([1, 2, 0]))).max() <= 1
  out = call("translate_bytes", {"image_bytes": [_png(faces[0])], "target": "Surprise"})
  assert cv2.imdecode(np.frombuffer(out["png_bytes"][0], np.uint8),
                      cv2.IMREAD_UNCHANGED).shape == (48, 48)
  x = signatures.to_unit_range(faces)
  out = call("translate_ids", {"image": x, "target": np.array([0, 1, 2], np.int32)})
  np.testing.assert_allclose(out["image"], generator(x, tf.one_hot([0, 1, 2], 4)),
                             atol=1e-5)
  out = call("metadata", {})
  assert list(out["class_names"]) == [b"Angry", b"Happy", b"Sad", b"Surprise"]
  assert int(out["step"]) == STEP and int(out["model_version"]) == 1


def test_predict_grpc_against_a_grpc_server(loaded, faces):
  class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):

    def Predict(self, request, context):  # pylint: disable=invalid-name
      try:
        return _serve_grpc(loaded, request)
      except tf.errors.InvalidArgumentError as e:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)

  server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
  port = server.add_insecure_port("127.0.0.1:0")
  server.start()
  try:
    out = serving_client.predict_grpc(f"127.0.0.1:{port}", "faceexpr", "metadata", {})
    assert int(out["image_size"]) == 48
    with pytest.raises(serving_client.ServingError, match="INVALID_ARGUMENT.*unknown emo"):
      serving_client.predict_grpc(f"127.0.0.1:{port}", "faceexpr", "serving_default",
                                  {"image": faces[:1], "target": ["nope"]})
  finally:
    server.stop(None)


# ---------------------------------------------------------------------------------------
# The command line against a local HTTP server speaking TF Serving's REST API.


@pytest.fixture(scope="module")
def rest_server(loaded):
  seen = []

  class Handler(http.server.BaseHTTPRequestHandler):

    def do_POST(self):  # pylint: disable=invalid-name
      seen.append(self.path)
      body = self.rfile.read(int(self.headers["Content-Length"]))
      response = _serve_rest(loaded, body.decode())
      status = 400 if '"error"' in response[:20] else 200
      if not self.path.startswith("/v1/models/faceexpr"):
        status, response = 404, json.dumps({"error": "Servable not found"})
      self.send_response(status)
      self.send_header("Content-Type", "application/json")
      self.end_headers()
      self.wfile.write(response.encode())

    def log_message(self, *args):
      pass

  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f"127.0.0.1:{server.server_address[1]}", seen
  server.shutdown()


def _client(*args):
  # The REST path imports neither TensorFlow nor grpc: this subprocess is quick.
  return subprocess.run([sys.executable, "-m", "faceexpr_tf.serving.serving_client", *args],
                        cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                        capture_output=True, text=True, timeout=120)


def test_cli_translates_a_photo_over_rest(rest_server, faces, tmp_path):
  server, seen = rest_server
  photo = tmp_path / "face.jpg"
  cv2.imwrite(str(photo), cv2.resize(faces[2], (120, 120)))
  out = tmp_path / "out" / "happy.png"
  result = _client(f"--server={server}", f"--image={photo}", "--emotion=Happy",
                   f"--out={out}", "--version=1")
  assert result.returncode == 0, result.stderr[-2000:]
  assert seen[-1] == "/v1/models/faceexpr/versions/1:predict"
  assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (48, 48)


def test_rest_client_does_not_import_tensorflow():
  probe = ("import sys, faceexpr_tf.serving.serving_client as c; "
           "c.rest_request_json('translate_bytes', {'image_bytes': [b'x'], "
           "'target': ['Sad']}); assert 'tensorflow' not in sys.modules, 'imported TF'")
  result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=60)
  assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("case", ["bad_emotion", "no_server", "missing_image",
                                  "missing_flag"])
def test_cli_errors_are_one_line(rest_server, faces, tmp_path, case):
  server, _ = rest_server
  photo = tmp_path / "face.png"
  cv2.imwrite(str(photo), faces[0])
  args = {"bad_emotion": [f"--server={server}", f"--image={photo}", "--emotion=Grumpy"],
          "no_server": ["--server=127.0.0.1:9", f"--image={photo}", "--emotion=Sad"],
          "missing_image": [f"--server={server}", f"--image={tmp_path}/no.png",
                            "--emotion=Sad"],
          "missing_flag": [f"--server={server}", f"--image={photo}"]}[case]
  result = _client(*args, f"--out={tmp_path}/o.png")
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1
  expected = {"bad_emotion": "HTTP 400.*unknown emotion.*Grumpy",
              "no_server": "cannot reach TF Serving", "missing_image": "no.png",
              "missing_flag": "--emotion is required"}[case]
  assert re.search(expected, errors[0]), errors[0]
  assert not (tmp_path / "o.png").exists()
