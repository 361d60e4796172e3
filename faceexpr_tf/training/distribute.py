"""Training on several machines: MultiWorkerMirroredStrategy configured by TF_CONFIG.

Every machine (worker) runs the same command with its own TF_CONFIG, e.g. on two hosts:

  TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
              "task": {"type": "worker", "index": 0}}'     # index 1 on host1

Worker 0 is the chief: it alone writes checkpoints, samples, scores and reports; the
others train in lock step and write nothing (their run dir is only read, to resume).
Gradients are all-reduced over every replica of every worker each step, so all workers
hold the same weights; the global batch (--batch_size) is split evenly between replicas.
"""

import json
import os

import tensorflow as tf

from faceexpr_tf import errors


def tf_config() -> dict:
  """The parsed TF_CONFIG environment variable ({} when unset)."""
  raw = os.environ.get("TF_CONFIG", "")
  if not raw.strip():
    return {}
  try:
    config = json.loads(raw)
  except json.JSONDecodeError as e:
    raise errors.UserError(f"TF_CONFIG is not valid JSON: {e}") from e
  if not isinstance(config, dict):
    raise errors.UserError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
  return config


def check_tf_config(config: dict) -> tuple[int, int]:
  """(this worker's index, number of workers); raises UserError on a malformed TF_CONFIG."""
  workers = config.get("cluster", {}).get("worker")
  task = config.get("task", {})
  if not workers or not isinstance(workers, list):
    raise errors.UserError("--strategy=multi_worker needs TF_CONFIG with "
                           "cluster.worker = a list of host:port, one per machine")
  if "chief" in config.get("cluster", {}):
    raise errors.UserError("TF_CONFIG: use workers only (worker 0 is the chief), no "
                           "'chief' job")
  if task.get("type") != "worker" or not isinstance(task.get("index"), int):
    raise errors.UserError("TF_CONFIG needs task = {\"type\": \"worker\", \"index\": i}")
  if not 0 <= task["index"] < len(workers):
    raise errors.UserError(f"TF_CONFIG task.index {task['index']} is not in "
                           f"[0, {len(workers)})")
  return task["index"], len(workers)


def multi_worker_strategy() -> tf.distribute.Strategy:
  """MultiWorkerMirroredStrategy for the cluster in TF_CONFIG (create it before any op)."""
  index, count = check_tf_config(tf_config())
  del index, count
  # AUTO: ring all-reduce over gRPC between CPUs, NCCL where every worker has GPUs.
  options = tf.distribute.experimental.CommunicationOptions(
      implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
  return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True where this process should write files: worker 0, or any single-machine run."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  return resolver.task_type in ("chief", None) or (
      resolver.task_type == "worker" and resolver.task_id == 0)


def num_workers(strategy: tf.distribute.Strategy) -> int:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None:
    return 1
  return max(len(resolver.cluster_spec().as_dict().get("worker", [])), 1)
