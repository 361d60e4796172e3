"""FER+ crowd labels: votes files, the majority and plurality rules, and the csv relabelled.

Tiny files made here: a FER2013-style csv whose own labels the crowd disagrees with, and
its votes in both layouts (ours and Microsoft's fer2013new.csv).
"""

import gzip
import os

import numpy as np
import pytest

from faceexpr_tf.data import faceset
from faceexpr_tf.data import fer2013
from faceexpr_tf.data import ferplus
from faceexpr_tf.data import loader

HEADER = "neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
# (FER2013 label, Usage, votes): what the crowd says of each row.
ROWS = [
    (4, "Training", "6,0,0,4,0,0,0,0,0,0"),    # FER2013 Sad; crowd: neutral (majority)
    (4, "Training", "0,0,0,9,1,0,0,0,0,0"),    # Sad, and the crowd agrees
    (0, "Training", "0,8,2,0,0,0,0,0,0,0"),    # FER2013 Angry; crowd: happiness
    (3, "Training", "0,4,0,0,0,0,0,0,6,0"),    # unknown wins: dropped
    (5, "Training", "0,0,0,0,0,0,0,0,0,10"),   # not a face: dropped
    (0, "Training", "0,0,0,0,4,0,0,6,0,0"),    # contempt: no FER2013 class, dropped
    (3, "Training", "4,4,2,0,0,0,0,0,0,0"),    # a tie, no majority: dropped by both rules
    (5, "Training", "3,0,4,3,0,0,0,0,0,0"),    # surprise has the most, not half: plurality
    (0, "PublicTest", "0,0,0,0,10,0,0,0,0,0"),  # anger, another split
    (3, "Training", ""),                        # FER+ has no image of this row: dropped
]


def _pixels(i):
  return " ".join(str((i * 7 + j) % 256) for j in range(48 * 48))


@pytest.fixture
def files(tmp_path):
  csv = tmp_path / "fer.csv"
  csv.write_text("emotion,pixels,Usage\n" + "".join(
      f"{label},{_pixels(i)},{usage}\n" for i, (label, usage, _) in enumerate(ROWS)))
  ours = tmp_path / "ferplus.csv.gz"
  with gzip.open(ours, "wt") as f:
    f.write("ferplus_name," + HEADER + "\n" + "".join(
        f"{'fer%07d.png' % i if votes else ''},{votes or ',' * 9}\n"
        for i, (_, _, votes) in enumerate(ROWS)))
  microsoft = tmp_path / "fer2013new.csv"
  microsoft.write_text("Usage,Image name," + HEADER + "\n" + "".join(
      f"{usage},{'fer%07d.png' % i if votes else ''},{votes or '0,0,0,0,0,0,0,0,0,0'}\n"
      for i, (_, usage, votes) in enumerate(ROWS)))
  return {"csv": str(csv), "ours": str(ours), "microsoft": str(microsoft)}


def test_majority_and_plurality_rules_on_hand_counts():
  votes = np.array([[6, 0, 0, 4, 0, 0, 0, 0, 0, 0], [3, 0, 4, 3, 0, 0, 0, 0, 0, 0],
                    [4, 4, 2, 0, 0, 0, 0, 0, 0, 0], [0, 4, 0, 0, 0, 0, 0, 0, 6, 0],
                    [np.nan] * 10], np.float32)
  labels, dropped = ferplus.labels_from_votes(votes, "majority")
  assert labels.tolist() == [6, -1, -1, -1, -1]          # Neutral is FER2013's id 6
  assert dropped == {"no votes": 1, "no majority": 2, "unknown": 1}
  labels, dropped = ferplus.labels_from_votes(votes, "plurality")
  assert labels.tolist() == [6, 5, -1, -1, -1]           # surprise: most votes, no tie
  assert dropped == {"no votes": 1, "no plurality": 1, "unknown": 1}
  with pytest.raises(ValueError, match="unknown FER\\+ label scheme 'mean'"):
    ferplus.labels_from_votes(votes, "mean")


@pytest.mark.parametrize("layout", ["ours", "microsoft"])
def test_both_votes_layouts_read_the_same(files, layout):
  votes = ferplus.read_votes(files[layout])
  assert votes.shape == (len(ROWS), 10)
  np.testing.assert_array_equal(votes[2], [0, 8, 2, 0, 0, 0, 0, 0, 0, 0])
  if layout == "ours":
    assert np.isnan(votes[-1]).all()
  labels, _ = ferplus.labels_from_votes(votes)
  assert labels[:3].tolist() == [6, 4, 3] and labels[-1] == -1


def test_the_csv_relabelled_by_the_crowd(files):
  own = fer2013.load_fer2013_csv(files["csv"], ("Angry", "Happy", "Sad"), usage="Training")
  assert own.labels.tolist() == [2, 2, 0, 1, 0, 1, 1]     # FER2013's own column
  crowd = fer2013.load_fer2013_csv(files["csv"], ("Angry", "Happy", "Neutral", "Sad"),
                                   usage="Training", ferplus=files["ours"])
  # Rows 0 (neutral), 1 (sad), 2 (happiness); unknown, NF, contempt, tie, no-image dropped;
  # row 7 (surprise by plurality) has no majority.
  assert crowd.labels.tolist() == [2, 3, 1]
  np.testing.assert_array_equal(crowd.images[2].ravel(),
                                np.array(_pixels(2).split(), np.uint8))
  assert "FER+ majority labels" in crowd.source
  plural = fer2013.load_fer2013_csv(files["csv"], ("Happy", "Neutral", "Sad", "Surprise"),
                                    usage="Training", ferplus=files["microsoft"],
                                    ferplus_scheme="plurality")
  assert plural.labels.tolist() == [1, 2, 0, 3]
  test = loader.load_faces(files["csv"], ("Angry", "Happy"), split="validation",
                           labels="ferplus", ferplus=files["ours"])
  assert test.labels.tolist() == [0]


def test_bad_votes_files_and_flag_combinations_are_one_line(files, tmp_path):
  short = tmp_path / "short.csv"
  short.write_text("ferplus_name," + HEADER + "\nfer1.png,1,0,0,0,0,0,0,0,0,9\n")
  cases = [
      (dict(ferplus=files["ours"], labels="fer2013"), "read only with --labels=ferplus"),
      (dict(labels="ferplus"), "--labels=ferplus needs --ferplus="),
      (dict(labels="ferplus", ferplus=str(tmp_path / "none.csv")), "no such FER\\+ votes"),
      (dict(labels="ferplus", ferplus=files["csv"]), "not a FER\\+ votes file: no column"),
      (dict(labels="ferplus", ferplus=str(short)), "1 rows of votes for .*'s 10 rows"),
      (dict(labels="crowd"), "unknown labels 'crowd'"),
  ]
  for kwargs, message in cases:
    with pytest.raises(faceset.DataError, match=message) as e:
      loader.load_faces(files["csv"], split="train", **kwargs)
    assert "\n" not in str(e.value)
  with pytest.raises(faceset.DataError, match="--data=synthetic is not one"):
    loader.load_faces("synthetic", labels="ferplus", ferplus=files["ours"])
  bad = tmp_path / "bad.csv"
  bad.write_text("ferplus_name," + HEADER + "\nfer1.png,1,x,0,0,0,0,0,0,0,9\n")
  with pytest.raises(ferplus.VotesError, match="bad.csv line 2: a vote count is not a number"):
    ferplus.read_votes(str(bad))


def test_train_classifier_on_crowd_labels_records_them(files, tmp_path, main_py):
  run_dir = tmp_path / "clf"
  proc = main_py("train_classifier", f"--data={files['csv']}", "--labels=ferplus",
                 f"--ferplus={files['ours']}", "--emotions=Happy,Neutral,Sad",
                 "--val_usage=Training", "--epochs=1", "--width=4", "--batch_size=4",
                 "--max_minutes=0", f"--run_dir={run_dir}")
  assert proc.returncode == 0, proc.stderr
  import json  # pylint: disable=g-import-not-at-top
  record = json.load(open(os.path.join(run_dir, "classifier.json")))
  assert record["labels"] == "ferplus (majority)" and record["train_images"] == 3
  proc = main_py("train_classifier", f"--data={files['csv']}", "--labels=ferplus",
                 f"--run_dir={tmp_path / 'x'}")
  assert proc.returncode != 0 and "--labels=ferplus needs --ferplus=" in proc.stderr
  assert "Traceback" not in proc.stderr
