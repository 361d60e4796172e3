"""Markdown tables: printing a header and its rows, and writing them into --bench_table.

The training-speed rows go under the last row of the file's "## Results" table; the other
tables (side by side, TFLite) go in as titled sections of their own before it, and the
photo and serve load-test rows under the table of their own titled section.
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
  """Adds rows under the last row of the file's "## Results" table (the sections written
  after it, notes and other tables, stay below); a file without one gets it at its end.
  A Results table with other columns (an older layout) stays as it is, below a new table
  that the rows start, at the top of the section.

  Args:
    path: the markdown file ('' = write nothing).
    header: the table's header line, written only with a new table.
    lines: the rows.
  """
  if not path:
    return
  text = open(path).read() if os.path.exists(path) else (
      "# Benchmarks\n\n`python main.py benchmark` appends rows here.\n\n")
  at = text.find("## Results")
  if at < 0:
    text += ("" if text.endswith("\n\n") else "\n") + "## Results\n\n"
    text += header + "\n" + separator(header) + "\n" + "\n".join(lines) + "\n"
  else:
    rows = text[at:].split("\n")
    first = next((i for i, line in enumerate(rows) if line.startswith("|")), None)
    if first is None:  # a Results title with no table yet
      end = at + len(rows[0]) + 1
      text = text[:end] + "\n" + header + "\n" + separator(header) + "\n" + "\n".join(
          lines) + "\n" + text[end:]
    elif rows[first] != header:  # other columns: a new table above the old one
      rows[first:first] = [header, separator(header), *lines, ""]
      text = text[:at] + "\n".join(rows)
    else:
      last = first
      while last + 1 < len(rows) and rows[last + 1].startswith("|"):
        last += 1
      rows[last + 1:last + 1] = lines
      text = text[:at] + "\n".join(rows)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


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


def append_to_section(path: str, title: str, intro: str, header: str, lines: list[str]):
  """Appends rows to the table under `title` in `path` (after its last row, so text after
  the table stays after it); a file without the section gets it, with `intro`, before its
  "## Results" table (tables.insert_section). A table under the title with another header
  is followed by a new one with this header. '' writes nothing."""
  if not path:
    return
  text = ""
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      text = f.read()
  at = text.find(title + "\n")
  while at > 0 and text[at - 1] != "\n":
    at = text.find(title + "\n", at + 1)
  if at < 0:
    insert_section(path, f"{title}\n\n{intro}", header, lines)
    return
  rows = text[at:].split("\n")
  start = next((i for i, l in enumerate(rows) if l.startswith("|")), None)
  nxt = next((i for i, l in enumerate(rows) if i and l.startswith("## ")), len(rows))
  if start is None or start > nxt:       # a title without a table
    start, end, block = 1, 1, ["", header, separator(header), *lines]
  else:
    end = start
    while end < len(rows) and rows[end].startswith("|"):
      end += 1
    block = lines if rows[start] == header else [
        "", header, separator(header), *lines]
  rows[end:end] = block
  text = text[:at] + "\n".join(rows)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
