"""The package's layers, stated once, and its imports read from the code with `ast`.

    python tools/layers.py                          # check: exit 1 naming each bad import
    python tools/layers.py --draw docs/layers.png   # the picture in docs/ARCHITECTURE.md

Every module of faceexpr_tf/ belongs to one folder (a role); the folders stand on floors,
and a module may import only from its own folder, from a lower floor, or from the ground.
Folders on one floor are peers and never import each other. tests/test_layers.py runs
the check, and also fails on any import cycle between modules, lazy imports included.
"""

import argparse
import ast
import collections
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "faceexpr_tf"

# Floor -> folders on it, bottom first. "ground" is the package's own top-level modules
# (errors, optional, quiet, cli, version): everybody may use them, they import nothing of
# ours. "api" is the package's __init__ (faceexpr_tf.load, the Python API): on top of all,
# so nothing of ours imports the package itself.
FLOORS = (
    ("ground",),
    ("modeling",),
    ("data", "store"),
    ("serving",),
    ("evaluation",),
    ("training", "photos"),
    ("web", "benchmark"),
    ("api",),
)
FLOOR_OF = {folder: floor for floor, folders in enumerate(FLOORS) for folder in folders}


def package_modules(root: str = REPO) -> dict[str, str]:
  """Dotted module name -> file, for every .py under faceexpr_tf/."""
  modules = {}
  base = os.path.join(root, PACKAGE)
  for folder, _, files in os.walk(base):
    for name in sorted(files):
      if not name.endswith(".py"):
        continue
      rel = os.path.relpath(os.path.join(folder, name), root)[:-3].split(os.sep)
      if rel[-1] == "__init__":
        rel = rel[:-1]
      modules[".".join(rel)] = os.path.join(folder, name)
  return modules


def folder_of(module: str) -> str:
  """faceexpr_tf.data.fer2013 -> data; faceexpr_tf.errors -> ground; faceexpr_tf -> api."""
  if module == PACKAGE:
    return "api"
  parts = module.split(".")
  return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in FLOOR_OF) \
      else "ground"


def imports(path: str, modules: dict[str, str]) -> list[tuple[str, int, bool]]:
  """(imported module of ours, line, lazy) for each import in a file; lazy = inside a def."""
  tree = ast.parse(open(path, encoding="utf-8").read(), path)
  found = []

  def visit(node, lazy):
    for child in ast.iter_child_nodes(node):
      inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
      if isinstance(child, ast.Import):
        for alias in child.names:
          if alias.name.split(".")[0] == PACKAGE:
            found.append((alias.name, child.lineno, lazy))
      elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0 \
              and child.module.split(".")[0] == PACKAGE:
        for alias in child.names:  # `from faceexpr_tf.data import loader` names a module
          name = f"{child.module}.{alias.name}"
          found.append((name if name in modules else child.module, child.lineno,
                        lazy))
      visit(child, inner)

  visit(tree, False)
  return found


def graph(root: str = REPO) -> dict[str, list[tuple[str, int, bool]]]:
  modules = package_modules(root)
  return {name: [(m, line, lazy) for m, line, lazy in imports(path, modules)
                 if m in modules and m != name]
          for name, path in modules.items()}


def violations(root: str = REPO) -> list[str]:
  """One line per import that points up, sideways to a peer folder, or out of the ground."""
  modules = package_modules(root)
  bad = []
  for name, deps in graph(root).items():
    src = folder_of(name)
    if src not in FLOOR_OF:
      bad.append(f"{modules[name]}: folder {src!r} has no floor in tools/layers.py FLOORS")
      continue
    for dep, line, _ in deps:
      dst = folder_of(dep)
      if dst == src or dst == "ground" and src != "ground":
        continue
      if dst not in FLOOR_OF or FLOOR_OF[dst] >= FLOOR_OF[src]:
        where = os.path.relpath(modules[name], root)
        how = ("a peer on the same floor" if FLOOR_OF.get(dst) == FLOOR_OF[src]
               else "a higher floor" if dst in FLOOR_OF else "no floor")
        bad.append(f"{where}:{line}: {name} ({src}, floor {FLOOR_OF[src]}) imports "
                   f"{dep} ({dst}: {how})")
  return bad


def cycles(root: str = REPO) -> list[list[str]]:
  """Every strongly connected group of 2+ modules (imports at any depth, lazy too)."""
  edges = {name: sorted({d for d, _, _ in deps}) for name, deps in graph(root).items()}
  index, low, stack, on_stack, groups = {}, {}, [], set(), []

  def strongconnect(v):  # Tarjan
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in edges[v]:
      if w not in index:
        strongconnect(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        group.append(w)
        if w == v:
          break
      if len(group) > 1:
        groups.append(sorted(group))

  for v in edges:
    if v not in index:
      strongconnect(v)
  return groups


def folder_edges(root: str = REPO) -> dict[tuple[str, str], int]:
  """(from folder, to folder) -> number of module-to-module imports, lazy ones included."""
  counts = collections.Counter()
  for name, deps in graph(root).items():
    for dep in {d for d, _, _ in deps}:
      a, b = folder_of(name), folder_of(dep)
      if a != b:
        counts[a, b] += 1
  return dict(counts)


def draw(path: str, root: str = REPO):
  """The floors as rows of boxes (folder, its modules and lines), imports as arrows."""
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top

  modules = package_modules(root)
  by_folder = collections.defaultdict(list)
  for name, file in modules.items():
    lines = sum(1 for _ in open(file, encoding="utf-8"))
    leaf = name.split(".")[-1] if name.count(".") >= 1 else "__init__"
    if name.count(".") == 1 and folder_of(name) != "ground":
      continue  # the folders' __init__ (docstrings only)
    by_folder[folder_of(name)].append((leaf, lines))
  try:
    font = ImageFont.truetype("DejaVuSans.ttf", 15)
    bold = ImageFont.truetype("DejaVuSans-Bold.ttf", 17)
  except OSError:
    font = bold = ImageFont.load_default()
  box_w, line_h, pad, gap_x, gap_y = 300, 19, 10, 40, 70
  heights = {f: 2 * pad + 26 + line_h * len(mods) for f, mods in by_folder.items()}
  floor_h = [max(heights.get(f, 0) for f in folders) for folders in FLOORS]
  width = 2 * gap_x + max(len(f) for f in FLOORS) * (box_w + gap_x)
  height = gap_y + 20 + sum(floor_h) + gap_y * len(FLOORS) + 40
  image = Image.new("RGB", (width, height), "white")
  d = ImageDraw.Draw(image)
  d.text((gap_x, 15), f"{PACKAGE}: each folder imports only folders below it",
         fill="black", font=bold)
  d.text((gap_x, 38), "drawn from the code's imports by tools/layers.py; lines = imports",
         fill="gray", font=font)
  boxes, y = {}, height - 20
  for floor, folders in enumerate(FLOORS):
    y -= floor_h[floor] + gap_y
    x0 = gap_x + (width - 2 * gap_x - len(folders) * (box_w + gap_x) + gap_x) // 2
    for i, folder in enumerate(folders):
      x = x0 + i * (box_w + gap_x)
      boxes[folder] = (x, y, x + box_w, y + heights.get(folder, 40))
  heads = []  # arrow heads: drawn last, on the imported box's top edge
  for (a, b), n in sorted(folder_edges(root).items()):
    if b == "ground":
      continue  # everybody stands on the ground: arrows there would hide the rest
    ax0, _, ax1, ay1 = boxes[a]
    bx0, by0, bx1, _ = boxes[b]
    start = ((ax0 + ax1) // 2 + (bx0 - ax0) // 12, ay1)
    end = ((bx0 + bx1) // 2 + (ax0 - bx0) // 12, by0)
    d.line([start, end], fill="#c44", width=1 + min(n, 8) // 2)
    heads.append(end)
  for floor, folders in enumerate(FLOORS):
    d.text((8, boxes[folders[0]][1] + 4), str(floor), fill="gray", font=bold)
    for folder in folders:
      x, y = boxes[folder][:2]
      d.rectangle(boxes[folder], outline="#336", width=2, fill="#eef2fa")
      total = sum(n for _, n in by_folder[folder])
      title = {"ground": "ground (faceexpr_tf/*.py)",
               "api": "api (faceexpr_tf/__init__.py)"}.get(folder, f"{folder}/")
      d.text((x + pad, y + pad), f"{title}  {total} lines", fill="#113", font=bold)
      for j, (leaf, n) in enumerate(sorted(by_folder[folder])):
        d.text((x + pad, y + pad + 26 + j * line_h), f"{leaf}.py  {n}", fill="#333",
               font=font)
  for x, y in heads:
    d.ellipse([x - 4, y - 4, x + 4, y + 4], fill="#c44")
  image.save(path)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--draw", metavar="PNG", help="write the layer picture here")
  args = parser.parse_args(argv)
  if args.draw:
    draw(args.draw)
    print(f"wrote {args.draw}")
  problems = violations() + [f"import cycle: {' -> '.join(g)}" for g in cycles()]
  for line in problems:
    print(line)
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
