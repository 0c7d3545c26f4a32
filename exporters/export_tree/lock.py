"""One run at a time per export tree."""
from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib

from exporters import filesystem
from exporters.errors import ExportError

LOCK_NAME = ".export_all.lock"


@contextlib.contextmanager
def locked(export_dir: pathlib.Path):
  """Holds `<export_dir>/.export_all.lock`, so two runs never clean up each other's work.

  A run that made `export_dir` and leaves nothing in it (it failed before any
  export, e.g. fetching a checkpoint) removes the folders it made again.
  """
  export_dir = pathlib.Path(os.path.abspath(export_dir))  # As make_parents names folders.
  created = filesystem.make_parents(export_dir, "--export_dir", ExportError)
  try:
    try:
      os.mkdir(export_dir)
      created.append(str(export_dir))
    except FileExistsError:
      pass  # An existing tree; or a file, which the open below names.
    fd = os.open(export_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    filesystem.remove_created(created)
    raise ExportError(f"cannot write to --export_dir {str(export_dir)!r}: "
                      f"{e.strerror or e}") from None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise ExportError(f"another export_all is running on {export_dir} (it holds "
                        f"{export_dir / LOCK_NAME}); wait for it to finish") from None
    yield
  finally:
    if str(export_dir) in created and os.listdir(export_dir) == [LOCK_NAME]:
      os.unlink(export_dir / LOCK_NAME)  # While held: a run that opened it is still refused.
    os.close(fd)
    filesystem.remove_created(created)
