"""`benchmark --profile=DIR`: a tf.profiler trace of a few training steps, and its top ops.

The trace lands in TensorBoard's profile plugin layout (open it in the Profile tab); the
op types taking the most self time are read back from its .xplane.pb offline.
"""

import glob
import os
import re
import time

import tensorflow as tf

from faceexpr_tf import errors
from faceexpr_tf.benchmark import hardware
from faceexpr_tf.benchmark import speed

# A TensorFlow op's trace event is named "<scope>/<op name>:<op type>".
_OP_EVENT = re.compile(r"^[^\s:]+:([A-Za-z0-9_]+)$")


def trace_training(name: str, precision: str, steps: int,
                   logdir: str) -> tuple[str, float, str]:
  """Traces `steps` warm training steps of config `name` into logdir (TensorBoard's
  profile plugin layout); returns the .xplane.pb written, the traced seconds and the
  precision that ran ("auto" resolved)."""
  model, ds, _, plan, _ = speed.warm_trainer(name, precision)
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
  return max(new - before, key=os.path.getmtime), seconds, plan.precision


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


def profile(name: str, precision: str, steps: int, logdir: str, threads: int) -> int:
  """Traces `steps` training steps of config `name` and prints where their time went.

  Args:
    name: a key of speed.CONFIGS (a UserError on an unknown one).
    precision: as --bench_precisions gives it ("auto" included).
    steps: traced steps (after 3 untraced warm-up steps).
    logdir: the folder the trace is written into.
    threads: TensorFlow threads (0 = its default).

  Returns:
    0, the mode's exit status.
  """
  speed.check_config(name)
  hardware.set_threads(threads)
  logdir = os.path.abspath(logdir)
  path, seconds, ran = trace_training(name, precision, steps, logdir)
  batch = speed.CONFIGS[name][1]
  print(f"Traced {steps} training step(s) of {name} (batch {batch}, {ran}) in "
        f"{seconds:.2f} s: {path}")
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
