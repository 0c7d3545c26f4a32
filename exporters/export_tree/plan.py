"""Planning a run: which releases, from which checkpoints, grouped into one job per model.

Bad input stops here, before any export work: an unknown filter value
names the valid choices, and checkpoints that cannot be had say how to
provide them.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from typing import Callable

import registry as registry_lib
from exporters.errors import ExportError
from exporters.export_tree import layout, stamps
from exporters.formats import tfjs as tfjs_format

DEFAULT_EXPORTER = "exporters.pipeline:export_model"
# A model run's memory: the largest peak its releases' stamps measured, times
# MEMORY_MARGIN; before any was measured, the registry's estimate (memory_gb).
MEMORY_MARGIN = 1.2
# The share of the memory available at the start that the model runs may use at
# once, when no --memory_budget_gb is given.
MEMORY_BUDGET_SHARE = 0.8


@dataclasses.dataclass(frozen=True)
class ExportAllConfig:
  checkpoint_dir: str = "checkpoints"
  export_dir: str = "exports"
  models: tuple[str, ...] = ()
  module_types: tuple[str, ...] = ()
  versions: tuple[int, ...] = ()
  jobs: int | None = None  # Model runs at once; None: choose_jobs decides from the machine.
  memory_budget_gb: float = 0.0  # 0: MEMORY_BUDGET_SHARE of the memory available at the start.
  mirror: str | None = None  # Checkpoint archive mirror; None: $CHECKPOINT_MIRROR.
  lock_file: str | None = None  # Pinned archive hashes; None: checkpoints.fetch_lib's default.
  force: bool = False  # Export again even what is up to date.
  heartbeat_s: float = 60.0
  exporter: str = DEFAULT_EXPORTER  # "module:function" with pipeline.export_model's signature.
  in_process: bool = False  # Tests and debugging: models run in this process, one after another.
  tfjs: bool = True  # Also the TF.js deployments ([deployments], kind tfjs) of the releases.
  tfjs_converter: str = tfjs_format.CONVERTER  # `tensorflowjs_converter` of `.venv-tfjs`.
  lite: bool = True  # Also the TFLite deployments ([deployments], kind lite) of the releases.
  events_file: str | None = None  # Also write the progress as typed records (events.py).

  def converts(self, kind: str) -> bool:
    """Whether the run makes the deployments of `kind` (registry.DEPLOYMENT_KINDS)."""
    return {"tfjs": self.tfjs, "lite": self.lite}[kind]


@dataclasses.dataclass
class ReleaseJob:
  """One planned release and what its stamp says about it."""
  index: int  # 1-based position in the plan.
  total: int
  release: registry_lib.Release
  checkpoint: pathlib.Path
  export_dir: pathlib.Path
  stamp_file: pathlib.Path
  card_file: pathlib.Path
  stamp_inputs: dict
  stamp_key: str
  up_to_date: bool
  checkpoint_provenance: str  # Now, from the lock file: see stamps' module docstring.
  stamp: stamps.Stamp | None = None  # The one on disk.

  @property
  def label(self) -> str:
    return f"[{self.index}/{self.total}] {self.release.handle_with_version}"


@dataclasses.dataclass
class ModelJob:
  """The unit of work: one model run exporting its out-of-date releases."""
  model: str
  checkpoint: pathlib.Path
  releases: list[ReleaseJob]
  memory_gb: float

  @property
  def label(self) -> str:
    formats = ", ".join(dict.fromkeys(j.release.version.format for j in self.releases))
    return f"{self.model} ({len(self.releases)} release(s): {formats})"


def releases(config: ExportAllConfig, reg: registry_lib.Registry) -> list[registry_lib.Release]:
  try:
    planned = list(reg.releases(models=config.models, module_types=config.module_types,
                                versions=config.versions))
  except registry_lib.RegistryError as e:
    raise ExportError(str(e)) from None
  if not planned:
    raise ExportError("no published release matches --models/--module_types/--versions "
                      f"({_filters(config)}); see registry/models.toml for what is published")
  return planned


def _filters(config: ExportAllConfig) -> str:
  return (f"models={','.join(config.models) or 'all'}, "
          f"module_types={','.join(config.module_types) or 'all'}, "
          f"versions={','.join(map(str, config.versions)) or 'all'}")


def provide_checkpoints(models: list[str], config: ExportAllConfig,
                        log: Callable[[str], None]) -> dict[str, pathlib.Path]:
  """model -> checkpoint prefix, fetching the absent ones; raises before any export work."""
  from checkpoints import fetch_lib
  from checkpoints.errors import CheckpointError
  prefixes, problems = {}, []
  for model in models:
    prefix = fetch_lib.checkpoint_prefix(model, config.checkpoint_dir)
    if fetch_lib.has_checkpoint(prefix):
      prefixes[model] = prefix  # The model run reads it strictly; no second graph check here.
      continue
    log(f"{model}: no checkpoint at {prefix}; fetching it")
    try:
      prefixes[model] = fetch_lib.ensure_checkpoint(
          model, config.checkpoint_dir, mirror=config.mirror, lock_file=lock_file(config),
          progress=fetch_lib.ProgressBar(sys.stderr))
    except CheckpointError as e:
      problems.append(f"{model}: {e}")
  if problems:
    raise ExportError(
        "cannot export without the released checkpoints; nothing was exported.\n  "
        + "\n  ".join(problems)
        + f"\nProvide them with --mirror=<folder or URL holding the archives> (or "
          f"$CHECKPOINT_MIRROR), or place model.ckpt.index and model.ckpt.data-* under "
          f"{pathlib.Path(config.checkpoint_dir)}/<model>/.")
  return prefixes


def lock_file(config: ExportAllConfig) -> str | pathlib.Path:
  from checkpoints import fetch_lib
  return config.lock_file or fetch_lib.DEFAULT_LOCK_FILE


def provenances(config: ExportAllConfig, prefixes: dict[str, pathlib.Path]) -> dict[str, str]:
  """model -> "pinned archive sha256 ..." or "unverified local checkpoint"."""
  from checkpoints import fetch_lib
  return {model: fetch_lib.checkpoint_provenance(model, prefix, lock_file(config))
          for model, prefix in prefixes.items()}


def plan(config: ExportAllConfig, reg: registry_lib.Registry, planned: list,
         prefixes: dict[str, pathlib.Path]) -> list[ReleaseJob]:
  """One ReleaseJob per planned release, in plan order, each told whether it is up to date."""
  from checkpoints import fetch_lib
  hashes = {model: fetch_lib.checkpoint_sha256(prefix) for model, prefix in prefixes.items()}
  provenance = provenances(config, prefixes)
  fingerprint = stamps.code_fingerprint()
  jobs = []
  for i, release in enumerate(planned, 1):
    inputs = stamps.stamp_inputs(release, hashes[release.model.name], config.exporter,
                                 fingerprint)
    key = stamps.stamp_key(inputs)
    export_dir = layout.export_path(config.export_dir, release)
    stamp = stamps.read_stamp(layout.stamp_path(config.export_dir, release))
    up_to_date = (not config.force and stamp is not None and stamp.key == key
                  and (export_dir / "saved_model.pb").is_file())
    jobs.append(ReleaseJob(index=i, total=len(planned), release=release,
                           checkpoint=prefixes[release.model.name], export_dir=export_dir,
                           stamp_file=layout.stamp_path(config.export_dir, release),
                           card_file=layout.card_path(config.export_dir, release),
                           stamp_inputs=inputs, stamp_key=key, up_to_date=up_to_date,
                           checkpoint_provenance=provenance[release.model.name], stamp=stamp))
  return jobs


def model_jobs(config: ExportAllConfig, release_jobs: list[ReleaseJob]) -> list[ModelJob]:
  """The out-of-date releases grouped by model (plan order), each with its memory estimate."""
  grouped: dict[str, list[ReleaseJob]] = {}
  for job in release_jobs:
    if not job.up_to_date:
      grouped.setdefault(job.release.model.name, []).append(job)
  return [ModelJob(model, jobs[0].checkpoint, jobs, memory_gb(config, jobs[0].release))
          for model, jobs in grouped.items()]


def memory_gb(config: ExportAllConfig, release: registry_lib.Release) -> float:
  """A model run's peak memory: measured by earlier runs (stamps), else the registry's
  estimate."""
  measured = []
  for other in release.registry.releases(models=[release.model.name]):
    stamp = stamps.read_stamp(layout.stamp_path(config.export_dir, other))
    if stamp is not None and stamp.peak_rss_mb:
      measured.append(stamp.peak_rss_mb)
  if measured:
    return MEMORY_MARGIN * max(measured) / 1024
  return release.model.memory_gb


# ---- How many model runs at once.

def usable_cores() -> int:
  """The CPU cores this process may run on (its affinity mask, which containers narrow)."""
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):  # Not Linux.
    return os.cpu_count() or 1


def available_memory_gb() -> float:
  """MemAvailable of /proc/meminfo: what can be allocated now without swapping, in GB."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        name, _, value = line.partition(":")
        if name == "MemAvailable":
          return int(value.split()[0]) * 1024 / 2**30  # In kB.
  except (OSError, ValueError, IndexError):
    pass
  try:  # Not Linux (psutil reads MemAvailable itself where there is one).
    import psutil
    return psutil.virtual_memory().available / 2**30
  except ImportError:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30


def default_memory_budget_gb() -> float:
  """--memory_budget_gb's default: MEMORY_BUDGET_SHARE of the memory available now."""
  return MEMORY_BUDGET_SHARE * available_memory_gb()


@dataclasses.dataclass(frozen=True)
class JobsChoice:
  """How many model runs go at once, within which memory budget, and why."""
  jobs: int
  memory_budget_gb: float
  chosen: bool  # False: --jobs was given.
  cores: int = 0
  fit: int = 0  # How many of the largest model runs' estimates fit in the budget together.
  available_gb: float | None = None  # Read when the budget is the default.

  def describe(self) -> str:
    """What the run's first progress line says of the choice, e.g. "--jobs=2 (2 core(s),
    21.3 GB available: budget 17.0 GB fits 2 of these model runs at once; pass --jobs to
    choose)"."""
    memory = (f"{self.available_gb:.1f} GB available: budget {self.memory_budget_gb:.1f} GB"
              if self.available_gb is not None
              else f"--memory_budget_gb={self.memory_budget_gb:g}")
    return (f"--jobs={self.jobs} ({self.cores} core(s), {memory} fits {self.fit} of these "
            f"model runs at once; pass --jobs to choose)")


def choose_jobs(config: ExportAllConfig, model_jobs: list[ModelJob]) -> JobsChoice:
  """config.jobs if given; else as many model runs at once as the usable cores, the
  model runs to do and the memory budget allow (the largest estimates counted, so that
  any that many of them fit together), at least 1. The budget is --memory_budget_gb, else
  MEMORY_BUDGET_SHARE of the memory available now (read once, here)."""
  available = None if config.memory_budget_gb else available_memory_gb()
  budget = config.memory_budget_gb or MEMORY_BUDGET_SHARE * available
  if config.jobs is not None:
    return JobsChoice(config.jobs, budget, chosen=False)
  fit, in_use = 0, 0.0
  for estimate in sorted((job.memory_gb for job in model_jobs), reverse=True):
    in_use += estimate
    if in_use > budget:
      break
    fit += 1
  cores = usable_cores()
  jobs = max(1, min(cores, len(model_jobs), fit))
  return JobsChoice(jobs, budget, chosen=True, cores=cores, fit=fit,
                    available_gb=available)
