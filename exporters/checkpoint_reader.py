"""Reads a released checkpoint strictly against a model's graph.

An export may contain only the released network variables: the auxiliary
head (`aux_*`) and `global_step` are read, reported as unused and left out;
anything else that does not line up (a missing variable, another unused
one, a shape mismatch) fails with a message naming the offenders.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from exporters.errors import ExportError

# Present in every released checkpoint, deliberately not exported.
_EXPECTED_UNUSED_PREFIXES = ("aux_",)
_EXPECTED_UNUSED_NAMES = ("global_step",)


@dataclasses.dataclass(frozen=True)
class CheckpointValues:
  path: str
  values: dict[str, np.ndarray]  # Graph variable name -> value, graph order.
  unused: tuple[str, ...]  # Read from the checkpoint, left out (aux head, global_step).


def _summarize(names, limit=5) -> str:
  names = sorted(names)
  shown = ", ".join(names[:limit])
  return f"{shown} (and {len(names) - limit} more)" if len(names) > limit else shown


def check_checkpoint_exists(checkpoint_path: str) -> None:
  if not os.path.exists(checkpoint_path + ".index"):
    raise ExportError(
        f"checkpoint {checkpoint_path!r} not found (expected {checkpoint_path}.index and "
        f"{checkpoint_path}.data-*); fetch it with `python -m checkpoints.fetch --model=M`")


def read_checkpoint(model: str, checkpoint_path: str,
                    graph_variables: list[tuple[str, tuple[int, ...]]] | None = None
                    ) -> CheckpointValues:
  """Returns the values of exactly `model`'s graph variables from the checkpoint."""
  import tensorflow as tf
  from slim_nets import manifest

  check_checkpoint_exists(checkpoint_path)
  if graph_variables is None:
    graph_variables = manifest.graph_variables(model)
  try:
    reader = tf.train.load_checkpoint(checkpoint_path)
  except Exception as e:  # A truncated or foreign file: say which.
    raise ExportError(f"cannot read checkpoint {checkpoint_path!r}: {e}") from None
  shapes = reader.get_variable_to_shape_map()
  wanted = dict(graph_variables)
  missing = [n for n in wanted if n not in shapes]
  mismatched = [f"{n} (checkpoint {list(shapes[n])}, graph {list(wanted[n])})"
                for n in wanted if n in shapes and tuple(shapes[n]) != tuple(wanted[n])]
  extra = [n for n in shapes if n not in wanted]
  unexpected = [n for n in extra if not (n in _EXPECTED_UNUSED_NAMES
                                         or n.startswith(_EXPECTED_UNUSED_PREFIXES))]
  problems = []
  if missing:
    problems.append(f"{len(missing)} variable(s) of {model} missing from the checkpoint: "
                    f"{_summarize(missing)}")
  if mismatched:
    problems.append(f"{len(mismatched)} shape mismatch(es): {_summarize(mismatched, 3)}")
  if unexpected:
    problems.append(f"{len(unexpected)} unused variable(s) that are not {model}'s: "
                    f"{_summarize(unexpected)}")
  if problems:
    raise ExportError(f"checkpoint {checkpoint_path!r} does not match the {model} graph: "
                      + "; ".join(problems))
  values = {n: reader.get_tensor(n) for n in wanted}
  return CheckpointValues(checkpoint_path, values, tuple(sorted(extra)))
