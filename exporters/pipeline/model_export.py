"""Exports a model: every requested release from one checkpoint read and one construction per mode.

The model is the unit of work. One run
  1. reads the checkpoint once, every tensor whole, checksummed and checked
     finite (checkpoints.integrity), and matches it with the graph's variable
     list kept on disk (checkpoints.variable_list), before constructing
     anything;
  2. constructs the verification reference's inference graph, which also
     lists the variables the network has (exporters.network.reference), and
     keeps exactly those variables' values, strictly matched;
  3. per format family in the plan, lets the format writer construct the
     network once per mode (exporters.formats) and derives each release from
     it: writes it into a temporary directory beside its destination, loads
     it with its client and verifies it against the reference, and only then
     renames it into place (an old export is replaced whole);
  4. reports each release as it is done (`on_done`), so that export_all can
     stamp it at once.
One release's failure does not stop the others; a problem with the model
(checkpoint, destination) stops the run before any work.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import time
from typing import Callable

import registry as registry_lib
from checkpoints import matching
from exporters import filesystem, formats
from exporters.errors import ExportError
from exporters.network import checkpoint_reader

Log = Callable[[str], None]
EXPORT_DIR = "--export_dir"  # What a release's destination is called in messages.


@dataclasses.dataclass(frozen=True)
class ReleaseTarget:
  """One release to export and where it goes."""
  module_type: str
  version: int
  export_dir: str


@dataclasses.dataclass(frozen=True)
class ModelExportConfig:
  model: str
  checkpoint_path: str
  targets: tuple[ReleaseTarget, ...]
  overwrite: bool = False


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """One release (the `exporters.export` CLI)."""
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


@dataclasses.dataclass
class ReleaseOutcome:
  """What became of one target: a result, or the error that stopped it."""
  release: registry_lib.Release
  target: ReleaseTarget
  seconds: float
  result: ExportResult | None = None
  error: str = ""


def _check_destination(export_dir: str, overwrite: bool, created: list[str]) -> None:
  """Creates export_dir's missing parents (appended to `created`) and proves them writable."""
  if os.path.exists(export_dir):
    if not os.path.isdir(export_dir):
      raise ExportError(f"--export_dir {export_dir!r} exists and is not a directory")
    if os.listdir(export_dir) and not overwrite:
      raise ExportError(f"--export_dir {export_dir!r} exists and is not empty; "
                        f"pass --overwrite to replace it")
  created += filesystem.make_parents(export_dir, EXPORT_DIR, ExportError)
  # A real write, not os.access: root passes os.access where nothing can be made (/proc).
  os.rmdir(filesystem.temporary_dir(export_dir, EXPORT_DIR, ExportError))


def error_text(e: BaseException) -> str:
  import errno
  text = str(e) or type(e).__name__
  if isinstance(e, OSError) and e.errno == errno.ENOSPC:
    text = f"no space left on the device ({text})"
  return text if isinstance(e, ExportError) else f"{type(e).__name__}: {text}"


def export_model(config: ModelExportConfig, log: Log = print,
                 registry: registry_lib.Registry | None = None,
                 on_done: Callable[[ReleaseOutcome], None] | None = None
                 ) -> list[ReleaseOutcome]:
  """Exports and verifies every target of one model; see the module docstring.

  Raises ExportError for what stops the whole model (unknown release, bad
  destination, unreadable or mismatched checkpoint); per-release failures are
  in the returned outcomes.
  """
  registry = registry or registry_lib.default()
  try:
    releases = [registry.release(config.model, t.module_type, t.version) for t in config.targets]
  except registry_lib.RegistryError as e:
    raise ExportError(str(e)) from None
  created: list[str] = []
  try:
    for target in config.targets:
      _check_destination(target.export_dir, config.overwrite, created)
    return _export_model(config, releases, registry, log, on_done)
  finally:
    filesystem.remove_created(created)  # A failed export leaves none of the folders it made.


def _export_model(config: ModelExportConfig, releases, registry: registry_lib.Registry, log: Log,
                  on_done) -> list[ReleaseOutcome]:
  model = releases[0].model
  model_seconds = {}

  # The full read needs no graph: a damaged checkpoint is refused before any construction.
  start = time.monotonic()
  contents = checkpoint_reader.read_all(config.checkpoint_path)
  model_seconds["read_checkpoint"] = time.monotonic() - start
  # Another model's checkpoint is refused before any graph is built: the graph's variables
  # are listed on disk (checkpoints.variable_list); the reference's are matched again below.
  checkpoint_reader.select(model.name, contents, matching.expected_variables(model.name))
  # Imported here (it imports TensorFlow), so that a wrong release or destination is
  # reported at once and export_all's workers start light.
  from exporters.network.reference import SlimReference
  start = time.monotonic()
  reference = SlimReference(model, registry.publisher.num_classes, config.checkpoint_path)
  model_seconds["reference"] = time.monotonic() - start
  outcomes = []
  try:
    checkpoint = checkpoint_reader.select(model.name, contents, reference.variables)
    del contents  # The unused tensors (aux head) need not stay in memory.
    if checkpoint.unused:
      log(f"{model.name}: leaving out {len(checkpoint.unused)} unused checkpoint variable(s) "
          f"(auxiliary head, global_step)")
    planned = list(zip(releases, config.targets))
    for fmt in dict.fromkeys(r.version.format for r in releases):  # Registry order.
      family = [(r, t) for r, t in planned if r.version.format == fmt]
      outcomes += _export_family(family, checkpoint, reference, model_seconds, log, on_done)
      gc.collect()  # Frees this family's graphs before the next one is constructed.
  finally:
    reference.close()
  return outcomes


def _export_family(family, checkpoint, reference, model_seconds: dict, log: Log,
                   on_done) -> list[ReleaseOutcome]:
  releases = [r for r, _ in family]
  fmt = releases[0].version.format
  start = time.monotonic()
  try:
    constructions = formats.writer_for(fmt)(releases, checkpoint, log)
  except Exception as e:  # Every release of the family fails with the same reason.
    error = error_text(e)
    constructions = None
  model_seconds[f"construct_{fmt}"] = construct_seconds = time.monotonic() - start
  outcomes = []
  for release, target in family:
    start = time.monotonic()
    if constructions is None:
      outcome = ReleaseOutcome(release, target, construct_seconds, error=error)
    else:
      try:
        result = _export_release(constructions, release, target, checkpoint, reference, log)
        result.seconds = dict(model_seconds, **result.seconds)
        outcome = ReleaseOutcome(release, target, time.monotonic() - start, result=result)
      except Exception as e:  # Reported; the model's other releases still run.
        outcome = ReleaseOutcome(release, target, time.monotonic() - start,
                                 error=error_text(e))
    outcomes.append(outcome)
    if on_done:
      on_done(outcome)
  if constructions is not None:
    constructions.close()
  return outcomes


def _export_release(constructions, release, target: ReleaseTarget, checkpoint, reference,
                    log: Log) -> ExportResult:
  seconds = {}
  with filesystem.replacing(target.export_dir, EXPORT_DIR, ExportError) as tmp_dir:
    start = time.monotonic()
    constructions.write(release, tmp_dir, log)
    seconds["write"] = time.monotonic() - start
    start = time.monotonic()
    verification = constructions.verify(release, tmp_dir, reference, log)
    seconds["verify"] = time.monotonic() - start
  log(f"{release.handle_with_version}: verified and written to {target.export_dir}")
  return ExportResult(release.handle, release.version.number, release.version.format,
                      target.export_dir, checkpoint.unused, verification, seconds)


def export(config: ExportConfig, log: Log = print,
           registry: registry_lib.Registry | None = None) -> ExportResult:
  """Writes and verifies one release; raises ExportError with an actionable message."""
  target = ReleaseTarget(config.module_type, config.version, config.export_dir)
  [outcome] = export_model(ModelExportConfig(config.model, config.checkpoint_path, (target,),
                                             config.overwrite), log, registry)
  if outcome.error:
    raise ExportError(outcome.error)
  return outcome.result
