"""The one filesystem transaction: a destination appears whole, or not at all.

Every writer of the project (a model run's releases, a deployment, a fetched
checkpoint, the docs tree, the export tree's stamps and cards) places what it
writes the same way:

  1. `make_parents`: the destination's missing parent folders are made, and
     remembered, so that a failure can take back exactly those (`remove_created`,
     deepest first, only while empty);
  2. `replacing(destination)`: the work is written into a private temporary
     folder beside the destination (same filesystem, so the rename is atomic),
     named `.tmp-<name>-*`; when the work returns, the folder is made readable
     by all (the umask's mode), an old destination is moved aside to an
     `.old-*` folder and the new one renamed into place, then the old one is
     removed; when the work raises, the temporary folder is removed and the
     destination is as it was;
  3. `write_atomically(path, data)`: the same for one file; `write_temporary`
     stages one file of several that are renamed into place together (docs).

Temporary entries only ever start with TEMP_PREFIXES, so a later run can
sweep what an interrupted one left (export_all does so under its lock).

Functions that can fail on the filesystem take `error`, the exception class
the caller's command reports (ExportError, CheckpointError), and raise it with
one line naming the folder and the reason.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from typing import Iterator

TEMP_PREFIX = ".tmp-"  # A destination (or file) being written.
OLD_PREFIX = ".old-"  # A destination being replaced.
TEMP_PREFIXES = (TEMP_PREFIX, OLD_PREFIX)
FILE_MODE = 0o644  # What a written file is given: readable by all, as published.


def public_mode() -> int:
  """The mode a new folder gets under this process's umask (mkdtemp makes 0700)."""
  umask = os.umask(0)
  os.umask(umask)
  return 0o777 & ~umask


def make_parents(destination: str | os.PathLike, what: str, error: type[Exception]
                 ) -> list[str]:
  """Creates the destination's missing parent folders; returns them, outermost first.

  `what` says what the destination is in messages (e.g. "--export_dir"). What this
  call made is removed again when it fails.
  """
  missing = []
  ancestor = os.path.dirname(os.path.abspath(destination))
  while not os.path.isdir(ancestor):
    if os.path.lexists(ancestor):
      raise error(f"cannot create {what} {os.fspath(destination)!r}: {ancestor!r} is not a "
                  f"directory")
    missing.append(ancestor)
    ancestor = os.path.dirname(ancestor)
  missing.reverse()
  created = []
  try:
    for folder in missing:
      try:
        os.mkdir(folder)
      except OSError as e:
        raise error(f"cannot create {folder!r} (for {what}): {e.strerror or e}") from None
      created.append(folder)
  except BaseException:
    remove_created(created)
    raise
  return created


def remove_created(created: list[str]) -> None:
  """Removes folders make_parents made that stayed empty, deepest first, only those."""
  for folder in reversed(created):
    try:
      os.rmdir(folder)
    except OSError:
      pass  # Not empty (something was placed in it) or gone.


def temporary_dir(destination: str | os.PathLike, what: str, error: type[Exception]) -> str:
  """A private temporary folder beside the destination (its parent must exist)."""
  parent = os.path.dirname(os.path.abspath(destination))
  try:
    return tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.path.basename(destination)}-", dir=parent)
  except OSError as e:
    raise error(f"cannot write into {parent!r} (parent of {what}): {e.strerror or e}") from None


def move_into_place(tmp_dir: str | os.PathLike, destination: str | os.PathLike) -> None:
  """Renames a finished temporary folder to the destination, replacing an old one whole."""
  os.chmod(tmp_dir, public_mode())
  old = None
  if os.path.lexists(destination):
    old = tempfile.mkdtemp(prefix=OLD_PREFIX, dir=os.path.dirname(os.path.abspath(destination)))
    os.rename(destination, os.path.join(old, "replaced"))
  os.rename(tmp_dir, destination)
  if old:
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def replacing(destination: str | os.PathLike, what: str, error: type[Exception]
              ) -> Iterator[str]:
  """Yields a temporary folder to write the destination's new contents into; see the
  module docstring. The parent folders it made are removed again on failure."""
  created = make_parents(destination, what, error)
  try:
    tmp_dir = temporary_dir(destination, what, error)
    try:
      yield tmp_dir
      move_into_place(tmp_dir, destination)
    except BaseException:
      shutil.rmtree(tmp_dir, ignore_errors=True)
      raise
  except BaseException:
    remove_created(created)
    raise


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
  """Writes a temporary sibling and renames it, so that no reader sees half a file.

  The parent folders are made (and stay: the caller places other files there too)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  os.replace(write_temporary(path, data), path)


def write_temporary(path: str | os.PathLike, data: bytes) -> str:
  """Writes data to a temporary sibling of path (its parent must exist) and returns
  the sibling's name, for the caller to rename into place (os.replace) with others.

  Nothing is left when the write fails (a full disk)."""
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}-", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, FILE_MODE)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise
  return tmp


def remove_entry(path: str | os.PathLike) -> None:
  """Removes a file, link or folder tree, whatever is there (a temporary a run left)."""
  path = pathlib.Path(path)
  if path.is_dir() and not path.is_symlink():
    shutil.rmtree(path, ignore_errors=True)
  else:
    path.unlink(missing_ok=True)
