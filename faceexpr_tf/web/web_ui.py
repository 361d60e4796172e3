"""The page of `main.py serve`: a Gradio Blocks app to try the generator on a photo.

Upload, drop, paste or take a webcam photo (or click a sample); the page shows the
detected face box, the face in every emotion at the chosen intensity, a strip of
intermediate steps (rows: emotions, columns: intensity 0 .. 1) and a PNG of the grid to
download. A file that is not an image, too large, or shows no face gets a message on
the page; the server stays up. Every forward pass goes through the server's Batcher
(batcher.py), the same model thread the REST API uses.
"""

import dataclasses
import glob
import os
import tempfile

import numpy as np

from faceexpr_tf import errors
from faceexpr_tf.data import visualize
from faceexpr_tf.photos import faces
from faceexpr_tf.photos import intensity as intensity_lib
from faceexpr_tf.serving import translators
from faceexpr_tf.store import keras_files

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phone-home
import gradio as gr  # pylint: disable=g-import-not-at-top,wrong-import-position

EXAMPLES_DIR = os.path.join(keras_files.ASSETS, "examples")
MAX_UPLOAD_BYTES = 20 << 20       # the page's message; Gradio itself refuses at 2x
MAX_UPLOAD_PIXELS = 40_000_000
FACE_SIZE = 192                   # side of each shown face
MARGIN = 0.2                      # as translate's --margin default
_ERROR_STYLE = "**{}**"


@dataclasses.dataclass
class Rejected:
  """An upload that never became an image: preprocess hands this to the handler."""
  message: str


def check_upload(payload) -> Rejected | None:
  """Why an uploaded file cannot be a photo here (not an image, too large), or None."""
  if payload is None or not getattr(payload, "path", None):
    return None
  import PIL.Image  # pylint: disable=g-import-not-at-top  (gradio's dependency)
  name = os.path.basename(payload.orig_name or payload.path)
  size = os.path.getsize(payload.path)
  if size > MAX_UPLOAD_BYTES:
    return Rejected(f"{name} is too large: {size / 2**20:.1f} MB (the limit is "
                    f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB)")
  try:
    with PIL.Image.open(payload.path) as image:
      width, height = image.size
  except Exception:  # pylint: disable=broad-except  (PIL raises many kinds)
    return Rejected(f"{name} is not an image: upload a photo (PNG, JPEG, WebP, BMP, GIF)")
  if width * height > MAX_UPLOAD_PIXELS:
    return Rejected(f"{name} is too large: {width}x{height} pixels (the limit is "
                    f"{MAX_UPLOAD_PIXELS / 1e6:.0f} megapixels)")
  return None


def photo_input(**kwargs) -> gr.Image:
  """A gr.Image whose preprocessing hands the handler a Rejected instead of failing, so a
  non-image or oversized file gets a message on the page, not a generic error toast.

  (The instance's preprocess is wrapped rather than gr.Image subclassed: Gradio writes a
  .pyi stub next to the module of every component class defined.)
  """
  image = gr.Image(**kwargs)
  plain = image.preprocess

  def preprocess(payload):
    rejected = check_upload(payload)
    if rejected is not None:
      return rejected
    try:
      return plain(payload)
    except Exception:  # pylint: disable=broad-except
      return Rejected(f"{os.path.basename(payload.orig_name or payload.path)}: a corrupt "
                      "or truncated image")

  image.preprocess = preprocess
  return image


@dataclasses.dataclass
class Result:
  """What the page shows for one photo."""
  message: str
  boxed: np.ndarray | None = None        # the photo with the face box
  expressions: list | None = None        # RGB [FACE_SIZE, FACE_SIZE, 3] per emotion
  steps: np.ndarray | None = None        # grid: rows emotions, columns intensities
  grid_png: str | None = None            # the downloadable grid


class Page:
  """The page's computation for one translator; forward passes go through run(images,
  labels) (the server's Batcher.run), so tests can drive it without a browser."""

  def __init__(self, translator: translators.Translator, run, out_dir: str | None = None):
    self.translator = translator
    self.run = run
    self.out_dir = out_dir or tempfile.mkdtemp(prefix="faceexpr_page_")
    self._estimate = None

  def source(self, face: np.ndarray) -> np.ndarray:
    if self._estimate is None:
      self._estimate = intensity_lib.source_estimator(self.translator)
    return self._estimate(face[None])[0]

  def translate(self, photo, alpha: float) -> Result:
    t = self.translator
    if photo is None:
      return Result("Upload, drop, paste or take a photo of a face (or click a sample).")
    if isinstance(photo, Rejected):
      return Result(_ERROR_STYLE.format(photo.message))
    alpha = intensity_lib.check_alpha(alpha)
    if alpha < 1 and not t.takes_label_vectors:
      return Result(_ERROR_STYLE.format(f"{t.source} takes class ids only: intensity "
                                        "must be 1"))
    photo = np.asarray(photo)
    if photo.ndim == 3 and photo.shape[-1] == 4:
      photo = photo[..., :3]
    boxes = faces.detect_faces(faces.to_gray(photo))
    if not boxes:
      return Result(_ERROR_STYLE.format(
          "No face found in this photo. Try a larger, frontal, well-lit face."))
    box = boxes[0]
    face = faces.to_model_input(faces.crop_square(photo, box, MARGIN), t.image_size,
                                t.channels)
    k = t.num_classes
    ids = np.arange(k)
    if t.takes_label_vectors:
      source = self.source(face)
      alphas = [alpha] + list(intensity_lib.STEPS)
      labels = np.concatenate([intensity_lib.blend(source, ids, a) for a in alphas])
    else:
      source, alphas = None, [1.0]
      labels = np.eye(k, dtype=np.float32)
    images = np.repeat(translators.to_model_range(face[None]), len(labels), axis=0)
    out = translators.to_uint8(self.run(images, labels))
    chosen = out[:k]
    grid = visualize.make_grid(np.concatenate([face[None], chosen])[None],
                               ["input", *t.emotions])
    path = os.path.join(self.out_dir, f"faceexpr_grid_{os.getpid()}_{id(out)}.png")
    visualize.write_png(path, grid)
    steps = None
    if len(alphas) > 1:
      # out[k:] is [step][emotion]; the strip shows emotions as rows.
      cells = out[k:].reshape((len(intensity_lib.STEPS), k) + face.shape).swapaxes(0, 1)
      steps = visualize.make_grid(cells, [f"{a:g}" for a in intensity_lib.STEPS], 2, 0)
    x, y, w, h = box
    read = ("" if source is None else
            f" The classifier reads it as {t.emotions[int(np.argmax(source))]} "
            f"({100 * float(np.max(source)):.0f}%).")
    more = f" ({len(boxes)} faces found; the largest is shown.)" if len(boxes) > 1 else ""
    return Result(
        f"Face at x={x}, y={y}, {w}x{h} px.{more}{read} Intensity {alpha:g}.",
        visualize.draw_boxes(photo, [box]),
        [visualize.enlarge(c, FACE_SIZE) for c in chosen], steps, path)


def examples() -> list[str]:
  return sorted(glob.glob(os.path.join(EXAMPLES_DIR, "*.png")))


def build(page: Page) -> gr.Blocks:
  """The Gradio Blocks page; elem_ids name what the browser test reads."""
  t = page.translator
  with gr.Blocks(title="faceexpr-tf: change the expression of a face",
                 analytics_enabled=False) as blocks:
    gr.Markdown("# faceexpr-tf\nChange the expression of a face: StarGAN on FER2013 "
                f"({', '.join(t.emotions)}). Model: {t.source}.")
    with gr.Row():
      with gr.Column(scale=1):
        photo = photo_input(sources=["upload", "webcam", "clipboard"], type="numpy",
                            label="Your photo (upload, drop, paste or webcam)",
                            elem_id="photo")
        alpha = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Intensity (0: the "
                          "input, 1: the full expression)", elem_id="intensity",
                          interactive=t.takes_label_vectors)
        button = gr.Button("Translate", variant="primary", elem_id="translate")
        gr.Examples(examples=[[p] for p in examples()], inputs=[photo],
                    label="Sample faces")
      with gr.Column(scale=1):
        message = gr.Markdown(elem_id="message")
        boxed = gr.Image(label="Detected face", interactive=False, elem_id="boxed")
    with gr.Row():
      shown = [gr.Image(label=name, interactive=False, elem_id=f"expr-{name.lower()}")
               for name in t.emotions]
    steps = gr.Image(label=f"Intermediate steps (rows: {', '.join(t.emotions)}; columns: "
                     "intensity)", interactive=False, elem_id="steps")
    download = gr.File(label="Download the grid (PNG)", elem_id="download")

    def handler(image, a):
      try:
        result = page.translate(image, a)
      except errors.UserError as e:
        result = Result(_ERROR_STYLE.format(str(e)))
      cells = result.expressions or [None] * len(shown)
      return [result.message, result.boxed, *cells, result.steps, result.grid_png]

    outputs = [message, boxed, *shown, steps, download]
    for event in (photo.change, alpha.release, button.click):
      event(handler, [photo, alpha], outputs, show_progress="minimal")
  return blocks
