"""Running one mode's flags as an absl app: main.py's modes and `python -m` entry points.

Every mode keeps its flags in a FlagValues of its own (`FLAGS` in its module). Only the
mode that runs has them joined to absl's global flags (--flagfile, --help, logging), for
this process, so `main.py <mode> --help` lists that mode's flags and no other's, and the
defaults of a mode never depend on which other modes were imported.
"""

import sys

from absl import app
from absl import flags


def run(mode_flags: flags.FlagValues, main, argv: list[str] | None = None):
  """app.run(main) with `mode_flags` parsed from argv alongside absl's own flags."""
  argv = list(sys.argv if argv is None else argv)
  program = sys.argv[0]
  for name in mode_flags:
    flag = mode_flags[name]
    if name == flag.name:  # not the short alias of a flag
      flags.FLAGS[name] = flag
      flags.FLAGS.register_key_flag_for_module(program, flag)  # listed by --help

  def parsed_main(args):
    mode_flags.mark_as_parsed()  # the same Flag objects absl just parsed
    return main(args)

  app.run(parsed_main, argv=argv)
