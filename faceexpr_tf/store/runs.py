"""The run directory: its config record, atomic checkpoints, and loading G for inference.

Layout of a run dir:
  config.json                 model shape, emotions, training flags (refuses incompatible reuse)
  checkpoints/ckpt-<step>.npz  G, D, both optimizers (step = D optimizer's iteration count)
  samples/step-<step>.png     sample grids
  logs/                       TensorBoard events
  report/                     evaluation report (synthetic data)

Checkpoints are plain .npz files (one array per variable plus a JSON manifest) written to
a temporary name, fsynced and renamed, so a kill at any moment leaves either the old or the
new file, never half of one. They load the same under any Keras backend.
"""

import dataclasses
import json
import os
import re
import zipfile
from collections.abc import Sequence

import numpy as np
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.modeling import models
from faceexpr_tf.store import locks

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
_CKPT_RE = re.compile(r"^ckpt-(\d+)\.npz$")
# The checkpoint chosen by the scoring rule during training (scoring.BestRule); inference
# loaders use it when it exists. Never pruned; holds G (and its EMA) and D only.
BEST_CHECKPOINT = "best.npz"
_FORMAT_VERSION = 1


class RunDirError(errors.UserError):
  """A run dir that cannot be used; the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
  model: models.ModelConfig
  emotions: tuple[str, ...]
  training: dict = dataclasses.field(default_factory=dict)
  # The training flags of earlier runs in this dir that differed (oldest first): a
  # resume with other flags, or a later stage continuing a copied run.
  earlier_training: tuple[dict, ...] = ()

  def to_json(self) -> str:
    return json.dumps({"format": _FORMAT_VERSION, "model": dataclasses.asdict(self.model),
                       "emotions": list(self.emotions), "training": self.training,
                       "earlier_training": list(self.earlier_training)},
                      indent=2, sort_keys=True)


def read_config(run_dir: str) -> RunConfig:
  path = os.path.join(run_dir, CONFIG_FILE)
  if not os.path.isdir(run_dir):
    raise RunDirError(f"{run_dir}: no such run directory")
  try:
    with open(path) as f:
      raw = json.load(f)
    return RunConfig(models.ModelConfig(**raw["model"]), tuple(raw["emotions"]),
                     raw.get("training", {}), tuple(raw.get("earlier_training", ())))
  except FileNotFoundError:
    raise RunDirError(f"{path}: missing; is {run_dir} a faceexpr-tf run directory?") from None
  except (ValueError, KeyError, TypeError) as e:
    raise RunDirError(f"{path}: unreadable run config ({e})") from None


def _write_atomic(path: str, write):
  """Writes via a temporary file, fsync and rename: `path` is either old or new, never
  half of one. A failed write (disk full, read-only, no permission) removes the temporary
  file and raises RunDirError naming the path; whatever `path` held before is kept."""
  tmp = path + ".tmp"
  try:
    with open(tmp, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
    # The rename itself is durable only once the directory is synced.
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
      os.fsync(dir_fd)
    finally:
      os.close(dir_fd)
  except OSError as e:
    try:
      os.remove(tmp)
    except OSError:
      pass
    raise RunDirError(f"{path}: cannot write ({os.strerror(e.errno) if e.errno else e}); "
                      "nothing saved before was changed") from None


def prepare_run_dir(run_dir: str, config: RunConfig) -> bool:
  """Creates run_dir with config.json, or checks an existing one matches.

  Returns True when the run dir already held a run (so training resumes). Training flags
  (learning rate, epochs...) may change between resumes; model shape and emotions may not.
  config.json's "training" is always the latest run's flags, the earlier ones kept in
  "earlier_training".
  Locks the run dir for this process first (locks.lock_dir): a second writer is refused.
  """
  path = os.path.join(run_dir, CONFIG_FILE)
  try:
    os.makedirs(run_dir, exist_ok=True)
  except OSError as e:
    raise RunDirError(f"{run_dir}: cannot create the run directory ({os.strerror(e.errno)})"
                      ) from None
  locks.lock_dir(run_dir, "--run_dir")
  _remove_temporaries(run_dir)
  if os.path.exists(path):
    old = read_config(run_dir)
    diffs = [f"{k}={getattr(old.model, k)!r} (now {getattr(config.model, k)!r})"
             for k in dataclasses.asdict(config.model)
             if getattr(old.model, k) != getattr(config.model, k)]
    if old.emotions != config.emotions:
      diffs.append(f"emotions={','.join(old.emotions)} (now {','.join(config.emotions)})")
    if diffs:
      raise RunDirError(
          f"{run_dir} holds a run with different model flags: {'; '.join(diffs)}. "
          "Use those flags to resume it, or pick a new --run_dir.")
    now = json.loads(json.dumps(config.training))  # as config.json holds them (tuples: lists)
    if now and now != old.training:
      changed = sorted(k for k in set(now) | set(old.training)
                       if now.get(k) != old.training.get(k))
      logging.info("%s: training flags changed since its last run (%s); config.json records "
                   "the new ones, the earlier under earlier_training", run_dir,
                   ", ".join(changed))
      earlier = old.earlier_training + ((old.training,) if old.training else ())
      config = dataclasses.replace(config, earlier_training=earlier)
      _write_atomic(path, lambda f: f.write(config.to_json().encode()))
    return True
  _write_atomic(path, lambda f: f.write(config.to_json().encode()))
  return False


def _remove_temporaries(run_dir: str):
  """Deletes the *.tmp files a killed writer left (safe: we hold the run dir's lock)."""
  for directory in (run_dir, checkpoint_dir(run_dir)):
    if os.path.isdir(directory):
      for name in os.listdir(directory):
        if name.endswith(".tmp"):
          try:
            os.remove(os.path.join(directory, name))
            logging.info("Removed %s (left by a killed run)", name)
          except OSError:
            pass


def checkpoint_dir(run_dir: str) -> str:
  return os.path.join(run_dir, CHECKPOINT_DIR)


def list_checkpoints(run_dir: str) -> list[tuple[int, str]]:
  """[(step, path)] oldest first."""
  directory = checkpoint_dir(run_dir)
  if not os.path.isdir(directory):
    return []
  found = [(int(m.group(1)), os.path.join(directory, name))
           for name in os.listdir(directory) if (m := _CKPT_RE.match(name))]
  return sorted(found)


def save_checkpoint(run_dir: str, step: int, groups: dict[str, Sequence],
                    meta: dict | None = None, keep: int = 3, name: str | None = None) -> str:
  """Writes groups {name: [variables]} as ckpt-<step>.npz and keeps the newest `keep`; or,
  with `name` (e.g. BEST_CHECKPOINT), as that file, pruning nothing."""
  os.makedirs(checkpoint_dir(run_dir), exist_ok=True)
  arrays, manifest = {}, {}
  for group, variables in groups.items():
    manifest[group] = []
    for i, var in enumerate(variables):
      arrays[f"{group}/{i:04d}"] = np.asarray(var)
      manifest[group].append(getattr(var, "path", str(i)))
  header = {"format": _FORMAT_VERSION, "step": int(step), "variables": manifest,
            **(meta or {})}
  arrays["__meta__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
  path = os.path.join(checkpoint_dir(run_dir), name or f"ckpt-{step:09d}.npz")
  _write_atomic(path, lambda f: np.savez(f, **arrays))
  if name is None:
    for _, old in list_checkpoints(run_dir)[:-keep]:
      os.remove(old)
  return path


def best_checkpoint(run_dir: str) -> str | None:
  """checkpoints/best.npz when the run kept one."""
  path = os.path.join(checkpoint_dir(run_dir), BEST_CHECKPOINT)
  return path if os.path.isfile(path) else None


def read_checkpoint(path: str, groups: Sequence[str], optional: Sequence[str] = ()
                    ) -> tuple[dict, dict[str, list]]:
  """Reads the named groups from a checkpoint: (meta, {group: [arrays]}).

  Groups in `optional` are returned only when the checkpoint has them. Raises RunDirError
  for a missing, truncated or corrupt file (CRCs are checked).
  """
  try:
    if not os.path.isfile(path):
      raise FileNotFoundError(path)
    if not zipfile.is_zipfile(path):
      empty = os.path.isfile(path) and os.path.getsize(path) == 0
      raise RunDirError(f"{path}: corrupt or incomplete checkpoint ("
                        f"{'empty file' if empty else 'not a complete .npz archive'})")
    with np.load(path, allow_pickle=False) as npz:
      if "__meta__" not in npz.files:
        raise RunDirError(f"{path}: not a faceexpr-tf checkpoint (an .npz without its "
                          "__meta__ record, written by something else)")
      meta = json.loads(npz["__meta__"].tobytes().decode())
      missing = [g for g in groups if g not in meta["variables"]]
      if missing:
        raise RunDirError(f"{path}: checkpoint holds no {', '.join(missing)} weights")
      out = {}
      for group in list(groups) + [g for g in optional if g in meta["variables"]]:
        count = len(meta["variables"][group])
        out[group] = [npz[f"{group}/{i:04d}"] for i in range(count)]
      return meta, out
  except FileNotFoundError:
    raise RunDirError(f"{path}: no such checkpoint") from None
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    raise RunDirError(f"{path}: corrupt or incomplete checkpoint ({type(e).__name__}: {e})"
                      ) from None


def _keys(paths: Sequence[str], strip: bool) -> list[str] | None:
  """Variable paths as match keys, whole or without their first part (a model's or
  optimizer's own name, which Keras may number differently: "adam" / "adam_1",
  "generator" / "generator_ema"); None when they cannot identify variables (no path
  recorded, or two variables with one key)."""
  keys = [p.split("/", 1)[1] if strip and "/" in p else p for p in paths]
  if any("/" not in p for p in paths) or len(set(keys)) != len(keys):
    return None
  return keys


def _match_keys(saved_paths, model_paths):
  """(saved keys, model keys) of the naming that matches most variables, or None."""
  best = None
  for strip in (False, True):
    saved, wanted = _keys(saved_paths, strip), _keys(model_paths, strip)
    if saved is not None and wanted is not None:
      overlap = len(set(saved) & set(wanted))
      if best is None or overlap > best[0]:
        best = (overlap, saved, wanted)
  return None if best is None else best[1:]


def _listed(names: Sequence[str], limit: int = 3) -> str:
  shown = ", ".join(names[:limit])
  return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def assign(variables: Sequence, arrays: Sequence[np.ndarray], what: str,
           names: Sequence[str] | None = None):
  """Assigns arrays to variables, all or nothing.

  With `names` (the paths the checkpoint recorded for `arrays`) each variable gets the
  array saved under its own path, whatever order the model created its variables in; a
  missing, extra or reshaped variable is refused in one line naming it. Without names (or
  with paths that cannot identify variables) arrays are matched by position, checking
  count and shapes.
  """
  keys = None
  if names is not None and len(names) == len(arrays):
    keys = _match_keys(list(names), [str(getattr(v, "path", "")) for v in variables])
  if keys is not None:
    saved, wanted = keys
    by_path = dict(zip(saved, arrays))
    missing = [p for p in wanted if p not in by_path]
    extra = [p for p in saved if p not in set(wanted)]
    reshaped = [f"{p} {tuple(v.shape)} vs {tuple(by_path[p].shape)}"
                for p, v in zip(wanted, variables)
                if p in by_path and tuple(v.shape) != tuple(by_path[p].shape)]
    problems = ([f"missing {_listed(missing)}"] if missing else []) + (
        [f"not in the model {_listed(extra)}"] if extra else []) + (
        [f"shape (model vs checkpoint) {_listed(reshaped)}"] if reshaped else [])
    if problems:
      raise RunDirError(f"{what}: checkpoint does not match the model's variables: "
                        f"{'; '.join(problems)}")
    ordered = [by_path[p] for p in wanted]
  else:
    if len(variables) != len(arrays):
      raise RunDirError(f"{what}: checkpoint has {len(arrays)} variables, model has "
                        f"{len(variables)}")
    for var, value in zip(variables, arrays):
      if tuple(var.shape) != tuple(value.shape):
        raise RunDirError(f"{what}: variable {var.path} has shape {tuple(var.shape)}, "
                          f"checkpoint has {tuple(value.shape)}")
    ordered = arrays
  for var, value in zip(variables, ordered):
    var.assign(value)


def read_newest(run_dir: str, groups: Sequence[str], optional: Sequence[str] = (),
                checkpoint: str | int | None = None) -> tuple[str, dict, dict] | None:
  """(path, meta, arrays) of `checkpoint` (a step or a path), or else of the newest readable
  checkpoint: a corrupt newest one is skipped with a warning and the one before it used.

  None when the run dir has no checkpoint and none was asked for.
  """
  if checkpoint is not None:
    path = resolve_checkpoint(run_dir, checkpoint)
    return (path, *read_checkpoint(path, groups, optional))
  candidates = list_checkpoints(run_dir)
  for _, path in reversed(candidates):
    try:
      return (path, *read_checkpoint(path, groups, optional))
    except RunDirError as e:
      logging.warning("%s; falling back to the previous checkpoint", e)
  if candidates:
    raise RunDirError(f"{checkpoint_dir(run_dir)}: no readable checkpoint "
                      f"(all {len(candidates)} are corrupt)")
  return None


def restore_latest(run_dir: str, groups: dict[str, Sequence],
                   optional: Sequence[str] = ()) -> dict | None:
  """Loads the newest readable checkpoint into groups {name: [variables]}.

  Groups named in `optional` are loaded when the checkpoint has them (meta["restored"]
  lists what was). A corrupt newest checkpoint is skipped with a warning and the one
  before it is used. Returns its meta dict, or None when the run dir has no checkpoint.
  """
  found = read_newest(run_dir, [g for g in groups if g not in optional], optional)
  if found is None:
    return None
  path, meta, arrays = found
  for name, values in arrays.items():
    assign(groups[name], values, f"{path} [{name}]", meta["variables"][name])
  meta["restored"] = sorted(arrays)
  logging.info("Restored %s (step %d)", path, meta["step"])
  return meta


def resolve_checkpoint(run_dir: str, checkpoint: str | int | None = None) -> str:
  """A checkpoint path from a run dir: the newest, "best", a step number, or a path."""
  if checkpoint is not None and os.path.isfile(str(checkpoint)):
    return str(checkpoint)
  if checkpoint == "best":
    best = best_checkpoint(run_dir)
    if best is None:
      raise RunDirError(f"{run_dir}: no best checkpoint (the run was not scored with a "
                        "judge: train with --eval_every and --judge)")
    return best
  if checkpoint == "latest":
    checkpoint = None
  found = list_checkpoints(run_dir)
  if not found:
    raise RunDirError(f"{run_dir}: no checkpoints yet (train first)")
  if checkpoint is None:
    return found[-1][1]
  if not str(checkpoint).strip().isdigit():
    raise RunDirError(f"--checkpoint={checkpoint}: no such file, and not a step number, "
                      "'best' or 'latest'")
  by_step = dict(found)
  if int(checkpoint) not in by_step:
    raise RunDirError(f"{run_dir}: no checkpoint for step {checkpoint} "
                      f"(have {', '.join(str(s) for s, _ in found)})")
  return by_step[int(checkpoint)]


def load_generator(run_dir: str, checkpoint: str | int | None = None
                   ) -> tuple[models.Generator, RunConfig, int]:
  """Builds G from a run dir's config and loads its weights: (generator, config, step).

  With checkpoint=None the run's best checkpoint (checkpoints/best.npz, chosen by its
  scores) is used when there is one, else the newest readable checkpoint (a corrupt newest
  one falls back to the previous with a warning); "latest" skips the best. A run trained
  with --g_ema_decay gives its moving-average G.
  """
  generator, _, config, step = _load(run_dir, checkpoint, with_discriminator=False)
  return generator, config, step


def load_models(run_dir: str, checkpoint: str | int | None = None
                ) -> tuple[models.Generator, models.Discriminator, RunConfig, int]:
  """G (as load_generator) and D from the same checkpoint: (G, D, config, step)."""
  return _load(run_dir, checkpoint, with_discriminator=True)


def _load(run_dir, checkpoint, with_discriminator):
  config = read_config(run_dir)
  if checkpoint is None and best_checkpoint(run_dir):
    checkpoint = best_checkpoint(run_dir)  # the scored best, unless told otherwise
    logging.info("Using %s (the run's best by its scores; --checkpoint=latest for the "
                 "newest)", checkpoint)
  elif checkpoint == "latest":
    checkpoint = None
  found = read_newest(run_dir, ["generator"] + (["discriminator"] if with_discriminator else []),
                      ("generator_ema",), checkpoint)
  if found is None:
    raise RunDirError(f"{run_dir}: no checkpoints yet (train first)")
  path, meta, arrays = found
  generator = models.Generator(config.model)
  generator.build()
  # The moving-average copy when the run kept one (--g_ema_decay).
  g_group = "generator_ema" if "generator_ema" in arrays else "generator"
  assign(generator.weights, arrays[g_group], path, meta["variables"][g_group])
  discriminator = None
  if with_discriminator:
    discriminator = models.Discriminator(config.model)
    discriminator.build()
    assign(discriminator.weights, arrays["discriminator"], f"{path} [discriminator]",
           meta["variables"]["discriminator"])
  return generator, discriminator, config, int(meta["step"])
