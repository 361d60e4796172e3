"""The flags that name a source of faces, defined once for every mode that reads one.

`train` and `train_classifier` read all of them, `evaluate` reads --data. Each mode passes
its own FlagValues, so every mode holds its own copy of one definition: the same name,
default and help everywhere, and no mode's defaults depend on another's being imported.
"""

from typing import NamedTuple

from absl import flags

from faceexpr_tf.data import emotions as emotions_lib


class SourceFlags(NamedTuple):
  data: flags.FlagHolder
  emotions: flags.FlagHolder
  train_usage: flags.FlagHolder
  val_usage: flags.FlagHolder
  synthetic_identities: flags.FlagHolder


def define_data(flag_values: flags.FlagValues) -> flags.FlagHolder:
  """--data: where the faces come from."""
  return flags.DEFINE_string(
      "data", "synthetic", "'synthetic' (built-in procedural faces), a fer2013.csv[.gz] or "
      "an image folder root/<emotion>/*.png.", flag_values=flag_values)


def define_source_flags(flag_values: flags.FlagValues) -> SourceFlags:
  """--data and what selects faces from it: emotions, csv Usage rows, synthetic identities."""
  return SourceFlags(
      data=define_data(flag_values),
      emotions=flags.DEFINE_string(
          "emotions", ",".join(emotions_lib.DEFAULT_EMOTIONS),
          "Emotions to learn, in class-id order.", flag_values=flag_values),
      train_usage=flags.DEFINE_string(
          "train_usage", "Training", "csv Usage value(s) to train on (comma-separated).",
          flag_values=flag_values),
      val_usage=flags.DEFINE_string(
          "val_usage", "PublicTest", "csv Usage value(s) to validate on (train: empty = no "
          "validation; train_classifier: validate, stop early and report on).",
          flag_values=flag_values),
      synthetic_identities=flags.DEFINE_integer(
          "synthetic_identities", 200, "Identities rendered for --data=synthetic.",
          flag_values=flag_values),
  )
