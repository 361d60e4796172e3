r"""Change the expression of one face with the exported .tflite: the on-device pipeline.

This is what an Android/iOS app does, in Python: no TensorFlow, only the LiteRT
interpreter (ai-edge-litert), numpy and OpenCV for image files.

  python main.py export --run_dir=runs/x --format=tflite          # once, on a dev box
  python examples/run_tflite.py --model=exports/faceexpr_float32.tflite \
      --image=face.jpg --emotion=Happy --out=happy.png

The model's one signature, translate_ids, takes
  image   float32 [N, 48, 48, 1], gray pixels scaled to [-1, 1]
  target  int32 [N], the class id: the line number (from 0) in <model>_labels.txt
and returns `image`, float32 [N, 48, 48, 1] in [-1, 1]. Every quantization mode
(float16, dynamic, int8, int16x8) keeps these float32 inputs and outputs.

The photo should be a face crop (roughly square, face filling most of it), like the
48x48 FER2013 faces the model was trained on; faceexpr_tf/photos/faces.py shows how to find
and crop faces with OpenCV's Haar cascade.
"""

import argparse
import os
import sys

# This script stands alone (an app would not ship faceexpr_tf), so a missing package is
# reported here, in one line, with the pip command that installs it.
try:
  import cv2
  import numpy as np
  from ai_edge_litert.interpreter import Interpreter
except ModuleNotFoundError as e:
  _PACKAGES = {"ai_edge_litert": "ai-edge-litert", "cv2": "opencv-python-headless"}
  _missing = (e.name or "").split(".")[0]
  sys.stderr.write(
      f"error: {_PACKAGES.get(_missing, _missing)} is not installed: it is needed to run "
      f"the .tflite; run: pip install -e \".[mobile]\" (in the faceexpr-tf checkout), "
      f"or pip install ai-edge-litert opencv-python-headless numpy\n")
  sys.exit(2)


def default_labels_path(model_path):
  # exports/faceexpr_int8.tflite -> exports/faceexpr_labels.txt
  directory, name = os.path.split(model_path)
  return os.path.join(directory, name.rsplit("_", 1)[0] + "_labels.txt")


def read_labels(path):
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def preprocess(path, size):
  """Image file -> float32 [1, size, size, 1] in [-1, 1]."""
  gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
  if gray is None:
    raise ValueError(f"{path}: cannot read this image")
  # INTER_AREA averages pixels when shrinking (no aliasing); it is what training used.
  interpolation = cv2.INTER_AREA if min(gray.shape) >= size else cv2.INTER_LINEAR
  gray = cv2.resize(gray, (size, size), interpolation=interpolation)
  return (gray.astype(np.float32) / 127.5 - 1.0)[None, :, :, None]


def postprocess(image):
  """float32 [size, size, 1] in [-1, 1] -> uint8 gray [size, size]."""
  return np.clip(np.round((image[..., 0] + 1.0) * 127.5), 0, 255).astype(np.uint8)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", required=True, help=".tflite from main.py export")
  parser.add_argument("--labels", help="class names file (default: next to the model)")
  parser.add_argument("--image", required=True, help="face photo")
  parser.add_argument("--emotion", required=True, help="target emotion, e.g. Happy")
  parser.add_argument("--out", required=True, help="output PNG")
  args = parser.parse_args()

  labels = read_labels(args.labels or default_labels_path(args.model))
  lowered = [name.lower() for name in labels]
  if args.emotion.lower() not in lowered:
    sys.exit(f"error: unknown emotion {args.emotion!r} (choose from {', '.join(labels)})")
  target = lowered.index(args.emotion.lower())

  interpreter = Interpreter(model_path=args.model)
  runner = interpreter.get_signature_runner("translate_ids")
  size = int(runner.get_input_details()["image"]["shape_signature"][1])

  image = preprocess(args.image, size)
  # The runner resizes the (dynamic) batch dimension to the inputs it is given.
  result = runner(image=image, target=np.array([target], dtype=np.int32))["image"]
  cv2.imwrite(args.out, postprocess(result[0]))
  print(f"wrote {args.out} ({labels[target]})")


if __name__ == "__main__":
  main()
