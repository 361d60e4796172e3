"""The package's version (one place: pyproject.toml's is the same string)."""

__version__ = "0.1.0"
