"""The Python API: load a generator, edit photos (arrays or files) in place.

    import faceexpr_tf
    editor = faceexpr_tf.load()                         # or load("runs/fer"), load("g.tflite")
    out = editor.edit(photo, "Happy", intensity=0.8)    # RGB uint8 [H, W, 3] -> same shape
    paths = editor.edit_file("me.jpg", "out/")          # out/me_Angry.jpg, ... (+ strip, gif)

Editor is photos.editor.PhotoEditor (find, edit, edit_all, frames) plus loading and files.
Errors are faceexpr_tf.errors.UserError subclasses whose message names what is wrong:
an unknown emotion (with the ones the model knows), a photo of the wrong dtype or shape,
an unreadable file, an intensity outside [0, 1].
"""

import os
from collections.abc import Sequence

from faceexpr_tf.photos import detectors
from faceexpr_tf.photos import editor as editor_lib
from faceexpr_tf.photos import photo_files
from faceexpr_tf.photos import photo_outputs
from faceexpr_tf.serving import inference


class Editor(editor_lib.PhotoEditor):
  """A PhotoEditor that loads any saved G and reads and writes photo files."""

  @classmethod
  def load(cls, model: str | None = None, checkpoint: str | int | None = None,
           detector: str = "auto", class_names: str | None = None,
           align_faces: bool = True) -> "Editor":
    """model: a run dir, SavedModel (or TF Serving base) dir, .keras or .tflite file;
    None for the generator shipped in the package. detector: auto, mtcnn or haar."""
    translator = inference.load_translator(model or "pretrained", checkpoint, class_names)
    return cls(translator, detectors.load_detector(detector), align_faces=align_faces)

  def edit_file(self, path: str, out_dir: str, emotions: str | Sequence[str] | None = None,
                intensity: float = 1.0, strip: bool = True, animations: bool = True
                ) -> list[str]:
    """Edits one photo file toward each emotion (default: all); returns the files
    written in out_dir: <stem>_<Emotion><ext> per emotion, <stem>_strip<ext> and
    <stem>_face<i>.gif (photo_outputs.py). A photo without a face to edit writes nothing
    and raises NoFaceError."""
    photo = photo_files.read_photo(os.fspath(path))
    edits = self.edit_all(photo.pixels, emotions, intensity)
    if not edits.edited:
      raise editor_lib.NoFaceError(f"{path}: {editor_lib.no_edit_reason(edits.faces)}")
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    return photo_outputs.write_all(self, photo, edits, out_dir, stem,
                                   self.translator.source, strip, animations)
