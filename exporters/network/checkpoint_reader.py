"""Reads a released checkpoint strictly against a model's graph.

An export may contain only the released network variables: the auxiliary
head (`aux_*`) and `global_step` are read, reported as unused and left out;
anything else that does not line up (a missing variable, another unused
one, a shape mismatch) fails with a message naming the offenders. Every
tensor is read whole first, checksummed and checked finite, so a damaged
checkpoint fails with one line naming the file, the tensor and the problem.
The reading and matching rules are the fetcher's (checkpoints.integrity,
checkpoints.fetch_lib), so a checkpoint that fetch accepts is one that export
accepts.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from checkpoints import fetch_lib, integrity
from checkpoints.errors import CheckpointError
from exporters.errors import ExportError


@dataclasses.dataclass(frozen=True)
class CheckpointValues:
  path: str
  values: dict[str, np.ndarray]  # Graph variable name -> value, graph order.
  unused: tuple[str, ...]  # Read from the checkpoint, left out (aux head, global_step).


def check_checkpoint_exists(checkpoint_path: str) -> None:
  if not os.path.exists(checkpoint_path + ".index"):
    raise ExportError(
        f"checkpoint {checkpoint_path!r} not found (expected {checkpoint_path}.index and "
        f"{checkpoint_path}.data-*); fetch it with `python -m checkpoints.fetch --model=M`")


def read_all(checkpoint_path: str) -> integrity.CheckpointContents:
  """Reads every tensor of the checkpoint whole, checksummed and checked finite.

  The rule is the fetcher's (checkpoints.integrity); it needs no graph, so a
  damaged checkpoint is refused before anything is constructed.
  """
  check_checkpoint_exists(checkpoint_path)
  try:
    return integrity.read_fully(checkpoint_path)
  except CheckpointError as e:  # The package boundary: same message, our exception.
    raise ExportError(str(e)) from None


def select(model: str, contents: integrity.CheckpointContents,
           graph_variables: tuple[tuple[str, tuple[int, ...]], ...]) -> CheckpointValues:
  """Exactly `model`'s graph variables (name, shape, in graph order) from a full read."""
  problems = fetch_lib.variable_problems(contents.shapes, graph_variables)
  if problems:
    raise ExportError(f"checkpoint {contents.prefix!r} does not match the {model} graph: "
                      + "; ".join(problems))
  wanted = [name for name, _ in graph_variables]
  values = {n: contents.values[n] for n in wanted}
  unused = tuple(sorted(set(contents.shapes) - set(wanted)))
  return CheckpointValues(contents.prefix, values, unused)


def read_checkpoint(model: str, checkpoint_path: str,
                    graph_variables: tuple[tuple[str, tuple[int, ...]], ...] | None = None
                    ) -> CheckpointValues:
  """Returns the values of exactly `model`'s graph variables from the checkpoint.

  `graph_variables` are (name, shape) in graph order, from a construction the
  caller made anyway (the verification reference's); by default the graph is
  constructed here to list them.
  """
  contents = read_all(checkpoint_path)
  if graph_variables is None:
    from slim_nets import manifest
    graph_variables = manifest.graph_variables(model)
  return select(model, contents, graph_variables)
