"""The exporters package's one domain exception."""


class ExportError(Exception):
  """An export, verification, docs or publishing step failed; the message says why and what to do."""
