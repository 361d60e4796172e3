r"""Edit a face in place in a whole photo with the exported .tflite, step by step.

What a phone app does with the model, in Python: the platform's face detector gives the
eye centres, the face is aligned to FER2013's frame and run through G in LiteRT, and G's
edit is carried back into the photo's luminance at full resolution.

  python main.py export --run_dir=runs/x --format=tflite          # once, on a dev box
  python examples/edit_photo_tflite.py --model=exports/faceexpr_float32.tflite \
      --photo=me.jpg --emotion=Happy --out=me_happy.jpg

Only the pure geometry comes from faceexpr_tf (faceexpr_tf/photos/align.py: numpy and
OpenCV, no TensorFlow), so the steps read as an app would write them. The eye centres come
from --eyes=x1,y1,x2,y2 (what a phone's detector returns) or, without it, from the
package's detector (MTCNN: TensorFlow, standing in for the phone's).
"""

import argparse
import os
import sys

try:
  import cv2
  import numpy as np
  from ai_edge_litert.interpreter import Interpreter
except ModuleNotFoundError as e:
  _PACKAGES = {"ai_edge_litert": "ai-edge-litert", "cv2": "opencv-python-headless"}
  _missing = (e.name or "").split(".")[0]
  sys.stderr.write(f"error: {_PACKAGES.get(_missing, _missing)} is not installed: run "
                   "pip install -e \".[mobile]\" (in the faceexpr-tf checkout)\n")
  sys.exit(2)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from faceexpr_tf.photos import align  # pylint: disable=wrong-import-position


def labels_next_to(model_path):
  """exports/faceexpr_int8.tflite -> the lines of exports/faceexpr_labels.txt."""
  directory, name = os.path.split(model_path)
  with open(os.path.join(directory, name.rsplit("_", 1)[0] + "_labels.txt")) as f:
    return [line.strip() for line in f if line.strip()]


def find_eyes(rgb):
  """[(left eye, right eye)] per face, largest first (the phone's detector's job)."""
  from faceexpr_tf.photos import detectors  # pylint: disable=g-import-not-at-top
  return [(d.left_eye, d.right_eye) for d in detectors.load_detector("mtcnn").detect(rgb)]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", required=True, help=".tflite from main.py export")
  parser.add_argument("--photo", required=True, help="a colour photo with a face")
  parser.add_argument("--emotion", required=True, help="target emotion, e.g. Happy")
  parser.add_argument("--out", required=True, help="the edited photo (.jpg or .png)")
  parser.add_argument("--eyes", help="x1,y1,x2,y2: the eye centres, image-left eye first")
  args = parser.parse_args()

  labels = labels_next_to(args.model)
  lowered = [name.lower() for name in labels]
  if args.emotion.lower() not in lowered:
    sys.exit(f"error: unknown emotion {args.emotion!r} (choose from {', '.join(labels)})")
  target = lowered.index(args.emotion.lower())
  bgr = cv2.imread(args.photo, cv2.IMREAD_COLOR)  # EXIF orientation applied
  if bgr is None:
    sys.exit(f"error: {args.photo}: cannot read this image")
  rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
  if args.eyes:
    x1, y1, x2, y2 = (float(v) for v in args.eyes.split(","))
    eyes = [((x1, y1), (x2, y2))]
  else:
    eyes = find_eyes(rgb)
  if not eyes:
    sys.exit(f"error: {args.photo}: no face found")

  runner = Interpreter(model_path=args.model).get_signature_runner("translate_ids")
  size = int(runner.get_input_details()["image"]["shape_signature"][1])
  gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)   # the luminance, Y
  out = rgb
  for left, right in eyes:
    # 1. Align: the similarity that puts the eyes where FER2013's faces have them.
    to_face = align.eye_transform(left, right, size)
    face = np.clip(np.rint(align.cut(gray, to_face, size)), 0, 255)
    # 2. G in LiteRT: gray in [-1, 1] and a class id in, the translated face out.
    x = (face / 127.5 - 1.0).astype(np.float32)[None, :, :, None]
    y = runner(image=x, target=np.array([target], np.int32))["image"]
    # 3. The edit, in gray levels, back to the photo (inverse alignment, faded border),
    #    added to R, G and B alike: the luminance changes, the colour does not.
    delta = (y[0, :, :, 0] - x[0, :, :, 0]) * 127.5
    pasted = align.paste(delta, to_face, rgb.shape)
    if pasted is not None:
      out = align.add_luminance(out, *pasted)
  cv2.imwrite(args.out, cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
  print(f"wrote {args.out}: {len(eyes)} face(s) toward {labels[target]}")


if __name__ == "__main__":
  main()
