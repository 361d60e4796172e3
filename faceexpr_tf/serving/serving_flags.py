"""--model_name, defined once for the modes that name a served model (export, serve, and the
TF Serving client); each passes its own FlagValues and holds its own copy."""

from absl import flags

DEFAULT_MODEL_NAME = "faceexpr"


def define_model_name(flag_values: flags.FlagValues) -> flags.FlagHolder:
  return flags.DEFINE_string(
      "model_name", DEFAULT_MODEL_NAME, "Model name: TF Serving's MODEL_NAME, in its model "
      "base path (exports/<model_name>/<version>) and REST URLs (/v1/models/<model_name>).",
      flag_values=flag_values)
