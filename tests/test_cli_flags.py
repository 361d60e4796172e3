"""The command line never ends in a traceback for a bad flag value or a missing extra.

Bad training flags are refused before any work with one `error:` line naming the flag
(exit 2). A missing optional package (ai-edge-litert from ".[mobile]", grpc /
tensorflow-serving-api from ".[serving]") is one line naming the package and the exact
pip command; `export --format=tflite` still writes its files and exits 0 unless the
check was asked for with --verify. Missing packages are simulated with a directory on
PYTHONPATH whose stand-in packages raise ModuleNotFoundError, as an absent one does.
"""

import glob
import os
import re
import subprocess
import sys

import conftest
import pytest

from faceexpr_tf import errors
from faceexpr_tf import optional
from faceexpr_tf.training import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOBILE_FIX = 'pip install -e ".[mobile]"'


def _run(args, tmp_path, missing=(), timeout=300):
  """Runs a command from the repo root; `missing`: top-level modules made unimportable."""
  path = [REPO]
  if missing:
    shim = tmp_path / "missing_packages"
    for module in missing:
      (shim / module).mkdir(parents=True, exist_ok=True)
      (shim / module / "__init__.py").write_text(
          f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n")
    path.insert(0, str(shim))
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "TF_CPP_MIN_LOG_LEVEL": "2",
         "CUDA_VISIBLE_DEVICES": ""}
  return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout)


def _error_lines(result):
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  return [l for l in result.stderr.splitlines() if l.startswith("error:")]


# ---------------------------------------------------------------------------------------
# Training flags.


@pytest.mark.parametrize("args,line", [
    (["--batch_size=-3"], "error: --batch_size=-3: must be at least 1"),
    (["--image_size=50"], "error: --image_size=50: must be a positive multiple of 16 "
                          "(G downsamples twice, D --d_repeat_num=4 times)"),
    (["--diffaug=color,blur"], "error: --diffaug: unknown policy 'blur' (choose from color, "
                               "translation, cutout, comma-separated, or '' for off)"),
])
def test_train_refuses_bad_flags_in_one_line(args, line, tmp_path, main_py):
  run_dir = tmp_path / "run"
  # `python main.py train ...` forked from a process that imported TensorFlow once
  # (conftest.py's main_py); the missing-package tests below need a fresh interpreter.
  result = main_py("train", f"--run_dir={run_dir}", *args)
  assert result.returncode == 2, result.stderr[-3000:]
  assert _error_lines(result) == [line]
  assert not run_dir.exists()  # refused before any work


@pytest.mark.parametrize("values,words", [
    ({"batch_size": 0}, "--batch_size=0: must be at least 1"),
    ({"epochs": 0}, "--epochs=0: must be at least 1 (or set --max_steps)"),
    ({"epochs": -2, "max_steps": 10}, "--epochs=-2"),
    ({"max_steps": -1}, "--max_steps=-1: must be 0 or more"),
    ({"checkpoint_every": -5}, "--checkpoint_every=-5"),
    ({"sample_every": -1}, "--sample_every=-1"),
    ({"log_every": -1}, "--log_every=-1"),
    ({"keep_checkpoints": 0}, "--keep_checkpoints=0"),
    ({"n_critic": 0}, "--n_critic=0"),
    ({"steps_per_execution": 0}, "--steps_per_execution=0"),
    ({"g_lr": 0.0}, "--g_lr=0.0: must be above 0"),
    ({"d_lr": -1e-4}, "--d_lr=-0.0001"),
    ({"image_size": 0}, "--image_size=0"),
    ({"image_size": 24}, "--image_size=24: must be a positive multiple of 16"),
    ({"image_size": 38, "d_repeat_num": 1}, "--image_size=38: must be a positive multiple "
                                             "of 4"),
    ({"g_conv_dim": 0}, "--g_conv_dim=0"),
    ({"d_conv_dim": -8}, "--d_conv_dim=-8"),
    ({"g_repeat_num": 0}, "--g_repeat_num=0"),
    ({"d_repeat_num": 0}, "--d_repeat_num=0"),
    ({"max_minutes": -1.0}, "--max_minutes=-1.0"),
    ({"g_ema_decay": 1.0}, "--g_ema_decay=1.0: must be in [0, 1)"),
    ({"g_ema_decay": -0.1}, "--g_ema_decay=-0.1"),
    ({"beta2": 1.0}, "--beta2=1.0"),
    ({"lambda_rec": -1.0}, "--lambda_rec=-1.0"),
    ({"synthetic_identities": 0}, "--synthetic_identities=0"),
])
def test_check_flags_names_the_flag(parsed_flags, values, words):
  del parsed_flags
  for name, value in values.items():
    train.FLAGS[name].value = value
  with pytest.raises(errors.UserError, match=re.escape(words)):
    train.check_flags()


@pytest.mark.parametrize("flagfile", sorted(glob.glob(os.path.join(REPO, "flags",
                                                                   "*.flags"))))
def test_every_shipped_flagfile_passes_the_checks(parsed_flags, flagfile):
  del parsed_flags
  train.FLAGS(["main.py", f"--flagfile={flagfile}"], known_only=True)
  train.check_flags()
  # Zero means "off" / "from --epochs" / "no limit" for these.
  for name in ("max_steps", "checkpoint_every", "sample_every", "log_every",
               "max_minutes", "g_ema_decay"):
    train.FLAGS[name].value = 0
  train.check_flags()


# ---------------------------------------------------------------------------------------
# Optional packages.


def test_require_imports_or_names_the_extra(monkeypatch):
  assert optional.require("json", "for nothing").dumps([1]) == "[1]"
  # Earlier tests may have imported the submodule: block it too, not just the package.
  for name in ("ai_edge_litert", "ai_edge_litert.interpreter"):
    monkeypatch.setitem(sys.modules, name, None)
  with pytest.raises(optional.MissingPackageError) as e:
    optional.require("ai_edge_litert.interpreter", "to run a .tflite file")
  assert str(e.value) == ("ai-edge-litert is not installed: it is needed to run a .tflite "
                          f"file; run: {MOBILE_FIX}")
  assert isinstance(e.value, errors.UserError)
  for name in ("tensorflow_serving", "tensorflow_serving.apis",
               "tensorflow_serving.apis.predict_pb2"):
    monkeypatch.setitem(sys.modules, name, None)
  with pytest.raises(optional.MissingPackageError, match=r'pip install -e "\.\[serving\]"'):
    optional.require("tensorflow_serving.apis.predict_pb2", "for --grpc")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A tiny untrained run (no training: a checkpoint of a fresh G)."""
  from faceexpr_tf.data import emotions as emotions_lib
  from faceexpr_tf.modeling import models
  from faceexpr_tf.store import runs
  config = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8)
  generator = models.Generator(config)
  generator.build()
  path = str(tmp_path_factory.mktemp("run"))
  runs.prepare_run_dir(path, runs.RunConfig(config, emotions_lib.DEFAULT_EMOTIONS))
  runs.save_checkpoint(path, 3, {"generator": generator.weights})
  return path


def test_tflite_export_without_litert_writes_the_files_and_warns(run_dir, tmp_path):
  """The README's install (no extras): the issue's traceback, now a one-line warning."""
  out = tmp_path / "exports"
  result = _run(["main.py", "export", f"--run_dir={run_dir}", "--format=tflite",
                 f"--export_dir={out}"], tmp_path, missing=["ai_edge_litert"])
  assert result.returncode == 0, result.stderr[-3000:]
  assert _error_lines(result) == []
  assert sorted(os.listdir(out)) == ["faceexpr_float32.tflite", "faceexpr_labels.txt"]
  warnings = [l for l in result.stderr.splitlines() if "ai-edge-litert" in l]
  assert len(warnings) == 1 and MOBILE_FIX in warnings[0], result.stderr[-3000:]


def test_tflite_export_with_explicit_verify_needs_litert(run_dir, tmp_path, monkeypatch):
  # In-process (a subprocess costs a TensorFlow import); main.py turns the UserError
  # into `error: <message>` and exit 2.
  from faceexpr_tf.serving import export
  monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
  monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
  with conftest.mode_flags(export, parsed=True, run_dir=run_dir, export_dir=str(tmp_path),
                          format="tflite", quantize="none", verify="true"):
    with pytest.raises(optional.MissingPackageError, match="to check the .tflite"):
      export.run()
  assert sorted(os.listdir(tmp_path)) == ["faceexpr_float32.tflite", "faceexpr_labels.txt"]


def test_translate_a_tflite_without_litert_is_one_line(tmp_path):
  model = tmp_path / "m_float32.tflite"
  model.write_bytes(b"not read: the package check comes first")
  result = _run(["main.py", "translate", f"--model={model}", f"--input={model}",
                 f"--out={tmp_path / 'out'}"], tmp_path, missing=["ai_edge_litert"])
  assert result.returncode == 2, result.stderr[-3000:]
  assert _error_lines(result) == [
      f"error: ai-edge-litert is not installed: it is needed to run {model}; run: "
      f"{MOBILE_FIX}"]


def test_example_run_tflite_without_litert_is_one_line(tmp_path):
  result = _run(["examples/run_tflite.py", "--model=m.tflite", "--image=f.png",
                 "--emotion=Happy", "--out=o.png"], tmp_path, missing=["ai_edge_litert"])
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ai-edge-litert is not installed")
  assert MOBILE_FIX in lines[0]


@pytest.mark.parametrize("module,package", [("grpc", "grpcio"),
                                            ("tensorflow_serving", "tensorflow-serving-api")])
def test_serving_client_grpc_without_the_serving_extra_is_one_line(module, package,
                                                                    tmp_path):
  image = tmp_path / "face.png"
  image.write_bytes(b"\x89PNG not sent")
  result = _run(["-m", "faceexpr_tf.serving.serving_client", "--grpc", "--server=localhost:1",
                 f"--image={image}", "--emotion=Happy", f"--out={tmp_path / 'o.png'}"],
                tmp_path, missing=[module])
  assert result.returncode == 2, result.stderr[-3000:]
  assert _error_lines(result) == [
      f"error: {package} is not installed: it is needed for --grpc (REST, the default, "
      f'needs no extra package); run: pip install -e ".[serving]"']
