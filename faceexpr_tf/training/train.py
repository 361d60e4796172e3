"""`python main.py train`: the train mode's flags -> a TrainConfig -> trainer.train().

Rerunning the same command resumes from the run dir's newest checkpoint: same step, same
optimizer state, same upcoming batches (the input stream is a pure function of seed and
step). Ctrl-C and SIGTERM save a checkpoint before exiting; a hard kill loses at most
--checkpoint_every steps.
"""

import dataclasses

from absl import flags

from faceexpr_tf import errors
from faceexpr_tf.data import data_flags
from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.evaluation import scoring
from faceexpr_tf.modeling import diffaugment
from faceexpr_tf.modeling import models
from faceexpr_tf.modeling import stargan
from faceexpr_tf.training import devices
from faceexpr_tf.training import trainer

# This mode's flags, apart from every other mode's: main.py parses them only when
# the mode runs, so their defaults never depend on what else was imported.
FLAGS = flags.FlagValues()

# Data.
_SOURCE = data_flags.define_source_flags(FLAGS)
_LABELS = data_flags.define_label_flags(FLAGS)
_SKIP_BAD_ROWS = flags.DEFINE_bool("skip_bad_rows", False, "Skip malformed csv rows (and "
                                   "report how many) instead of stopping.", flag_values=FLAGS)
_FLIP = flags.DEFINE_bool("flip", True, "Random horizontal flips.", flag_values=FLAGS)
_SAME_TARGET_RATE = flags.DEFINE_float(
    "same_target_rate", 0.0, "How often a training target is the face's own emotion "
    "(G(x, c_org) then meets D, the class loss and the guide like any translation; 0.25 "
    "with four emotions: a uniform draw over all of them). 0: always another emotion.",
    flag_values=FLAGS)
# Model shape (a run dir refuses different values).
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 48, "Image side in pixels.", flag_values=FLAGS)
_G_CONV_DIM = flags.DEFINE_integer("g_conv_dim", 64, "G's first layer width.", flag_values=FLAGS)
_G_REPEAT = flags.DEFINE_integer("g_repeat_num", 6, "G's residual blocks.", flag_values=FLAGS)
_D_CONV_DIM = flags.DEFINE_integer("d_conv_dim", 64, "D's first layer width.", flag_values=FLAGS)
_D_REPEAT = flags.DEFINE_integer("d_repeat_num", 4, "D's stride-2 layers.", flag_values=FLAGS)
_UPSAMPLE = flags.DEFINE_enum("upsample", "transpose", ["transpose", "resize"],
                              "G's upsampling: transposed conv (official) or nearest "
                              "resize + conv (no checkerboard artifacts).", flag_values=FLAGS)
_G_OUTPUT = flags.DEFINE_enum("g_output", "image", list(models.G_OUTPUTS),
                              "G's output: an image (official), an edit of the input "
                              "(residual: tanh(atanh(x) + G's last conv), identity at init) "
                              "or an edit and a mask A of where it applies (attention, as "
                              "GANimation: A * x + (1 - A) * edit, identity at init; "
                              "--lambda_mask, --lambda_mask_tv).", flag_values=FLAGS)
# Losses.
_GAN_LOSS = flags.DEFINE_enum("gan_loss", "log", list(stargan.GAN_LOSSES),
                              "log: the paper's loss; wgan-gp: official StarGAN's.",
                              flag_values=FLAGS)
_SATURATING_G = flags.DEFINE_bool("saturating_g", False, "log loss: G minimises "
                                  "log(1 - D(G)) literally instead of -log D(G).",
                                  flag_values=FLAGS)
_LAMBDA_CLS = flags.DEFINE_float("lambda_cls", 1.0, "Weight of the class loss.", flag_values=FLAGS)
_LAMBDA_REC = flags.DEFINE_float("lambda_rec", 10.0, "Weight of the cycle L1.", flag_values=FLAGS)
_LAMBDA_GP = flags.DEFINE_float("lambda_gp", 10.0, "Weight of the gradient penalty.",
                                flag_values=FLAGS)
_LAMBDA_R1 = flags.DEFINE_float("lambda_r1", 0.0, "Weight of the R1 penalty on D at real "
                                 "faces, 0.5 E|grad D(x)|^2 (StarGAN v2 uses 1; 0 = off).",
                                 flag_values=FLAGS)
_DIFFAUG = flags.DEFINE_string("diffaug", "", "DiffAugment: the same random, differentiable "
                               "augmentation on real and generated images before D, any of "
                               "color,translation,cutout ('' = off, the paper).", flag_values=FLAGS)
_LAMBDA_ID = flags.DEFINE_float("lambda_id", 0.0, "Weight of an identity term "
                                 "|G(x, c_org) - x| (not in the paper; 0 = off).",
                                flag_values=FLAGS)
_LAMBDA_MASK = flags.DEFINE_float(
    "lambda_mask", 0.1, "--g_output=attention: weight of the mask's edit area E[1 - A] "
    "(higher: edits confined to fewer pixels; 0: unconstrained).", lower_bound=0.0,
    flag_values=FLAGS)
_LAMBDA_MASK_TV = flags.DEFINE_float(
    "lambda_mask_tv", 0.1, "--g_output=attention: weight of the mask's total variation "
    "(higher: smoother, less speckled masks).", lower_bound=0.0, flag_values=FLAGS)
_G_EMA_DECAY = flags.DEFINE_float("g_ema_decay", 0.0, "Keep a moving average of G's "
                                   "weights with this decay (e.g. 0.999) and sample, "
                                   "evaluate and export it; 0 = off (the paper).",
                                  flag_values=FLAGS)
_N_CRITIC = flags.DEFINE_integer("n_critic", 1, "D updates per G update.", flag_values=FLAGS)
_GUIDE = flags.DEFINE_string("guide", None, "A frozen expression classifier (.keras, from "
                             "train_classifier) that G is also trained to convince; judge "
                             "such a run with another classifier.", flag_values=FLAGS)
_LAMBDA_GUIDE = flags.DEFINE_float("lambda_guide", 0.0, "Weight of the guide classifier's "
                                   "cross-entropy on G(x, c) (0 = off; needs --guide).",
                                   flag_values=FLAGS)
_GUIDE_CONFIDENCE = flags.DEFINE_float(
    "guide_confidence", 1.0, "The guide's loss stops for a fake it reads as the target "
    "with at least this probability: max(0, CE + log p); G makes the expression read, not "
    "a caricature of it (1 = never stops, plain cross-entropy).", flag_values=FLAGS)
# Scoring while training (an independent judge; see scoring.py).
_JUDGE = flags.DEFINE_string("judge", "shipped", "Classifier that scores G while training "
                             "(.keras; 'shipped' = the package's; 'none' = no scoring).",
                             flag_values=FLAGS)
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 0, "Steps between scorings of G on "
                                   "--eval_faces validation faces, keeping "
                                   "checkpoints/best.npz (0 = off).", flag_values=FLAGS)
_EVAL_FACES = flags.DEFINE_integer("eval_faces", 400, "Validation faces scored each time "
                                   "(class-balanced, fixed for the run; 0 = all).",
                                   flag_values=FLAGS)
_BEST_FD_RATIO = flags.DEFINE_float("best_fd_ratio", scoring.BestRule.max_fd_ratio,
                                    "The best checkpoint's realism limit: FD at most this "
                                    "many times the real-vs-real floor.", flag_values=FLAGS)
# Optimisation.
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Images per step (global: split "
                                   "evenly over all replicas of all workers).", flag_values=FLAGS)
_EPOCHS = flags.DEFINE_integer("epochs", 400, "Passes over the training set.", flag_values=FLAGS)
_MAX_STEPS = flags.DEFINE_integer("max_steps", 0, "Stop after this many steps in total "
                                  "(0: epochs x steps per epoch).", flag_values=FLAGS)
_LR_DECAY = flags.DEFINE_bool("lr_decay", False, "Official StarGAN's schedule: both "
                              "learning rates fall linearly to 0 over the second half of "
                              "the steps.", flag_values=FLAGS)
_G_LR = flags.DEFINE_float("g_lr", 1e-4, "G's Adam learning rate.", flag_values=FLAGS)
_D_LR = flags.DEFINE_float("d_lr", 1e-4, "D's Adam learning rate.", flag_values=FLAGS)
_BETA1 = flags.DEFINE_float("beta1", 0.5, "Adam beta1.", flag_values=FLAGS)
_BETA2 = flags.DEFINE_float("beta2", 0.999, "Adam beta2.", flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of weights, data order, flips, targets.",
                             flag_values=FLAGS)
# Devices.
_PRECISION = flags.DEFINE_enum("precision", "auto", list(devices.PRECISIONS),
                               "auto: bf16 where the device has native bf16 math.",
                               flag_values=FLAGS)
_JIT = flags.DEFINE_string("jit_compile", "auto", "XLA: auto (GPU only), true, false.",
                           flag_values=FLAGS)
_STRATEGY = flags.DEFINE_string("strategy", "auto", "auto, default, mirrored (all GPUs) or "
                                "multi_worker (the machines in TF_CONFIG; worker 0 writes).",
                                flag_values=FLAGS)
_STEPS_PER_EXECUTION = flags.DEFINE_integer("steps_per_execution", 1, "train steps per "
                                            "graph call (GPU: fewer host round trips).",
                                            flag_values=FLAGS)
# Run dir.
_RUN_DIR = flags.DEFINE_string("run_dir", "runs/default", "Where checkpoints, samples and "
                               "logs go; rerun to resume.", flag_values=FLAGS)
_CHECKPOINT_EVERY = flags.DEFINE_integer("checkpoint_every", 1000, "Steps between "
                                         "checkpoints (also saved at the end and on "
                                         "Ctrl-C/SIGTERM).", flag_values=FLAGS)
_KEEP = flags.DEFINE_integer("keep_checkpoints", 3, "Newest checkpoints kept.", flag_values=FLAGS)
_SAMPLE_EVERY = flags.DEFINE_integer("sample_every", 500, "Steps between sample grids.",
                                     flag_values=FLAGS)
_LOG_EVERY = flags.DEFINE_integer("log_every", 100, "Steps between progress lines and "
                                  "TensorBoard scalars.", flag_values=FLAGS)
_VALIDATE = flags.DEFINE_bool("validate", True, "Validation pass after each epoch.",
                              flag_values=FLAGS)
_MAX_MINUTES = flags.DEFINE_float("max_minutes", 0, "Stop (with a checkpoint) after this "
                                  "much training time; 0 = no limit.", flag_values=FLAGS)
_VERBOSE = flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras's own "
                             "progress display, besides the --log_every lines: auto = none "
                             "while those lines are on (--log_every > 0), else 1 on a terminal "
                             "and 2 otherwise; 0 = none, 1 = bar with ETA, 2 = a line per "
                             "epoch.", flag_values=FLAGS)
_REPORT = flags.DEFINE_bool("report", True, "After training on synthetic data, write the "
                            "ground-truth evaluation report (run_dir/report).", flag_values=FLAGS)


def config_from_flags() -> trainer.TrainConfig:
  emotions = emotions_lib.parse_emotions(_SOURCE.emotions.value)
  model = models.ModelConfig(
      image_size=_IMAGE_SIZE.value, channels=1, num_classes=len(emotions),
      g_conv_dim=_G_CONV_DIM.value, g_repeat_num=_G_REPEAT.value,
      d_conv_dim=_D_CONV_DIM.value, d_repeat_num=_D_REPEAT.value, upsample=_UPSAMPLE.value,
      g_output=_G_OUTPUT.value)
  values = {f.name: FLAGS[f.name].value for f in dataclasses.fields(trainer.TrainConfig)
            if f.name not in ("model", "emotions")}
  return trainer.TrainConfig(model=model, emotions=emotions, **values)


def check_flags():
  """Refuses flag values that cannot work, in one line, before anything is loaded."""
  # Before config_from_flags(): ModelConfig itself raises a bare ValueError on image_size.
  v = FLAGS.flag_values_dict()
  down = 2 ** min(max(v["d_repeat_num"], 2), 62)  # D halves d_repeat_num times, G twice
  rules = [
      *((n, v[n] >= 1, "must be at least 1") for n in (
          "batch_size", "n_critic", "keep_checkpoints", "steps_per_execution",
          "synthetic_identities", "g_conv_dim", "g_repeat_num", "d_conv_dim",
          "d_repeat_num")),
      ("epochs", v["epochs"] >= 1 or (v["epochs"] == 0 and v["max_steps"] > 0),
       "must be at least 1 (or set --max_steps)"),
      *((n, v[n] >= 0, "must be 0 or more") for n in (
          "max_steps", "checkpoint_every", "sample_every", "log_every", "max_minutes",
          "lambda_cls", "lambda_rec", "lambda_gp", "lambda_r1", "lambda_id", "lambda_guide",
          "eval_every")),
      ("eval_faces", v["eval_faces"] == 0 or v["eval_faces"] >= 4, "must be 0 (all) or "
       "at least 4 (two halves, two faces each, for the real-vs-real floor)"),
      ("best_fd_ratio", v["best_fd_ratio"] > 0, "must be above 0"),
      *((n, v[n] > 0, "must be above 0") for n in ("g_lr", "d_lr")),
      *((n, 0 <= v[n] < 1, "must be in [0, 1)") for n in ("beta1", "beta2",
                                                           "g_ema_decay")),
      ("same_target_rate", 0 <= v["same_target_rate"] <= 1, "must be in [0, 1]"),
      ("guide_confidence", 0 < v["guide_confidence"] <= 1, "must be in (0, 1]"),
      ("image_size", v["image_size"] > 0 and v["image_size"] % down == 0,
       f"must be a positive multiple of {down} (G downsamples twice, D "
       f"--d_repeat_num={v['d_repeat_num']} times)"),
  ]
  for name, ok, requirement in rules:
    if not ok:
      raise errors.UserError(f"--{name}={v[name]}: {requirement}")
  try:
    diffaugment.parse_policy(v["diffaug"])
  except diffaugment.PolicyError as e:
    raise errors.UserError(str(e)) from None


def run():
  check_flags()
  cfg = config_from_flags()
  summary = trainer.train(cfg)
  if summary["stopped_by"] in ("interrupt", "sigterm"):
    return 130
  if (cfg.report and cfg.data == "synthetic" and summary["chief"]
      and summary["stopped_by"] in ("done", "time_limit")):
    from faceexpr_tf.evaluation import evaluate  # pylint: disable=g-import-not-at-top
    evaluate.synthetic_report(cfg.run_dir)
  return 0
