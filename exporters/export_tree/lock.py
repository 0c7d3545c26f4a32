"""One run at a time per export tree."""
from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib

from exporters.errors import ExportError

LOCK_NAME = ".export_all.lock"


@contextlib.contextmanager
def locked(export_dir: pathlib.Path):
  """Holds `<export_dir>/.export_all.lock`, so two runs never clean up each other's work."""
  try:
    export_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(export_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise ExportError(f"cannot write to --export_dir {str(export_dir)!r}: {e}") from None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise ExportError(f"another export_all is running on {export_dir} (it holds "
                        f"{export_dir / LOCK_NAME}); wait for it to finish") from None
    yield
  finally:
    os.close(fd)
