"""The page of `main.py serve`: a Gradio Blocks app that edits the expression of the faces
in your photo.

Upload, drop, paste or take a webcam photo (or click a sample); the page shows the whole
photo edited toward each emotion at its full resolution (photos/editor.py: every face
found, aligned, G's edit carried into the photo's luminance), a before/after strip around
the largest face, an animation of that face going 0 -> 1 -> 0 toward each emotion (a GIF),
and downloads of the edited photos in the upload's format (JPEG stays JPEG, PNG stays
PNG), each file carrying its provenance (photos/photo_files.py); beside each result a
line says faceexpr-tf edited it, with which model, emotion and intensity. The intensity
slider re-edits the whole photo (the faces found are kept per upload). For model
trainers a closed panel shows the largest face as G sees it (48 px) at each intensity.

A file that is not an image, too large, or shows no face gets a message on the page; the
server stays up. Uploads reach the handler as the uploaded file (type="filepath",
image_mode=None), so format, EXIF and resolution are the user's. Every forward pass goes
through the editor's run, the server's Batcher (batcher.py): the REST API's model thread.
"""

import collections
import dataclasses
import glob
import os
import shutil
import tempfile
import threading
import time
import uuid

import numpy as np

from faceexpr_tf import errors
from faceexpr_tf.data import visualize
from faceexpr_tf.photos import editor as editor_lib
from faceexpr_tf.photos import faces as faces_lib
from faceexpr_tf.photos import intensity as intensity_lib
from faceexpr_tf.photos import photo_files
from faceexpr_tf.photos import photo_outputs
from faceexpr_tf.serving import translators
from faceexpr_tf.store import keras_files

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phone-home
import gradio as gr  # pylint: disable=g-import-not-at-top,wrong-import-position

EXAMPLES_DIR = os.path.join(keras_files.ASSETS, "examples")
MAX_UPLOAD_BYTES = 20 << 20       # the page's message; Gradio itself refuses at 2x
MAX_UPLOAD_PIXELS = 40_000_000
KEEP_S = 3600                     # the page's output files (and Gradio's copies) live this long
CACHE_PHOTOS = 8                  # uploads whose faces (and animation) are kept for the slider
CACHE_PIXELS = 100_000_000        # ... and at most this many of their pixels in memory
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
  """What the page shows for one photo (files: full resolution, the upload's format)."""
  message: str
  photos: dict[str, str] | None = None    # emotion -> the edited photo's file
  captions: dict[str, str] | None = None  # emotion -> the line beside it (provenance)
  strip: str | None = None                # before | each emotion, around the largest face
  animation: str | None = None            # GIF: the largest face 0 -> 1 -> 0, each emotion
  note: str = ""                          # the line beside the strip and the animation
  downloads: list[str] | None = None      # the edited photos, the strip, the GIF
  steps: np.ndarray | None = None         # 48 px: rows emotions, columns intensities


@dataclasses.dataclass
class _Upload:
  """One upload as the page keeps it between slider moves."""
  photo: photo_files.Photo
  faces: list[editor_lib.PhotoFace]
  folder: str
  read: str = ""                          # what the classifier reads in the largest face
  animation: str | None = None
  steps: np.ndarray | None = None


class Page:
  """The page's computation with one PhotoEditor (its run is the server's Batcher.run),
  so tests can drive it without a browser."""

  def __init__(self, editor: editor_lib.PhotoEditor, out_dir: str | None = None):
    self.editor = editor
    self.translator = editor.translator
    self.out_dir = out_dir or tempfile.mkdtemp(prefix="faceexpr_page_")
    self._uploads = collections.OrderedDict()
    self._lock = threading.Lock()
    self._estimate = None

  @property
  def model(self) -> str:
    return self.translator.source

  # -- one upload --------------------------------------------------------------------------

  def _folder(self) -> str:
    """A fresh folder for one request's files; folders older than KEEP_S go."""
    now = time.time()
    for old in glob.glob(os.path.join(self.out_dir, "*")):
      try:
        if now - os.path.getmtime(old) > KEEP_S:
          shutil.rmtree(old, ignore_errors=True)
      except OSError:
        pass
    folder = os.path.join(self.out_dir, uuid.uuid4().hex[:12])
    os.makedirs(folder)
    return folder

  def _upload(self, upload) -> _Upload:
    """The photo and its faces: found once per uploaded file, then kept."""
    key = None
    if isinstance(upload, (str, os.PathLike)):
      path = os.fspath(upload)
      try:
        key = (path, os.path.getsize(path), os.path.getmtime(path))
      except OSError:
        key = None
      with self._lock:
        if key in self._uploads:
          self._uploads.move_to_end(key)
          return self._uploads[key]
      try:
        photo = photo_files.read_photo(path)
      except faces_lib.ImageReadError as e:  # name the file, not Gradio's cache folder
        raise faces_lib.ImageReadError(str(e).replace(path, os.path.basename(path))) from None
    else:
      photo = photo_files.Photo(editor_lib.check_photo(np.asarray(upload)), "PNG", ".png")
    item = _Upload(photo, self.editor.find(photo.pixels), self._folder())
    if key is not None:
      with self._lock:
        self._uploads[key] = item
        while len(self._uploads) > 1 and (
            len(self._uploads) > CACHE_PHOTOS
            or sum(u.photo.pixels.size for u in self._uploads.values()) > 3 * CACHE_PIXELS):
          self._uploads.popitem(last=False)
    return item

  def _source(self, face: np.ndarray) -> np.ndarray:
    if self._estimate is None:
      self._estimate = intensity_lib.source_estimator(self.translator)
    return self._estimate(face[None])[0]

  def _extras(self, item: _Upload, face: editor_lib.PhotoFace, edited: int):
    """What does not depend on the slider: the animation, the classifier's reading, the
    48 px steps (once per upload)."""
    t = self.translator
    if item.animation is None or not os.path.exists(item.animation):
      frames, durations = photo_outputs.animation_frames(self.editor, item.photo.pixels,
                                                         face, list(t.emotions))
      os.makedirs(item.folder, exist_ok=True)   # pruned after KEEP_S: made again
      path = os.path.join(item.folder, f"{_stem(item.photo)}_face{face.index}.gif")
      photo_outputs.write_gif(path, frames, durations, photo_files.provenance(
          self.model, ",".join(t.emotions), "0 to 1", edited))
      item.animation = path
    if t.takes_label_vectors and item.steps is None:
      source = self._source(face.face)
      if intensity_lib.classifier_reads(t):   # else the source is uniform: nothing read
        item.read = (f" The classifier reads the largest as "
                     f"{t.emotions[int(np.argmax(source))]} ({100 * float(np.max(source)):.0f}%).")
      item.steps = self._steps(face.face, source)

  def _steps(self, face: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The face as G sees it, in each emotion (rows) at each intensity (columns)."""
    t = self.translator
    ids = np.arange(t.num_classes)
    labels = np.concatenate([intensity_lib.blend(source, ids, a)
                             for a in intensity_lib.STEPS])
    gains = intensity_lib.edit_gains(t, [(ids, a) for a in intensity_lib.STEPS])
    images = np.repeat(translators.to_model_range(face[None]), len(labels), axis=0)
    out = translators.to_uint8(self.editor.run(images, labels, gains))
    cells = out.reshape((len(intensity_lib.STEPS), t.num_classes) + face.shape)
    return visualize.make_grid(cells.swapaxes(0, 1),
                               [f"{a:g}" for a in intensity_lib.STEPS], 2, 0)

  def edit(self, upload, alpha: float) -> Result:
    """An upload (a file path, or a uint8 array) at intensity alpha -> what the page shows."""
    t = self.translator
    if upload is None:
      return Result("Upload, drop, paste or take a photo with a face (or click a sample).")
    if isinstance(upload, Rejected):
      return Result(_ERROR_STYLE.format(upload.message))
    alpha = intensity_lib.check_alpha(alpha)
    if alpha < 1 and not t.takes_label_vectors:
      return Result(_ERROR_STYLE.format(f"{t.source} takes class ids only: intensity "
                                        "must be 1"))
    item = self._upload(upload)
    edited = [f for f in item.faces if f.skipped is None]
    if not edited:
      return Result(_ERROR_STYLE.format(
          "No face found in this photo. Try a larger, frontal, well-lit face."
          if not item.faces else
          f"No face large enough to edit in this photo: {_skipped(item.faces)}."))
    edits = self.editor.edit_all(item.photo.pixels, None, alpha, faces=item.faces)
    written = photo_outputs.write_all(self.editor, item.photo, edits, self._folder(),
                                      _stem(item.photo), self.model, strip_too=True,
                                      animations=False)
    self._extras(item, edited[0], len(edited))
    photos = dict(zip(edits.photos, written))
    strip = written[len(photos)] if len(written) > len(photos) else None
    faces_text = f"{len(edited)} face{'s' if len(edited) > 1 else ''}"
    captions = {name: provenance_line(self.model, name, f"{alpha:g}", faces_text)
                for name in photos}
    note = provenance_line(self.model, ", ".join(photos), f"{alpha:g} (strip), 0 to 1 "
                           "(animation)", faces_text)
    height, width = item.photo.pixels.shape[:2]
    message = (f"Edited {faces_text} in your {width}x{height} photo, largest first: "
               + "; ".join(f.describe() for f in edited) + "."
               + (f" Not edited: {_skipped(item.faces)}." if len(edited) < len(item.faces)
                  else "")
               + item.read + f" Intensity {alpha:g}."
               + (f" ({item.photo.note.split(': ', 1)[-1]}.)" if item.photo.note else ""))
    return Result(message, photos, captions, strip, item.animation, note,
                  list(photos.values()) + [p for p in (strip, item.animation) if p],
                  item.steps)


def provenance_line(model: str, emotion: str, intensity: str, faces: str) -> str:
  """The line beside a result: what the provenance inside its file says."""
  return (f"Edited by faceexpr-tf (a GAN changed the expression): {emotion}, intensity "
          f"{intensity}, {faces}, model: {model}. The files say so inside (provenance).")


def _stem(photo: photo_files.Photo) -> str:
  return os.path.splitext(photo.name)[0] or "photo"


def _skipped(faces) -> str:
  return "; ".join(f"{f.describe()}: {f.skipped}" for f in faces if f.skipped)


def examples() -> list[str]:
  return sorted(glob.glob(os.path.join(EXAMPLES_DIR, "*.png")))


def build(page: Page) -> gr.Blocks:
  """The Gradio Blocks page; elem_ids name what the browser test reads."""
  t = page.translator
  with gr.Blocks(title="faceexpr-tf: change the expression of the faces in a photo",
                 analytics_enabled=False, delete_cache=(KEEP_S, KEEP_S)) as blocks:
    gr.Markdown("# faceexpr-tf\nChange the expression of the faces in your photo: StarGAN "
                f"on FER2013 ({', '.join(t.emotions)}), edited in place at full resolution. "
                f"Model: {t.source}.")
    with gr.Row():
      with gr.Column(scale=1):
        photo = photo_input(sources=["upload", "webcam", "clipboard"], type="filepath",
                            image_mode=None, label="Your photo (upload, drop, paste or "
                            "webcam)", elem_id="photo")
        alpha = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Intensity (0: the "
                          "input, 1: the full expression)", elem_id="intensity",
                          interactive=t.takes_label_vectors)
        button = gr.Button("Edit my photo", variant="primary", elem_id="translate")
        gr.Examples(examples=[[p] for p in examples()], inputs=[photo],
                    label="Sample photos")
      with gr.Column(scale=1):
        message = gr.Markdown(elem_id="message")
        gr.Markdown("**Before | after**, around the largest face (each cell is titled)")
        strip = gr.Image(show_label=False, buttons=[], type="filepath", interactive=False,
                         elem_id="strip")  # no overlays: they would hide the cells' titles
        animation = gr.Image(label="The largest face, intensity 0 to 1 (GIF)",
                             type="filepath", format="gif", interactive=False,
                             elem_id="animation")
        note = gr.Markdown(elem_id="note")
    shown, captions = [], []
    with gr.Row():
      for name in t.emotions:
        with gr.Column(min_width=160):
          shown.append(gr.Image(label=f"Your photo: {name}", type="filepath",
                                interactive=False, elem_id=f"edited-{name.lower()}"))
          captions.append(gr.Markdown(elem_id=f"caption-{name.lower()}"))
    downloads = gr.File(label="Download the edited photos (full resolution, the upload's "
                        "format, provenance inside), the strip and the animation",
                        file_count="multiple", interactive=False, elem_id="downloads")
    with gr.Accordion("For model trainers: the largest face as the model sees it (48 px), "
                      "each emotion at intensity 0 .. 1", open=False):
      steps = gr.Image(label=f"Rows: {', '.join(t.emotions)}; columns: intensity",
                       interactive=False, format="png", elem_id="steps")

    def handler(upload, a):
      try:
        result = page.edit(upload, a)
      except errors.UserError as e:
        result = Result(_ERROR_STYLE.format(str(e)))
      photos, lines = result.photos or {}, result.captions or {}
      return [result.message, result.strip, result.animation, result.note,
              *[photos.get(n) for n in t.emotions], *[lines.get(n, "") for n in t.emotions],
              result.downloads, result.steps]

    outputs = [message, strip, animation, note, *shown, *captions, downloads, steps]
    for event in (photo.change, alpha.release, button.click):
      event(handler, [photo, alpha], outputs, show_progress="minimal")
  return blocks
