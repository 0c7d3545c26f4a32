"""Opens a file the checkpoint package reads only when it is a regular file.

A FIFO blocks the open until a writer appears, a device or socket gives
endless or no bytes: each is refused with one line naming the path, before
any open. The open itself is non-blocking and checked again on the open
descriptor, so a path swapped for a FIFO in between cannot hang it either.
"""
from __future__ import annotations

import os
import stat

from checkpoints.errors import CheckpointError

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a directory"))


def _kind(mode: int) -> str:
  return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def require_regular(path: str | os.PathLike, what: str) -> os.stat_result:
  """The stat of `path` (links followed); raises CheckpointError unless it is a regular file."""
  try:
    info = os.stat(path)
  except FileNotFoundError:
    raise CheckpointError(f"{what} {os.fspath(path)} does not exist") from None
  except OSError as err:
    raise CheckpointError(f"cannot read {what} {os.fspath(path)}: {err.strerror or err}") from None
  if not stat.S_ISREG(info.st_mode):
    raise CheckpointError(
        f"{what} {os.fspath(path)} is {_kind(info.st_mode)}, not a regular file; refused")
  return info


def open_regular(path: str | os.PathLike, what: str):
  """`open(path, "rb")` for a regular file only (see the module docstring)."""
  require_regular(path, what)
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
  except OSError as err:
    raise CheckpointError(f"cannot read {what} {os.fspath(path)}: {err.strerror or err}") from None
  mode = os.fstat(fd).st_mode
  if not stat.S_ISREG(mode):
    os.close(fd)
    raise CheckpointError(f"{what} {os.fspath(path)} is {_kind(mode)}, not a regular file; refused")
  os.set_blocking(fd, True)
  return os.fdopen(fd, "rb")
