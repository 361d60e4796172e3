"""`python main.py benchmark`: training and inference speed, printed and appended to a table.

Times fit() on in-memory batches (no input pipeline cost) for named model sizes, and G's
inference, on whatever device this process sees. Compare numbers only side by side on one
machine (see ../shared/bench for the PyTorch anchor); the table records date, machine, its
CPU flags (hardware.cpu_flags), settings and the precision that ran with every row.

This module holds the mode's flags and reads them only in run(), which hands plain values
to the module doing the work: speed (the training-speed table), anchor (side by side with
PyTorch StarGAN), latency (TFLite), photos (the photo path's photos/s and its split) and
profiling (a tf.profiler trace).
"""

import sys

from absl import flags

from faceexpr_tf import errors
from faceexpr_tf.benchmark import anchor
from faceexpr_tf.benchmark import latency
from faceexpr_tf.benchmark import photos
from faceexpr_tf.benchmark import profiling
from faceexpr_tf.benchmark import speed

# This mode's flags, apart from every other mode's: main.py parses them only when
# the mode runs, so their defaults never depend on what else was imported.
FLAGS = flags.FlagValues()
_CONFIGS = flags.DEFINE_list("bench_configs", ["official", "cpu", "demo"],
                             "Model sizes to time: " + ", ".join(
                                 speed.CONFIGS), flag_values=FLAGS)
_PRECISIONS = flags.DEFINE_list("bench_precisions", ["auto"], "Precisions to time "
                                "(auto, float32, mixed_bfloat16, ...).", flag_values=FLAGS)
_STEPS = flags.DEFINE_integer("bench_steps", 20, "Timed training steps per row.", flag_values=FLAGS)
_TABLE = flags.DEFINE_string("bench_table", "docs/benchmarks.md", "Markdown file the rows "
                             "are appended to ('' = print only).", flag_values=FLAGS)
# Side by side with official PyTorch StarGAN (tools/torch_anchor.py run by a Python that
# has torch: the project itself never imports torch).
_ANCHOR_PYTHON = flags.DEFINE_string("anchor_python", None, "A Python interpreter with "
                                     "torch: time official PyTorch StarGAN in the same run, "
                                     "interleaved with this project, and print the ratio.",
                                     flag_values=FLAGS)
_ANCHOR_STARGAN = flags.DEFINE_string("anchor_stargan", None, "A checkout of "
                                      "github.com/yunjey/stargan (its model.py).",
                                      flag_values=FLAGS)
_ANCHOR_SCRIPT = flags.DEFINE_string("anchor_script", None, "The anchor's timing script "
                                     "(default: tools/torch_anchor.py of this checkout).",
                                     flag_values=FLAGS)
_ANCHOR_BATCHES = flags.DEFINE_list("anchor_batches", ["16"], "Training batch sizes timed "
                                    "side by side (WGAN-GP, n_critic 1, official size).",
                                    flag_values=FLAGS)
_TFLITE = flags.DEFINE_list("bench_tflite", [], "TFLite batch-1 latency and error of these "
                            "conversions (none = float32, float16, dynamic, int8, "
                            "int16x8) of --bench_tflite_model, one thread.", flag_values=FLAGS)
_TFLITE_MODEL = flags.DEFINE_enum("bench_tflite_model", "pretrained", ["pretrained",
                                  "official"], "G for --bench_tflite: the shipped one, or "
                                  "the official size (untrained: latency only matters).",
                                  flag_values=FLAGS)
_PHOTOS = flags.DEFINE_list("bench_photos", [], "Time the photo path (decode, detect, align, "
                            "G, paste, encode) of `edit` and `edit_all` on synthetic one-face "
                            "photos of these sizes (1mp = 1152x864, 12mp = 4000x3000, or WxH) "
                            "with the shipped G; rows go to the \"Photo path: photos/s\" "
                            "table of --bench_table.", flag_values=FLAGS)
_PHOTO_DETECTORS = flags.DEFINE_list("bench_photo_detectors", ["mtcnn", "haar"], "Face "
                                     "detectors --bench_photos times (a row pair each).",
                                     flag_values=FLAGS)
_PHOTO_REPEATS = flags.DEFINE_integer("bench_photo_repeats", 5, "--bench_photos: timed passes "
                                      "per row, after one untimed (medians reported).",
                                      lower_bound=1, flag_values=FLAGS)
_ROUNDS = flags.DEFINE_integer("bench_rounds", 3, "Side by side: interleaved rounds (one "
                               "window of each framework per round; medians reported).",
                               flag_values=FLAGS)
_THREADS = flags.DEFINE_integer("bench_threads", 0, "TensorFlow intra/inter-op threads "
                                "(0 = TensorFlow's default). Side by side: both get this "
                                "many (default 1 there; pin the process to one core with "
                                "taskset -c N).", flag_values=FLAGS)
_PROFILE = flags.DEFINE_string("profile", None, "Trace --profile_steps training steps of "
                               "the first --bench_configs config with tf.profiler into this "
                               "folder (open it with `tensorboard --logdir=DIR`, Profile "
                               "tab) and print the ops taking the most time.", flag_values=FLAGS)
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", 3, "Training steps --profile traces "
                                      "(after 3 untraced warm-up steps).", lower_bound=1,
                                      flag_values=FLAGS)


def _batches(values: list[str]) -> list[int]:
  try:
    return [int(b) for b in values]
  except ValueError:
    raise errors.UserError(f"--anchor_batches={','.join(values)}: whole numbers, "
                           "e.g. 8,16") from None


def run():
  """Reads the flags and runs the chosen benchmark; returns the exit status."""
  configs, precisions, threads = _CONFIGS.value, _PRECISIONS.value, _THREADS.value
  table, command = _TABLE.value, " ".join(["main.py", *sys.argv[1:]])
  if _PROFILE.value:
    return profiling.profile(configs[0], precisions[0], _PROFILE_STEPS.value, _PROFILE.value,
                             threads)
  tflite = (lambda: latency.tflite_latency(_TFLITE.value, _TFLITE_MODEL.value, threads,
                                           table, command))
  if _ANCHOR_PYTHON.value or _ANCHOR_STARGAN.value:
    # --bench_tflite beside the anchor runs too (it used to be skipped without a word).
    anchor.check_anchor(_ANCHOR_PYTHON.value, _ANCHOR_STARGAN.value)
    code = anchor.side_by_side(
        _ANCHOR_PYTHON.value, _ANCHOR_STARGAN.value, _ANCHOR_SCRIPT.value, precisions[0],
        threads or 1, _STEPS.value, _ROUNDS.value, _batches(_ANCHOR_BATCHES.value), table,
        command)
    return code or (tflite() if _TFLITE.value else 0)
  if _PHOTOS.value:
    code = photos.photo_table(_PHOTOS.value, _PHOTO_DETECTORS.value, _PHOTO_REPEATS.value,
                              threads, table)
    return code or (tflite() if _TFLITE.value else 0)
  if _TFLITE.value:
    return tflite()
  return speed.training_table(configs, precisions, _STEPS.value, threads, table)
