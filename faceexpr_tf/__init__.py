"""faceexpr-tf: StarGAN for facial expressions on Keras 3 / TensorFlow.

The Python API edits the faces of your own photos in place:

    import faceexpr_tf
    editor = faceexpr_tf.load()                       # the shipped generator
    happy = editor.edit(photo, "Happy", intensity=0.8) # RGB uint8 [H, W, 3] -> same shape
    editor.edit_file("me.jpg", "out/")                 # out/me_<Emotion>.jpg, one per emotion

`load` takes any saved form of G (a run dir, SavedModel, .keras or .tflite); see
faceexpr_tf/photos/api.py. Importing the package itself loads nothing (no TensorFlow).
"""

from faceexpr_tf.version import __version__

__all__ = ["__version__", "load"]


def load(model: str | None = None, **kwargs):
  """A photos.api.Editor for `model` (default: the shipped generator); see Editor.load."""
  from faceexpr_tf.photos import api  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return api.Editor.load(model, **kwargs)
