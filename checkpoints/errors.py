"""The checkpoints package's one domain exception, below fetch and integrity, which both raise it."""


class CheckpointError(Exception):
  """A checkpoint cannot be provided; the message says what is wrong."""
