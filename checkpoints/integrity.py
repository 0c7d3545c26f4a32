"""The one rule for reading a checkpoint fully; fetch and export both use it.

`read_fully(prefix)` reads every tensor through TensorFlow's own checkpoint
reader, which checks each tensor's bytes against the CRC32C stored in the
`.index`, and checks that every floating-point value is finite. Any failure
is a CheckpointError whose message is one line naming the file, the tensor
and the problem:

  truncated            the `.data-*` file ends before a tensor's bytes do;
  checksum mismatch    a tensor's bytes differ from the checksum in the index;
  missing data file    the `.data-*` file the index points to is not there;
  damaged index file   the `.index` itself cannot be read;
  NaN in <tensor>      (or Inf, or NaN and Inf) a value is not finite.

TensorFlow reports most of these with one generic exception type and code
(OpError, UNKNOWN; IndexError for a short read), so the problem is told from
its text; anything not recognized keeps TensorFlow's first line.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Iterable

import numpy as np

from checkpoints.errors import CheckpointError
from checkpoints.regular_file import require_regular


@dataclasses.dataclass(frozen=True)
class CheckpointContents:
  prefix: str
  shapes: dict[str, tuple[int, ...]]  # Every variable the checkpoint holds.
  values: dict[str, np.ndarray]  # The tensors read, by name (empty unless kept).


class _Names:
  """How messages name the checkpoint's files: full paths, or `<file> in <archive>`."""

  def __init__(self, prefix: str, archive: str | None):
    self.prefix, self.archive = prefix, archive

  def file(self, path: str) -> str:
    return f"{os.path.basename(path)} in {self.archive}" if self.archive else path

  def index(self) -> str:
    return self.file(f"{self.prefix}.index")

  def data(self, shard: int | None = None) -> str:
    """The data file holding a tensor: the one file, or shard `shard` of several."""
    files = sorted(glob.glob(glob.escape(self.prefix) + ".data-*-of-*"))
    if shard is not None:
      files = [f for f in files if re.search(rf"\.data-0*{shard}-of-\d+$", f)] or files
    return self.file(files[0] if len(files) == 1 else f"{self.prefix}.data-*")


def open_reader(prefix: str | os.PathLike, archive: str | None = None):
  """TensorFlow's CheckpointReader for `prefix`; the index is read and checked here."""
  import tensorflow as tf
  prefix = str(prefix)
  names = _Names(prefix, archive)
  if not os.path.lexists(f"{prefix}.index"):
    raise CheckpointError(f"missing index file: {names.index()} does not exist")
  # TensorFlow would open a FIFO and hang, or read a device without end: refused first.
  for path in [f"{prefix}.index"] + glob.glob(glob.escape(prefix) + ".data-*"):
    require_regular(path, "checkpoint file")
  try:
    return tf.train.load_checkpoint(prefix)
  except Exception as err:  # TensorFlow's text is the only thing that tells cases apart.
    raise CheckpointError(f"damaged index file: {names.index()} cannot be read "
                          f"({_index_reason(err)})") from None


def read_fully(prefix: str | os.PathLike, names: Iterable[str] | None = None, *,
               keep: bool = True, archive: str | None = None) -> CheckpointContents:
  """Reads `names` (default: every variable) whole, checksummed and checked finite.

  `keep=False` checks without keeping the values (fetch only needs the
  verdict). `archive` names the archive the files came from, for messages
  about a checkpoint extracted to a temporary place.
  """
  prefix = str(prefix)
  where = _Names(prefix, archive)
  reader = open_reader(prefix, archive)
  shapes = {n: tuple(s) for n, s in reader.get_variable_to_shape_map().items()}
  wanted = sorted(shapes) if names is None else list(names)
  values = {}
  for name in wanted:
    try:
      value = reader.get_tensor(name)
    except Exception as err:  # See the module docstring: told apart by text.
      raise CheckpointError(_read_problem(err, name, where)) from None
    problem = non_finite(value)
    if problem:
      raise CheckpointError(f"{problem} in {name} ({_count_non_finite(value)} not finite) of "
                            f"checkpoint {where.file(prefix)}")
    if keep:
      values[name] = value
  return CheckpointContents(prefix, shapes, values)


def non_finite(value) -> str:
  """"NaN", "Inf", "NaN and Inf" for a floating-point value that is not finite, else ""."""
  array = np.asarray(value)
  if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating)):
    return ""
  if np.isfinite(array).all():
    return ""
  kinds = [k for k, found in (("NaN", np.isnan(array).any()), ("Inf", np.isinf(array).any()))
           if found]
  return " and ".join(kinds)


def _count_non_finite(value: np.ndarray) -> str:
  bad = int(value.size - np.count_nonzero(np.isfinite(value)))
  return f"{bad} of {value.size} values"


def _first_line(err: BaseException) -> str:
  text = str(err).strip()
  return text.splitlines()[0] if text else type(err).__name__


def _read_problem(err: BaseException, tensor: str, where: _Names) -> str:
  text = _first_line(err)
  if isinstance(err, IndexError) or "Read less bytes than requested" in text:
    return (f"truncated: {where.data()} ends before the bytes of tensor {tensor} "
            f"({text})")
  m = re.search(r"shard (\d+)\b.*Checksum does not match: (.*)", text)
  if m or "Checksum does not match" in text:
    detail = m.group(2) if m else text
    return (f"checksum mismatch: tensor {tensor} in {where.data(int(m.group(1)) if m else None)}"
            f" is not the bytes the index vouches for ({detail})")
  m = re.search(r"(\S+\.data-\d+-of-\d+); No such file or directory", text)
  if m:
    return f"missing data file: {where.file(m.group(1))} (holding tensor {tensor}) does not exist"
  return f"cannot read tensor {tensor} from {where.data()}: {text}"


def _index_reason(err: BaseException) -> str:
  text = _first_line(err)
  # "Unable to read file (...). Perhaps ... (failed to seek to header entry): block checksum
  # mismatch": the part after the last colon is the reason; the rest repeats the path.
  m = re.search(r"Unable to read file .*: ([^:]+)$", text)
  return m.group(1).strip() if m else text
