import json
import os

import numpy as np
import pytest

from faceexpr_tf import classifier as classifier_lib
from faceexpr_tf import classifier_training
from faceexpr_tf import emotions as emotions_lib
from faceexpr_tf import errors
from faceexpr_tf import synthetic

EMOTIONS = emotions_lib.DEFAULT_EMOTIONS


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("clf"))
  record = classifier_training.train_classifier(
      "synthetic", run_dir, emotions=EMOTIONS, width=8, epochs=8, patience=8,
      batch_size=32, lr=3e-3, synthetic_identities=120, max_minutes=3, command="test")
  return run_dir, record


def test_classifier_learns_synthetic_expressions(trained):
  run_dir, record = trained
  # Held-out identities: the four synthetic expressions are easy to tell apart.
  assert record["validation"]["accuracy"] >= 0.9, record["validation"]
  for name in ("classifier.keras", "classifier.json", "confusion.png", "report.md"):
    assert os.path.isfile(os.path.join(run_dir, name)), name
  matrix = np.asarray(record["validation"]["confusion"])
  assert matrix.shape == (4, 4) and matrix.sum() == record["validation"]["images"]
  with open(os.path.join(run_dir, "report.md")) as f:
    assert "Surprise" in f.read()


def test_saved_classifier_reloads_with_features_and_same_predictions(trained):
  run_dir, record = trained
  model, saved_record = classifier_lib.load_classifier(os.path.join(run_dir,
                                                                    "classifier.keras"))
  assert saved_record["validation"]["accuracy"] == record["validation"]["accuracy"]
  faces = synthetic.synthetic_faceset(8, 5, EMOTIONS)
  x = faces.images.astype(np.float32) / 127.5 - 1
  feats, logits = classifier_lib.feature_model(model)(x, training=False)
  assert feats.shape == (len(x), 64)  # 8 x width
  np.testing.assert_allclose(logits, classifier_lib.predict_logits(model, x), atol=1e-5)


def test_balance_with_generator_fills_every_class_to_the_largest():
  faces = synthetic.synthetic_faceset(6, 0, EMOTIONS)
  faces = faces.subset(np.flatnonzero(~((faces.labels == 3) & (faces.identities < 4))))

  class Inverter:
    source, emotions = "inverter", EMOTIONS

    def translate(self, images, target_ids):
      assert images.dtype == np.uint8 and len(images) == len(target_ids)
      return 255 - images

  balanced = classifier_training.balance_with_generator(faces, Inverter())
  assert balanced.class_counts() == {e: 6 for e in EMOTIONS}
  np.testing.assert_array_equal(balanced.images[:len(faces)], faces.images)


def test_confusion_matrix_and_per_class_accuracy():
  m = classifier_lib.confusion_matrix([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], 3)
  np.testing.assert_array_equal(m, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
  np.testing.assert_allclose(classifier_lib.per_class_accuracy(m), [0.5, 1.0, 0.0])


def test_missing_or_corrupt_classifier_is_one_line(tmp_path):
  with pytest.raises(errors.UserError, match="no such classifier"):
    classifier_lib.load_classifier(str(tmp_path / "nope.keras"))
  bad = tmp_path / "bad.keras"
  bad.write_bytes(b"not a zip")
  with pytest.raises(errors.UserError, match="corrupt or unreadable classifier") as e:
    classifier_lib.load_classifier(str(bad))
  assert "\n" not in str(e.value)


def test_shipped_judge_loads_and_records_its_accuracy():
  if not os.path.isfile(classifier_lib.SHIPPED_CLASSIFIER):
    pytest.fail("the package ships no classifier (faceexpr_tf/assets/classifier.keras)")
  model, record = classifier_lib.load_classifier()
  assert model.outputs[0].shape[-1] == 4
  assert record["emotions"] == list(EMOTIONS)
  assert record["validation"]["accuracy"] > 0.5
  assert record["data_sha256"] and record["command"].startswith("python main.py")
