"""Training one run: StarGAN built in the strategy's scope, fit() epoch by epoch, resume.

Rerunning the same run resumes from the run dir's newest checkpoint: same step, same
optimizer state, same upcoming batches (the input stream is a pure function of seed and
step). Ctrl-C and SIGTERM save a checkpoint before exiting; a hard kill loses at most
checkpoint_every steps. `train.py` is the mode that builds a TrainConfig from flags.
"""

import dataclasses
import signal
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from faceexpr_tf import errors
from faceexpr_tf.data import faceset
from faceexpr_tf.data import loader
from faceexpr_tf.data import pipeline
from faceexpr_tf.evaluation import classifier as classifier_lib
from faceexpr_tf.evaluation import scoring
from faceexpr_tf.modeling import models
from faceexpr_tf.modeling import stargan
from faceexpr_tf.store import runs
from faceexpr_tf.training import callbacks as callbacks_lib
from faceexpr_tf.training import devices
from faceexpr_tf.training import distribute


@dataclasses.dataclass
class TrainConfig:
  """Everything `train()` needs; `from_flags()` builds it from the command line."""
  run_dir: str
  model: models.ModelConfig
  emotions: tuple[str, ...]
  data: str = "synthetic"
  train_usage: str = "Training"
  val_usage: str = "PublicTest"
  skip_bad_rows: bool = False
  labels: str = "fer2013"            # a csv's labels: fer2013 or ferplus (data/ferplus.py)
  ferplus: str | None = None         # the FER+ votes file for labels=ferplus
  ferplus_scheme: str = "majority"
  synthetic_identities: int = 200
  flip: bool = True
  same_target_rate: float = 0.0      # how often G is asked for the face's own emotion
  gan_loss: str = "log"
  saturating_g: bool = False
  lambda_cls: float = 1.0
  lambda_rec: float = 10.0
  lambda_gp: float = 10.0
  lambda_r1: float = 0.0
  diffaug: str = ""
  lambda_id: float = 0.0
  lambda_mask: float = 0.1           # g_output="attention" only
  lambda_mask_tv: float = 0.1
  g_ema_decay: float = 0.0
  n_critic: int = 1
  guide: str | None = None
  lambda_guide: float = 0.0
  guide_confidence: float = 1.0      # the guide's loss stops at this p(target); 1 = never
  judge: str = "shipped"
  eval_every: int = 0
  eval_faces: int = 400
  best_fd_ratio: float = scoring.BestRule.max_fd_ratio
  lr_decay: bool = False
  batch_size: int = 8
  epochs: int = 400
  max_steps: int = 0
  g_lr: float = 1e-4
  d_lr: float = 1e-4
  beta1: float = 0.5
  beta2: float = 0.999
  seed: int = 0
  precision: str = "auto"
  jit_compile: str = "auto"
  strategy: str = "auto"
  steps_per_execution: int = 1
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  sample_every: int = 500
  log_every: int = 100
  validate: bool = True
  max_minutes: float = 0.0
  verbose: str = "auto"
  report: bool = True



def _load_data(cfg: TrainConfig):
  common = dict(emotions=cfg.emotions, skip_bad_rows=cfg.skip_bad_rows,
                image_size=cfg.model.image_size,
                synthetic_identities=cfg.synthetic_identities, seed=cfg.seed,
                labels=cfg.labels, ferplus=cfg.ferplus, ferplus_scheme=cfg.ferplus_scheme)
  train = loader.load_faces(cfg.data, split="train", usage=cfg.train_usage.split(","),
                            **common)
  logging.info("Training data: %s, %d images: %s", train.source, len(train),
               train.class_counts())
  val = None
  # Validation faces serve the per-epoch validation pass and the scoring (--eval_every).
  if (cfg.validate or cfg.eval_every) and (cfg.data == "synthetic" or cfg.val_usage):
    try:
      val = loader.load_faces(cfg.data, split="validation",
                              usage=cfg.val_usage.split(",") if cfg.val_usage else None,
                              **common)
      logging.info("Validation data: %s, %d images: %s", val.source, len(val),
                   val.class_counts())
    except faceset.DataError as e:
      logging.warning("No validation (%s)", e)
  return train, val


def _sample_images(faces: faceset.FaceSet, per_class: int = 2) -> np.ndarray:
  """A fixed, class-balanced handful of images for the sample grids."""
  picks = []
  for c in range(len(faces.emotions)):
    picks.extend(np.flatnonzero(faces.labels == c)[:per_class])
  return faces.images[np.sort(np.asarray(picks, dtype=np.int64))]


def _check_guide(cfg: TrainConfig, guide, guide_emotions) -> None:
  """The guide's loss takes G's class ids as its own: its emotions must be G's, in order."""
  classes = guide.outputs[0].shape[-1]
  if guide_emotions:
    same = list(guide_emotions) == list(cfg.emotions)
  else:   # a record that names none: only the count can be checked
    same = classes == len(cfg.emotions)
  if not same:
    known = ", ".join(guide_emotions) if guide_emotions else f"{classes} emotions"
    raise errors.UserError(f"--guide={cfg.guide}: classifies {known}, the run trains "
                           f"{', '.join(cfg.emotions)} (train the guide with the same "
                           "--emotions)")


def build_stargan(cfg: TrainConfig, plan: devices.DevicePlan, total_steps: int = 0
                  ) -> stargan.StarGAN:
  """G, D, StarGAN and optimizers, created inside the strategy's scope."""
  guide = None
  if cfg.lambda_guide:
    if not cfg.guide:
      raise errors.UserError("--lambda_guide needs --guide=<classifier.keras>")
    guide, record = classifier_lib.load_classifier(cfg.guide)
    _check_guide(cfg, guide, record.get("emotions"))
  with plan.strategy.scope():
    keras.utils.set_random_seed(cfg.seed)
    generator, discriminator = models.build_models(cfg.model)
    model = stargan.StarGAN(
        generator, discriminator, gan_loss=cfg.gan_loss, lambda_cls=cfg.lambda_cls,
        lambda_rec=cfg.lambda_rec, lambda_gp=cfg.lambda_gp, n_critic=cfg.n_critic,
        saturating_g=cfg.saturating_g, lambda_id=cfg.lambda_id,
        g_ema_decay=cfg.g_ema_decay, guide=guide, lambda_guide=cfg.lambda_guide,
        guide_confidence=cfg.guide_confidence,
        lambda_r1=cfg.lambda_r1, diffaug=cfg.diffaug,
        diffaug_seed=cfg.seed, lambda_mask=cfg.lambda_mask, lambda_mask_tv=cfg.lambda_mask_tv)
    g_lr, d_lr = cfg.g_lr, cfg.d_lr
    if cfg.lr_decay and total_steps:
      # G's optimizer counts G updates: n_critic times fewer than steps.
      g_lr = stargan.LinearDecay(cfg.g_lr, total_steps // cfg.n_critic)
      d_lr = stargan.LinearDecay(cfg.d_lr, total_steps)
    model.compile(
        g_optimizer=keras.optimizers.Adam(g_lr, beta_1=cfg.beta1, beta_2=cfg.beta2),
        d_optimizer=keras.optimizers.Adam(d_lr, beta_1=cfg.beta1, beta_2=cfg.beta2),
        jit_compile=plan.jit_compile, steps_per_execution=cfg.steps_per_execution)
  return model


def _train_stream(cfg: TrainConfig, plan: devices.DevicePlan, faces: faceset.FaceSet,
                  start_step: int, num_steps: int):
  """The training batches; with several replicas, each gets its slice of the global batch.

  Every input pipeline (one per worker) builds the same global batch from (seed, step)
  and keeps its workers' share, split into one batch per local replica in replica order,
  so the replicas of all workers together see exactly the batch one device would: the
  run is the same whatever the number of replicas, and resumes on any number.
  """
  if plan.replicas == 1:
    return pipeline.make_train_dataset(faces, cfg.batch_size, seed=cfg.seed,
                                       start_step=start_step, num_steps=num_steps,
                                       flip=cfg.flip, same_target_rate=cfg.same_target_rate)
  per_replica = cfg.batch_size // plan.replicas

  def dataset_fn(context: tf.distribute.InputContext):
    share = cfg.batch_size // context.num_input_pipelines
    lo = context.input_pipeline_id * share
    ds = pipeline.make_train_dataset(faces, cfg.batch_size, seed=cfg.seed,
                                     start_step=start_step, num_steps=num_steps, flip=cfg.flip,
                                     same_target_rate=cfg.same_target_rate)
    ds = ds.map(lambda *batch: tuple(t[lo:lo + share] for t in batch))
    return ds.unbatch().batch(per_replica, drop_remainder=True).prefetch(2)

  options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
  return plan.strategy.distribute_datasets_from_function(dataset_fn, options)


def _check_distribution(cfg: TrainConfig, plan: devices.DevicePlan):
  if cfg.batch_size % plan.replicas:
    raise errors.UserError(f"--batch_size={cfg.batch_size}: the global batch must split "
                           f"evenly over {plan.replicas} replicas")
  if distribute.num_workers(plan.strategy) > 1 and cfg.max_minutes:
    # Each worker's clock would stop it at a different step, and the others would then
    # wait for it in the next all-reduce.
    raise errors.UserError("--max_minutes cannot stop several workers at the same step: "
                           "use --max_steps with --strategy=multi_worker")


def _scorer(cfg: TrainConfig, faces: faceset.FaceSet | None, writer):
  """The ScoreKeeper callback, or None when scoring is off."""
  if not cfg.eval_every or cfg.judge == "none":
    return None
  if faces is None:
    raise errors.UserError("--eval_every needs validation faces (--val_usage, or a "
                           "validation folder); or pass --eval_every=0")
  judge = scoring.load_judge(None if cfg.judge == "shipped" else cfg.judge)
  if judge.emotions is None and judge.model.outputs[0].shape[-1] != len(cfg.emotions):
    raise errors.UserError(f"--judge={cfg.judge}: classifies "
                           f"{judge.model.outputs[0].shape[-1]} emotions, the run has "
                           f"{len(cfg.emotions)}")
  to_judge = scoring.judge_classes(judge.emotions, cfg.emotions, f"--judge={cfg.judge}")
  if (to_judge < 0).any():
    logging.info("--judge=%s does not classify %s: its faces and targets are not scored",
                 cfg.judge, ", ".join(e for e, j in zip(cfg.emotions, to_judge) if j < 0))
  scored = np.flatnonzero(to_judge[faces.labels] >= 0)   # faces of emotions it knows
  picks = scored[scoring.balanced_pick(faces.labels[scored], cfg.eval_faces or len(scored),
                                       cfg.seed)]
  logging.info("Scoring G every %d steps on %d validation faces with %s", cfg.eval_every,
               len(picks), judge.path)
  return callbacks_lib.ScoreKeeper(cfg.run_dir, judge, faces.images[picks],
                                   faces.labels[picks], cfg.emotions, cfg.eval_every,
                                   rule=scoring.BestRule(max_fd_ratio=cfg.best_fd_ratio),
                                   writer=writer)


class _Stop(KeyboardInterrupt):
  """SIGTERM, delivered like Ctrl-C so the same save-and-exit path handles both."""


def _raise_stop(signum, frame):
  raise _Stop()


def train(cfg: TrainConfig) -> dict:
  """Trains (or resumes) a run; returns a summary dict (step, stopped_by, ...)."""
  plan = devices.plan(cfg.precision, cfg.jit_compile, cfg.strategy)
  _check_distribution(cfg, plan)
  # Only the chief (worker 0; any single-machine run) writes into the run dir; the other
  # workers of a multi-worker run only read it, to resume from the same checkpoint.
  chief = distribute.is_chief(plan.strategy)
  if chief:
    resuming = runs.prepare_run_dir(
        cfg.run_dir, runs.RunConfig(cfg.model, cfg.emotions, _training_record(cfg, plan)))
  else:
    resuming = bool(runs.list_checkpoints(cfg.run_dir))
  train_faces, val_faces = _load_data(cfg)
  spe = pipeline.steps_per_epoch(train_faces, cfg.batch_size)
  total = cfg.max_steps or cfg.epochs * spe
  model = build_stargan(cfg, plan, total)
  start = 0
  if resuming:
    groups = model.checkpoint_groups()
    # Optional: the EMA, loss scales and DiffAugment's random state may be switched on or
    # off between resumes (a loss scale saved under mixed_float16 is not read in float32).
    meta = runs.restore_latest(cfg.run_dir, groups, optional=tuple(
        g for g in ("generator_ema", "g_loss_scale", "d_loss_scale", "diffaug_seed")
        if g in groups))
    start = int(meta["step"]) if meta else 0
    if meta and "generator_ema" not in meta["restored"]:
      model.reset_ema()  # EMA switched on in a resumed run: start it at the restored G
  if start >= total:
    logging.info("%s is already trained to step %d (of %d); nothing to do.", cfg.run_dir,
                 start, total)
    return {"step": start, "total_steps": total, "stopped_by": "done", "chief": chief}
  logging.info("%s at step %d of %d (%d steps per epoch, global batch %d over %d "
               "replica(s))", "Resuming" if start else "Starting", start, total, spe,
               cfg.batch_size, plan.replicas)

  checkpointer, sampler, scorer, progress, callbacks = _callbacks(
      cfg, chief, start, total, spe, train_faces, val_faces)
  for cb in callbacks:
    cb.set_model(model)
  val_ds = None
  if val_faces is not None and cfg.validate:
    if distribute.num_workers(plan.strategy) > 1:
      logging.info("No per-epoch validation pass with several workers (the chief's "
                   "--eval_every scoring still runs)")
    else:
      val_ds = pipeline.make_eval_dataset(val_faces, cfg.batch_size, seed=cfg.seed)
  verbose = _verbosity(cfg.verbose, progress_lines=cfg.log_every > 0)

  previous_handler = signal.signal(signal.SIGTERM, _raise_stop)
  stopped_by, t0 = "done", time.time()
  try:
    step = start
    # One fit() per epoch, so a run resumed mid-epoch finishes exactly that epoch's
    # remaining batches and later epochs line up with an uninterrupted run.
    while step < total:
      epoch = step // spe
      n = min((epoch + 1) * spe, total) - step
      stream = _train_stream(cfg, plan, train_faces, step, n)
      t_epoch = time.time()
      model.fit(stream, epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=n,
                validation_data=val_ds, callbacks=callbacks, verbose=verbose,
                shuffle=False)
      done = int(model.step.numpy()) - step  # fewer than n when stopped early
      step += done
      logging.info("Epoch %d: %s steps in %.1f s", epoch + 1,
                   done if done == n else f"{done} of {n}", time.time() - t_epoch)
      if progress.time_limit_hit:
        stopped_by = "time_limit"
        break
  except KeyboardInterrupt as e:
    stopped_by = "sigterm" if isinstance(e, _Stop) else "interrupt"
    logging.warning("Stopped by %s at step %d; saving a checkpoint. Rerun the same "
                    "command to resume.", "SIGTERM" if stopped_by == "sigterm" else "Ctrl-C",
                    int(model.step.numpy()))
  finally:
    signal.signal(signal.SIGTERM, previous_handler)
  # A diverged run raised TrainingDiverged above and never gets here: no NaN is saved.
  step = int(model.step.numpy())
  if checkpointer is not None:
    checkpointer.save()
  if sampler is not None and (stopped_by == "done" or step % max(cfg.sample_every, 1)):
    sampler.write_sample(step)
  if (scorer is not None and stopped_by in ("done", "time_limit")
      and step % cfg.eval_every):
    scorer.score_now(step)  # the final G is always scored (and may become the best)
  summary = {"step": step, "total_steps": total, "stopped_by": stopped_by, "chief": chief,
             "seconds": round(time.time() - t0, 1),
             "images_per_second": round((step - start) * cfg.batch_size /
                                        max(time.time() - t0, 1e-9), 1)}
  how = {"done": "finished", "time_limit": "stopped by the time limit"}.get(stopped_by,
                                                                          "stopped")
  logging.info("Training %s at step %d (of at most %d): %s", how, step, total, summary)
  return summary


def _callbacks(cfg: TrainConfig, chief: bool, start: int, total: int, spe: int,
               train_faces: faceset.FaceSet, val_faces: faceset.FaceSet | None):
  """(checkpointer, sampler, scorer, progress, all callbacks); writers only on the chief."""
  progress = callbacks_lib.Progress(start, total, cfg.batch_size, cfg.log_every,
                                    cfg.max_minutes * 60)
  if not chief:
    return None, None, None, progress, [callbacks_lib.NanGuard(), progress]
  checkpointer = callbacks_lib.Checkpointer(cfg.run_dir, cfg.checkpoint_every,
                                            cfg.keep_checkpoints, spe)
  sampler = callbacks_lib.SampleWriter(cfg.run_dir,
                                       _sample_images(val_faces or train_faces),
                                       cfg.emotions, cfg.sample_every, cfg.log_every)
  scorer = _scorer(cfg, val_faces, sampler.writer)
  callbacks = [callbacks_lib.NanGuard(), checkpointer, sampler, progress]
  if scorer is not None:
    callbacks.insert(2, scorer)  # after the checkpoint of the same step
  return checkpointer, sampler, scorer, progress, callbacks


def _training_record(cfg: TrainConfig, plan: devices.DevicePlan) -> dict:
  record = dataclasses.asdict(cfg)
  record.pop("model")
  record["devices"] = plan.description
  return record


def _verbosity(value: str, progress_lines: bool) -> int:
  """fit()'s verbose for --verbose=`value`: one progress display, not two that disagree.

  Progress's lines (every --log_every steps) know the whole run, its time limit included;
  Keras's bar or epoch lines only the current fit(), i.e. one epoch. So `auto` keeps Keras
  quiet while those lines are on, and shows its bar (a terminal) or a line per epoch
  otherwise; an explicit 0, 1 or 2 is passed to fit() as given.
  """
  if value != "auto":
    return int(value)
  if progress_lines:
    return 0
  return 1 if sys.stdout.isatty() else 2
