"""The matching rules: a checkpoint is a model's when its variables are the graph's, with
their shapes (the aux head and global_step aside), and it reads back whole."""
from __future__ import annotations

import math
import os
from typing import Iterable, Mapping, Sequence

from checkpoints.errors import CheckpointError, listed


def expected_variables(model: str) -> list[tuple[str, tuple[int, ...]]]:
  """(name, shape) of the variables `model`'s Slim graph creates (no aux head).

  Taken from archive_variables, which a fetch needs anyway for its bounds, so
  that a fetch constructs one graph, not two: without the optional variables
  the aux graph's are the inference graph's, name for name and shape for shape
  (tests/test_slim_nets.py::test_graph_variables_match_released_checkpoint).
  """
  return [(name, shape) for name, shape in archive_variables(model)
          if not is_optional_variable(name)]


def archive_variables(model: str) -> list[tuple[str, tuple[int, ...]]]:
  """(name, shape) of every variable a released checkpoint of `model` may hold: the graph's,
  the training-only aux head's and global_step (the graph's list kept on disk: variable_list)."""
  from checkpoints import variable_list
  return list(variable_list.aux_graph_variables(model)) + [("global_step", ())]


# Every variable of these Slim networks is float32, global_step int64 (as the releases
# store them); TensorFlow's bundle format writes the tensors back to back, unpadded.
FLOAT32_BYTES, INT64_BYTES = 4, 8
# The index (names, shapes, offsets, checksums) and a `.meta` graph (the releases'
# training graph, tens of MB for the large models) are bounded apart from the data.
INDEX_OR_META_BYTES = 128 << 20


def data_bytes(variables: Iterable[tuple[str, Sequence[int]]]) -> int:
  """The exact size of the data files holding `variables` (see FLOAT32_BYTES)."""
  return sum((INT64_BYTES if name == "global_step" else FLOAT32_BYTES) * math.prod(shape)
             for name, shape in variables)


def read_variable_shapes(prefix: str | os.PathLike, archive: str | None = None
                         ) -> dict[str, list[int]]:
  """name -> shape from the checkpoint's index (the tensors are not read)."""
  from checkpoints import integrity
  return integrity.open_reader(prefix, archive).get_variable_to_shape_map()


def is_optional_variable(name: str) -> bool:
  """Released checkpoints also hold the training-only aux head and global_step."""
  return name == "global_step" or name.split("/", 1)[0].startswith("aux_")


def variable_problems(checkpoint: Mapping[str, Sequence[int]],
                      expected: Iterable[tuple[str, Sequence[int]]]) -> list[str]:
  """What keeps `checkpoint` (name -> shape) from matching the graph's variables."""
  expected = {name: tuple(shape) for name, shape in expected}
  missing = [n for n in expected if n not in checkpoint]
  reshaped = [n for n in expected if n in checkpoint and tuple(checkpoint[n]) != expected[n]]
  unexpected = sorted(n for n in checkpoint if n not in expected and not is_optional_variable(n))
  problems = []
  if missing:
    problems.append(f"{len(missing)} of the graph's {len(expected)} variables are missing "
                    f"({listed(missing)})")
  if reshaped:
    shapes = [f"{n} is {list(checkpoint[n])}, graph {list(expected[n])}" for n in reshaped]
    problems.append(f"{len(reshaped)} have other shapes ({listed(shapes)})")
  if unexpected:
    problems.append(f"{len(unexpected)} variables are not in the graph ({listed(unexpected)})")
  return problems


def validate_checkpoint(prefix: str | os.PathLike, model: str, *, label: str | None = None,
                        expected: Iterable[tuple[str, Sequence[int]]] | None = None,
                        fix: str | None = None, archive: str | None = None):
  """Raises CheckpointError unless the checkpoint is `model`'s and reads back whole.

  First the index: exactly `model`'s graph variables with their shapes. Then
  the full read (checkpoints.integrity): every tensor checksummed and finite.
  `archive` names the archive a staged checkpoint came from, for messages.
  """
  from checkpoints import integrity
  problems = variable_problems(read_variable_shapes(prefix, archive),
                               expected if expected is not None else expected_variables(model))
  if problems:
    raise CheckpointError(
        f"wrong checkpoint: {label or prefix} does not match the {model} graph "
        f"(another model's checkpoint?): {'; '.join(problems)}" + (f"; {fix}" if fix else ""))
  try:
    integrity.read_fully(prefix, keep=False, archive=archive)
  except CheckpointError as err:
    raise CheckpointError(f"{err}; {fix}" if fix else str(err)) from None
