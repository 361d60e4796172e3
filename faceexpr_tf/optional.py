"""Optional packages: import one, or tell the user in one line which extra installs it.

The base install (`pip install -e .`) trains, evaluates, exports and translates. A few
paths need more, each from an extra in pyproject.toml:

  ai_edge_litert       ai-edge-litert          ".[mobile]"   run or check a .tflite
  grpc                 grpcio                  ".[serving]"  the serving client's --grpc
  tensorflow_serving   tensorflow-serving-api  ".[serving]"  the serving client's --grpc
  gradio, fastapi, uvicorn                     ".[web]"      `main.py serve`

`require()` imports such a module or raises errors.UserError (main.py prints it as
`error: <message>` and exits 2), never a ModuleNotFoundError traceback.
"""

import importlib

from faceexpr_tf import errors

# Top-level module -> (pip package, pyproject extra that installs it).
PACKAGES = {
    "ai_edge_litert": ("ai-edge-litert", "mobile"),
    "grpc": ("grpcio", "serving"),
    "tensorflow_serving": ("tensorflow-serving-api", "serving"),
    "gradio": ("gradio", "web"),
    "fastapi": ("fastapi", "web"),
    "uvicorn": ("uvicorn", "web"),
}


def install_hint(module: str) -> str:
  """The exact pip command that installs an optional module's extra."""
  package, extra = PACKAGES.get(module, (module, None))
  return f'pip install -e ".[{extra}]"' if extra else f"pip install {package}"


class MissingPackageError(errors.UserError):
  """An optional package is not installed; the message says what to pip install."""

  def __init__(self, module: str, purpose: str):
    self.module = module
    self.package = PACKAGES.get(module, (module, None))[0]
    super().__init__(f"{self.package} is not installed: it is needed {purpose}; run: "
                     f"{install_hint(module)}")


def require(module: str, purpose: str):
  """Imports `module` (e.g. "ai_edge_litert.interpreter") and returns it.

  Args:
    module: dotted module name.
    purpose: what it is for, completing "it is needed ..." (e.g. "to run a .tflite").

  Raises:
    MissingPackageError: the module, or one of the optional packages it imports, is not
      installed. Any other import problem (a broken install) propagates unchanged.
  """
  try:
    return importlib.import_module(module)
  except ModuleNotFoundError as e:
    missing = (e.name or "").split(".")[0]
    if missing == module.split(".")[0] or missing in PACKAGES:
      raise MissingPackageError(missing, purpose) from None
    raise
