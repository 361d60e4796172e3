"""Per-device choices: precision, XLA, distribution strategy.

"auto" picks what was measured fastest (docs/benchmarks.md): on a CPU with native bf16
instructions mixed_bfloat16 trains 1.6-1.8x faster than float32, but on a CPU without
them (e.g. a VM that hides AVX512-BF16) bf16 convolutions are emulated and run ~10x
slower, so the CPU's own flags decide. XLA (jit_compile) helps on GPUs and was slower on
CPUs. Several GPUs -> MirroredStrategy.
"""

import dataclasses
import functools

import keras
import tensorflow as tf
from absl import logging

from faceexpr_tf import errors

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclasses.dataclass(frozen=True)
class DevicePlan:
  precision: str
  jit_compile: bool
  strategy: tf.distribute.Strategy
  description: str


@functools.cache
def cpu_flags() -> frozenset[str]:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          return frozenset(line.split(":", 1)[1].split())
  except OSError:
    pass
  return frozenset()


def gpus():
  return tf.config.list_physical_devices("GPU")


def _gpu_supports_bf16(gpu) -> bool:
  details = tf.config.experimental.get_device_details(gpu)
  return details.get("compute_capability", (0, 0)) >= (8, 0)


def choose_precision(requested: str) -> str:
  if requested not in PRECISIONS:
    raise errors.UserError(f"--precision={requested}: choose from {', '.join(PRECISIONS)}")
  if requested != "auto":
    return requested
  found = gpus()
  if found:
    # Ampere and newer have bf16 tensor cores; older GPUs (T4) train GANs safest in f32.
    return "mixed_bfloat16" if all(_gpu_supports_bf16(g) for g in found) else "float32"
  return "mixed_bfloat16" if cpu_flags() & set(_BF16_CPU_FLAGS) else "float32"


def choose_jit(requested: str) -> bool:
  value = str(requested).lower()
  if value == "auto":
    return bool(gpus())
  if value in ("true", "1", "yes"):
    return True
  if value in ("false", "0", "no"):
    return False
  raise errors.UserError(f"--jit_compile={requested}: use auto, true or false")


def choose_strategy(requested: str) -> tf.distribute.Strategy:
  n = len(gpus())
  if requested == "auto":
    requested = "mirrored" if n > 1 else "default"
  if requested == "mirrored":
    return tf.distribute.MirroredStrategy()
  if requested == "default":
    return tf.distribute.get_strategy()
  raise errors.UserError(f"--strategy={requested}: use auto, default or mirrored")


def plan(precision="auto", jit_compile="auto", strategy="auto") -> DevicePlan:
  """Resolves the 'auto' choices and sets the global Keras precision policy."""
  chosen = choose_precision(precision)
  keras.mixed_precision.set_global_policy(chosen)
  jit = choose_jit(jit_compile)
  dist = choose_strategy(strategy)
  names = [g.name for g in gpus()] or ["CPU"]
  description = (f"{', '.join(names)}; precision {chosen}; jit_compile {jit}; "
                 f"{type(dist).__name__} with {dist.num_replicas_in_sync} replica(s)")
  logging.info("Devices: %s", description)
  return DevicePlan(chosen, jit, dist, description)
