"""The `--models/--module_types/--versions` flags every multi-release CLI takes.

Defined once here (importing this module defines them), so the CLIs filter
the registry the same way and can be imported side by side.
"""
from __future__ import annotations

import dataclasses

from absl import app, flags

_MODELS = flags.DEFINE_list("models", [], "Only these models (default: all).")
_MODULE_TYPES = flags.DEFINE_list("module_types", [], "Only these module types (default: both).")
_VERSIONS = flags.DEFINE_list("versions", [], "Only these versions (default: all published).")


@dataclasses.dataclass(frozen=True)
class ReleaseFilters:
  models: tuple[str, ...]
  module_types: tuple[str, ...]
  versions: tuple[int, ...]


def parsed() -> ReleaseFilters:
  """The parsed filter flags. Usage errors (exporters.cli: one line, exit status 2): a
  non-numeric --versions, and a flag given with no value (`--models=`, which would
  otherwise mean every model), or with an empty item (`--versions=3,`)."""
  for flag in (_MODELS, _MODULE_TYPES, _VERSIONS):
    if flags.FLAGS[flag.name].present and (not flag.value or "" in flag.value):
      what = f"an empty item ({','.join(flag.value)})" if flag.value else "no value"
      raise app.UsageError(f"--{flag.name} has {what}; leave the flag out for all")
  try:
    versions = tuple(int(v) for v in _VERSIONS.value)
  except ValueError:
    raise app.UsageError(f"--versions must be numbers, not {','.join(_VERSIONS.value)}") from None
  return ReleaseFilters(tuple(_MODELS.value), tuple(_MODULE_TYPES.value), versions)
