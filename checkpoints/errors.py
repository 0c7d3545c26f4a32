"""The checkpoints package's one domain exception, below fetch and integrity, which both raise
it, and how its messages list names."""


class CheckpointError(Exception):
  """A checkpoint cannot be provided; the message says what is wrong."""


SHOWN = 3  # How many names an error message lists before "and N more".


def listed(items) -> str:
  """The first SHOWN items, comma-separated, and how many more there are."""
  shown = ", ".join(items[:SHOWN])
  return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
