"""`python main.py serve`: a page to try the generator, and TF Serving's REST API beside it.

    python main.py serve                         # the shipped generator, 127.0.0.1:8080
    python main.py serve --model=runs/fer --port=9000

One uvicorn server on 127.0.0.1: the Gradio page (web_ui.py) at /, the REST API
(rest_api.py) at /v1/models/<name>:predict and friends, /healthz, and beside it
POST /v1/photos:edit (photo_api.py: a photo in, the photo edited back). The page and the
photo route share one photos.editor.PhotoEditor; all feed one model thread (batcher.py)
through a bounded queue. Nothing calls out to the internet (no share links, no
analytics). Needs the `web` extra: pip install -e ".[web]".
"""

import os
import socket

from absl import flags
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf import optional
from faceexpr_tf.photos import detectors
from faceexpr_tf.serving import inference
from faceexpr_tf.serving import serving_flags
from faceexpr_tf.serving import translators

# This mode's flags, apart from every other mode's: main.py parses them only when
# the mode runs, so their defaults never depend on what else was imported.
FLAGS = flags.FlagValues()
_MODEL = flags.DEFINE_string(
    "model", None, "Generator to serve: a run dir, a SavedModel dir (or TF Serving base "
    "dir), a .keras or .tflite file; default: the generator shipped with the package. "
    "Intensities below 1 need a Keras generator (run dir, .keras, the shipped one).",
    flag_values=FLAGS)
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (127.0.0.1: this "
                            "machine only).", flag_values=FLAGS)
_PORT = flags.DEFINE_integer("port", 8080, "TCP port.", lower_bound=0, upper_bound=65535,
                             flag_values=FLAGS)
_MODEL_NAME = serving_flags.define_model_name(FLAGS)
_MAX_BATCH = flags.DEFINE_integer("max_batch", 64, "Most images per forward pass when "
                                  "requests are merged.", lower_bound=1, flag_values=FLAGS)
_MAX_WAIT_MS = flags.DEFINE_float("max_wait_ms", 5.0, "How long the model thread waits "
                                  "for more requests to merge into a batch.",
                                  lower_bound=0.0, flag_values=FLAGS)
_MAX_QUEUE = flags.DEFINE_integer("max_queue", 256, "Requests waiting beyond this are "
                                  "answered 503 (busy).", lower_bound=1, flag_values=FLAGS)

_DETECTOR = flags.DEFINE_enum(
    "detector", "auto", list(detectors.NAMES), "How the page and /v1/photos:edit find "
    "faces: mtcnn (with eye landmarks, so faces are aligned), haar (OpenCV's cascade, "
    "upright boxes only), auto (mtcnn when installed, else haar).", flag_values=FLAGS)

_WEB = "for `main.py serve`"


def build_app(translator: translators.Translator, model_name: str = "faceexpr",
              batcher=None, page: bool = True, detector: str | detectors.Detector = "auto"):
  """The FastAPI app: REST routes (TF Serving's and /v1/photos:edit), then (page=True)
  the Gradio page mounted at /. detector: a name (detectors.NAMES) or a Detector."""
  optional.require("fastapi", _WEB)
  optional.require("gradio", _WEB)
  import fastapi  # pylint: disable=g-import-not-at-top
  from fastapi import exceptions, responses  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.photos import editor as editor_lib  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.web import batcher as batcher_lib  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.web import photo_api  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.web import rest_api  # pylint: disable=g-import-not-at-top

  batcher = batcher or batcher_lib.Batcher(translator)
  if isinstance(detector, str):
    detector = detectors.load_detector(detector)
  editor = editor_lib.PhotoEditor(translator, photo_api.SerializedDetector(detector),
                                  run=batcher.run)
  version = getattr(translator, "model_version", None) or 1
  api = rest_api.Api(batcher, model_name, version)
  app = fastapi.FastAPI(title="faceexpr-tf", docs_url=None, redoc_url=None,
                        openapi_url=None)

  @app.exception_handler(exceptions.RequestValidationError)
  async def bad_request(unused_request, exc):  # e.g. a version that is not a number
    return responses.JSONResponse({"error": f"bad request: {exc.errors()}"}, 400)

  app.include_router(rest_api.router(api))
  photos = photo_api.PhotoApi(editor)
  app.include_router(photo_api.router(photos))
  app.state.api, app.state.photos = api, photos
  if page:
    from faceexpr_tf.web import web_ui  # pylint: disable=g-import-not-at-top
    import gradio as gr  # pylint: disable=g-import-not-at-top
    blocks = web_ui.build(web_ui.Page(editor))
    blocks.queue(max_size=64, default_concurrency_limit=4)
    app = gr.mount_gradio_app(app, blocks, path="/", ssr_mode=False,
                              max_file_size=2 * web_ui.MAX_UPLOAD_BYTES)
  return app


def check_port(host: str, port: int):
  """UserError now, before the slow model load, when the address cannot be listened on."""
  try:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
  except socket.gaierror as e:
    raise errors.UserError(f"--host={host}: unknown address ({e.strerror})") from None
  family, _, _, _, address = infos[0]
  with socket.socket(family, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind(address)
    except OSError as e:
      raise errors.UserError(f"cannot listen on {host}:{port} ({e.strerror}); pick "
                             "another --port") from None


def run() -> int:
  os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
  uvicorn = optional.require("uvicorn", _WEB)
  optional.require("gradio", _WEB)
  check_port(_HOST.value, _PORT.value)
  from faceexpr_tf.web import batcher as batcher_lib  # pylint: disable=g-import-not-at-top
  translator = inference.load_translator(_MODEL.value or "pretrained")
  logging.info("Loaded %r", translator)
  batcher = batcher_lib.Batcher(translator, _MAX_BATCH.value, _MAX_WAIT_MS.value / 1000,
                                _MAX_QUEUE.value)
  app = build_app(translator, _MODEL_NAME.value, batcher, detector=_DETECTOR.value)
  if _HOST.value not in ("127.0.0.1", "localhost", "::1"):
    logging.warning("Listening on %s: other machines can reach this server", _HOST.value)
  logging.info("Serving on http://%s:%d/ (REST: /v1/models/%s:predict, /v1/photos:edit, "
               "/healthz)", _HOST.value, _PORT.value, _MODEL_NAME.value)
  try:
    uvicorn.run(app, host=_HOST.value, port=_PORT.value, log_level="warning")
  finally:
    batcher.close()
  return 0
