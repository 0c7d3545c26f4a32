"""Progress lines for long runs: what runs, how far the plan is, the elapsed time."""
from __future__ import annotations

import threading
import time
from typing import Callable


def format_seconds(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
  """Prints which model runs, each release as it is done, and a heartbeat; thread-safe."""

  def __init__(self, log: Callable[[str], None], heartbeat_s: float):
    self.log = log
    self.t0 = time.monotonic()
    self.lock = threading.Lock()
    self.running: dict[str, float] = {}
    self.heartbeat_s = heartbeat_s
    self._stop = threading.Event()
    self._thread = None

  def elapsed(self) -> str:
    return format_seconds(time.monotonic() - self.t0)

  def say(self, text: str) -> None:
    with self.lock:
      self.log(text)

  def skipped(self, job) -> None:
    self.say(f"{job.label}: up to date, skipped")

  def started(self, model_job) -> None:
    with self.lock:
      self.running[model_job.model] = time.monotonic()
      self.log(f"{model_job.label}: exporting … elapsed {self.elapsed()}")

  def release_done(self, job, seconds: float, error: str = "") -> None:
    with self.lock:
      outcome = f"FAILED after {format_seconds(seconds)}: {error}" if error else (
          f"exported and verified in {format_seconds(seconds)}")
      self.log(f"{job.label}: {outcome} … elapsed {self.elapsed()}")

  def finished(self, model_job) -> None:
    with self.lock:
      self.running.pop(model_job.model, None)

  def __enter__(self):
    if self.heartbeat_s > 0:
      self._thread = threading.Thread(target=self._beat, daemon=True)
      self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    if self._thread:
      self._thread.join()

  def _beat(self):
    while not self._stop.wait(self.heartbeat_s):
      with self.lock:
        if self.running:
          now = time.monotonic()
          busy = ", ".join(f"{model} ({format_seconds(now - t)})"
                           for model, t in self.running.items())
          self.log(f"… still exporting {busy}; elapsed {self.elapsed()}")
