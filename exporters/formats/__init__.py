"""Format writers: how a model's releases of one format are constructed, written and verified.

A writer is constructed once per model for all of that model's releases in
its format (`FormatConstructions`): it builds the network once per mode and
derives every release (module type, version) from those constructions. The
model run (exporters.pipeline) then asks it to write each release into a
temporary directory and to verify it, after reloading it with its client,
against the Slim reference.
"""
from __future__ import annotations

from typing import Callable, Protocol

from registry import SAVED_MODEL_2_FORMAT, TF1_HUB_FORMAT, Release

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
  if fmt == TF1_HUB_FORMAT:
    from exporters.formats.hub_module import HubModuleConstructions
    return HubModuleConstructions
  if fmt == SAVED_MODEL_2_FORMAT:
    from exporters.formats.saved_model_2 import SavedModel2Constructions
    return SavedModel2Constructions
  raise ValueError(f"no writer for format {fmt!r}")


def verifier_for(fmt: str) -> Callable[..., dict]:
  """The registry's format name -> its verify(release, export_dir, checkpoint, reference, log)."""
  if fmt == TF1_HUB_FORMAT:
    from exporters.formats.hub_module import verify
    return verify
  if fmt == SAVED_MODEL_2_FORMAT:
    from exporters.formats.saved_model_2 import verify
    return verify
  raise ValueError(f"no verifier for format {fmt!r}")
