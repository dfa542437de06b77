"""Errors raised by the data package.

Both derive from ValueError so callers that validate configs with `except ValueError` also catch
them; each message is one line that names the data set or the file at fault, because a sweep
that dies on data should say exactly which file to fix or fetch.
"""


class DataNotFoundError(ValueError):
  """A data set is in none of the places searched and cannot be downloaded."""


class DataFormatError(ValueError):
  """A file exists but is not what its format promises (bad gzip, wrong magic, wrong sizes)."""
