"""Markdown tables: printing a header and its rows, and writing them into --bench_table.

The training-speed rows are appended at the end of the file (its "## Results" table); the
other tables (side by side, TFLite) go in as titled sections of their own before it.
"""

import os


def separator(header: str) -> str:
  """The |---|---| line under a markdown header."""
  return "|---" * (header.count("|") - 1) + "|"


def show(header: str, lines: list[str]):
  """Prints a table (header and rows, without the separator line)."""
  print(header)
  print("\n".join(lines))


def append_rows(path: str, header: str, lines: list[str]):
  """Appends rows to the table at the end of `path`; a new file gets a title and header.

  Args:
    path: the markdown file ('' = write nothing).
    header: the table's header line, written only when the file is new.
    lines: the rows.
  """
  if not path:
    return
  new = not os.path.exists(path)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "a") as f:
    if new:
      f.write("# Benchmarks\n\n`python main.py benchmark` appends rows here.\n\n")
      f.write(header + "\n" + separator(header) + "\n")
    f.write("\n".join(lines) + "\n")


def insert_section(path: str, title: str, header: str, lines: list[str]):
  """Writes a titled table into `path` before its "## Results" table (which `benchmark`
  keeps appending rows to), or at the end when there is none; '' writes nothing."""
  if not path:
    return
  section = f"{title}\n\n{header}\n{separator(header)}\n" + "\n".join(lines) + "\n\n"
  text = open(path).read() if os.path.exists(path) else ""
  at = text.find("\n## Results")
  text = (text[:at + 1] + section + text[at + 1:]) if at >= 0 else (
      text + ("\n" if text and not text.endswith("\n\n") else "") + section)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
