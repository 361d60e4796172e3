"""Data-parallel training is one device's training, only faster: MirroredStrategy on two
logical CPUs against one device, multi-worker training on localhost, device choices."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from faceexpr_tf import errors
from faceexpr_tf.training import devices
from faceexpr_tf.training import distribute

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh process: logical devices must be set before TensorFlow initialises.
# One process for every case (argv: n_critic values, "u" after one: also unscaled), as each
# process pays ~10 s to import TensorFlow before it traces anything.
_MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from faceexpr_tf.modeling import models
    from faceexpr_tf.modeling import stargan
    TINY = models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, 48, 48, 1)).astype(np.float32)
    org = rng.integers(0, 4, 8).astype(np.int32)
    batch = (x, org, ((org + 1) % 4).astype(np.int32))

    def update(strategy, n_critic):
      with strategy.scope():
        keras.utils.set_random_seed(0)
        g, d = models.build_models(TINY)
        m = stargan.StarGAN(g, d, n_critic=n_critic, g_ema_decay=0.5)
        # SGD: the update is the gradient itself, so a wrong scale shows (Adam hides it).
        m.compile(keras.optimizers.SGD(0.5), keras.optimizers.SGD(0.5))
      groups = ("generator", "discriminator", "generator_ema")
      before = {k: [v.numpy().copy() for v in m.checkpoint_groups()[k]] for k in groups}
      m.fit(tf.data.Dataset.from_tensors(batch).repeat(n_critic), epochs=1, verbose=0)
      return m, {k: np.concatenate([(v.numpy() - b).ravel() for v, b in zip(
          m.checkpoint_groups()[k], before[k])]) for k in groups}

    def case(n_critic, unscaled):
      one_model, one = update(tf.distribute.OneDeviceStrategy("/cpu:0"), n_critic)
      runs = {"mirrored": update(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
                                 n_critic)}
      if unscaled:   # what the step did before losses were scaled per replica
        per_replica = stargan._per_replica
        stargan._per_replica = lambda loss: loss
        try:
          runs["unscaled"] = update(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
                                    n_critic)
        finally:
          stargan._per_replica = per_replica
      out = {"steps": int(one_model.step.numpy()),
             "g_steps": int(one_model.g_optimizer.iterations.numpy())}
      for name, (model, u) in runs.items():
        out[name] = {k: {"norm": float(np.linalg.norm(one[k])),
                         "rel_diff": float(np.linalg.norm(u[k] - one[k]) / np.linalg.norm(one[k])),
                         "ratio": float(np.linalg.norm(u[k]) / np.linalg.norm(one[k]))}
                     for k in u}
        out[name]["replicas"] = model.distribute_strategy.num_replicas_in_sync
      return out

    results = {arg.rstrip("u"): case(int(arg.rstrip("u")), arg.endswith("u"))
               for arg in sys.argv[1:]}
    print("RESULT " + json.dumps(results))
""")


def _run_mirrored(*args):
  env = dict(os.environ, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")
  out = subprocess.run([sys.executable, "-c", _MIRRORED, *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=480)
  assert out.returncode == 0, out.stderr[-3000:]
  line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))
  return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def mirrored():
  """Both tests' cases from one process: n_critic 1 (also unscaled), then n_critic 2.
  ~50 s: ~10 s of import, then five StarGANs (one device, mirrored) each trace a step."""
  return _run_mirrored("1u", "2")


# Tolerance: float32 sums taken in another order (two half-batch gradients all-reduced)
# differ from one device's by ~1e-7 relative; 1e-5 leaves room and still catches any
# wrong scale (a factor of 2 is a relative difference of 1).
TOLERANCE = 1e-5


def test_mirrored_two_devices_make_the_same_update_as_one(mirrored):
  result = mirrored["1"]
  assert result["mirrored"]["replicas"] == 2 and result["steps"] == 1
  for net in ("generator", "discriminator", "generator_ema"):
    assert result["mirrored"][net]["norm"] > 1e-2                 # the step moved weights
    assert result["mirrored"][net]["rel_diff"] < TOLERANCE, (net, result)
  # Without the per-replica scaling the summed gradients are twice too large (G's about
  # twice: it is scored by the D that the doubled step just moved).
  assert result["unscaled"]["discriminator"]["ratio"] == pytest.approx(2.0, rel=1e-3)
  assert result["unscaled"]["generator"]["ratio"] == pytest.approx(2.0, rel=0.05)


def test_mirrored_n_critic_schedule_matches_one_device(mirrored):
  # n_critic 2: two D updates, then G's update under a cond (cross-replica: see stargan).
  result = mirrored["2"]
  assert result["steps"] == 2 and result["g_steps"] == 1
  for net in ("generator", "discriminator", "generator_ema"):
    assert result["mirrored"][net]["rel_diff"] < TOLERANCE, (net, result)


# --- device choices, from device descriptions ---------------------------------------------

@pytest.mark.parametrize("capabilities,flags,precision,jit", [
    ([(8, 0)], frozenset(), "mixed_bfloat16", True),              # A100
    ([(9, 0), (9, 0)], frozenset(), "mixed_bfloat16", True),      # 2 x H100
    ([(7, 5)], frozenset(), "mixed_float16", True),               # T4: fp16 + loss scaling
    ([(7, 0)], frozenset(), "mixed_float16", True),               # V100
    ([(8, 6), (7, 5)], frozenset(), "mixed_float16", True),       # mixed: the oldest decides
    ([], frozenset({"avx2", "avx512_bf16"}), "mixed_bfloat16", False),  # CPU, native bf16
    ([], frozenset({"amx_bf16"}), "mixed_bfloat16", False),
    ([], frozenset({"avx2", "fma"}), "float32", False),           # CPU, emulated bf16
])
def test_auto_precision_and_jit(capabilities, flags, precision, jit):
  assert devices.auto_precision(capabilities, flags) == precision
  assert devices.auto_jit(capabilities) is jit


def test_device_flags_refuse_unknown_values():
  with pytest.raises(errors.UserError, match="--precision=fp8"):
    devices.choose_precision("fp8")
  with pytest.raises(errors.UserError, match="--jit_compile=maybe"):
    devices.choose_jit("maybe")
  with pytest.raises(errors.UserError, match="--strategy=tpu"):
    devices.choose_strategy("tpu")


@pytest.mark.parametrize("config,message", [
    ({}, "needs TF_CONFIG"),
    ({"cluster": {"worker": ["a:1", "b:2"]}}, "task"),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}, "index 3"),
    ({"cluster": {"worker": ["a:1"], "chief": ["c:1"]},
      "task": {"type": "worker", "index": 0}}, "chief"),
])
def test_bad_tf_config_is_one_line(config, message):
  with pytest.raises(errors.UserError, match=message):
    distribute.check_tf_config(config)


def test_tf_config_parsing(monkeypatch):
  monkeypatch.setenv("TF_CONFIG", "{not json")
  with pytest.raises(errors.UserError, match="not valid JSON"):
    distribute.tf_config()
  config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
  monkeypatch.setenv("TF_CONFIG", json.dumps(config))
  assert distribute.check_tf_config(distribute.tf_config()) == (1, 2)


# --- several workers on localhost -----------------------------------------------------------

def _free_port():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


_TINY_FLAGS = ["--data=synthetic", "--synthetic_identities=8", "--g_conv_dim=8",
               "--g_repeat_num=1", "--d_conv_dim=8", "--batch_size=8", "--seed=0",
               "--precision=float32", "--jit_compile=false", "--validate=false",
               "--report=false", "--judge=none", "--verbose=0", "--log_every=1",
               "--checkpoint_every=0", "--sample_every=0"]


def _tiny_config(run_dir, max_steps):
  from faceexpr_tf.modeling import models  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.training import trainer  # pylint: disable=g-import-not-at-top
  return trainer.TrainConfig(
      run_dir=str(run_dir), emotions=("Angry", "Happy", "Sad", "Surprise"),
      model=models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8),
      synthetic_identities=8, batch_size=8, max_steps=max_steps, checkpoint_every=0,
      sample_every=0, log_every=1, precision="float32", jit_compile="false",
      validate=False, report=False, judge="none", verbose="0", strategy="default")


def test_two_workers_on_localhost_then_one_worker_resumes(tmp_path, tiny_run):
  """~45 s: two fresh worker processes side by side (~10 s of import each, then a
  multi-worker trace of the step), then one in-process resume (~10 s of tracing)."""
  from faceexpr_tf.store import runs  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.training import trainer  # pylint: disable=g-import-not-at-top
  run_dir = tmp_path / "two"
  ports = [_free_port(), _free_port()]
  procs = []
  for index in range(2):
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                 "task": {"type": "worker", "index": index}}
    env = dict(os.environ, PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="",
               TF_CONFIG=json.dumps(tf_config))
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "main.py"), "train", "--strategy=multi_worker",
         "--max_steps=4", f"--run_dir={run_dir}", *_TINY_FLAGS],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  try:
    logs = [p.communicate(timeout=300)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for index, (p, log) in enumerate(zip(procs, logs)):
    assert p.returncode == 0, f"worker {index}:\n{log[-3000:]}"
    assert "CollectiveAllReduceStrategy with 2 replica(s)" in log  # multi-worker mirrored
    assert f"'chief': {index == 0}" in log
  # The chief alone wrote: one checkpoint (the end), one sample grid, one event file.
  assert [s for s, _ in runs.list_checkpoints(str(run_dir))] == [4]
  assert os.listdir(run_dir / "samples") == ["step-000000004.png"]
  assert len(os.listdir(run_dir / "logs" / "train")) == 1

  # Same global batches, same updates: one process on one device takes the same steps.
  # Compared as the whole update from the shared initial weights: Adam's first steps are
  # sign-like (every weight moves by ~lr whatever its gradient's size), so rounding-level
  # gradient differences flip some near-zero ones. Measured: relative difference 0.012
  # (G) and 0.0002 (D); the same run with other flips of the same faces: 0.87 and 0.64.
  # The one-device run: conftest.py's tiny_run (trained once per session) is this run on
  # one device (same model, faces, seed, batches and optimizer; its validation passes,
  # samples and checkpoints change no weight), and it saved the weights of step 4.
  one_path = dict(runs.list_checkpoints(str(tiny_run[0])))[4]
  import keras  # pylint: disable=g-import-not-at-top
  from faceexpr_tf.modeling import models  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  init = dict(zip(("generator", "discriminator"), models.build_models(
      models.ModelConfig(g_conv_dim=8, g_repeat_num=1, d_conv_dim=8))))
  groups = ["generator", "discriminator"]
  _, two = runs.read_checkpoint(runs.list_checkpoints(str(run_dir))[-1][1], groups)
  _, one = runs.read_checkpoint(one_path, groups)
  for group in groups:
    start = [w.numpy() for w in init[group].weights]
    u_two = np.concatenate([(a - w).ravel() for a, w in zip(two[group], start)])
    u_one = np.concatenate([(b - w).ravel() for b, w in zip(one[group], start)])
    assert np.linalg.norm(u_one) > 1e-2
    assert np.linalg.norm(u_two - u_one) < 0.1 * np.linalg.norm(u_one), group

  # Resumed by one worker (a different replica count): the step and state carry on.
  summary = trainer.train(_tiny_config(run_dir, 6))
  assert summary["step"] == 6 and summary["stopped_by"] == "done"
  assert [s for s, _ in runs.list_checkpoints(str(run_dir))] == [4, 6]
