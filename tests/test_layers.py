"""The package's folders stand on floors (tools/layers.py FLOORS): every import points down.

Imports are read from the code with `ast` (lazy ones inside functions too), so a module
that imports from a higher floor or a peer folder, or any import cycle, fails here with
the file and line.
"""

import os
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import layers  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_every_import_points_down_the_floors():
  assert layers.violations() == []


def test_no_import_cycle():
  assert layers.cycles() == []


def test_every_folder_has_a_floor_and_a_docstring_saying_what_it_may_import():
  package = os.path.join(ROOT, layers.PACKAGE)
  folders = sorted(e.name for e in os.scandir(package)
                   if e.is_dir() and os.path.isfile(os.path.join(e.path, "__init__.py")))
  assert folders and set(folders) == set(layers.FLOOR_OF) - {"ground", "api"}
  for folder in folders:
    doc = open(os.path.join(package, folder, "__init__.py"), encoding="utf-8").read()
    assert f"Floor {layers.FLOOR_OF[folder]}" in doc, folder


def test_no_module_is_much_over_400_lines():
  long = {name: n for name, path in layers.package_modules().items()
          if (n := sum(1 for _ in open(path, encoding="utf-8"))) > 420}
  assert long == {}


def _package(tmp_path, files):
  for name, text in files.items():
    path = tmp_path / layers.PACKAGE / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
  for folder in {os.path.dirname(n) for n in files} - {""}:
    (tmp_path / layers.PACKAGE / folder / "__init__.py").touch()
  (tmp_path / layers.PACKAGE / "__init__.py").touch()
  return str(tmp_path)


def test_the_check_sees_an_import_up_a_peer_and_a_lazy_cycle(tmp_path):
  root = _package(tmp_path, {
      "errors.py": "",
      "modeling/models.py": """
          from faceexpr_tf import errors
          def build():
            from faceexpr_tf.serving import export  # lazy, and up two floors
          """,
      "serving/export.py": "from faceexpr_tf.modeling import models\n",
      "data/loader.py": "from faceexpr_tf.store import runs\n",  # a peer on floor 2
      "store/runs.py": "import faceexpr_tf.errors\n",
  })
  bad = layers.violations(root)
  assert len(bad) == 2, bad
  assert any("modeling/models.py:4" in b and "a higher floor" in b for b in bad)
  assert any("data/loader.py:1" in b and "a peer on the same floor" in b for b in bad)
  assert layers.cycles(root) == [["faceexpr_tf.modeling.models",
                                  "faceexpr_tf.serving.export"]]
