import os
import sys

# Tests import the package from the checkout, installed or not.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as main.py: faster convs on CPU


import contextlib  # pylint: disable=g-import-not-at-top,wrong-import-position
import copy  # pylint: disable=g-import-not-at-top,wrong-import-position
import importlib  # pylint: disable=g-import-not-at-top,wrong-import-position

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

# Every module that holds a mode's flags (FLAGS, a FlagValues of its own): main.py's modes
# and the TF Serving client's `python -m` entry point.
MODE_MODULES = ("faceexpr_tf.training.train", "faceexpr_tf.evaluation.classifier_training",
                "faceexpr_tf.evaluation.evaluate", "faceexpr_tf.serving.export",
                "faceexpr_tf.photos.translate", "faceexpr_tf.benchmark.benchmark",
                "faceexpr_tf.web.serve", "faceexpr_tf.serving.serving_client")


@contextlib.contextmanager
def mode_flags(module, parsed: bool = False, **values):
  """A mode's flags marked parsed and set to `values`, all restored afterwards.

  parsed=True sets each value from its command-line text, as `--name=value` would (the
  flag then counts as present); otherwise values are assigned as Python values.
  """
  fv = module.FLAGS
  saved = {name: copy.deepcopy(fv[name].__dict__) for name in fv}
  was_parsed = fv.is_parsed()
  fv.mark_as_parsed()
  try:
    for name, value in values.items():
      if parsed:
        fv[name].parse(value)
      else:
        fv[name].value = value
    yield fv
  finally:
    for name, state in saved.items():
      fv[name].__dict__.clear()
      fv[name].__dict__.update(state)
    if not was_parsed:
      fv.unparse_flags()


@pytest.fixture
def parsed_flags():
  """Every mode's flags marked parsed, restored after the test (tests that call run())."""
  with contextlib.ExitStack() as stack:
    for name in MODE_MODULES:
      stack.enter_context(mode_flags(importlib.import_module(name)))
    yield
