"""faceexpr-tf command line: python main.py <mode> [--flags]  (mode defaults to train).

Modes:
  train      train StarGAN on FER2013 / an image folder / the built-in synthetic faces
  train_classifier  train the expression classifier that judges translations
  evaluate   score a run's generator (synthetic ground truth, D's accuracy) and write a report
  calibrate  measure how strongly G should make each emotion; a generator with those gains
  export     SavedModel for TF Serving, or .tflite for mobile
  translate  change the expression of faces in your own photos
  benchmark  training and inference speed, appended to docs/benchmarks.md
  serve      a page to try the generator in a browser, and TF Serving's REST API beside it

Each mode defines its own flags next to the code that uses them, in a FlagValues of its
own; `python main.py <mode> --help` lists them (and no other mode's), and
`--flagfile=flags/<name>.flags` loads a named configuration.
"""

import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TF's C++ start-up chatter
# TensorFlow turns oneDNN on by itself only for CPUs it recognises (AVX512 and up). On a
# CPU (or VM) without those flags it falls back to Eigen kernels: training ran 1.4x
# slower here without oneDNN (docs/benchmarks.md). Set TF_ENABLE_ONEDNN_OPTS=0 to opt out.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

MODES = {
    "train": "faceexpr_tf.training.train",
    "train_classifier": "faceexpr_tf.evaluation.classifier_training",
    "evaluate": "faceexpr_tf.evaluation.evaluate",
    "calibrate": "faceexpr_tf.evaluation.calibrate",
    "export": "faceexpr_tf.serving.export",
    "translate": "faceexpr_tf.photos.translate",
    "benchmark": "faceexpr_tf.benchmark.benchmark",
    "serve": "faceexpr_tf.web.serve",
}


def _split_mode(argv):
  """Picks the mode word out of argv (anywhere before the flags end); default train."""
  for i, arg in enumerate(argv[1:], start=1):
    if arg == "--":
      break
    if not arg.startswith("-"):
      if arg in MODES:
        return arg, argv[:i] + argv[i + 1:]
      sys.stderr.write(f"error: unknown mode {arg!r} (choose from {', '.join(MODES)})\n")
      sys.exit(2)
  return "train", argv


def main():
  mode, argv = _split_mode(sys.argv)
  from faceexpr_tf import quiet  # before TensorFlow loads: drops its start-up noise only
  quiet.install()
  # The mode's module holds its flags in a FlagValues of its own; only they are parsed.
  module = importlib.import_module(MODES[mode])
  from faceexpr_tf import cli
  from faceexpr_tf import errors

  def run(unused_argv):
    try:
      return module.run()
    except errors.UserError as e:
      sys.stderr.write(f"error: {e}\n")
      return 2
    except KeyboardInterrupt:
      sys.stderr.write("interrupted\n")
      return 130

  cli.run(module.FLAGS, run, argv)


if __name__ == "__main__":
  main()
