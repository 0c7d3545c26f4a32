"""Format writers: how a model's releases of one format are constructed, written and verified.

A writer is constructed once per model for all of that model's releases in
its format (`FormatConstructions`): it builds the network once per mode and
derives every release (module type, version) from those constructions. The
model run (exporters.pipeline) then asks it to write each release into a
temporary directory and to verify it, after reloading it with its client,
against the Slim reference.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Protocol

from registry import Release

Log = Callable[[str], None]


class FormatConstructions(Protocol):
  """One model's network, constructed for one format; every release derived from it."""

  format: str

  def write(self, release: Release, export_dir: str, log: Log) -> None:
    """Writes `release` into the empty directory `export_dir`."""

  def verify(self, release: Release, export_dir: str, reference, log: Log) -> dict:
    """Loads `export_dir` with its client, checks it against `reference`; returns a report."""

  def close(self) -> None:
    """Frees the constructions (sessions, variables) before the next family is built."""


class FormatWriter(Protocol):
  def __call__(self, releases: list[Release], checkpoint, log: Log) -> FormatConstructions:
    """Constructs the network for `releases` (one model, this format) from the checkpoint."""


def writer_for(fmt: str) -> FormatWriter:
  """The registry's format name -> its writer."""
  if fmt == "hub":
    from exporters.formats.hub_module import HubModuleConstructions
    return HubModuleConstructions
  if fmt == "saved_model_2":
    from exporters.formats.saved_model_2 import SavedModel2Constructions
    return SavedModel2Constructions
  raise ValueError(f"no writer for format {fmt!r}")


def non_finite_values(what: str, values: Mapping[str, object] | Iterable[tuple[str, object]]) -> str:
  """"" when every value is finite, else a line naming which are not (NaN / Inf).

  Verification checks this before any bitwise or tolerance comparison, so a
  NaN is reported as a NaN rather than as a difference (NaN != NaN).
  """
  from checkpoints.integrity import non_finite

  items = values.items() if isinstance(values, Mapping) else values
  bad = [(name, kind) for name, value in items if (kind := non_finite(value))]
  if not bad:
    return ""
  listed = ", ".join(f"{kind} in {name}" for name, kind in bad[:5])
  more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
  return f"non-finite values in {what}: {listed}{more}"
