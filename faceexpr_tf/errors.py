"""The one exception type a user sees as a single line (main.py prints it, no traceback)."""


class UserError(Exception):
  """Bad input or state the user can fix: the message names what, where and how."""
