"""The photo round trip (faceexpr_tf/photos/roundtrip.py): a face put into a photo with a
known transform, edited there, and cut back where it was put.

The faces are skimage's astronaut's, cut in FER2013's eye frame (her eyes at x 204 and 245,
y 100 and 102) and mirrored, then turned +-15 degrees at 4-5x into synthetic photos; the
shipped generator and MTCNN edit them. Nothing here reads ../shared.
"""

import math
import types

import numpy as np
import pytest
from skimage import data as skdata

from faceexpr_tf.evaluation import metrics
from faceexpr_tf.evaluation import scoring
from faceexpr_tf.photos import align
from faceexpr_tf.photos import detectors
from faceexpr_tf.photos import editor as editor_lib
from faceexpr_tf.photos import roundtrip
from faceexpr_tf.serving import inference

EYES = ((204.0, 100.0), (245.0, 102.0))
TURNS = ((15.0, 192), (-15.0, 240))          # degrees, frame px (4x, 5x)


@pytest.fixture(scope="module")
def faces():
  face = roundtrip.cut_back(skdata.astronaut(), align.eye_transform(*EYES))
  return np.stack([face, face[:, ::-1]])       # uint8 [2, 48, 48, 1]


@pytest.fixture(scope="module")
def translator():
  return inference.load_translator("pretrained")


@pytest.fixture(scope="module")
def mtcnn():
  return detectors.load_detector("mtcnn")


def _photo(face, degrees, frame_px):
  return roundtrip.embed(face, frame_px, degrees, np.random.default_rng(1))


# --- pure functions -------------------------------------------------------------------

def test_placement_puts_the_frame_where_asked_turned_and_scaled():
  m = roundtrip.placement(240, 15.0, (300.5, 210.0))
  np.testing.assert_allclose(align.apply(m, [(300.5, 210.0)]), [(23.5, 23.5)], atol=1e-9)
  assert align.scale_of(m) == pytest.approx(48 / 240)
  # Turned counter-clockwise on screen: the frame's x axis points up and right in the
  # photo, so the aligning transform turns the other way.
  assert align.rotation_degrees(m) == pytest.approx(-15.0)
  right = align.apply(align.invert(m), [(33.5, 23.5)])[0] - (300.5, 210.0)
  assert right[0] > 0 and right[1] < 0


def test_tint_keeps_the_luminance_and_gives_skin_colour():
  gray = np.linspace(0, 255, 256, dtype=np.float32).reshape(16, 16)
  rgb = roundtrip.tint(gray, 145.0, 110.0)
  np.testing.assert_allclose(editor_lib.luminance(rgb), gray, atol=0.05)
  assert rgb.min() >= -1e-3 and rgb.max() <= 255 + 1e-3
  mid = rgb[8, 0]                                # gray level 128
  assert mid[0] > mid[1] > mid[2]                # warm: R > G > B


# A shrink to 30 px loses detail the cut cannot give back: a lower bound there.
@pytest.mark.parametrize("degrees,frame_px,least", [t + (0.9,) for t in TURNS]
                         + [(5.0, 30, 0.75)])
def test_embed_then_cut_with_the_known_transform_gives_the_face_back(faces, degrees,
                                                                     frame_px, least):
  e = _photo(faces[0], degrees, frame_px)
  assert e.photo.dtype == np.uint8 and e.photo.ndim == 3 and e.photo.shape[-1] == 3
  assert min(e.photo.shape[:2]) >= 160 and e.frame_px == frame_px
  back = roundtrip.cut_back(e.photo, e.to_face)
  assert metrics.ssim(back[None], faces[:1])[0] > least
  # ... and not by luck: another turn or place gives something else.
  wrong = roundtrip.cut_back(e.photo, roundtrip.placement(frame_px, -degrees + 30, (80, 80)))
  assert metrics.ssim(wrong[None], faces[:1])[0] < 0.5


def test_nearest_takes_the_detection_on_the_face_and_eye_error_is_relative():
  to_face = roundtrip.placement(200, 0.0, (150.0, 150.0))
  on = detectors.Detection((80, 80, 140, 140))
  off = detectors.Detection((300, 10, 150, 150))
  assert roundtrip.nearest([off, on], to_face) == 1
  assert roundtrip.nearest([off], to_face) is None
  truth = ((100.0, 100.0), (140.0, 100.0))
  got = detectors.Detection((0, 0, 1, 1), 1.0, (102.0, 100.0), (140.0, 104.0))
  assert roundtrip.eye_error(got, truth) == pytest.approx((2 + 4) / 2 / 40)


# --- the photo path -------------------------------------------------------------------

def _edited(translator, detections, e, aligned):
  answer = types.SimpleNamespace(name="mtcnn", detect=lambda _: list(detections))
  editor = editor_lib.PhotoEditor(translator, answer, align_faces=aligned, min_face_px=0)
  found = editor.find(e.photo)
  pick = roundtrip.nearest([f.detection for f in found], e.to_face)
  assert pick is not None, "the face was not found"
  face = found[pick]
  edits = editor.edit_all(e.photo, list(translator.emotions), faces=[face])
  back = np.stack([roundtrip.cut_back(edits.photos[n], e.to_face) for n in translator.emotions])
  return face, back


def test_photo_path_cut_back_is_close_to_the_direct_path_and_alignment_matters(
    faces, translator, mtcnn):
  k = translator.num_classes
  for face, (degrees, frame_px) in zip(faces, TURNS):   # each face, turned one way
    direct = translator.translate(np.repeat(face[None], k, 0), np.arange(k))
    change = direct.astype(np.float64) - face
    e = _photo(face, degrees, frame_px)
    detections, scores = mtcnn.detect(e.photo), {}       # one detection, two framings
    for aligned in (True, False):
      seen, back = _edited(translator, detections, e, aligned)
      assert seen.aligned == aligned
      scores[aligned] = (metrics.ssim(seen.face[None], face[None])[0],
                         metrics.ssim(back, direct).mean(),
                         metrics.pixel_correlation(back.astype(np.float64) - face,
                                                   change).mean())
      if aligned:   # turned back upright, within a few degrees
        assert abs(align.rotation_degrees(seen.to_face) + degrees) < 5
    (in_a, out_a, corr_a), (in_b, out_b, corr_b) = scores[True], scores[False]
    # G sees the face as it was cut (the astronaut's face is in the eye frame): aligned,
    # much like it; as an upright box around a turned face, not.
    assert in_a > 0.55 and in_a > in_b + 0.3, scores
    # The edit comes back where G made it: the photo path's face is close to G's own
    # output, and its change follows G's change.
    assert out_a > 0.88 and out_a > out_b, scores
    assert corr_a > 0.6 and corr_a > corr_b, scores


def test_round_trip_scores_each_way_of_framing(faces, translator):
  judge = scoring.load_judge()
  result = roundtrip.round_trip(translator, judge, faces, np.array([1, 1]),
                                detector_names=("mtcnn",), frame_px=192,
                                max_degrees=15.0, seed=0)
  rows = {(r["path"], r["detector"], r["alignment"]): r for r in result["rows"]}
  assert set(rows) == {("direct (48 px)", "-", "-"), ("photo, not edited", "-", "-"),
                       ("photo", "mtcnn", "eyes"), ("photo", "mtcnn", "upright box"),
                       ("photo", "known frame", "exact"), ("photo", "true eyes", "eyes")}
  assert result["faces"] == 2 and result["translations"] == 6
  assert result["embed_ssim"] > 0.9
  eyes = rows[("photo", "mtcnn", "eyes")]
  assert eyes["found"] == 1.0 and eyes["eye_error"] < 10 and eyes["seconds_per_photo"] > 0
  assert eyes["input_ssim"] > max(0.55, rows[("photo", "mtcnn", "upright box")]["input_ssim"])
  known = rows[("photo", "known frame", "exact")]
  assert known["input_ssim"] > 0.9 and known["ssim_vs_unedited"] > 0.85
  assert known["ssim_ratio"] == pytest.approx(known["ssim"] / known["direct_ssim"])
  assert not math.isnan(known["target_accuracy"])
