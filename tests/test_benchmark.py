import datetime
import os
import subprocess
import sys

import keras
import pytest

from faceexpr_tf import errors
from faceexpr_tf.benchmark import anchor
from faceexpr_tf.benchmark import hardware
from faceexpr_tf.benchmark import latency
from faceexpr_tf.benchmark import photos
from faceexpr_tf.benchmark import profiling
from faceexpr_tf.benchmark import speed
from faceexpr_tf.benchmark import tables
from faceexpr_tf.modeling import models
from faceexpr_tf.training import devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cells(line):
  return [c.strip() for c in line.strip("|").split("|")]


def test_cpu_flags_name_the_features_that_decide_speed(monkeypatch):
  monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx512_bf16", "sse2", "avx2"}))
  assert hardware.cpu_flags() == "avx2 avx512_bf16"          # in CPU_FEATURES' order, no sse2
  monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"sse2"}))
  assert hardware.cpu_flags() == "-"


def test_rows_with_new_columns_start_a_table_above_the_old_layout(tmp_path):
  table = tmp_path / "bench.md"
  old = "| date | machine | TF |\n|---|---|---|\n| 2026-01-01 | old | 2.0 |\n"
  table.write_text(f"# Benchmarks\n\n## Results\n\n{old}\n### A later section\n")
  header = "| date | machine | CPU flags | TF |"
  tables.append_rows(str(table), header, ["| d1 | m | avx2 | 2.21 |"])
  tables.append_rows(str(table), header, ["| d2 | m | avx2 | 2.21 |"])
  text = table.read_text()
  new = f"{header}\n|---|---|---|---|\n| d1 | m | avx2 | 2.21 |\n| d2 | m | avx2 | 2.21 |\n"
  assert text == f"# Benchmarks\n\n## Results\n\n{new}\n{old}\n### A later section\n"


def test_generator_flops_match_the_pytorch_anchor():
  # 2.73 GFLOP per image for the official G at 48 px (../shared/bench counts the same).
  assert speed.generator_flops(models.ModelConfig()) / 1e9 == pytest.approx(2.73, abs=0.01)
  small = models.ModelConfig(g_conv_dim=16, g_repeat_num=2)
  assert speed.generator_flops(small) < speed.generator_flops(models.ModelConfig()) / 20


def test_benchmark_mode_prints_and_appends_rows(tmp_path, main_py, monkeypatch):
  """One real `main.py benchmark` (the smallest config, 1 timed step: ~20 s, most of it
  tracing the training step) starts the table; a second run appends to it, its timing
  faked (the real timing is the first run's)."""
  table = tmp_path / "bench.md"
  out = main_py("benchmark", "--bench_configs=demo", "--bench_steps=1", f"--bench_table={table}")
  assert out.returncode == 0, out.stderr[-2000:]
  row = {"config": "demo", "batch": 32, "loss": "log", "precision": "float32", "jit": False,
         "train_img_s": 1.0, "infer_img_s": 1.0, "g_gflop": 0.13, "infer_gflop_s": 0.1,
         "peak_rss_mb": 1.0}
  monkeypatch.setattr(speed, "time_training", lambda name, precision, steps: dict(row))
  assert speed.training_table(["demo"], ["auto"], 1, 0, str(table)) == 0
  rows = [l for l in table.read_text().splitlines() if "| demo |" in l]
  assert len(rows) == 2 and "| demo |" in out.stdout
  header = _cells(speed.HEADER)
  cells = _cells(rows[0])
  assert float(cells[header.index("train img/s")]) > 0
  assert float(cells[header.index("G infer img/s")]) > 0
  assert cells[header.index("CPU flags")] == hardware.cpu_flags()   # every row names them
  assert table.read_text().count("| date |") == 1            # one header, rows appended
  bad = main_py("benchmark", "--bench_configs=nope")
  assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr


ANCHOR_TRAIN_OUTPUT = """\
# torch 2.13.0+cpu, threads=1, official model.py from /x/stargan
# G params 8414848, D params 2777536, D final feature map (3, 3), out_src (1, 3, 3)
# warm-up 2 iterations: 9.10 s
# window 0: 5 steps in 17.000 s -> 4.706 img/s, 71.2 GFLOP/s
# img/s min 4.706 median 4.706 max 4.706; FLOPs/img/iter 1.513e+10 -> 71.2 GFLOP/s at median
torch_anchor img_per_s=4.706 batch=16 n_critic=1 threads=1
"""
ANCHOR_INFER_OUTPUT = """\
# torch 2.13.0+cpu, threads=1, official model.py from /x/stargan
# infer batch 64: img/s min 30.10 median 32.50 max 33.00; 88.7 GFLOP/s at median
torch_anchor_infer img_per_s batch64=32.50 norm=eval threads=1
"""


def test_parse_anchor_output():
  train = anchor.parse_anchor(ANCHOR_TRAIN_OUTPUT)
  assert train == {"train_img_s": 4.706, "batch": 16, "train_flop_per_img": 1.513e10,
                   "torch": "2.13.0+cpu"}
  infer = anchor.parse_anchor(ANCHOR_INFER_OUTPUT)
  assert infer["infer_img_s"] == {64: 32.5} and "train_img_s" not in infer


def test_peak_gflops_is_a_rate():
  assert hardware.peak_gflops(seconds=0.2, n=256) > 0.1


def test_peak_is_measured_in_the_dtype_asked_for(monkeypatch):
  assert [hardware.compute_dtype(p) for p in ("float32", "mixed_bfloat16", "mixed_float16")] \
      == ["float32", "bfloat16", "float16"]
  seen = []
  real = hardware.tf.linalg.matmul
  monkeypatch.setattr(hardware.tf.linalg, "matmul", lambda a, b: seen.append(a.dtype) or
                      real(a, b))
  assert hardware.peak_gflops(seconds=0.05, n=64, dtype="bfloat16") > 0
  assert seen and set(seen) == {hardware.tf.bfloat16}


@pytest.fixture
def restore_policy():
  before = keras.mixed_precision.global_policy().name
  yield
  keras.mixed_precision.set_global_policy(before)


def _fake_side_by_side(monkeypatch, tmp_path, precision, batches, peak):
  """anchor.side_by_side with everything slow faked (the precision resolution is real).

  Returns the table's rows (cells), the policy each trainer was built in and the dtypes
  the matmul peak was asked for.
  """
  built_in, peak_dtypes = [], []
  monkeypatch.setattr(hardware, "set_threads", lambda threads: None)
  monkeypatch.setattr(hardware, "peak_gflops",
                      lambda dtype="float32", **_: peak_dtypes.append(dtype) or peak)

  def fake_trainer(batch):
    built_in.append(keras.mixed_precision.global_policy().name)
    return type("Model", (), {"generator": None})(), lambda steps: 4.0
  monkeypatch.setattr(anchor, "tf_trainer", fake_trainer)
  monkeypatch.setattr(anchor, "tf_inference_rate", lambda g: 20.0)
  monkeypatch.setattr(anchor, "run_anchor", lambda python, stargan_dir, script, args:
                      anchor.parse_anchor(ANCHOR_INFER_OUTPUT if "--infer" in args
                                          else ANCHOR_TRAIN_OUTPUT))
  (tmp_path / "model.py").touch()
  table = tmp_path / "side.md"
  assert anchor.side_by_side("python", str(tmp_path), None, precision, 1, 1, 1, batches,
                             str(table), "main.py benchmark") == 0
  rows = [dict(zip(_cells(anchor.HEADER), _cells(line)))
          for line in table.read_text().splitlines()
          if "| train b" in line or "| G infer" in line]
  return rows, built_in, peak_dtypes


def test_side_by_side_rows_name_the_precision_that_ran_and_its_peak(
    monkeypatch, tmp_path, capsys, restore_policy):
  # The reported bug: on a CPU with native bf16, "auto" ran mixed_bfloat16 but the rows
  # said float32 and held bf16 rates against a float32 matmul peak (170% of it).
  monkeypatch.setattr(devices, "gpu_capabilities", lambda: [])
  monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
  rows, built_in, peak_dtypes = _fake_side_by_side(monkeypatch, tmp_path, "auto", [8, 16], 95.0)
  assert built_in == ["mixed_bfloat16", "mixed_bfloat16"]   # bf16 ran, for every batch
  assert peak_dtypes == ["bfloat16"]
  peak = "% of matmul peak (peak GFLOP/s, its dtype)"
  assert [r["what"] for r in rows] == ["train b8", "train b16", "G infer b64"]
  assert [r["precision"] for r in rows] == ["mixed_bfloat16"] * 3
  assert [r["CPU flags"] for r in rows] == ["avx2 avx512_bf16"] * 3
  # 4 img/s x 15.13 GFLOP = 60.5 GFLOP/s of a 95 GFLOP/s bf16 peak; G: 20 x 2.73 of 95.
  assert [r[peak] for r in rows] == ["64% (peak 95, bfloat16)"] * 2 + ["57% (peak 95, bfloat16)"]
  assert "1024x1024 bfloat16 matmul" in capsys.readouterr().out


def test_side_by_side_in_float32_holds_a_float32_peak(monkeypatch, tmp_path, restore_policy):
  monkeypatch.setattr(devices, "gpu_capabilities", lambda: [])
  monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2"}))   # no native bf16
  rows, built_in, peak_dtypes = _fake_side_by_side(monkeypatch, tmp_path, "auto", [16], 100.0)
  assert built_in == ["float32"] and peak_dtypes == ["float32"]
  peak = "% of matmul peak (peak GFLOP/s, its dtype)"
  assert [(r["precision"], r[peak], r["CPU flags"]) for r in rows] == [
      ("float32", "61% (peak 100, float32)", "avx2"), ("float32", "55% (peak 100, float32)",
                                                      "avx2")]


def test_training_rows_name_the_precision_that_ran(monkeypatch, restore_policy):
  # "auto", which a CPU with native bf16 resolves to mixed_bfloat16: the real resolution,
  # models built and compiled in it and G's inference timed in it; only fit() is faked (its
  # first call traces the training step: ~10 s of emulated bf16 on an AVX2 CPU).
  monkeypatch.setattr(devices, "gpu_capabilities", lambda: [])
  monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
  monkeypatch.setitem(speed.CONFIGS, "tiny", (dict(g_conv_dim=4, g_repeat_num=1, d_conv_dim=4,
                                                   upsample="resize"), 2, "log"))
  fits = []
  monkeypatch.setattr(speed.stargan.StarGAN, "fit", lambda self, ds, **kw: fits.append(
      (keras.mixed_precision.global_policy().name, self.generator.dtype_policy.name,
       kw["steps_per_epoch"])))
  row = speed.time_training("tiny", "auto", steps=1, infer_seconds=0.05)
  keras.backend.clear_session()
  assert fits == [("mixed_bfloat16", "mixed_bfloat16", 3), ("mixed_bfloat16",
                                                             "mixed_bfloat16", 1)]
  assert row["precision"] == "mixed_bfloat16"
  assert row["train_img_s"] > 0 and row["infer_img_s"] > 0
  line = speed.row_line(row, "a bf16 CPU", "avx2 avx512_bf16")
  assert "| tiny | 2 | log | mixed_bfloat16 | False |" in line and "auto" not in line
  assert _cells(line)[:3] == [str(datetime.date.today()), "a bf16 CPU", "avx2 avx512_bf16"]
  assert len(_cells(line)) == len(_cells(speed.HEADER))


def test_only_the_mode_module_reads_flags():
  folder = os.path.dirname(anchor.__file__)
  for name in sorted(os.listdir(folder)):
    if name.endswith(".py") and name not in ("benchmark.py", "__init__.py"):
      text = open(os.path.join(folder, name), encoding="utf-8").read()
      assert "absl import flags" not in text and "FLAGS" not in text, name


def test_side_by_side_needs_a_usable_anchor(tmp_path, main_py):
  base = ["benchmark", f"--bench_table={tmp_path / 'b.md'}"]
  cases = [
      (["--anchor_python=" + sys.executable], "needs both"),
      ([f"--anchor_python={sys.executable}", f"--anchor_stargan={tmp_path}"], "no model.py"),
  ]
  for args, message in cases:
    out = main_py(*base, *args)
    assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_side_by_side_with_the_real_anchor(tmp_path):
  # Minutes of the official networks on one core: runs where the anchor is set up
  # (../shared/bench/README.md) and named in the environment.
  python = os.environ.get("FACEEXPR_ANCHOR_PYTHON")
  stargan_dir = os.environ.get("FACEEXPR_ANCHOR_STARGAN")
  if not (python and stargan_dir):
    pytest.skip("set FACEEXPR_ANCHOR_PYTHON (a Python with torch) and "
                "FACEEXPR_ANCHOR_STARGAN (a yunjey/stargan checkout) to run it")
  table = tmp_path / "side.md"
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "main.py"), "benchmark", f"--anchor_python={python}",
       f"--anchor_stargan={stargan_dir}", "--bench_steps=1", "--bench_rounds=1",
       "--anchor_batches=8", f"--bench_table={table}"],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
      timeout=1200)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = [l for l in table.read_text().splitlines() if "| train b8 |" in l or "| G infer" in l]
  assert len(rows) == 2
  for row in rows:
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[7]) > 0 and float(cells[8]) > 0 and cells[9].endswith("x**")


@pytest.fixture(scope="module")
def tflite_table(tmp_path_factory):
  """The TFLite section for `--bench_tflite=none,dynamic`, written in this process: each
  kind converted once and timed for 0.2 s (not 3). ~30 s that no setting shortens: the
  shipped G's export traces every signature, and each conversion loads that SavedModel
  again. set_threads is recorded, not applied (this process's runtime is already up), and
  the Keras policy is restored."""
  pytest.importorskip("ai_edge_litert.interpreter",
                      reason="the .tflite timing needs pip install -e '.[mobile]'")
  table = tmp_path_factory.mktemp("tflite") / "tflite.md"
  before = keras.mixed_precision.global_policy().name
  threads = []
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(hardware, "set_threads", threads.append)
    try:
      code = latency.tflite_latency(["none", "dynamic"], "pretrained", 0, str(table),
                                    "main.py benchmark --bench_tflite=none,dynamic",
                                    seconds=0.2)
    finally:
      keras.mixed_precision.set_global_policy(before)
  assert threads == [1]   # one thread unless --bench_threads says otherwise
  return code, table


def test_tflite_latency_rows(tflite_table, main_py):
  """The rows of both conversions (tflite_table: ~30 s), and an unknown one refused."""
  code, table = tflite_table
  assert code == 0
  header = _cells(latency.HEADER)
  rows = {r["conversion"]: r for r in (
      dict(zip(header, _cells(line)))
      for line in table.read_text().splitlines() if "| pretrained |" in line)}
  assert set(rows) == {"none", "dynamic"}
  assert all(float(r["batch-1 ms (1 thread)"]) > 0 for r in rows.values())   # ms per face
  assert all(r["CPU flags"] == hardware.cpu_flags() for r in rows.values())
  diff = {mode: float(r["max abs diff"]) for mode, r in rows.items()}
  assert diff["none"] < 1e-3                                      # float32: exact enough
  assert diff["none"] < diff["dynamic"] < 0.5                     # int8 weights: lossier
  bad = main_py("benchmark", "--bench_tflite=int4")
  assert bad.returncode == 2 and "int4" in bad.stderr and "Traceback" not in bad.stderr


def test_profile_writes_a_trace_and_prints_the_top_ops(tmp_path, main_py):
  """A real `--profile` run of the smallest config (1 traced step, after the 3 warm-up steps
  that trace the training step: ~15 s)."""
  logdir = tmp_path / "prof"
  out = main_py("benchmark", "--bench_configs=demo", "--profile_steps=1", f"--profile={logdir}",
                f"--bench_table={tmp_path / 'b.md'}")
  assert out.returncode == 0, out.stderr[-3000:]
  traces = list(logdir.glob("plugins/profile/*/*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0
  assert str(traces[0]) in out.stdout and f"tensorboard --logdir={logdir}" in out.stdout
  assert not (tmp_path / "b.md").exists()   # a profile appends no benchmark rows
  try:
    # pylint: disable-next=g-import-not-at-top,unused-import
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: F401
  except ImportError:
    assert "No summary here" in out.stdout
    pytest.skip("this TensorFlow has no xplane proto: the trace is not summarised offline")
  rows = [line.strip("|").split("|") for line in out.stdout.splitlines()
          if line.startswith("| ") and "% |" in line]
  assert 3 <= len(rows) <= 10, out.stdout
  shares = [float(r[3].strip().rstrip("%")) for r in rows]
  assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 100.05
  # A GAN training step is mostly convolutions and their gradients.
  assert any("Conv2D" in r[0] for r in rows[:3]), out.stdout
  rows, total = profiling.top_ops(str(traces[0]), n=100)
  assert total > 0 and sum(r["self_ms"] for r in rows) == pytest.approx(total)


def test_profile_of_an_unknown_config_is_a_user_error(tmp_path, main_py):
  out = main_py("benchmark", "--bench_configs=nope", f"--profile={tmp_path}")
  assert out.returncode == 2 and "nope" in out.stderr and "Traceback" not in out.stderr


# -- the photo path (faceexpr_tf/benchmark/photos.py) ------------------------------------

def _photo_rows(table) -> list[list[str]]:
  """The cells of the rows of the "Photo path" table in a markdown file."""
  text = table.read_text()
  section = text[text.index(photos.TITLE):]
  section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
  return [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
          if line.startswith("| 20")]


def test_photo_benchmark_rows(tmp_path, monkeypatch):
  """`benchmark --bench_photos` on a tiny photo (320x240, one timed pass, both detectors:
  ~10 s, most of it loading the shipped G and MTCNN) writes its table before "## Results";
  a second run (its timing faked) appends rows to the same table."""
  import conftest  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.benchmark import benchmark  # pylint: disable=g-import-not-at-top
  table = tmp_path / "bench.md"
  table.write_text("# Benchmarks\n\nIntro.\n\n## Results\n\n| date | x |\n|---|---|\n| r | 1 |\n")
  with conftest.mode_flags(benchmark, parsed=True, bench_photos="320x240",
                           bench_photo_detectors="haar,mtcnn", bench_photo_repeats="1",
                           bench_table=str(table)):
    assert benchmark.run() == 0
  header = [c.strip() for c in photos.HEADER.strip("|").split("|")]
  rows = _photo_rows(table)
  assert [(r[header.index("detector")], r[header.index("emotions")]) for r in rows] == [
      ("haar", "1"), ("haar", "4"), ("mtcnn", "1"), ("mtcnn", "4")]
  split = [header.index(f"{s} ms") for s in ("decode", "detect", "align", "G", "paste",
                                             "encode")]
  for r in rows:
    assert len(r) == len(header) and r[header.index("size")] == "320x240 (0.1 MP)"
    assert r[header.index("faces")] == "1"                     # the face was found and edited
    assert r[header.index("machine")] == hardware.machine()
    total = float(r[header.index("total ms")])
    assert float(r[header.index("photos/s")]) == pytest.approx(1000 / total, rel=0.02)
    assert all(float(r[i]) >= 0 for i in split) and sum(float(r[i]) for i in split) > 0
    assert float(r[header.index("peak MB")]) > 0
  text = table.read_text()
  assert text.index(photos.TITLE) < text.index("## Results") and "| r | 1 |" in text

  fake = {"size": (64, 64), "jpeg_mb": 0.01, "detector": "haar", "emotions": 1, "faces": 1,
          "ms": dict.fromkeys((*photos.STAGES, "total"), 1.0), "photos_s": 1000.0,
          "peak_mb": None, "repeats": 1}
  monkeypatch.setattr(photos, "time_photos", lambda *args: [dict(fake)])
  assert photos.photo_table(["64x64"], ["haar"], 1, 0, str(table)) == 0
  rows = _photo_rows(table)
  assert len(rows) == 5 and rows[-1][header.index("size")] == "64x64 (0.0 MP)"
  assert rows[-1][header.index("peak MB")] == "-"
  assert table.read_text().count(photos.HEADER) == 1          # one header, rows appended
  with pytest.raises(errors.UserError, match="12 megapixels"):
    photos.parse_size("12 megapixels")


def test_threads_fixed_by_an_earlier_benchmark_are_kept_with_one_line():
  """`benchmark --bench_photos=... --bench_tflite=...` runs the photo table, then the TFLite
  one, which asks for one TensorFlow thread after TensorFlow has already run: that used to
  end the run in a traceback. Before TensorFlow runs, the threads are still set. (A
  subprocess: thread pools are per process.)"""
  code = ("import tensorflow as tf\n"
          "from faceexpr_tf.benchmark import hardware\n"
          "hardware.set_threads(3)\n"
          "print('before', tf.config.threading.get_intra_op_parallelism_threads())\n"
          "tf.constant(1.0) + 1.0\n"
          "hardware.set_threads(1)\n"
          "print('after', tf.config.threading.get_intra_op_parallelism_threads())\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  assert out.returncode == 0, out.stderr[-2000:]
  assert "before 3" in out.stdout and "after 3" in out.stdout
  assert "Traceback" not in out.stderr
  assert "threads stay as an earlier benchmark of this run left them (intra-op 3), not 1" \
      in out.stderr


def test_huge_photos_are_refused_before_decoding():
  """A header announcing 48 MP (over images.MAX_PIXELS) is refused from its first bytes:
  no decoder runs (the rest of the file is missing)."""
  import struct  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top

  from faceexpr_tf.photos import faces as faces_lib  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.photos import photo_files  # pylint: disable=g-import-not-at-top
  ihdr = struct.pack(">IIBBBBB", 8000, 6000, 8, 2, 0, 0, 0)
  png = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
         + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))
  with pytest.raises(faces_lib.ImageReadError, match="8000x6000 pixels is too large"):
    photo_files.decode_photo(png, "huge.png")
