"""Brings an archive to a local `.part` file: over HTTP (resumed with Range requests) or
copied from a local mirror folder, with a progress display."""
from __future__ import annotations

import http.client
import logging
import os
import pathlib
import re
import sys
import time
import urllib.error
import urllib.request
from typing import Callable

from checkpoints.errors import CheckpointError
from checkpoints.layout import is_http
from checkpoints.regular_file import open_regular

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 60


class Transient(Exception):
  """A download attempt failed in a way that another attempt may fix."""


class Unavailable(Exception):
  """The archive cannot be had from this source at all (404, missing file)."""



def download(source: str, part: pathlib.Path, pinned_size: int | None, retries: int,
              progress: "Progress", label: str, retry_delay_s: float,
              max_bytes: Callable[[], int]):
  """Brings `part` to the complete archive, resuming it over HTTP when possible.

  Never writes past the pinned size, or `max_bytes()` without a pin: a source
  that sends more is stopped there and the part file deleted. `max_bytes` is
  only called once the source answers (working it out builds the model's
  graph, seconds that a missing archive need not cost).
  """
  limit = (lambda: pinned_size) if pinned_size is not None else max_bytes
  if not is_http(source):
    _copy_local(pathlib.Path(source), part, progress, label, limit, pinned_size is not None)
    return
  problem = None
  for attempt in range(1, max(retries, 1) + 1):
    try:
      _download_http(source, part, pinned_size, progress, label, limit)
      return
    except Transient as err:
      problem = err
      if attempt < retries:
        log.warning("download of %s failed (%s); retrying", label, err)
        time.sleep(retry_delay_s * attempt)
  have = part.stat().st_size if part.exists() else 0
  if not have:
    part.unlink(missing_ok=True)
    raise Unavailable(problem)
  raise CheckpointError(
      f"download interrupted: {label} ({problem}); the {have} bytes received are kept in "
      f"{part} and the next run resumes from there")


def _download_http(url: str, part: pathlib.Path, pinned_size: int | None,
                   progress: "Progress", label: str, max_bytes: Callable[[], int]):
  """One attempt: continues `part` from its size; raises Transient when cut short."""
  offset = part.stat().st_size if part.exists() else 0
  if pinned_size is not None and offset >= pinned_size:
    if offset == pinned_size:
      return  # Complete already; the hash check decides whether it is right.
    part.unlink()
    offset = 0
  headers = {"User-Agent": "nasnet-hub-toolchain checkpoint fetcher"}
  if offset:
    headers["Range"] = f"bytes={offset}-"
  try:
    response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=TIMEOUT_S)
  except urllib.error.HTTPError as err:
    err.close()
    if err.code == 416 and offset:
      if _content_range(err.headers.get("Content-Range", ""))[2] == offset:
        return  # The part was complete; the server has nothing more.
      part.unlink()
      raise Transient(f"the server cannot resume at byte {offset}; starting over") from None
    if err.code in (408, 429) or err.code >= 500:
      raise Transient(f"HTTP {err.code} {err.reason}") from None
    raise Unavailable(f"HTTP {err.code} {err.reason}") from None
  except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
    raise Transient(getattr(err, "reason", None) or err) from None

  with response:
    limit = max_bytes()
    if offset and response.status == 206:
      start, _, total = _content_range(response.headers.get("Content-Range", ""))
      if start != offset:
        part.unlink()
        raise Transient(f"the server resumed at byte {start}, not {offset}; starting over")
      mode = "ab"
    else:  # A full body: the first request, or a server that ignores Range.
      offset, mode = 0, "wb"
      length = response.headers.get("Content-Length")
      total = int(length) if length and length.isdigit() else None
    done = offset
    progress.start(label, done, total)
    try:
      with _writing(part, mode) as f:
        while True:
          try:
            chunk = response.read(CHUNK)
          except (OSError, http.client.HTTPException) as err:
            raise Transient(f"connection lost after {done} bytes ({err})") from None
          if not chunk:
            break
          _refuse_past(limit, done + len(chunk), part, label, pinned_size is not None)
          _write(f, chunk, part)
          done += len(chunk)
          progress.update(done)
    finally:
      progress.finish()
  if total is not None and done < total:
    raise Transient(f"connection closed after {done} of {total} bytes")
  if total is not None and done > total:
    part.unlink()
    raise Transient(f"received {done} bytes, more than the {total} announced; starting over")


def _content_range(header: str) -> tuple[int | None, int | None, int | None]:
  """(first, last, total) of `bytes first-last/total` or `bytes */total`."""
  m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", header)
  if not m:
    return None, None, None
  return tuple(int(g) if g and g != "*" else None for g in m.groups())


def _copy_local(path: pathlib.Path, part: pathlib.Path, progress: "Progress", label: str,
                max_bytes: Callable[[], int], pinned: bool):
  try:
    src = open_regular(path, "mirror archive")
  except CheckpointError as err:
    if not path.exists():
      raise Unavailable(f"{path} does not exist") from None
    raise Unavailable(err) from None
  with src:
    limit = max_bytes()
    total, done = os.fstat(src.fileno()).st_size, 0
    progress.start(label, 0, total)
    try:
      with _writing(part, "wb") as f:
        while chunk := src.read(CHUNK):
          _refuse_past(limit, done + len(chunk), part, label, pinned)
          _write(f, chunk, part)
          done += len(chunk)
          progress.update(done)
    except BaseException:
      part.unlink(missing_ok=True)
      raise
    finally:
      progress.finish()


def _refuse_past(limit: int, size: int, part: pathlib.Path, label: str, pinned: bool):
  """Stops a source that sends more than the archive can be, before writing the excess."""
  if size > limit:
    part.unlink(missing_ok=True)
    bound = "its pinned size" if pinned else "the bound its model's variables imply"
    raise CheckpointError(f"oversized download: {label} sends more than {limit} bytes "
                          f"({bound}); stopped, and the partial file was deleted")


def _writing(part: pathlib.Path, mode: str):
  """The part file opened for writing; a filesystem fault is one CheckpointError line."""
  try:
    return open(part, mode, buffering=0)  # Unbuffered: a full disk fails in _write, not close.
  except OSError as err:
    raise CheckpointError(f"cannot write {part}: {err.strerror or err}") from None


def _write(f, chunk: bytes, part: pathlib.Path):
  try:
    view = memoryview(chunk)
    while view:
      view = view[f.write(view):]
  except OSError as err:  # A full or failing disk: what was written is no use to resume.
    f.close()
    part.unlink(missing_ok=True)
    raise CheckpointError(f"cannot write {part}: {err.strerror or err}; the partial file "
                          f"was deleted") from None


class Progress:
  """Silent progress; ProgressBar draws one."""

  def start(self, label: str, done: int, total: int | None):
    pass

  def update(self, done: int):
    pass

  def finish(self):
    pass


class ProgressBar(Progress):
  """Bytes, percentage and rate on `stream`: a live bar on a terminal, else a line per 10%."""

  WIDTH = 30

  def __init__(self, stream=None):
    self.stream = stream or sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

  def start(self, label, done, total):
    self.total, self.done, self.first = total, done, done
    self.t0 = self.last_draw = time.monotonic()
    self.step = self._step(done)
    resumed = f" (resuming at {_bytes(done)})" if done else ""
    self._line(f"downloading {label}{resumed}")

  def update(self, done):
    self.done = done
    now = time.monotonic()
    if self.tty:
      if now - self.last_draw >= 0.1 or done == self.total:
        self.last_draw = now
        self.stream.write("\r" + self._status(now) + "\x1b[K")
        self.stream.flush()
    elif self._step(done) > self.step:
      self.step = self._step(done)
      self._line(self._status(now))

  def finish(self):
    if self.tty:
      self.stream.write("\r" + self._status(time.monotonic()) + "\x1b[K\n")
      self.stream.flush()

  def _step(self, done):
    """Tenths of the total, or 16 MiB steps when the total is unknown."""
    return done * 10 // self.total if self.total else done // (16 << 20)

  def _status(self, now):
    rate = (self.done - self.first) / max(now - self.t0, 1e-6)
    if not self.total:
      return f"  {_bytes(self.done)}  {_bytes(rate)}/s"
    fraction = min(self.done / self.total, 1.0)
    bar = "#" * int(fraction * self.WIDTH)
    return (f"  [{bar:<{self.WIDTH}}] {fraction:4.0%}  {_bytes(self.done)} of "
            f"{_bytes(self.total)}  {_bytes(rate)}/s")

  def _line(self, text):
    self.stream.write(text + "\n")
    self.stream.flush()


def _bytes(n: float) -> str:
  for unit in ("B", "KiB", "MiB"):
    if n < 1024:
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024
  return f"{n:.2f} GiB"
