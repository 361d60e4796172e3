"""The flags that name a source of faces, defined once for every mode that reads one.

`train` and `train_classifier` read all of them, `evaluate` reads --data. Each mode passes
its own FlagValues, so every mode holds its own copy of one definition: the same name,
default and help everywhere, and no mode's defaults depend on another's being imported.
"""

from typing import NamedTuple

from absl import flags

from faceexpr_tf.data import emotions as emotions_lib
from faceexpr_tf.data import ferplus


class LabelFlags(NamedTuple):
  labels: flags.FlagHolder
  ferplus: flags.FlagHolder
  ferplus_scheme: flags.FlagHolder

  def loader_args(self) -> dict:
    """The keyword arguments of loader.load_faces these flags ask for."""
    return {"labels": self.labels.value, "ferplus": self.ferplus.value,
            "ferplus_scheme": self.ferplus_scheme.value}


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


def define_label_flags(flag_values: flags.FlagValues) -> LabelFlags:
  """--labels, --ferplus, --ferplus_scheme: whose emotion labels a FER2013 csv's faces get."""
  return LabelFlags(
      labels=flags.DEFINE_enum(
          "labels", "fer2013", list(ferplus.LABELS), "A FER2013 csv's labels: fer2013 (its "
          "own emotion column) or ferplus (the FER+ crowd's vote, from --ferplus; rows the "
          "crowd gives no emotion of --emotions are dropped and counted).",
          flag_values=flag_values),
      ferplus=flags.DEFINE_string(
          "ferplus", None, "--labels=ferplus: the FER+ votes for the --data csv, in its row "
          "order: Microsoft's fer2013new.csv (for the original fer2013.csv) or "
          "ferplus.csv.gz (beside our FER2013 copy).", flag_values=flag_values),
      ferplus_scheme=flags.DEFINE_enum(
          "ferplus_scheme", "majority", list(ferplus.SCHEMES), "--labels=ferplus: majority "
          "(an emotion with more than half the votes; the FER+ paper's majority vote) or "
          "plurality (the most votes, no tie).", flag_values=flag_values),
  )


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
