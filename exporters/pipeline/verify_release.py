"""Verifies a release on disk (written here, or downloaded from a hub) against a checkpoint.

The same check a model run makes before it puts a release in place: the Slim
reference is constructed from the checkpoint (or its values of this checkpoint
read from the reference cache, exporters/network/reference_cache.py), the checkpoint is read whole
and matched to it, and the release's format verifier loads the files with
its client and compares them with the reference (exporters.verification's
rules). `python -m exporters.verify` is its command line.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import registry as registry_lib
from exporters.errors import ExportError


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
  model: str
  module_type: str
  version: int
  checkpoint_path: str
  export_dir: str


@dataclasses.dataclass(frozen=True)
class VerifyResult:
  release: registry_lib.Release
  report: dict
  max_abs_diff: float  # The largest output difference from the reference.

  @property
  def summary(self) -> str:
    from exporters import verification
    return (f"{self.release.handle_with_version}: verified: every output within "
            f"{self.max_abs_diff:.2g} of the Slim reference (tolerance {verification.TOLERANCE})")


def _largest_difference(report) -> float:
  """The largest of a verification report's output differences (nested, any key)."""
  found = []

  def walk(value, key=""):
    if isinstance(value, dict):
      for k, v in value.items():
        walk(v, k if "max_abs_diff" in k else key)
    elif isinstance(value, float) and "max_abs_diff" in key:
      found.append(value)
  walk(report)
  return max(found, default=0.0)


def verify_release(config: VerifyConfig, log: Callable[[str], None] = lambda _: None,
                   registry: registry_lib.Registry | None = None) -> VerifyResult:
  """Raises ExportError with one line naming what differs (or what could not be read)."""
  from exporters import formats
  from exporters.network import checkpoint_reader
  from exporters.network.reference_cache import CachedReference

  registry = registry or registry_lib.default()
  try:
    release = registry.release(config.model, config.module_type, config.version)
  except registry_lib.RegistryError as e:
    raise ExportError(str(e)) from None
  if not os.path.isdir(config.export_dir):
    raise ExportError(f"--export_dir {config.export_dir!r} is not a directory")
  contents = checkpoint_reader.read_all(config.checkpoint_path)
  # The reference's values of this checkpoint, computed once and kept between runs.
  reference = CachedReference(release.model, registry.publisher.num_classes,
                              config.checkpoint_path)
  prefix = f"{release.handle_with_version}: "
  try:
    checkpoint = checkpoint_reader.select(release.model.name, contents, reference.variables)
    del contents
    verify = formats.verifier_for(release.version.format)
    try:
      report = verify(release, config.export_dir, checkpoint, reference, log)
    except ExportError as e:
      text = str(e)
      raise ExportError(text if text.startswith(prefix)
                        else f"{prefix}verification failed: {text}") from None
    except Exception as e:  # What the client could not load at all is a failure too.
      first_line = (str(e).strip().splitlines() or [""])[0]
      raise ExportError(f"{prefix}verification failed: the client cannot load "
                        f"{config.export_dir!r}: {type(e).__name__}: {first_line}") from None
  finally:
    reference.close()
  return VerifyResult(release, report, _largest_difference(report))
