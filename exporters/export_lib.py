"""Exports one published (model, module type, version) from a released checkpoint.

The steps are the same for both formats: look the release up in the
registry, read the checkpoint strictly, let the format's writer write into a
temporary directory beside `export_dir`, let it verify the written model
with its real client against the Slim graph, and only then rename the
directory into place. Any failure leaves `export_dir` as it was.

Format writers live in one module per format (`FORMAT_WRITERS`) and provide
`write(release, checkpoint, export_dir, log)` and
`verify(release, export_dir, checkpoint, reference, log) -> dict`.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import tempfile
import time
from typing import Callable

import registry as registry_lib
from exporters import checkpoint_reader
from exporters.errors import ExportError

FORMAT_WRITERS = {
    "hub": "exporters.hub_module",
    "saved_model_2": "exporters.saved_model_2",
}


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  model: str
  module_type: str
  version: int
  checkpoint_path: str
  export_dir: str
  overwrite: bool = False


@dataclasses.dataclass
class ExportResult:
  handle: str
  version: int
  format: str
  export_dir: str
  unused_variables: tuple[str, ...]
  verification: dict
  seconds: dict = dataclasses.field(default_factory=dict)  # Per phase.


def _check_destination(export_dir: str, overwrite: bool) -> None:
  if os.path.exists(export_dir):
    if not os.path.isdir(export_dir):
      raise ExportError(f"--export_dir {export_dir!r} exists and is not a directory")
    if os.listdir(export_dir) and not overwrite:
      raise ExportError(f"--export_dir {export_dir!r} exists and is not empty; "
                        f"pass --overwrite to replace it")
  parent = os.path.dirname(os.path.abspath(export_dir))
  os.makedirs(parent, exist_ok=True)
  if not os.access(parent, os.W_OK):
    raise ExportError(f"cannot write into {parent!r} (parent of --export_dir)")


def _move_into_place(tmp_dir: str, export_dir: str) -> None:
  """Renames the verified export into place; an old export is replaced whole."""
  old = None
  if os.path.exists(export_dir):
    old = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(os.path.abspath(export_dir)))
    os.rename(export_dir, os.path.join(old, "export"))
  os.rename(tmp_dir, export_dir)
  if old:
    shutil.rmtree(old, ignore_errors=True)


def writer_for(fmt: str):
  return importlib.import_module(FORMAT_WRITERS[fmt])


def export(config: ExportConfig, log: Callable[[str], None] = print,
           registry: registry_lib.Registry | None = None) -> ExportResult:
  """Writes and verifies one export; raises ExportError with an actionable message."""
  registry = registry or registry_lib.default()
  try:
    release = registry.release(config.model, config.module_type, config.version)
  except registry_lib.RegistryError as e:
    raise ExportError(str(e)) from None
  _check_destination(config.export_dir, config.overwrite)
  checkpoint_reader.check_checkpoint_exists(config.checkpoint_path)
  writer = writer_for(release.version.format)
  seconds = {}

  start = time.monotonic()
  checkpoint = checkpoint_reader.read_checkpoint(release.model.name, config.checkpoint_path)
  seconds["read_checkpoint"] = time.monotonic() - start
  if checkpoint.unused:
    log(f"{release.handle_with_version}: leaving out {len(checkpoint.unused)} unused checkpoint "
        f"variable(s) (auxiliary head, global_step)")

  parent = os.path.dirname(os.path.abspath(config.export_dir))
  tmp_dir = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(config.export_dir)}-", dir=parent)
  # mkdtemp makes the directory private (0700); a published export is readable by all.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp_dir, 0o777 & ~umask)
  try:
    start = time.monotonic()
    writer.write(release, checkpoint, tmp_dir, log)
    seconds["write"] = time.monotonic() - start
    start = time.monotonic()
    from exporters.slim_graph import SlimReference
    reference = SlimReference(release.model, config.checkpoint_path)
    try:
      verification = writer.verify(release, tmp_dir, checkpoint, reference, log)
    finally:
      reference.close()
    seconds["verify"] = time.monotonic() - start
    _move_into_place(tmp_dir, config.export_dir)
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
  log(f"{release.handle_with_version}: verified and written to {config.export_dir}")
  return ExportResult(release.handle, release.version.number, release.version.format,
                      config.export_dir, checkpoint.unused, verification, seconds)
