"""Exports every published release from the released checkpoints, skipping what is up to date.

A run goes through these steps, so that bad input stops it before any work:

  1. plan: the registry's releases, filtered by model, module type and version
     (exporters.export_tree.plan; an unknown name fails with the valid choices);
  2. cards: rendered and validated by exporters.cards (written at the end);
  3. lock `<export_dir>` against a concurrent run (exporters.export_tree.lock);
  4. checkpoints, under the lock: each planned model's
     `<checkpoint_dir>/<model>/model.ckpt`, fetched with checkpoints.fetch_lib
     when absent; if any cannot be had, the run stops here with how to provide
     them (--mirror, or placing the files), leaving no folder it made; then
     remove the temporary directories an interrupted run left behind;
  5. skip each release whose stamp matches (exporters.export_tree.stamps),
     group the others by model and run one model job per model
     (exporters.pipeline.export_model: one checkpoint read, one construction
     per mode and format family, every release derived from it), in worker
     processes, up to --jobs at once (by default as many as the machine's
     cores and memory allow: plan.choose_jobs) within the memory budget
     (exporters.export_tree.workers);
     stamp each release as soon as it is verified and in place;
  6. convert the deployments ([deployments] in the registry) of the planned
     releases whose parents are in place (exporters.export_tree.deployments;
     each kind's converter environment is checked before step 5);
  7. write the cards and return one row per release and deployment for the
     final table.

A release's bytes do not depend on the plan (which releases, in which order,
with which --jobs): the format writers write canonical content
(exporters.formats.canonical), so one model run can write all of a model's
releases.
"""
from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import time
from typing import Callable

import registry as registry_lib
from exporters.errors import ExportError
from exporters.export_tree import deployments as deployments_lib
from exporters.export_tree import events as events_lib
from exporters.export_tree import layout, lock, plan as plan_lib, stamps, workers
from exporters.export_tree.plan import ExportAllConfig, ReleaseJob
from exporters.export_tree.progress import Progress, format_seconds


@dataclasses.dataclass
class Row:
  """One line of the final table."""
  handle: str
  version: int
  format: str
  status: str  # "exported", "up to date" or "failed".
  size: int | None = None
  seconds: float | None = None
  verified: bool = False
  error: str = ""
  model: str = ""
  checkpoint_provenance: str = ""
  verification: dict | None = None  # A deployment's check in its client (its stamp's record).


@dataclasses.dataclass
class ExportAllResult:
  rows: list[Row]
  seconds: float
  cards_written: int

  @property
  def exported(self) -> list[Row]:
    return [r for r in self.rows if r.status == "exported"]

  @property
  def failed(self) -> list[Row]:
    return [r for r in self.rows if r.status == "failed"]


def render_cards(config: ExportAllConfig, reg: registry_lib.Registry,
                 planned: list) -> dict[pathlib.Path, str]:
  """Card file in the export tree -> its text, every card validated by docs_lib."""
  from exporters.cards import card_validator, docs_lib
  docs_config = docs_lib.DocsConfig(output_dir=pathlib.Path(config.export_dir),
                                    models=config.models, module_types=config.module_types,
                                    versions=config.versions)
  try:
    texts = docs_lib.render_cards(docs_config, reg)
  except card_validator.CardError as e:
    raise ExportError(f"{e}:\n  " + "\n  ".join(getattr(e, "problems", ()) or ())) from None
  except registry_lib.RegistryError as e:
    raise ExportError(f"cannot render the cards: {e}") from None
  cards = {layout.card_path(config.export_dir, r): texts[str(docs_lib.card_path(r))]
           for r in planned}
  planned_keys = {(r.model.name, r.module_type, r.version.number) for r in planned}
  for d in reg.deployments(models=config.models, module_types=config.module_types,
                           versions=config.versions):
    if config.converts(d.kind) and (
        d.parent.model.name, d.parent.module_type, d.parent.version.number) in planned_keys:
      cards[layout.deployment_card_path(config.export_dir, d)] = texts[
          str(docs_lib.deployment_card_path(d))]
  return cards


# ---- The run.

def run(config: ExportAllConfig, log: Callable[[str], None] = print,
        reg: registry_lib.Registry | None = None) -> ExportAllResult:
  """Exports what is out of date, writes stamps and cards; raises ExportError if any failed.

  The error is raised after every export was tried; `ExportError.result`
  then holds the rows for the table. With `config.events_file`, the progress
  is also written there as typed records (exporters.export_tree.events).
  """
  if config.events_file is None:
    return _run(config, log, reg, events_lib.no_events)
  with events_lib.EventsFile(config.events_file) as events:
    return _run(config, log, reg, events)


def _run(config: ExportAllConfig, log: Callable[[str], None], reg: registry_lib.Registry | None,
         events: events_lib.EventSink) -> ExportAllResult:
  if config.jobs is not None and config.jobs < 1:
    raise ExportError(f"--jobs must be at least 1, not {config.jobs}")
  workers.clear_interrupt()
  reg = reg or registry_lib.default()
  planned = plan_lib.releases(config, reg)
  cards = render_cards(config, reg, planned)
  export_dir = pathlib.Path(config.export_dir)
  progress = Progress(log, config.heartbeat_s)
  rows: dict[int, Row] = {}
  fingerprint = stamps.code_fingerprint()
  with lock.locked(export_dir), _removing_temporaries_on_error(export_dir, reg):
    # Fetched under the tree's lock: a second run waits for none of this run's downloads.
    prefixes = plan_lib.provide_checkpoints(sorted({r.model.name for r in planned},
                                                   key=list(reg.models).index), config, log)
    stale = layout.remove_stale_temporaries(export_dir, reg)
    if stale:
      log(f"removed {len(stale)} temporary file(s) left by an interrupted run")
    jobs = plan_lib.plan(config, reg, planned, prefixes)
    model_jobs = plan_lib.model_jobs(config, jobs)
    deployment_jobs = deployments_lib.plan(config, reg, jobs)
    deployments_lib.check_converter(config, deployment_jobs)
    todo = [j for j in jobs if not j.up_to_date]
    conversions = [d for d in deployment_jobs if not d.up_to_date]
    if todo:  # The first progress line: the work, and how many model runs go at once.
      choice = plan_lib.choose_jobs(config, model_jobs)
      config = dataclasses.replace(config, jobs=choice.jobs,
                                   memory_budget_gb=choice.memory_budget_gb)
      log(f"{len(todo)} of {len(jobs)} export(s) to do in {len(model_jobs)} model run(s)"
          + _jobs_text(config, choice, len(model_jobs)))
      events(events_lib.Planned(to_do=len(todo), releases=len(jobs),
                                model_runs=len(model_jobs), jobs=config.jobs))
    for job in [*jobs, *deployment_jobs]:
      if job.up_to_date:
        if todo or conversions:  # Nothing to do is said in one line at the end.
          progress.skipped(job)
        if isinstance(job, ReleaseJob):
          _record_provenance(job, log)
          rows[job.index] = _row(job, "up to date", verified=True,
                                 size=layout.directory_size(job.export_dir))
        else:
          rows[job.index] = _deployment_row(
              job, "up to date", verification=job.stamp.export.get("verification"))

    def done(job: ReleaseJob, report: workers.ReleaseReport) -> None:
      error = report.error
      if not error:
        try:
          stamps.write_stamp(job.stamp_file, stamps.Stamp(
              key=job.stamp_key, inputs=job.stamp_inputs, handle=job.release.handle,
              version=job.release.version.number, export_format=job.release.version.format,
              checkpoint_path=str(job.checkpoint), code_version=stamps.code_version(fingerprint),
              seconds=round(report.seconds, 3), peak_rss_mb=report.peak_rss_mb,
              export=report.result, checkpoint_provenance=job.checkpoint_provenance))
        except OSError as e:
          error = f"exported, but its stamp could not be written: {_error_text(e)}"
      progress.release_done(job, report.seconds, error)
      if error:
        rows[job.index] = _row(job, "failed", seconds=report.seconds, error=error)
      else:
        rows[job.index] = _row(job, "exported", seconds=report.seconds, verified=True,
                               size=layout.directory_size(job.export_dir))
      events(_done_event(rows[job.index], progress))

    if todo:
      with progress:
        if config.in_process:
          workers.run_in_process(model_jobs, config, progress, done)
        else:
          workers.run_in_workers(model_jobs, config, progress, done)
    if conversions:
      if not todo:
        log(f"{len(conversions)} of {len(deployment_jobs)} deployment(s) to convert")
      for job in conversions:
        converted = deployments_lib.convert(
            job, rows[job.parent.index].status != "failed", config, progress.say)
        progress.say(f"{job.label}: "
                     f"{deployments_lib.outcome_text(job.deployment.kind, converted)} … elapsed "
                     f"{progress.elapsed()}")
        rows[job.index] = _deployment_row(job, "failed" if converted.error else "exported",
                                          seconds=converted.seconds, error=converted.error,
                                          verification=converted.verification)
        events(_done_event(rows[job.index], progress))
    todo = todo + conversions
    jobs = [*jobs, *deployment_jobs]
    cards_written = 0
    failed_cards = {job.card_file for job in jobs if rows[job.index].status == "failed"}
    for path, text in cards.items():
      if path in failed_cards:
        continue  # A card describes an export; a failed one has none (or keeps the old).
      data = text.encode("utf-8")
      if not path.is_file() or path.read_bytes() != data:
        layout.write_atomically(path, data)
        cards_written += 1
  result = ExportAllResult(rows=[rows[j.index] for j in jobs],
                           seconds=time.monotonic() - progress.t0, cards_written=cards_written)
  events(events_lib.Finished(exported=len(result.exported), failed=len(result.failed),
                             up_to_date=len(jobs) - len(todo),
                             elapsed_seconds=round(result.seconds, 3)))
  if not todo:
    up_to_date = f"all {len(jobs) - len(deployment_jobs)} release(s)" + (
        f" and {len(deployment_jobs)} deployment(s)" if deployment_jobs else "")
    log(f"{up_to_date} up to date; no export work done"
        + (f"; {cards_written} card(s) rewritten" if cards_written else ""))
  else:
    log(f"{len(result.exported)} exported, {len(jobs) - len(todo)} up to date, "
        f"{len(result.failed)} failed; {cards_written} card(s) written; "
        f"elapsed {format_seconds(result.seconds)}")
  if result.failed:
    error = ExportError(f"{len(result.failed)} of {len(todo)} export(s) failed: " + "; ".join(
        f"{r.handle}/{r.version}" for r in result.failed))
    error.result = result
    raise error
  return result


def _done_event(row: Row, progress: Progress) -> events_lib.Done:
  return events_lib.Done(handle=row.handle, version=row.version, format=row.format,
                         status=row.status, seconds=round(row.seconds or 0.0, 3),
                         elapsed_seconds=round(time.monotonic() - progress.t0, 3),
                         error=row.error)


def _jobs_text(config: ExportAllConfig, choice: plan_lib.JobsChoice, model_runs: int) -> str:
  """How many model runs go at once: the choice and its reasons when --jobs was not given."""
  if config.in_process:
    return ""  # One after another in this process.
  if choice.chosen:
    return ", " + choice.describe()
  return f", up to {choice.jobs} at a time" if choice.jobs > 1 and model_runs > 1 else ""


def _error_text(e: BaseException) -> str:
  from exporters.pipeline.model_export import error_text
  return error_text(e)


@contextlib.contextmanager
def _removing_temporaries_on_error(export_dir: pathlib.Path, reg: registry_lib.Registry):
  """After an interruption (the workers are stopped by then), removes what they left."""
  try:
    yield
  except BaseException:
    layout.remove_stale_temporaries(export_dir, reg)
    raise


def _record_provenance(job: ReleaseJob, log: Callable[[str], None]) -> None:
  """An up-to-date release's stamp is made to state its checkpoint's provenance as it is now.

  Not a reason to export again (the bytes would be the same): see stamps.
  """
  if job.stamp is None or job.stamp.checkpoint_provenance == job.checkpoint_provenance:
    return
  try:
    stamps.write_stamp(job.stamp_file, dataclasses.replace(
        job.stamp, checkpoint_provenance=job.checkpoint_provenance))
  except OSError as e:
    log(f"{job.label}: could not record its checkpoint's provenance in {job.stamp_file}: "
        f"{_error_text(e)}")


def _deployment_row(job: deployments_lib.DeploymentJob, status: str, **fields) -> Row:
  parent = job.parent
  size = layout.directory_size(job.output_dir) if status != "failed" else None
  return Row(handle=job.deployment.handle_dir, version=job.deployment.version,
             format=job.deployment.kind, status=status, size=size,
             verified=status != "failed", model=parent.release.model.name,
             checkpoint_provenance=parent.checkpoint_provenance, **fields)


def _row(job: ReleaseJob, status: str, **fields) -> Row:
  release = job.release
  return Row(handle=release.handle, version=release.version.number,
             format=release.version.format, status=status, model=release.model.name,
             checkpoint_provenance=job.checkpoint_provenance, **fields)


def format_table(rows: list[Row]) -> str:
  """handle | version | format | size | seconds | verified, one line per release."""
  header = ("handle", "version", "format", "size", "seconds", "verified")
  lines = [header]
  for r in rows:
    verified = {"exported": "yes", "up to date": "yes (up to date)"}.get(r.status, "FAILED")
    if r.format in registry_lib.DEPLOYMENT_KINDS and r.status != "failed":
      verified = deployments_lib.table_text(r.format, r.status, r.verification)
    lines.append((r.handle, str(r.version), r.format,
                  _size(r.size) if r.size is not None else "-",
                  f"{r.seconds:.1f}" if r.seconds is not None and r.status != "up to date"
                  else "-", verified))
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
  text.insert(1, "  ".join("-" * w for w in widths))
  text += provenance_lines(rows)
  for r in rows:
    if r.error:
      text.append(f"{r.handle}/{r.version}: {r.error}")
  return "\n".join(text)


def provenance_lines(rows: list[Row], only_unverified: bool = False) -> list[str]:
  """Per model: where its checkpoint comes from (the pinned archive's hash shortened).

  An unverified checkpoint is said so plainly, so that nobody publishes its
  exports by accident.
  """
  from checkpoints import fetch_lib
  pinned = fetch_lib.PINNED.format(sha256="")
  by_model = {r.model: r.checkpoint_provenance for r in rows if r.model}
  lines = []
  for model, provenance in by_model.items():
    if provenance.startswith(pinned):
      if only_unverified:
        continue
      digest = provenance[len(pinned):]
      text = pinned + (digest[:12] + "…" if len(digest) > 12 else digest)
    else:
      text = (f"{provenance}: never matched against a pinned release archive; check it "
              f"before publishing")
    lines.append(f"checkpoint of {model}: {text}")
  return lines


def _size(n: int) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if n < 1024 or unit == "GiB":
      return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024
  return str(n)
