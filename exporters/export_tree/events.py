"""export_all's progress as typed records, for programs (`--events_file`).

The progress lines (progress.py) are for people, and their wording may
change; a program (the benchmark) reads these records instead. An events
file holds one JSON object per line, `{"event": <record name>, <its fields>}`,
each written and flushed when it happens, so a run stopped midway leaves the
events up to then.
"""
from __future__ import annotations

import dataclasses
import json
import os
import stat
import threading
from typing import Callable, Union

from exporters.errors import ExportError


@dataclasses.dataclass(frozen=True)
class Planned:
  """The work, said before any of it starts (only when there is export work)."""
  to_do: int  # Releases to export now.
  releases: int  # Every planned release, up to date ones included.
  model_runs: int
  jobs: int  # Model runs at once.


@dataclasses.dataclass(frozen=True)
class Done:
  """One release or deployment exported (and verified), or failed."""
  handle: str
  version: int
  format: str  # The release's format, or the deployment's.
  status: str  # "exported" or "failed".
  seconds: float  # Its write and verification (a release) or conversion (a deployment).
  elapsed_seconds: float  # The run's, when it was done.
  error: str = ""


@dataclasses.dataclass(frozen=True)
class Finished:
  exported: int
  failed: int
  up_to_date: int
  elapsed_seconds: float


Event = Union[Planned, Done, Finished]
EVENT_TYPES = {cls.__name__: cls for cls in (Planned, Done, Finished)}
EventSink = Callable[[Event], None]


def no_events(event: Event) -> None:
  del event


class EventsFile:
  """An EventSink writing to a regular file (made, or emptied); a context manager."""

  def __init__(self, path: str):
    # O_NONBLOCK: a FIFO with no reader fails at once instead of hanging the run.
    try:
      fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, 0o666)
    except OSError as e:
      raise ExportError(f"--events_file {path!r} cannot be written: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
      os.close(fd)
      raise ExportError(f"--events_file {path!r} is not a regular file")
    os.ftruncate(fd, 0)
    self._file = os.fdopen(fd, "w", encoding="utf-8")
    self._lock = threading.Lock()  # Worker results arrive on threads of their own.

  def __call__(self, event: Event) -> None:
    line = json.dumps({"event": type(event).__name__, **dataclasses.asdict(event)}) + "\n"
    with self._lock:
      self._file.write(line)
      self._file.flush()

  def close(self) -> None:
    self._file.close()

  def __enter__(self) -> EventsFile:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_events(path: str | os.PathLike) -> list[Event]:
  """The records an events file holds; ValueError for a line that is not one."""
  events = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      try:
        data = json.loads(line)
        events.append(EVENT_TYPES[data.pop("event")](**data))
      except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}:{number}: not an export_all event ({e})") from None
  return events
