"""Child processes that die with the process that started them, even by SIGKILL.

A killed export_all cannot clean up after itself; its model runs and the tools
it runs (the TF.js converter, the TF.js runtime) must not run on as orphans,
writing into a tree no run holds. Linux's parent-death signal does it; where
it is missing, children are left to finish on their own.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from typing import Callable

_PR_SET_PDEATHSIG = 1


def _load_libc():
  try:
    return ctypes.CDLL("libc.so.6", use_errno=True)
  except OSError:
    return None


_LIBC = _load_libc()  # Loaded before any fork: in a forked child only prctl is called.


def die_with_parent(parent_pid: int) -> None:
  """In a child: be killed when `parent_pid` (its parent) dies."""
  if _LIBC is None:
    return
  _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  if os.getppid() != parent_pid:  # The parent died before the line above.
    os._exit(1)


def dying_with_this_process() -> Callable[[], None]:
  """A `preexec_fn` for subprocess: the tool is killed when this process dies."""
  parent_pid = os.getpid()
  return lambda: die_with_parent(parent_pid)


def run_tool(command: list[str], tool: str, doing: str, on: str, timeout_s: float,
             **kwargs) -> str:
  """Runs a tool's process, dying with this one; returns its stdout. Its timeout or
  failure is one ExportError line naming `tool` (the failure's: the last line of the
  tool's stderr)."""
  from exporters.errors import ExportError
  try:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                            preexec_fn=dying_with_this_process(), **kwargs)
  except subprocess.TimeoutExpired:
    raise ExportError(f"{tool} did not finish {doing} within {timeout_s:.0f} s") from None
  if result.returncode != 0:
    raise ExportError(f"{tool} failed {on}: "
                      f"{_last_line(result.stderr) or f'exit status {result.returncode}'}")
  return result.stdout


def _last_line(text: str) -> str:
  """The tool's own error: the last non-empty line of its stderr (a traceback's last)."""
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return lines[-1] if lines else ""
