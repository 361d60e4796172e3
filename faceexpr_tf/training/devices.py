"""Per-device choices: precision, XLA, distribution strategy.

"auto" picks what was measured fastest (docs/benchmarks.md): on a CPU with native bf16
instructions mixed_bfloat16 trains 1.6-1.8x faster than float32, but on a CPU without
them (e.g. a VM that hides AVX512-BF16) bf16 convolutions are emulated and run ~10x
slower, so the CPU's own flags decide. On GPUs: bf16 on compute capability >= 8 (Ampere,
Hopper: bf16 tensor cores, no loss scaling needed), float16 with loss scaling below (T4,
V100: fp16 tensor cores only). XLA (jit_compile) on GPUs; it was slower on CPUs. Several
GPUs -> MirroredStrategy; --strategy=multi_worker -> MultiWorkerMirroredStrategy over the
machines that TF_CONFIG lists (see distribute.py).

The choices are pure functions of a device description (`auto_precision`, `auto_jit`),
so they are tested without the devices.
"""

import dataclasses
import functools
from typing import Sequence

import keras
import tensorflow as tf
from absl import logging

from faceexpr_tf import errors

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclasses.dataclass(frozen=True)
class DevicePlan:
  precision: str
  jit_compile: bool
  strategy: tf.distribute.Strategy
  description: str

  @property
  def loss_scaling(self) -> bool:
    """float16 gradients underflow without it; bf16 has float32's range."""
    return self.precision == "mixed_float16"

  @property
  def replicas(self) -> int:
    return self.strategy.num_replicas_in_sync


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


def gpu_capabilities() -> list[tuple[int, int]]:
  """Compute capability (major, minor) of each visible GPU; (0, 0) when unknown."""
  return [tuple(tf.config.experimental.get_device_details(g).get("compute_capability",
                                                                  (0, 0)))
          for g in gpus()]


def auto_precision(capabilities: Sequence[tuple[int, int]], flags: frozenset[str]) -> str:
  """--precision=auto for GPUs of these compute capabilities (none: a CPU with `flags`).

  Every GPU must have bf16 tensor cores (compute capability 8.0+) for bf16; any older
  one makes it float16, which needs loss scaling (the StarGAN optimizers get a
  LossScaleOptimizer). A CPU uses bf16 only where it has native bf16 instructions.
  """
  if capabilities:
    return ("mixed_bfloat16" if all(tuple(c) >= (8, 0) for c in capabilities)
            else "mixed_float16")
  return "mixed_bfloat16" if flags & set(_BF16_CPU_FLAGS) else "float32"


def auto_jit(capabilities: Sequence[tuple[int, int]]) -> bool:
  """--jit_compile=auto: XLA on GPUs (fused kernels, fewer launches), not on CPUs."""
  return bool(capabilities)


def choose_precision(requested: str) -> str:
  if requested not in PRECISIONS:
    raise errors.UserError(f"--precision={requested}: choose from {', '.join(PRECISIONS)}")
  if requested != "auto":
    return requested
  return auto_precision(gpu_capabilities(), cpu_flags())


def choose_jit(requested: str) -> bool:
  value = str(requested).lower()
  if value == "auto":
    return auto_jit(gpu_capabilities())
  if value in ("true", "1", "yes"):
    return True
  if value in ("false", "0", "no"):
    return False
  raise errors.UserError(f"--jit_compile={requested}: use auto, true or false")


def choose_strategy(requested: str) -> tf.distribute.Strategy:
  if requested not in STRATEGIES:
    raise errors.UserError(f"--strategy={requested}: use {', '.join(STRATEGIES)}")
  if requested == "auto":
    requested = "mirrored" if len(gpus()) > 1 else "default"
  if requested == "mirrored":
    return tf.distribute.MirroredStrategy()
  if requested == "multi_worker":
    from faceexpr_tf.training import distribute  # pylint: disable=g-import-not-at-top
    return distribute.multi_worker_strategy()
  return tf.distribute.get_strategy()


def plan(precision="auto", jit_compile="auto", strategy="auto") -> DevicePlan:
  """Resolves the 'auto' choices and sets the global Keras precision policy."""
  # The strategy first: MultiWorkerMirroredStrategy must exist before TF runs any op.
  dist = choose_strategy(strategy)
  chosen = choose_precision(precision)
  keras.mixed_precision.set_global_policy(chosen)
  jit = choose_jit(jit_compile)
  names = [g.name for g in gpus()] or ["CPU"]
  description = (f"{', '.join(names)}; precision {chosen}"
                 f"{' with loss scaling' if chosen == 'mixed_float16' else ''}; "
                 f"jit_compile {jit}; "
                 f"{type(dist).__name__} with {dist.num_replicas_in_sync} replica(s)")
  logging.info("Devices: %s", description)
  return DevicePlan(chosen, jit, dist, description)
