"""Where FER2013 puts the eyes: MTCNN's eye keypoints on FER2013 faces, enlarged.

    python tools/canonical_eyes.py --data=../shared/data/fer2013.csv.gz [--faces=3000]

Each 48x48 face of the Training split (the four paper emotions; a seeded random sample)
is enlarged 4x (bicubic) and given to MTCNN; the eye centres it finds, taken back to the
48 px frame, are summarised (median and quartiles of each coordinate, eye distance, roll).
The medians are photos/align.py's CANONICAL_EYES: the photo pipeline aligns every face so
that its eyes land there, as FER2013's own faces have them.
"""

import argparse
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.dirname(
    __import__("os").path.abspath(__file__))))
from faceexpr_tf.data import fer2013  # pylint: disable=wrong-import-position
from faceexpr_tf.photos import detectors  # pylint: disable=wrong-import-position

ENLARGE = 4


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", required=True)
  parser.add_argument("--faces", type=int, default=3000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  rows = fer2013.load_fer2013_csv(args.data, ("Angry", "Happy", "Sad", "Surprise"),
                                  usage="Training")
  pick = np.random.default_rng(args.seed).permutation(len(rows))[:args.faces]
  detector = detectors.MtcnnDetector(max_side=48 * ENLARGE, min_score=0.8)
  eyes, t0 = [], time.time()
  for n, i in enumerate(pick):
    big = cv2.resize(rows.images[i].reshape(48, 48), (48 * ENLARGE,) * 2,
                     interpolation=cv2.INTER_CUBIC)
    found = [d for d in detector.detect(big) if d.has_eyes]
    if found:
      d = found[0]
      eyes.append([(v + 0.5) / ENLARGE - 0.5 for v in (*d.left_eye, *d.right_eye)])
    if (n + 1) % 500 == 0:
      print(f"{n + 1}/{len(pick)} faces, {len(eyes)} with eyes, {time.time() - t0:.0f} s",
            flush=True)
  e = np.asarray(eyes)
  q = np.percentile(e, [25, 50, 75], axis=0)
  dist = np.hypot(e[:, 2] - e[:, 0], e[:, 3] - e[:, 1])
  roll = np.degrees(np.arctan2(e[:, 3] - e[:, 1], e[:, 2] - e[:, 0]))
  print(f"\n{len(e)} of {len(pick)} faces with both eyes ({100 * len(e) / len(pick):.1f}%)")
  print("| coordinate | 25% | median | 75% |\n|---|---|---|---|")
  for j, name in enumerate(("left eye x", "left eye y", "right eye x", "right eye y")):
    print(f"| {name} | {q[0, j]:.2f} | {q[1, j]:.2f} | {q[2, j]:.2f} |")
  print(f"| eye distance | {np.percentile(dist, 25):.2f} | {np.median(dist):.2f} | "
        f"{np.percentile(dist, 75):.2f} |")
  print(f"| roll (deg) | {np.percentile(roll, 25):.1f} | {np.median(roll):.1f} | "
        f"{np.percentile(roll, 75):.1f} |")
  print(f"\nCANONICAL_EYES = (({q[1, 0]:.1f}, {q[1, 1]:.1f}), ({q[1, 2]:.1f}, {q[1, 3]:.1f}))")


if __name__ == "__main__":
  main()
