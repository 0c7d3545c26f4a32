"""Splits an export's wall time into phases from outside the writers.

The writers record only read_checkpoint / write / verify. Rather than edit
them, the export child wraps the functions each phase runs in (the Slim graph
builder, the savers, the file writers) and charges every wrapped call's
*exclusive* time (its own, minus nested wrapped calls) to its phase, under
the stage (`write` or `verify`) it ran in. Wrapping is per process and only
in the benchmark's child; a missing attribute is skipped and listed, so a
renamed writer helper degrades the split instead of breaking the bench.
"""
from __future__ import annotations

import collections
import functools
import importlib
import time

# (module, attribute path, phase). Order is irrelevant; nesting is by call stack.
PROBES = (
    # Slim graph construction, wherever it happens: both writers, the
    # verification reference, and the variable listing that reading the
    # checkpoint strictly builds a graph for (slim_nets.manifest).
    ("slim_nets", "build", "build"),
    # Reading the checkpoint's values (export_lib calls it by module attribute).
    ("exporters.checkpoint_reader", "read_checkpoint", "restore"),
    # Version 1-3: assigning the values in a session (its saver.save is "write").
    ("exporters.hub_module", "_save_variables", "restore"),
    ("exporters.hub_module", "_meta_graph_def", "trace_serialize"),
    # Version 4-5: tracing the tf.functions (variables start from the values).
    ("exporters.saved_model_2", "build_export_object", "trace_serialize"),
    ("tensorflow", "saved_model.save", "trace_serialize"),
    # Bytes to disk.
    ("tensorflow.python.training.saver", "Saver.save", "write"),
    ("tensorflow.python.checkpoint.functional_saver", "MultiDeviceSaver.save", "write"),
    ("tensorflow.python.lib.io.file_io", "atomic_write_string_to_file", "write"),
)
# The writer functions that delimit stages.
STAGES = ("write", "verify")


def resolve(module_name: str, path: str):
  """(object holding the attribute, attribute name); raises if either is gone."""
  owner = importlib.import_module(module_name)
  *parents, name = path.split(".")
  for parent in parents:
    owner = getattr(owner, parent)
  getattr(owner, name)
  return owner, name


def unresolved_probes() -> list[str]:
  """Probes whose function no longer exists (a renamed writer helper, a moved TF API)."""
  missing = []
  for module_name, path, _ in PROBES:
    try:
      resolve(module_name, path)
    except (ImportError, AttributeError):
      missing.append(f"{module_name}.{path}")
  return missing


class PhaseClock:
  """Accumulates exclusive seconds per (stage, phase)."""

  def __init__(self):
    self.seconds = collections.defaultdict(float)
    self.calls = collections.Counter()
    self._stack = []  # [phase, start, nested seconds]
    self.stage = "other"
    self.skipped = []

  def wrap(self, fn, phase: str):
    @functools.wraps(fn)
    def timed(*args, **kwargs):
      self._stack.append([phase, time.perf_counter(), 0.0])
      try:
        return fn(*args, **kwargs)
      finally:
        _, start, nested = self._stack.pop()
        total = time.perf_counter() - start
        self.seconds[(self.stage, phase)] += total - nested
        self.calls[(self.stage, phase)] += 1
        if self._stack:
          self._stack[-1][2] += total
    return timed

  def wrap_stage(self, fn, stage: str):
    @functools.wraps(fn)
    def staged(*args, **kwargs):
      outer, self.stage = self.stage, stage
      try:
        return fn(*args, **kwargs)
      finally:
        self.stage = outer
    return staged

  def install(self, writer_module) -> None:
    """Wraps the probes and `writer_module.write/verify` (for this process)."""
    for module_name, path, phase in PROBES:
      try:
        owner, name = resolve(module_name, path)
      except (ImportError, AttributeError):
        self.skipped.append(f"{module_name}.{path}")
        continue
      setattr(owner, name, self.wrap(getattr(owner, name), phase))
    for stage in STAGES:
      setattr(writer_module, stage, self.wrap_stage(getattr(writer_module, stage), stage))

  def by_stage(self, stage: str) -> dict[str, float]:
    return {phase: s for (st, phase), s in self.seconds.items() if st == stage}
