"""The one exception type that the command line turns into a one-line message and a non-zero exit.

A message says what went wrong, where (the file, option or step), and how to fix it, in one line.
"""


class KexueError(Exception):
    """A user-facing error: bad input, a missing or corrupt file, an impossible configuration."""


class DataError(KexueError, ValueError):
    """A data set that is missing, corrupt, truncated or of the wrong kind."""


class CheckpointError(KexueError):
    """A checkpoint or run directory that cannot be read or resumed."""


class TrainingError(KexueError, RuntimeError):
    """Training that cannot go on, e.g. a loss that became NaN or Inf."""
