"""Each mode owns its flags: its defaults never depend on which other modes were imported,
`main.py <mode> --help` lists its flags and no other's, and a flag two modes share (same
name, default and help) comes from one definition."""

import collections
import importlib
import json
import os
import subprocess
import sys

import pytest

import conftest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DUMP = """
import importlib, json, sys
out = {}
for name in sys.argv[1:]:
  module = importlib.import_module(name)
  out[name] = {f: [repr(module.FLAGS[f].default), repr(module.FLAGS[f].value)]
               for f in module.FLAGS}
print(json.dumps(out))
"""


def _python(args, timeout=300, returncode=0):
  env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
         "CUDA_VISIBLE_DEVICES": ""}
  result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
  assert result.returncode == returncode, result.stderr[-3000:]
  return result.stdout


def test_every_mode_has_the_same_defaults_whatever_the_import_order():
  """Two fresh processes import all modes, in one order and in the reverse order."""
  modes = list(conftest.MODE_MODULES)
  forward = json.loads(_python(["-c", _DUMP, *modes]).splitlines()[-1])
  backward = json.loads(_python(["-c", _DUMP, *reversed(modes)]).splitlines()[-1])
  assert forward == backward
  # Names several modes define with their own defaults keep each mode's own.
  assert forward["faceexpr_tf.training.train"]["run_dir"][0] == "'runs/default'"
  assert forward["faceexpr_tf.evaluation.classifier_training"]["run_dir"][0] == \
      "'runs/classifier'"
  assert forward["faceexpr_tf.evaluation.evaluate"]["run_dir"][0] == "None"
  assert forward["faceexpr_tf.training.train"]["batch_size"][0] == "8"
  assert forward["faceexpr_tf.evaluation.classifier_training"]["batch_size"][0] == "64"


def test_a_flag_shared_by_several_modes_has_one_definition():
  defined = collections.defaultdict(set)  # (name, default, help) -> defining modules
  for name in conftest.MODE_MODULES:
    fv = importlib.import_module(name).FLAGS
    for flag in fv:
      f = fv[flag]
      defined[f.name, repr(f.default), f.help].add(fv.find_module_defining_flag(flag))
  twice = {key: mods for key, mods in defined.items() if len(mods) > 1}
  assert twice == {}
  # The data-source flags are among them: one definition serves train and train_classifier.
  from faceexpr_tf.evaluation import classifier_training  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.training import train  # pylint: disable=g-import-not-at-top
  for flag in ("data", "emotions", "train_usage", "val_usage", "synthetic_identities"):
    assert (train.FLAGS.find_module_defining_flag(flag)
            == classifier_training.FLAGS.find_module_defining_flag(flag)
            == "faceexpr_tf.data.data_flags")


@pytest.mark.parametrize("mode,module,foreign", [
    ("train", "faceexpr_tf.training.train", ["--port", "--arch", "--bench_steps"]),
    ("serve", "faceexpr_tf.web.serve", ["--batch_size", "--run_dir", "--intensity"]),
])
def test_mode_help_lists_its_own_flags_and_no_others(mode, module, foreign):
  out = _python(["main.py", mode, "--help"], returncode=1)  # absl's --help exits 1
  listed = {line.split(":")[0].strip().replace("--[no]", "--") for line in out.splitlines()
            if line.startswith("  --")}
  own = {f"--{name}" for name in importlib.import_module(module).FLAGS}
  assert listed == own
  for flag in foreign:
    assert flag not in listed
