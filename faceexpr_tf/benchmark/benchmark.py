"""`python main.py benchmark`: training and inference speed, printed and appended to a table.

Times fit() on in-memory batches (no input pipeline cost) for named model sizes, and G's
inference, on whatever device this process sees. Compare numbers only side by side on one
machine (see ../shared/bench for the PyTorch anchor); the table records date, machine and
settings with every row.
"""

import datetime
import glob
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import flags
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.modeling import models
from faceexpr_tf.modeling import stargan
from faceexpr_tf.training import devices

# This mode's flags, apart from every other mode's: main.py parses them only when
# the mode runs, so their defaults never depend on what else was imported.
FLAGS = flags.FlagValues()
_CONFIGS = flags.DEFINE_list("bench_configs", ["official", "cpu", "demo"],
                             "Model sizes to time: " + ", ".join(
                                 ["official", "cpu", "demo"]), flag_values=FLAGS)
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

# name -> (ModelConfig overrides, batch size, n_critic/gan_loss)
CONFIGS = {
    "official": (dict(), 8, "log"),
    "official-wgan": (dict(), 16, "wgan-gp"),
    "cpu": (dict(g_conv_dim=32), 8, "log"),
    "demo": (dict(g_conv_dim=16, g_repeat_num=2, d_conv_dim=16, upsample="resize",
                  g_output="residual"), 32, "log"),
}


def generator_flops(config: models.ModelConfig) -> float:
  """Forward FLOPs of G per image (2 x multiply-adds of every convolution)."""
  s, d, k, c = config.image_size, config.g_conv_dim, config.num_classes, config.channels
  macs = s * s * (c + k) * d * 49
  macs += (s // 2) ** 2 * d * 2 * d * 16 + (s // 4) ** 2 * 2 * d * 4 * d * 16
  macs += config.g_repeat_num * 2 * (s // 4) ** 2 * (4 * d) ** 2 * 9
  up = 16 if config.upsample == "transpose" else 9
  # A stride-2 transposed conv does k*k/4 multiply-adds per output pixel and channel pair.
  per_out = up / 4 if config.upsample == "transpose" else up
  macs += (s // 2) ** 2 * 4 * d * 2 * d * per_out + s * s * 2 * d * d * per_out
  macs += s * s * d * c * 49
  return 2.0 * macs


def _check_config(name: str):
  if name not in CONFIGS:
    raise errors.UserError(f"--bench_configs: unknown {name!r} (know {', '.join(CONFIGS)})")


def _warm_trainer(name, precision):
  """A compiled StarGAN of config `name`, its in-memory batches, warmed up (traced)."""
  overrides, batch, gan_loss = CONFIGS[name]
  plan = devices.plan(precision, "auto", "default")
  config = models.ModelConfig(**overrides)
  g, d = models.build_models(config)
  model = stargan.StarGAN(g, d, gan_loss=gan_loss)
  model.compile(keras.optimizers.Adam(1e-4, 0.5), keras.optimizers.Adam(1e-4, 0.5),
                jit_compile=plan.jit_compile)
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (batch, 48, 48, 1)).astype(np.float32)
  org = rng.integers(0, 4, batch).astype(np.int32)
  ds = tf.data.Dataset.from_tensors((x, org, (org + 1) % 4)).repeat()
  model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0)   # trace and warm up
  return model, ds, x, plan, config


def _time_training(name, precision, steps):
  _, batch, gan_loss = CONFIGS[name]
  model, ds, x, plan, config = _warm_trainer(name, precision)
  g = model.generator
  t0 = time.perf_counter()
  model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
  train_rate = steps * batch / (time.perf_counter() - t0)

  xi = np.repeat(x, 64 // batch, axis=0)
  onehot = np.eye(4, dtype=np.float32)[np.arange(len(xi)) % 4]
  infer = tf.function(lambda a, b: g(a, b, training=False), jit_compile=plan.jit_compile)
  infer(xi, onehot)
  t0, n = time.perf_counter(), 0
  while time.perf_counter() - t0 < 3:
    infer(xi, onehot).numpy()
    n += len(xi)
  infer_rate = n / (time.perf_counter() - t0)
  gflop = generator_flops(config) / 1e9
  return {"config": name, "batch": batch, "loss": gan_loss, "precision": plan.precision,
          "jit": plan.jit_compile, "train_img_s": train_rate, "infer_img_s": infer_rate,
          "g_gflop": gflop, "infer_gflop_s": infer_rate * gflop,
          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def machine() -> str:
  gpus = devices.gpus()
  if gpus:
    return ", ".join(tf.config.experimental.get_device_details(g).get("device_name", g.name)
                     for g in gpus)
  cpu = platform.processor() or "CPU"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return f"{cpu} x{os.cpu_count()}"


def run():
  if _PROFILE.value:
    return profile()
  if _ANCHOR_PYTHON.value or _ANCHOR_STARGAN.value:
    # --bench_tflite beside the anchor runs too (it used to be skipped without a word).
    return side_by_side() or (tflite_latency() if _TFLITE.value else 0)
  if _TFLITE.value:
    return tflite_latency()
  _set_threads(_THREADS.value)
  rows = []
  for name in _CONFIGS.value:
    _check_config(name)
    for precision in _PRECISIONS.value:
      row = _time_training(name, precision, _STEPS.value)
      logging.info("%s", row)
      rows.append(row)
      keras.backend.clear_session()
  header = ("| date | machine | TF | oneDNN | config | batch | loss | precision | jit | "
            "train img/s | G infer img/s | G GFLOP/img | G infer GFLOP/s | peak RSS MB |")
  lines = []
  for r in rows:
    lines.append(
        f"| {datetime.date.today()} | {machine()} | {tf.__version__} | "
        f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')} | {r['config']} | "
        f"{r['batch']} | {r['loss']} | {r['precision']} | {r['jit']} | "
        f"{r['train_img_s']:.1f} | {r['infer_img_s']:.0f} | {r['g_gflop']:.2f} | "
        f"{r['infer_gflop_s']:.0f} | {r['peak_rss_mb']:.0f} |")
  print(header)
  print("\n".join(lines))
  if _TABLE.value:
    new = not os.path.exists(_TABLE.value)
    os.makedirs(os.path.dirname(_TABLE.value) or ".", exist_ok=True)
    with open(_TABLE.value, "a") as f:
      if new:
        f.write("# Benchmarks\n\n`python main.py benchmark` appends rows here.\n\n")
        f.write(header + "\n" + "|---" * (header.count("|") - 1) + "|\n")
      f.write("\n".join(lines) + "\n")
  return 0


# --- side by side with official PyTorch StarGAN -------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _set_threads(threads: int):
  if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def parse_anchor(output: str) -> dict:
  """The numbers in tools/torch_anchor.py's output (training or --infer)."""
  out = {}
  m = re.search(r"^torch_anchor img_per_s=([\d.]+) batch=(\d+)", output, re.M)
  if m:
    out["train_img_s"], out["batch"] = float(m.group(1)), int(m.group(2))
  m = re.search(r"FLOPs/img/iter ([\d.e+]+)", output)
  if m:
    out["train_flop_per_img"] = float(m.group(1))
  m = re.search(r"^torch_anchor_infer img_per_s (.*?) norm=", output, re.M)
  if m:
    out["infer_img_s"] = {int(k[len("batch"):]): float(v) for k, v in
                          (item.split("=") for item in m.group(1).split())}
  m = re.search(r"^# torch (\S+),", output, re.M)
  if m:
    out["torch"] = m.group(1).rstrip(",")
  return out


def _anchor(args: list[str]) -> dict:
  script = _ANCHOR_SCRIPT.value or os.path.join(REPO, "tools", "torch_anchor.py")
  cmd = [_ANCHOR_PYTHON.value, script, "--stargan", _ANCHOR_STARGAN.value, *args]
  try:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
  except OSError as e:
    raise errors.UserError(f"--anchor_python={_ANCHOR_PYTHON.value}: {e}") from None
  if done.returncode:
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    raise errors.UserError(f"the PyTorch anchor failed ({' '.join(cmd)}): {tail[0]}")
  return parse_anchor(done.stdout)


def peak_gflops(seconds: float = 2.0, n: int = 1024) -> float:
  """This core's float32 matmul rate (GFLOP/s): the peak the FLOP fractions refer to."""
  a = tf.random.uniform((n, n))
  mm = tf.function(lambda x: tf.matmul(x, x))
  mm(a).numpy()
  t0, reps = time.perf_counter(), 0
  while time.perf_counter() - t0 < seconds:
    mm(a).numpy()
    reps += 1
  return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def _tf_trainer(batch: int):
  """A function timing `steps` training steps of the official size (WGAN-GP, n_critic 1)."""
  devices.plan(_PRECISIONS.value[0], "false", "default")
  g, d = models.build_models(models.ModelConfig())
  model = stargan.StarGAN(g, d, gan_loss="wgan-gp")
  model.compile(keras.optimizers.Adam(1e-4, 0.5), keras.optimizers.Adam(1e-4, 0.5))
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (batch, 48, 48, 1)).astype(np.float32)
  org = rng.integers(0, 4, batch).astype(np.int32)
  ds = tf.data.Dataset.from_tensors((x, org, (org + 1) % 4)).repeat()
  model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)   # trace and warm up

  def window(steps):
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps * batch / (time.perf_counter() - t0)
  return model, window


def _tf_inference_rate(g, batch: int = 64, seconds: float = 3.0) -> float:
  x = np.random.default_rng(0).uniform(-1, 1, (batch, 48, 48, 1)).astype(np.float32)
  onehot = np.eye(4, dtype=np.float32)[np.arange(batch) % 4]
  infer = tf.function(lambda a, b: g(a, b, training=False))
  infer(x, onehot).numpy()
  t0, n = time.perf_counter(), 0
  while time.perf_counter() - t0 < seconds:
    infer(x, onehot).numpy()
    n += batch
  return n / (time.perf_counter() - t0)


def side_by_side():
  """Official StarGAN (PyTorch) and this project, one core each, in interleaved rounds."""
  if not (_ANCHOR_PYTHON.value and _ANCHOR_STARGAN.value):
    raise errors.UserError("side by side needs both --anchor_python (a Python with torch) "
                           "and --anchor_stargan (a yunjey/stargan checkout)")
  if not os.path.isfile(os.path.join(_ANCHOR_STARGAN.value, "model.py")):
    raise errors.UserError(f"--anchor_stargan={_ANCHOR_STARGAN.value}: no model.py there "
                           "(a checkout of github.com/yunjey/stargan)")
  threads = _THREADS.value or 1
  _set_threads(threads)
  steps, rounds = _STEPS.value, _ROUNDS.value
  peak = peak_gflops()
  rows = []
  for batch in (int(b) for b in _ANCHOR_BATCHES.value):
    model, window = _tf_trainer(batch)
    ours, theirs, anchor = [], [], {}
    for r in range(rounds):
      ours.append(window(steps))
      anchor = _anchor(["--batch-size", str(batch), "--n-critic", "1", "--threads",
                        str(threads), "--steps", str(steps), "--windows", "1",
                        "--warmup", "2"])
      theirs.append(anchor["train_img_s"])
      logging.info("round %d, batch %d: this project %.2f img/s, PyTorch %.2f img/s", r + 1,
                   batch, ours[-1], theirs[-1])
    flop = anchor.get("train_flop_per_img", 0.0)
    rows.append({"what": f"train b{batch}", "ours": statistics.median(ours),
                 "theirs": statistics.median(theirs), "torch": anchor.get("torch", "?"),
                 "gflop_per_img": flop / 1e9, "rounds": rounds})
    g = model.generator
    if batch == int(_ANCHOR_BATCHES.value[-1]):
      ours_i, theirs_i = [], []
      for _ in range(rounds):
        ours_i.append(_tf_inference_rate(g))
        theirs_i.append(_anchor(["--infer", "--infer-batches", "64", "--threads",
                                 str(threads), "--windows", "3"])["infer_img_s"][64])
      rows.append({"what": "G infer b64", "ours": statistics.median(ours_i),
                   "theirs": statistics.median(theirs_i), "torch": anchor.get("torch", "?"),
                   "gflop_per_img": generator_flops(models.ModelConfig()) / 1e9,
                   "rounds": rounds})
    keras.backend.clear_session()
  header = ("| date | machine | TF | torch | threads | precision | what | this project img/s | "
            "PyTorch img/s | ratio | GFLOP/img | project GFLOP/s | % of matmul peak "
            f"| rounds |")
  lines = []
  for r in rows:
    rate = r["ours"] * r["gflop_per_img"]
    lines.append(
        f"| {datetime.date.today()} | {machine()} | {tf.__version__} | {r['torch']} | "
        f"{threads} | {keras.mixed_precision.global_policy().name} | {r['what']} | "
        f"{r['ours']:.2f} | {r['theirs']:.2f} | **{r['ours'] / r['theirs']:.2f}x** | "
        f"{r['gflop_per_img']:.2f} | {rate:.1f} | {100 * rate / peak:.0f}% (peak "
        f"{peak:.0f}) | {r['rounds']} |")
  print(header)
  print("\n".join(lines))
  command = " ".join(["main.py", *sys.argv[1:]])
  _insert_section(f"### Side by side with official PyTorch StarGAN (`{command}`)", header,
                  lines)
  return 0


def _insert_section(title: str, header: str, lines: list[str]):
  """Writes a titled table into --bench_table before its "## Results" table (which
  `benchmark` keeps appending rows to), or at the end when there is none."""
  if not _TABLE.value:
    return
  section = (f"{title}\n\n{header}\n" + "|---" * (header.count("|") - 1) + "|\n" +
             "\n".join(lines) + "\n\n")
  text = open(_TABLE.value).read() if os.path.exists(_TABLE.value) else ""
  at = text.find("\n## Results")
  text = (text[:at + 1] + section + text[at + 1:]) if at >= 0 else (
      text + ("\n" if text and not text.endswith("\n\n") else "") + section)
  os.makedirs(os.path.dirname(_TABLE.value) or ".", exist_ok=True)
  with open(_TABLE.value + ".tmp", "w") as f:
    f.write(text)
  os.replace(_TABLE.value + ".tmp", _TABLE.value)


# --- TFLite latency --------------------------------------------------------------------

def _tflite_ms(path: str, image: np.ndarray, seconds: float = 3.0) -> float:
  """Median batch-1 latency (ms) of a .tflite's translate_ids on one thread."""
  from faceexpr_tf import optional  # pylint: disable=g-import-not-at-top
  litert = optional.require("ai_edge_litert.interpreter", "to time a .tflite file")
  from faceexpr_tf.serving import translators  # pylint: disable=g-import-not-at-top
  runner = litert.Interpreter(model_path=path, num_threads=1).get_signature_runner(
      "translate_ids")
  details = runner.get_input_details()
  feed = {"image": translators.quantize(image, details["image"]),
          "target": translators.quantize(np.array([1], np.int32), details["target"])}
  for _ in range(3):
    runner(**feed)
  times, t_end = [], time.perf_counter() + seconds
  while time.perf_counter() < t_end or len(times) < 5:
    t0 = time.perf_counter()
    runner(**feed)
    times.append((time.perf_counter() - t0) * 1000)
  return statistics.median(times)


def tflite_latency():
  """Each conversion's batch-1 latency (one thread) and error against the Keras G."""
  import tempfile  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.serving import export  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.serving import pretrained  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.serving import signatures  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.data import synthetic  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.serving import tflite  # pylint: disable=g-import-not-at-top
  for mode in _TFLITE.value:
    if mode not in tflite.QUANTIZE_MODES:
      raise errors.UserError(f"--bench_tflite: unknown {mode!r} (know "
                             f"{', '.join(tflite.QUANTIZE_MODES)})")
  _set_threads(_THREADS.value or 1)
  keras.mixed_precision.set_global_policy("float32")
  if _TFLITE_MODEL.value == "pretrained":
    g, _ = pretrained.load_generator()
  else:
    keras.utils.set_random_seed(0)
    g = models.build_models(models.ModelConfig())[0]
  emotions = ("Angry", "Happy", "Sad", "Surprise")[:g.config.num_classes]
  faces = synthetic.synthetic_faceset(80, seed=1, emotions=emotions)
  calib, probe = faces.images[:300], faces.images[300:308]
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    saved = export.export_saved_model(g, emotions, tmp, version=1)
    for mode in _TFLITE.value:
      path = os.path.join(tmp, f"g_{mode}.tflite")
      tflite.convert_tflite(saved, path, mode, calib if mode in tflite.CALIBRATED_MODES
                            else None)
      err = tflite.compare_tflite(path, g, probe, np.arange(len(probe)) % len(emotions))
      ms = _tflite_ms(path, signatures.to_unit_range(probe[:1]))
      rows.append({"mode": mode, "ms": ms, **err})
      logging.info("TFLite %s: %.2f ms per face, max abs %.3g, mean abs %.3g, %.2f MB",
                   mode, ms, err["max_abs"], err["mean_abs"], err["size_bytes"] / 1e6)
  header = ("| date | machine | TF | G | conversion | batch-1 ms (1 thread) | max abs diff | "
            "mean abs diff | MB |")
  lines = [f"| {datetime.date.today()} | {machine()} | {tf.__version__} | "
           f"{_TFLITE_MODEL.value} | {r['mode']} | {r['ms']:.2f} | {r['max_abs']:.2g} | "
           f"{r['mean_abs']:.2g} | {r['size_bytes'] / 1e6:.2f} |" for r in rows]
  print(header)
  print("\n".join(lines))
  _insert_section(
      f"### TFLite batch-1 latency and error (`main.py {' '.join(sys.argv[1:])}`; "
      "differences in [-1, 1] units against the Keras G on 8 synthetic faces; int8 and "
      "int16x8 calibrated on 300)", header, lines)
  return 0


# --- profile of training steps ----------------------------------------------------------

def trace_training(name: str, precision: str, steps: int, logdir: str) -> tuple[str, float]:
  """Traces `steps` warm training steps of config `name` into logdir (TensorBoard's
  profile plugin layout); returns the .xplane.pb written and the traced seconds."""
  model, ds, *_ = _warm_trainer(name, precision)
  before = set(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
  tf.profiler.experimental.start(logdir)
  t0 = time.perf_counter()
  try:
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
  finally:
    seconds = time.perf_counter() - t0
    tf.profiler.experimental.stop()
  new = set(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
  if not new - before:
    raise errors.UserError(f"--profile={logdir}: the profiler wrote no trace there")
  return max(new - before, key=os.path.getmtime), seconds


# A TensorFlow op's trace event is named "<scope>/<op name>:<op type>".
_OP_EVENT = re.compile(r"^[^\s:]+:([A-Za-z0-9_]+)$")


def top_ops(xplane_path: str, n: int = 10) -> tuple[list[dict], float]:
  """The op types taking the most self time in a trace, and the total op self time (ms).

  Self time: an op event's duration less that of ops nested in it (a function call op
  holds its body's ops); ops on concurrent threads add up, so shares are of op time, not
  of wall time. Needs TensorFlow's xplane proto (ImportError without it).
  """
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  space = xplane_pb2.XSpace()
  with open(xplane_path, "rb") as f:
    space.ParseFromString(f.read())
  by_type: dict[str, dict] = {}
  for plane in space.planes:
    kinds = {}
    for mid, meta in plane.event_metadata.items():
      m = _OP_EVENT.match(meta.name)
      if m:
        kinds[mid] = (m.group(1), meta.name)
    for line in plane.lines:
      ops = sorted(((e.offset_ps, e.offset_ps + e.duration_ps, kinds[e.metadata_id])
                    for e in line.events if e.metadata_id in kinds),
                   key=lambda e: (e[0], -e[1]))
      stack: list[list] = []   # [end, self ps, kind] of the open ops
      done = []
      for start, end, kind in ops:
        while stack and stack[-1][0] <= start:
          done.append(stack.pop())
        if stack:   # nested: its time is not its parent's own
          stack[-1][1] -= min(end, stack[-1][0]) - start
        stack.append([end, end - start, kind])
      done.extend(stack)
      for _, self_ps, (op_type, op_name) in done:
        row = by_type.setdefault(op_type, {"op": op_type, "count": 0, "self_ms": 0.0,
                                           "names": {}})
        row["count"] += 1
        row["self_ms"] += self_ps / 1e9
        row["names"][op_name] = row["names"].get(op_name, 0.0) + self_ps / 1e9
  total = sum(r["self_ms"] for r in by_type.values())
  rows = sorted(by_type.values(), key=lambda r: -r["self_ms"])[:n]
  for r in rows:
    r["share"] = r["self_ms"] / total if total else 0.0
    r["top_name"] = max(r.pop("names").items(), key=lambda kv: kv[1])[0]
  return rows, total


def profile():
  """`benchmark --profile=DIR`: a trace of a few training steps, and its top ops."""
  name, precision, steps = _CONFIGS.value[0], _PRECISIONS.value[0], _PROFILE_STEPS.value
  _check_config(name)
  _set_threads(_THREADS.value)
  logdir = os.path.abspath(_PROFILE.value)
  path, seconds = trace_training(name, precision, steps, logdir)
  batch = CONFIGS[name][1]
  print(f"Traced {steps} training step(s) of {name} (batch {batch}, "
        f"{keras.mixed_precision.global_policy().name}) in {seconds:.2f} s: {path}")
  print(f"Open it with: tensorboard --logdir={logdir}  (Profile tab; needs "
        "pip install tensorboard-plugin-profile)")
  try:
    rows, total = top_ops(path)
  except ImportError as e:
    print(f"No summary here ({e}): open the trace in TensorBoard as above.")
    return 0
  print(f"Top ops by self time ({total:.0f} ms of op time over {steps} step(s); threads "
        "run ops concurrently, so it can exceed the wall time):")
  print("| op type | count | self ms | share | largest op of the type |")
  print("|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['op']} | {r['count']} | {r['self_ms']:.1f} | {100 * r['share']:.1f}% | "
          f"{r['top_name']} |")
  return 0
