"""Splits a model run's wall time into phases and counts its network constructions.

The phases come from the pipeline itself: every `ExportResult.seconds` holds
the model-level phases (`reference`, `read_checkpoint`, `construct_<format>`)
and its release's own `write` and `verify` (exporters.pipeline.model_export).

The constructions are counted from outside: the export child wraps
`slim_nets.build` (a whole network, or its feature vector) and
`slim_nets.build_classifier` (the classifier alone, which the format writers
add to a feature vector) and records each call's seconds, mode and call site:
whether the verification reference made it (`SlimReference`) or a format
writer did, and in which step of the model run (the function of the pipeline
module it was called under: the reference's construction, a format family's
construction, a release's write or its verify). Wrapping is per process and
only in the benchmark's child; `missing_call_sites()` lists what this
classification relies on, so a renamed pipeline function shows in the tests
instead of silently blurring the split.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import importlib
import pathlib
import sys
import time

# ExportResult.seconds holds the model-level phases (reference, read_checkpoint,
# construct_<format>) and these, the release's own.
RELEASE_PHASES = ("write", "verify")

# Where a construction is called from (paths relative to the repository).
PIPELINE_FILE = pathlib.PurePath("exporters", "pipeline", "model_export.py")
REFERENCE_FILE = pathlib.PurePath("exporters", "network", "reference.py")
REFERENCE, FORMAT = "reference", "format"  # Who constructed: the reference or a writer.
# Steps of a model run, named by the function the pipeline called to get there.
STEP_REFERENCE, STEP_CONSTRUCT, STEP_WRITE, STEP_VERIFY = (
    "reference", "construct", "write", "verify")
STEP_OUTSIDE = "outside the pipeline"
# (module, attribute) the call-site classification and the counter rely on.
REQUIRED = (
    ("slim_nets", "build"), ("slim_nets", "build_classifier"),
    ("slim_nets.tf_slim_compat", "without_fix_3"),
    ("exporters.pipeline.model_export", "export_model"),
    ("exporters.pipeline.model_export", "_export_family"),
    ("exporters.pipeline.model_export", "_export_release"),
    ("exporters.network.reference", "SlimReference"),
    ("exporters.formats.hub_module", "HubModuleConstructions.write"),
    ("exporters.formats.hub_module", "HubModuleConstructions.verify"),
    ("exporters.formats.saved_model_2", "SavedModel2Constructions.write"),
    ("exporters.formats.saved_model_2", "SavedModel2Constructions.verify"),
)


def missing_call_sites() -> list[str]:
  """What the counter and its classification need but the code no longer has."""
  missing = []
  for module_name, path in REQUIRED:
    try:
      owner = importlib.import_module(module_name)
      for name in path.split("."):
        owner = getattr(owner, name)
    except (ImportError, AttributeError):
      missing.append(f"{module_name}.{path}")
  # call_site recognizes the pipeline and the reference by their files.
  for module_name, path in (("exporters.pipeline.model_export", PIPELINE_FILE),
                            ("exporters.network.reference", REFERENCE_FILE)):
    try:
      if _is(pathlib.PurePath(importlib.import_module(module_name).__file__), path):
        continue
    except ImportError:
      pass
    missing.append(f"{module_name} at {path}")
  return missing


# ---- Phases from the pipeline's own timings.

def model_phases(results_seconds: list[dict]) -> dict[str, float]:
  """The model-level phases, merged over the releases' `ExportResult.seconds`.

  Each release carries the phases done up to it (a format family's
  construction appears from its first release on), so the union is the run's.
  """
  merged = {}
  for seconds in results_seconds:
    merged.update({k: v for k, v in seconds.items() if k not in RELEASE_PHASES})
  return merged


# ---- Counting constructions.

def call_site(frames: list[tuple[str, str]]) -> tuple[str, str]:
  """(who, step) of a construction, from its call stack as (file, function), innermost first.

  who: REFERENCE when `SlimReference` is on the stack, else FORMAT. step:
  the pipeline function's callee (the frame just inside the innermost
  model_export frame): the reference's `__init__` is STEP_REFERENCE (its
  other mode is constructed lazily, inside a verify), a writer's `__init__`
  STEP_CONSTRUCT, a writer's `write` / `verify` those steps.
  """
  files = [pathlib.PurePath(f) for f, _ in frames]
  who = REFERENCE if any(_is(f, REFERENCE_FILE) for f in files) else FORMAT
  for callee in range(len(frames) - 1):
    if not _is(files[callee + 1], PIPELINE_FILE):
      continue
    function = frames[callee][1]
    if function in (STEP_WRITE, STEP_VERIFY):
      return who, function
    if function == "__init__":
      return who, STEP_REFERENCE if _is(files[callee], REFERENCE_FILE) else STEP_CONSTRUCT
    return who, function
  return who, STEP_OUTSIDE


def _is(path: pathlib.PurePath, suffix: pathlib.PurePath) -> bool:
  return path.parts[-len(suffix.parts):] == suffix.parts


def _stack(skip: int) -> list[tuple[str, str]]:
  frame = sys._getframe(skip + 1)
  frames = []
  while frame is not None:
    frames.append((frame.f_code.co_filename, frame.f_code.co_name))
    frame = frame.f_back
  return frames


@dataclasses.dataclass(frozen=True)
class Construction:
  kind: str  # "network" (slim_nets.build) or "classifier" (slim_nets.build_classifier).
  who: str  # REFERENCE or FORMAT.
  step: str  # STEP_* : where in the model run.
  training: bool
  seconds: float


class ConstructionCounter:
  """Wraps the Slim builders of a module (slim_nets) and records every call."""

  WRAPPED = (("build", "network"), ("build_classifier", "classifier"))

  def __init__(self):
    self.constructions: list[Construction] = []
    self._originals = {}

  def _wrap(self, fn, kind: str):
    @functools.wraps(fn)
    def counted(*args, **kwargs):
      who, step = call_site(_stack(skip=1))
      start = time.perf_counter()
      try:
        return fn(*args, **kwargs)
      finally:
        self.constructions.append(Construction(
            kind, who, step, bool(kwargs.get("is_training", False)),
            time.perf_counter() - start))
    return counted

  def install(self, module=None) -> "ConstructionCounter":
    if module is None:
      module = importlib.import_module("slim_nets")
    for name, kind in self.WRAPPED:
      self._originals[name] = (module, getattr(module, name))
      setattr(module, name, self._wrap(getattr(module, name), kind))
    return self

  def uninstall(self) -> None:
    for name, (module, original) in self._originals.items():
      setattr(module, name, original)
    self._originals.clear()

  def __enter__(self):
    return self.install()

  def __exit__(self, *exc):
    self.uninstall()

  def as_json(self) -> list[dict]:
    return [dataclasses.asdict(c) for c in self.constructions]


def construction_summary(constructions: list[dict]) -> dict:
  """Counts and seconds of recorded constructions (Construction.as_json dicts).

  `by_site` keys read "<kind> by <who> in <step>, <mode>"; the totals count
  whole networks (classifiers alone are cheap and listed only in by_site).
  """
  by_site = collections.defaultdict(lambda: {"count": 0, "seconds": 0.0})
  for c in constructions:
    mode = "training" if c["training"] else "inference"
    site = by_site[f"{c['kind']} by {c['who']} in {c['step']}, {mode}"]
    site["count"] += 1
    site["seconds"] += c["seconds"]
  networks = [c for c in constructions if c["kind"] == "network"]
  reference = [c for c in constructions if c["who"] == REFERENCE]
  return {
      "networks": len(networks),
      "networks_by_format_writers": sum(c["who"] == FORMAT for c in networks),
      "networks_by_reference": sum(c["who"] == REFERENCE for c in networks),
      "seconds": sum(c["seconds"] for c in constructions),
      # The reference's constructions that a verify call does not already time.
      "reference_seconds_outside_verify": sum(c["seconds"] for c in reference
                                              if c["step"] != STEP_VERIFY),
      "by_site": dict(by_site),
  }
