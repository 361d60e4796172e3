"""Round trip on faces with known answers: a 48 px face put into a photo, edited there, and
cut back out where it was put (tools/photo_roundtrip.py, docs/photos.md).

    e = embed(face, frame_px=240, degrees=-12, rng=rng)     # e.to_face: exact
    result = round_trip(translator, judge, faces, labels)   # rows, as in docs/photos.md

embed enlarges a gray FER2013 face (bicubic; an area shrink below 48 px), turns it, tints
it skin-coloured (its luminance kept, so G sees the same gray levels) and lays it on a
random colour background. round_trip runs the photo path toward every other emotion,
cuts the face's own frame back out of each edited photo and scores it as `main.py
evaluate` scores the 48 px path (judge's target accuracy, SSIM against the input face),
next to the direct path (G on the 48 px face itself) on the same faces and targets.
"""

import dataclasses
import math
import time
import types

import cv2
import numpy as np

from faceexpr_tf.evaluation import metrics
from faceexpr_tf.evaluation import scoring
from faceexpr_tf.photos import align
from faceexpr_tf.photos import detectors
from faceexpr_tf.photos import editor as editor_lib

SIZE = align.CANONICAL_SIZE
CENTRE = (SIZE - 1) / 2
# Skin chroma (OpenCV's YCrCb, offset 128): skin is about Cr 135-170, Cb 85-125.
SKIN_CR, SKIN_CB = (138.0, 152.0), (105.0, 118.0)
TRUTH_ENLARGE = 4      # eyes found on the face enlarged upright, as tools/canonical_eyes.py


def placement(frame_px: float, degrees: float, centre) -> np.ndarray:
  """Photo -> face frame (2x3) for a frame spanning frame_px photo pixels, centred at
  `centre` (x, y), the face turned `degrees` counter-clockwise on screen."""
  s, t = frame_px / SIZE, math.radians(degrees)
  to_photo = np.array([[s * math.cos(t), s * math.sin(t), 0.0],
                       [-s * math.sin(t), s * math.cos(t), 0.0]])
  to_photo[:, 2] = np.asarray(centre, np.float64) - to_photo[:, :2] @ (CENTRE, CENTRE)
  return align.invert(to_photo)


def background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
  """float32 [H, W, 3] in 0..255: a gradient between four random corner colours plus a
  blurred noise texture of random strength."""
  corners = rng.uniform(20, 235, (2, 2, 3))
  v, u = np.linspace(0, 1, height)[:, None, None], np.linspace(0, 1, width)[None, :, None]
  out = ((1 - v) * ((1 - u) * corners[0, 0] + u * corners[0, 1])
         + v * ((1 - u) * corners[1, 0] + u * corners[1, 1]))
  noise = rng.normal(0, 1, (height, width, 3)).astype(np.float32)
  noise = cv2.GaussianBlur(noise, (0, 0), max(1.0, min(height, width) / rng.uniform(15, 60)))
  noise /= max(float(noise.std()), 1e-6)
  return np.clip(out + rng.uniform(0, 30) * noise, 0, 255).astype(np.float32)


def tint(gray: np.ndarray, cr: float, cb: float) -> np.ndarray:
  """float [H, W] luminance -> float32 [H, W, 3] RGB of that luminance (BT.601) and this
  chroma, the chroma scaled down where a channel would clip (so Y stays exact)."""
  y = np.asarray(gray, np.float32)
  d = np.array([1.403 * (cr - 128), -0.714 * (cr - 128) - 0.344 * (cb - 128),
                1.773 * (cb - 128)], np.float32)
  room = np.full(y.shape, 1.0, np.float32)
  for dc in d:
    if dc > 0:
      room = np.minimum(room, (255 - y) / dc)
    elif dc < 0:
      room = np.minimum(room, y / -dc)
  return y[..., None] + np.clip(room, 0, 1)[..., None] * d


@dataclasses.dataclass
class Embedded:
  """A synthetic photo holding one face where to_face says (exactly)."""
  photo: np.ndarray       # uint8 [H, W, 3]
  to_face: np.ndarray     # photo -> the face's own 48 px frame (2x3)
  face: np.ndarray        # uint8 [48, 48, 1]: the face put in
  degrees: float          # its turn, counter-clockwise on screen
  frame_px: int           # photo pixels the frame spans


def embed(face: np.ndarray, frame_px: int, degrees: float, rng: np.random.Generator,
          room: float = 2.3, min_side: int = 160) -> Embedded:
  """A uint8 [H, W, 3] photo with the gray face (uint8 [48, 48] or [48, 48, 1]) enlarged
  to span frame_px pixels, turned `degrees`, somewhere on a random background."""
  face = np.asarray(face).reshape(SIZE, SIZE)
  height, width = (max(min_side, int(frame_px * rng.uniform(room, room + 0.5)))
                   for _ in range(2))
  reach = frame_px / math.sqrt(2) + 2           # the turned square's half diagonal
  centre = [rng.uniform(reach, max(reach, side - reach)) for side in (width, height)]
  to_face = placement(frame_px, degrees, centre)
  source, to_source = face.astype(np.float32), np.eye(2, 3)
  if frame_px < SIZE:    # an area shrink first, then the warp at unit scale
    source = cv2.resize(source, (frame_px, frame_px), interpolation=cv2.INTER_AREA)
    to_source = align.box_transform(0, 0, SIZE, frame_px)
  to_photo = align.invert(align.compose(to_source, to_face))     # source -> photo
  flags = cv2.INTER_CUBIC if frame_px >= SIZE else cv2.INTER_LINEAR
  gray = cv2.warpAffine(source, to_photo, (width, height), flags=flags,
                        borderMode=cv2.BORDER_REPLICATE)
  mask = cv2.warpAffine(np.ones_like(source), to_photo, (width, height),
                        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
  skin = tint(np.clip(gray, 0, 255), rng.uniform(*SKIN_CR), rng.uniform(*SKIN_CB))
  photo = mask * skin + (1 - mask) * background(height, width, rng)
  photo = np.clip(np.rint(photo), 0, 255).astype(np.uint8)
  return Embedded(photo, to_face, face[..., None].astype(np.uint8), degrees, frame_px)


def cut_back(photo: np.ndarray, to_face: np.ndarray) -> np.ndarray:
  """uint8 [48, 48, 1]: the face frame's luminance cut out of a photo (align.cut)."""
  gray = align.cut(editor_lib.luminance(photo), to_face, SIZE)
  return np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None]


def nearest(found, to_face: np.ndarray) -> int | None:
  """Index of the detection whose box centre lies nearest the face frame's centre, or
  None when none lies within a quarter of the frame's side of it (not this face)."""
  best, best_d = None, 0.25 * SIZE
  for i, d in enumerate(found):
    x, y, w, h = d.box
    (fx, fy), = align.apply(to_face, [(x + (w - 1) / 2, y + (h - 1) / 2)])
    dist = math.hypot(fx - CENTRE, fy - CENTRE)
    if dist < best_d:
      best, best_d = i, dist
  return best


def eye_error(detection, truth) -> float:
  """Mean distance of the detected eyes from the true ones, in eye distances (truth:
  ((x, y), (x, y)) in the photo)."""
  (l, r), got = np.asarray(truth, np.float64), (detection.left_eye, detection.right_eye)
  err = np.hypot(*(np.asarray(got, np.float64) - (l, r)).T).mean()
  return float(err / align.eye_distance(l, r))


def true_eyes(face: np.ndarray, finder) -> np.ndarray | None:
  """The face's eyes in its 48 px frame [2, 2] as MTCNN finds them on the face enlarged
  4x upright (None when it finds none)."""
  big = cv2.resize(np.asarray(face).reshape(SIZE, SIZE), (SIZE * TRUTH_ENLARGE,) * 2,
                   interpolation=cv2.INTER_CUBIC)
  found = [d for d in finder.detect(big) if d.has_eyes]
  if not found:
    return None
  return (np.array([found[0].left_eye, found[0].right_eye]) + 0.5) / TRUTH_ENLARGE - 0.5


def _mean(values, median=False) -> float:
  """The mean (or median) of the finite values; NaN when there are none."""
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  return math.nan if not len(values) else float(np.median(values) if median else values.mean())


def _row(name, aligned, slot, direct_hit, direct_ssim, direct_l1, source, turned, eyes):
  sel, on_turned, hit = slot["found"][source], turned[source], slot["hit"]
  how = {"known frame": "exact", "true eyes": "eyes"}.get(name, "eyes")
  row = {"path": "photo", "detector": name, "alignment": how if aligned else "upright box",
         "found": _mean(slot["found"]), "found_turned": _mean(slot["found"][turned]),
         "target_accuracy_all": _mean(hit),
         "input_ssim": _mean(slot["input_ssim"]), "seconds_per_photo": _mean(slot["seconds"]),
         "eye_error": math.nan, "eye_error_turned": math.nan}
  if name in eyes and aligned:
    row["eye_error"] = _mean(eyes[name], median=True) * 100
    row["eye_error_turned"] = _mean(eyes[name][turned], median=True) * 100
  if sel.any():
    row.update(target_accuracy=_mean(hit[sel]), ssim=_mean(slot["ssim"][sel]),
               frame_target_accuracy=_mean(slot["frame_hit"][sel]),
               ssim_vs_unedited=_mean(slot["ssim_unedited"][sel]),
               edit_correlation=_mean(slot["edit_corr"][sel]),
               edit_strength=_mean(slot["edit_l1"][sel]) / max(_mean(direct_l1[sel]), 1e-9),
               direct_target_accuracy=_mean(direct_hit[sel]),
               direct_ssim=_mean(direct_ssim[sel]),
               target_accuracy_turned=_mean(hit[sel & on_turned]),
               direct_target_accuracy_turned=_mean(direct_hit[sel & on_turned]))
    row["accuracy_ratio"] = row["target_accuracy"] / max(row["direct_target_accuracy"], 1e-9)
    row["ssim_ratio"] = row["ssim"] / max(row["direct_ssim"], 1e-9)
  return row


def _framed(translator, name, aligned, e, found, truth_photo):
  """(editor, PhotoFace or None): the face as this way of framing sees it in e.photo."""
  if found is not None:
    answer = types.SimpleNamespace(name=name, detect=lambda _: list(found))  # found once
    editor = editor_lib.PhotoEditor(translator, answer, align_faces=aligned, min_face_px=0,
                                    max_faces=len(found) + 1)
    pick = nearest(found, e.to_face)
    return editor, None if pick is None else editor.find(e.photo)[pick]
  to_face = e.to_face if name == "known frame" else (
      None if truth_photo is None else align.eye_transform(*truth_photo, SIZE))
  face = None if to_face is None else editor_lib.PhotoFace(
      0, detectors.Detection((0, 0, 1, 1)), to_face, cut_back(e.photo, to_face), True)
  return editor_lib.PhotoEditor(translator, None, detect=False), face


def round_trip(translator, judge, images, labels, *, detector_names=("mtcnn", "haar"),
               frame_px=(192, 288), max_degrees=20.0, oracles=True, seed=0,
               progress=None) -> dict:
  """Each face embedded (frame_px: a size or a (low, high) range; a turn up to
  +-max_degrees), edited toward every other emotion by the photo path (per detector, with
  and without alignment; with oracles also framed by the known transform and by the true
  eyes) and cut back; scored against the direct path on the same targets.

  Returns {"rows": [...], "faces", "translations", "turned", "embed_ssim", "truth_eyes"}:
  one row for the direct path and one per way of framing with faces found (share),
  target accuracy and SSIM on the faces found, the direct path's on those translations and
  the ratios, target accuracy over all faces (a face not found comes back unedited), the
  SSIM of G's input against the face, how G's change comes back (the photo's change
  against the unedited round trip: its pixel correlation with the direct path's change,
  and its mean size relative to it), the median eye error (% of the eye distance; all
  faces and those turned 10+ degrees) and seconds per photo. Nothing is skipped as too
  small (min_face_px 0): what a size gives is what is measured.
  """
  rng = np.random.default_rng(seed)
  tr = scoring.translate_to_every_other(translator, images, labels, cycle=False)
  per_face = translator.num_classes - 1
  finders = {n: detectors.load_detector(n) for n in detector_names}
  truth_finder = detectors.MtcnnDetector(max_side=SIZE * TRUTH_ENLARGE, min_score=0.8)
  configs = [(n, a) for n in detector_names for a in ((True, False) if n != "haar" else
                                                       (False,))]
  out = {c: {"images": np.empty_like(tr.images), "in_frame": np.empty_like(tr.images),
             "found": np.zeros(len(images), bool),
             "input_ssim": np.full(len(images), np.nan), "seconds": []}
         for c in configs + ([("known frame", True), ("true eyes", True)] if oracles else [])}
  eyes = {n: np.full(len(images), np.nan) for n in detector_names}
  degrees, truths = np.zeros(len(images)), 0
  unedited_all = np.empty_like(images)
  for i in range(len(images)):
    size = frame_px if np.isscalar(frame_px) else rng.integers(frame_px[0], frame_px[1] + 1)
    degrees[i] = rng.uniform(-max_degrees, max_degrees)
    e = embed(images[i], int(size), degrees[i], rng)
    unedited = cut_back(e.photo, e.to_face)
    unedited_all[i] = unedited
    truth = true_eyes(e.face, truth_finder)
    truth_photo = None if truth is None else align.apply(align.invert(e.to_face), truth)
    truths += truth is not None
    rows = slice(i * per_face, (i + 1) * per_face)
    names = [translator.emotions[t] for t in tr.target[rows]]
    found, detect_s = {}, {}
    for name, finder in finders.items():
      start = time.perf_counter()
      found[name] = finder.detect(e.photo)
      detect_s[name] = time.perf_counter() - start
      pick = nearest(found[name], e.to_face)
      if pick is not None and truth is not None and found[name][pick].has_eyes:
        eyes[name][i] = eye_error(found[name][pick], truth_photo)
    for (name, aligned), slot in out.items():
      start = time.perf_counter() - detect_s.get(name, 0.0)
      editor, face = _framed(translator, name, aligned, e, found.get(name), truth_photo)
      if face is None:
        slot["images"][rows] = slot["in_frame"][rows] = unedited
        slot["seconds"].append(time.perf_counter() - start)
      else:
        edits = editor.edit_all(e.photo, names, faces=[face])
        slot["seconds"].append(time.perf_counter() - start)
        slot["images"][rows] = [cut_back(edits.photos[n], e.to_face) for n in names]
        slot["in_frame"][rows] = [cut_back(edits.photos[n], face.to_face) for n in names]
        slot["found"][i] = True
        slot["input_ssim"][i] = metrics.ssim(face.face[None], e.face[None])[0]
    if progress is not None:
      progress(i + 1, len(images))
  direct_hit = judge(tr.images)[1].argmax(-1) == tr.target
  direct_ssim = metrics.ssim(images[tr.source], tr.images)
  direct_change = tr.images.astype(np.float64) - images[tr.source]
  turned = np.abs(degrees) >= 10
  nothing = unedited_all[tr.source]
  rows = [{"path": path, "detector": "-", "alignment": "-", "found": 1.0,
           "target_accuracy": float(hit.mean()), "ssim": float(ssim.mean()),
           "target_accuracy_all": float(hit.mean())} for path, hit, ssim in (
               ("direct (48 px)", direct_hit, direct_ssim),
               ("photo, not edited", judge(nothing)[1].argmax(-1) == tr.target,
                metrics.ssim(images[tr.source], nothing)))]
  for (name, aligned), slot in out.items():
    slot["hit"] = judge(slot["images"])[1].argmax(-1) == tr.target
    slot["frame_hit"] = judge(slot["in_frame"])[1].argmax(-1) == tr.target
    slot["ssim"] = metrics.ssim(images[tr.source], slot["images"])
    slot["ssim_unedited"] = metrics.ssim(unedited_all[tr.source], slot["images"])
    change = slot["images"].astype(np.float64) - unedited_all[tr.source]
    slot["edit_corr"] = metrics.pixel_correlation(change, direct_change)
    slot["edit_l1"] = np.abs(change).reshape(len(change), -1).mean(1)
    rows.append(_row(name, aligned, slot, direct_hit, direct_ssim,
                     np.abs(direct_change).reshape(len(direct_change), -1).mean(1), tr.source,
                     turned, eyes))
  return {"rows": rows, "faces": len(images), "translations": len(tr.images),
          "turned": int(turned.sum()), "truth_eyes": truths,
          "embed_ssim": float(metrics.ssim(unedited_all, images).mean())}
