"""Reads a released checkpoint strictly against a model's graph.

An export may contain only the released network variables: the auxiliary
head (`aux_*`) and `global_step` are read, reported as unused and left out;
anything else that does not line up (a missing variable, another unused
one, a shape mismatch) fails with a message naming the offenders. The
matching rules are the fetcher's (checkpoints.fetch_lib), so a checkpoint
that fetch accepts is one that export accepts.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

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


def read_checkpoint(model: str, checkpoint_path: str,
                    graph_variables: tuple[tuple[str, tuple[int, ...]], ...] | None = None
                    ) -> CheckpointValues:
  """Returns the values of exactly `model`'s graph variables from the checkpoint.

  `graph_variables` are (name, shape) in graph order, from a construction the
  caller made anyway (the verification reference's); by default the graph is
  constructed here to list them.
  """
  import tensorflow as tf
  from checkpoints import fetch_lib

  check_checkpoint_exists(checkpoint_path)
  if graph_variables is None:
    from slim_nets import manifest
    graph_variables = manifest.graph_variables(model)
  try:
    reader = tf.train.load_checkpoint(checkpoint_path)
  except Exception as e:  # A truncated or foreign file: say which.
    raise ExportError(f"cannot read checkpoint {checkpoint_path!r}: {e}") from None
  shapes = reader.get_variable_to_shape_map()
  problems = fetch_lib.variable_problems(shapes, graph_variables)
  if problems:
    raise ExportError(f"checkpoint {checkpoint_path!r} does not match the {model} graph: "
                      + "; ".join(problems))
  wanted = [name for name, _ in graph_variables]
  values = {n: reader.get_tensor(n) for n in wanted}
  unused = tuple(sorted(set(shapes) - set(wanted)))
  return CheckpointValues(checkpoint_path, values, unused)
