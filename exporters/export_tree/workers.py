"""Running model jobs: in worker processes within a memory budget, or in this process.

The parent's side; a worker process runs exporters/export_tree/worker.py.

A worker runs one model (`exporters.pipeline.export_model`, or the configured
exporter) and reports each release as soon as it is verified and in place,
one JSON line per release in its results file, so the parent stamps each
release at once: a run stopped midway keeps what was finished. Up to
`--jobs` models run at once (plan.choose_jobs), started while the running
ones' memory estimates fit the budget.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

from exporters import filesystem
from exporters.compat.tf_internals import TENSORFLOW_LOG_LINE
from exporters.export_tree import plan as plan_lib, stamps
from exporters.export_tree.plan import ExportAllConfig, ModelJob, ReleaseJob

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
_interrupted = threading.Event()  # Set by interrupt_on_signal; the run loop checks it too.


@dataclasses.dataclass(frozen=True)
class ReleaseReport:
  """What a model run said of one release."""
  seconds: float
  result: dict | None  # The export's JSON-safe summary; None when it failed.
  error: str
  peak_rss_mb: int | None


ReleaseDone = Callable[[ReleaseJob, ReleaseReport], None]


def interrupt_on_signal(signum, frame):
  """SIGTERM handler for export_all: stop like Ctrl-C (the flag survives a swallowed raise)."""
  _interrupted.set()
  raise KeyboardInterrupt(f"signal {signum}")


def clear_interrupt() -> None:
  _interrupted.clear()


def load_exporter(spec: str) -> Callable:
  module, _, name = spec.partition(":")
  return getattr(importlib.import_module(module), name)


def _model_config(job: ModelJob):
  from exporters import pipeline
  return pipeline.ModelExportConfig(
      model=job.model, checkpoint_path=os.path.abspath(job.checkpoint), overwrite=True,
      targets=tuple(pipeline.ReleaseTarget(j.release.module_type, j.release.version.number,
                                           os.path.abspath(j.export_dir))
                    for j in job.releases))


def _peak_rss_mb() -> int | None:
  try:
    import resource
  except ImportError:
    return None
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _summary(outcome) -> dict:
  """The JSON-safe summary of a pipeline.ReleaseOutcome that the stamp keeps."""
  result = outcome.result
  return stamps.jsonable({
      "unused_variables": sorted(getattr(result, "unused_variables", ()) or ()),
      "verification": getattr(result, "verification", None),
      "phase_seconds": getattr(result, "seconds", None),
  })


def report(outcome) -> ReleaseReport:
  if outcome.error:
    return ReleaseReport(outcome.seconds, None, outcome.error, _peak_rss_mb())
  return ReleaseReport(outcome.seconds, _summary(outcome), "", _peak_rss_mb())


def run_in_process(jobs: list[ModelJob], config: ExportAllConfig, progress,
                   done: ReleaseDone) -> None:
  from exporters import pipeline
  from exporters.errors import ExportError
  exporter = load_exporter(config.exporter)
  for job in jobs:
    progress.started(job)
    config_ = _model_config(job)
    by_target = dict(zip(config_.targets, job.releases))
    reported = set()

    def on_done(outcome):
      reported.add(outcome.target)
      done(by_target[outcome.target], report(outcome))

    start = time.monotonic()
    try:
      exporter(config_, log=lambda m: progress.say(f"    {m}"), on_done=on_done)
    except Exception as e:  # The model's failure fails its unreported releases.
      error = pipeline.error_text(e) if not isinstance(e, ExportError) else str(e)
      for target, release_job in by_target.items():
        if target not in reported:
          done(release_job, ReleaseReport(time.monotonic() - start, None, error, None))
    progress.finished(job)


class _Worker:
  """A running model job: its process, results file and how much of it was read."""

  def __init__(self, job: ModelJob, config: ExportAllConfig, work: str):
    self.job = job
    self.start = time.monotonic()
    base = pathlib.Path(work) / job.model
    self.results_file = base.with_suffix(".results.jsonl")
    self.log_file = base.with_suffix(".log")
    self.reported: set[int] = set()
    self._offset = 0
    self._log_offset = 0
    spec = {"exporter": config.exporter, "model": job.model,
            "checkpoint": str(job.checkpoint),
            "targets": [[j.release.module_type, j.release.version.number, str(j.export_dir)]
                        for j in job.releases],
            "results_file": str(self.results_file), "parent_pid": os.getpid()}
    with open(self.log_file, "wb") as log:
      self.proc = subprocess.Popen(
          [sys.executable, "-m", "exporters.export_tree.worker", json.dumps(spec)],
          stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)

  def new_reports(self) -> list[tuple[ReleaseJob, ReleaseReport]]:
    """The releases reported since the last call (complete lines only)."""
    try:
      with open(self.results_file, "rb") as f:
        f.seek(self._offset)
        data = f.read()
    except FileNotFoundError:
      return []
    complete = data[:data.rfind(b"\n") + 1]
    self._offset += len(complete)
    reports = []
    for line in complete.splitlines():
      entry = json.loads(line)
      index = entry["index"]
      self.reported.add(index)
      reports.append((self.job.releases[index], ReleaseReport(
          entry["seconds"], entry.get("result"), entry.get("error", ""),
          entry.get("peak_rss_mb"))))
    return reports

  def new_log_lines(self) -> list[str]:
    """What the model run said since the last call (complete lines; TensorFlow's own log
    lines stay in the worker's log, whose tail is shown if it fails)."""
    with open(self.log_file, "rb") as f:
      f.seek(self._log_offset)
      data = f.read()
    complete = data[:data.rfind(b"\n") + 1]
    self._log_offset += len(complete)
    return [line for line in complete.decode(errors="replace").splitlines()
            if not TENSORFLOW_LOG_LINE.match(line)]

  def unreported(self) -> list[tuple[ReleaseJob, ReleaseReport]]:
    """After the process ended: its releases that it never reported, failed with its reason."""
    missing = [j for i, j in enumerate(self.job.releases) if i not in self.reported]
    if not missing:
      return []
    tail = self.log_file.read_text(errors="replace").strip().splitlines()[-15:]
    model_error = next((line.removeprefix("model error: ") for line in reversed(tail)
                        if line.startswith("model error: ")), None)
    if model_error is None:
      code = self.proc.returncode
      reason = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
      model_error = (f"the export process ended ({reason}) without a result; its last "
                     f"output:\n      " + "\n      ".join(tail))
    seconds = time.monotonic() - self.start
    return [(j, ReleaseReport(seconds, None, model_error, None)) for j in missing]


def run_in_workers(jobs: list[ModelJob], config: ExportAllConfig, progress,
                   done: ReleaseDone) -> None:
  """One fresh process per model, up to `config.jobs` at once, started while the
  estimated memory in use fits the budget."""
  budget = config.memory_budget_gb or plan_lib.default_memory_budget_gb()
  pending = list(jobs)
  running: list[_Worker] = []
  # The workers' results and logs lie in the tree, under a temporary prefix: what a
  # killed run leaves there, the next run removes under the lock.
  with tempfile.TemporaryDirectory(prefix=f"{filesystem.TEMP_PREFIX}export_all-",
                                   dir=config.export_dir) as work:
    try:
      while pending or running:
        if _interrupted.is_set():
          raise KeyboardInterrupt("interrupted")
        in_use = sum(w.job.memory_gb for w in running)
        while pending and len(running) < config.jobs:
          job = next((j for j in pending if in_use + j.memory_gb <= budget), None)
          if job is None and not running:
            job = pending[0]
            progress.say(f"{job.model}: its estimated {job.memory_gb:.3g} GB exceed the "
                         f"--memory_budget_gb of {budget:g}; running it alone")
          if job is None:
            break
          pending.remove(job)
          in_use += job.memory_gb
          running.append(_Worker(job, config, work))
          progress.started(job)
        time.sleep(0.2)
        for worker in list(running):
          ended = worker.proc.poll() is not None
          for line in worker.new_log_lines():
            progress.say(f"    {line}")
          for release_job, release_report in worker.new_reports():
            done(release_job, release_report)
          if ended:
            for release_job, release_report in worker.unreported():
              done(release_job, release_report)
            running.remove(worker)
            progress.finished(worker.job)
    except BaseException:
      for worker in running:
        worker.proc.terminate()  # Workers die at once; run() then removes their temporary dirs.
      for worker in running:
        try:
          worker.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
          worker.proc.kill()
          worker.proc.wait()
      raise
