"""`python main.py translate`: change the expression of faces in your own photos.

    python main.py translate --input=me.jpg,friends/ --out=translated   # the shipped G
    python main.py translate --model=runs/fer --input=me.jpg --out=out --grids

For each photo: find every face (MTCNN with eye landmarks when installed, else OpenCV's
Haar cascade), align it as FER2013 frames faces, run G on its 48x48 gray face, and carry
G's edit back into the photo's luminance at full resolution (photos/editor.py). Written:

  <out>/<stem>_<Emotion><ext>   the whole photo, edited, per emotion: the input's size and
                                format, provenance in its metadata (photos/photo_files.py)
  <out>/<stem>_strip<ext>       before | each emotion, around the largest face
  <out>/<stem>_face<i>.gif      face i going from intensity 0 to 1 and back, per emotion

--grids also writes the 48 px view for those who train models (photos/grids.py:
<stem>_face<i>_grid.png, <stem>_face<i>_<Emotion>.png, <stem>_faces.png); fer2013-style
csv inputs (emotion,pixels[,Usage]; each row is already a face, named <stem>_row<i>)
always get that view. --model takes a run dir, an exported SavedModel (or TF Serving base
dir), a .keras or a .tflite. A file that cannot be read or shows no face to edit is
reported in one line and skipped; the exit status is then 1.
"""

import os
import time

from absl import flags
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.photos import detectors
from faceexpr_tf.photos import editor as editor_lib
from faceexpr_tf.photos import faces
from faceexpr_tf.photos import grids
from faceexpr_tf.photos import inputs
from faceexpr_tf.photos import photo_files
from faceexpr_tf.photos import photo_outputs
from faceexpr_tf.serving import inference

# This mode's flags, apart from every other mode's: main.py parses them only when
# the mode runs, so their defaults never depend on what else was imported.
FLAGS = flags.FlagValues()
_MODEL = flags.DEFINE_string(
    "model", None, "Generator to use: a run dir, a SavedModel dir (or TF Serving base "
    "dir: the highest version is used), a .tflite or .keras file; default: the generator "
    "shipped with the package (FER2013, docs/MODEL_CARD.md).", flag_values=FLAGS)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Run dirs only: checkpoint step number or .npz path (default: "
    "the newest).", flag_values=FLAGS)
_INPUT = flags.DEFINE_multi_string(
    "input", None, "Image files, folders of images or fer2013-style csv files; "
    "comma-separated and/or repeated.", flag_values=FLAGS)
_OUT = flags.DEFINE_string("out", None, "Folder for the outputs (created if needed).",
                           flag_values=FLAGS)
_EMOTIONS = flags.DEFINE_string(
    "emotions", None, "Emotions to translate to, e.g. Happy,Sad (default: all the model "
    "knows).", flag_values=FLAGS)
_CLASS_NAMES = flags.DEFINE_string(
    "class_names", None, ".tflite only: the model's emotions in class-id order, when no "
    "<name>_labels.txt sits next to it (default: Angry,Happy,Sad,Surprise).", flag_values=FLAGS)
_NO_DETECT = flags.DEFINE_boolean(
    "no_detect", False, "Use each whole image as the face (it is padded to a square) "
    "instead of detecting faces.", flag_values=FLAGS)
_MARGIN = flags.DEFINE_float(
    "margin", 0.2, "Space around a face found without eye landmarks (Haar, --noalign, "
    "--grids), as a fraction of its size per side (FER2013 crops show a little hair and "
    "chin).", lower_bound=0.0, upper_bound=2.0,
    flag_values=FLAGS)
_MAX_FACES = flags.DEFINE_integer("max_faces", 10, "Most faces translated per photo "
                                  "(largest first).", lower_bound=1, flag_values=FLAGS)
_MAX_ROWS = flags.DEFINE_integer("max_rows", 100, "Most rows translated per csv file "
                                 "(0: all).", lower_bound=0, flag_values=FLAGS)
_SCALE = flags.DEFINE_integer("scale", 4, "--grids: cells are the model's faces enlarged "
                              "this many times (nearest neighbour: every pixel stays visible).",
                              lower_bound=1, upper_bound=16, flag_values=FLAGS)
_FACE_SIZE = flags.DEFINE_integer("face_size", 192, "--grids: side of each per-emotion "
                                  "face PNG (bicubic enlargement).", lower_bound=8, flag_values=FLAGS)
_INTENSITY = flags.DEFINE_float(
    "intensity", 1.0, "How far to change the expression: 0 is the input (G fed the "
    "face's own expression as read by the shipped classifier), 1 the full target "
    "expression; in between G is fed a blend of the two labels. Below 1 needs a Keras "
    "generator (a run dir, a .keras file or the shipped one).", lower_bound=0.0,
    upper_bound=1.0, flag_values=FLAGS)

# Not --batch_size: training and classifier training define that one with other defaults,
# and a process importing several modes (pytest) would share one value.
_FACE_BATCH = flags.DEFINE_integer(
    "face_batch", 64, "Faces translated together, gathered across files (each goes to "
    "every emotion asked for: G runs on face_batch x emotions images, in chunks of 64). "
    "Outputs are the same for any value.", lower_bound=1, flag_values=FLAGS)

_CSV_SUFFIXES = (".csv", ".csv.gz")

_GRIDS = flags.DEFINE_boolean(
    "grids", False, "Also write the 48 px view: each face as G sees it, translated, in a "
    "grid (<stem>_face<i>_grid.png, <stem>_face<i>_<Emotion>.png, <stem>_faces.png). "
    "csv inputs always get it.", flag_values=FLAGS)
_DETECTOR = flags.DEFINE_enum(
    "detector", "auto", list(detectors.NAMES), "Face detector: mtcnn (eye landmarks: "
    "faces are aligned), haar (OpenCV, boxes only), auto (mtcnn when installed).",
    flag_values=FLAGS)
_ALIGN = flags.DEFINE_boolean(
    "align", True, "Align each face by its eyes to FER2013's frame (level eyes, FER2013's "
    "scale); --noalign cuts an upright square around the box instead.", flag_values=FLAGS)
_MIN_FACE_PX = flags.DEFINE_float(
    "min_face_px", editor_lib.MIN_FACE_PX, "Faces whose 48 px frame spans fewer photo "
    "pixels than this are left as they are (named in the log): an edit there is too "
    "small to show.", lower_bound=0.0, flag_values=FLAGS)
_STRIP = flags.DEFINE_boolean("strip", True, "Write <stem>_strip<ext>: before | each "
                              "emotion, around the largest face.", flag_values=FLAGS)
_ANIMATION = flags.DEFINE_boolean(
    "animation", True, "Write <stem>_face<i>.gif: each face from intensity 0 to 1 and back, "
    "toward each emotion in turn.", flag_values=FLAGS)


def edit_photos(paths, editor: editor_lib.PhotoEditor, out_dir: str, emotions,
                intensity: float, strip: bool = True, animations: bool = True
                ) -> tuple[int, list[str]]:
  """The photo path for image files: (faces edited, failures), one line per failure."""
  os.makedirs(out_dir, exist_ok=True)
  used, failures, edited, t0 = set(), [], 0, time.perf_counter()
  for n, path in enumerate(paths, 1):
    stem = inputs.unique_stem(path, used)
    try:
      if os.path.isdir(path):
        raise inputs.empty_folder_error(path)
      photo = photo_files.read_photo(path)
      if photo.note:
        logging.info("%s", photo.note)
      edits = editor.edit_all(photo.pixels, emotions, intensity)
      if not edits.edited:
        raise editor_lib.NoFaceError(f"{path}: {editor_lib.no_edit_reason(edits.faces)}")
      written = photo_outputs.write_all(editor, photo, edits, out_dir, stem,
                                        editor.translator.source, strip, animations)
    except (faces.ImageReadError, editor_lib.NoFaceError) as e:
      message = str(e) if path in str(e) else f"{path}: {e}"
      logging.warning("%s", message)
      failures.append(message)
      continue
    edited += len(edits.edited)
    for face in edits.faces:
      logging.info("%s: %s%s", path, face.describe(),
                   f": skipped, {face.skipped}" if face.skipped else "")
    logging.info("%s -> %s (%d files; %d/%d photos, %.1f s)", path,
                 os.path.join(out_dir, f"{stem}_*"), len(written), n, len(paths),
                 time.perf_counter() - t0)
  return edited, failures


def run() -> int | None:
  paths = inputs.expand_inputs(inputs.split_inputs(_INPUT.value))
  if not paths:
    raise errors.UserError("--input is required: image files, folders or fer2013 csv "
                           "files (comma-separated or repeated)")
  if not _OUT.value:
    raise errors.UserError("--out is required: the folder for the outputs")
  if os.path.exists(_OUT.value) and not os.path.isdir(_OUT.value):
    raise errors.UserError(f"--out={_OUT.value} exists and is not a folder")

  # No --model: the generator shipped in the package (faceexpr_tf/assets).
  translator = inference.load_translator(_MODEL.value or "pretrained", _CHECKPOINT.value,
                                         _CLASS_NAMES.value)
  logging.info("Loaded %r", translator)
  class_ids = (translator.class_ids(_EMOTIONS.value) if _EMOTIONS.value
               else list(range(translator.num_classes)))
  names = [translator.emotions[i] for i in class_ids]
  csvs = [p for p in paths if inputs.is_csv(p)]
  photos = [p for p in paths if not inputs.is_csv(p)]

  written, failures = 0, []
  if photos:
    detect = not _NO_DETECT.value
    editor = editor_lib.PhotoEditor(
        translator, detectors.load_detector(_DETECTOR.value) if detect else None,
        align_faces=_ALIGN.value, detect=detect, max_faces=_MAX_FACES.value,
        min_face_px=_MIN_FACE_PX.value, margin=_MARGIN.value)
    written, failures = edit_photos(photos, editor, _OUT.value, names, _INTENSITY.value,
                                    _STRIP.value, _ANIMATION.value)
  if csvs or (photos and _GRIDS.value):
    opts = grids.Options(out_dir=_OUT.value, class_ids=class_ids, names=names,
                         detect=not _NO_DETECT.value, margin=_MARGIN.value,
                         max_faces=_MAX_FACES.value, max_rows=_MAX_ROWS.value,
                         scale=_SCALE.value, face_size=_FACE_SIZE.value,
                         intensity=_INTENSITY.value, batch_size=_FACE_BATCH.value)
    rows, csv_failures = grids.translate_inputs(csvs, translator, opts)
    written, failures = written + rows, failures + csv_failures
    if photos and _GRIDS.value:  # the same photos again: their failures are known
      grids.translate_inputs([p for p in photos if not any(f.startswith(p) for f in failures)],
                             translator, opts)
  summary = (f"translated {written} face(s) from {len(paths) - len(failures)} of "
             f"{len(paths)} input(s) to {', '.join(names)} in {_OUT.value}")
  if failures:
    logging.warning("%s; %d input(s) failed (see above)", summary, len(failures))
    return 1
  logging.info("%s", summary)
  return 0
