"""What every command line program shares: `run(main)`, which keeps TensorFlow's start-up quiet.

Importing TensorFlow prints about eight lines to stderr (oneDNN and CUDA
notices, "failed call to cuInit" on a machine without a GPU, absl's
preamble), none of which a user of these programs can act on, and they bury
the one `error:` line that matters. `run` replaces `absl.app.run`: after the
flags are parsed, unless `--verbosity` (`-v`) was given, it

  * sets TF_CPP_MIN_LOG_LEVEL=3 (unless the environment already sets it),
    which silences the C++ log lines TensorFlow writes after it started;
  * filters the first `import tensorflow`, wherever it happens: the lines
    TensorFlow's libraries log while loading (before its log level applies)
    are dropped, anything else written meanwhile is written through;
  * sets absl's and Python's logging to warnings and errors (no INFO
    lines) and ignores Python's `warnings` (the legacy layers' deprecation
    notices);
  * sets QUIET_ENV=1, so child processes (export_all's workers) call
    `quiet_from_environment()` and are quiet the same way.

`--verbosity=N` leaves TensorFlow's logging as TensorFlow sets it (N >= 0:
everything) and absl's at N. Every CLI imports TensorFlow lazily (inside
`main` or the library), so these settings come first.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging as py_logging
import os
import sys
import tempfile
import warnings

from absl import app, flags, logging

import registry
from checkpoints.errors import CheckpointError
from exporters.compat.tf_internals import TENSORFLOW_LOG_LINE

QUIET_ENV = "EXPORTERS_QUIET_TENSORFLOW"


def run(main) -> None:
  """`absl.app.run(main)`, quiet about TensorFlow unless --verbosity was given."""
  def configured_main(argv):
    verbosity = flags.FLAGS["verbosity"]
    if verbosity.present:
      _verbose(verbosity.value)
    else:
      quiet()
    try:
      return main(argv)
    except app.UsageError as e:  # absl would print the whole --help before it.
      print(f"error: {e}", file=sys.stderr, flush=True)
      return 2
    except (registry.RegistryError, CheckpointError) as e:
      # A hand-edited registry, or a checkpoint file found wrong where a command did not
      # expect it (e.g. export_all's planning hashing a FIFO): its message, one line.
      print(_error_line(e), file=sys.stderr, flush=True)
      return 1
    except KeyboardInterrupt:
      # Ctrl-C in a command without handling of its own (a fetch, publish, docs): what it
      # was writing was rolled back on the way here; one line, not a traceback.
      spec = getattr(sys.modules["__main__"], "__spec__", None)
      print(f"interrupted: {spec.name if spec else os.path.basename(argv[0])} stopped",
            file=sys.stderr, flush=True)
      return 130
  app.run(configured_main, flags_parser=_parse_flags)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, but a bad flag is one `error:` line and exit status 2 (a usage error)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(_error_line(e), file=sys.stderr)
    sys.exit(2)


def _error_line(error: Exception) -> str:
  """`error: <message>`, its lines joined into one."""
  return "error: " + "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def quiet() -> None:
  """Quiet TensorFlow start-up, errors-only logging (see the module docstring)."""
  os.environ[QUIET_ENV] = "1"
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  logging.set_verbosity(logging.WARNING)
  py_logging.getLogger().setLevel(py_logging.WARNING)
  warnings.simplefilter("ignore")
  if "tensorflow" not in sys.modules and not any(
      isinstance(f, _FilteredTensorFlowImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _FilteredTensorFlowImport())


def quiet_from_environment() -> None:
  """In a child process: quiet if the parent was (QUIET_ENV), else TensorFlow's defaults."""
  if os.environ.get(QUIET_ENV) == "1":
    quiet()


def _verbose(verbosity: int) -> None:
  os.environ.pop(QUIET_ENV, None)  # Children log as TensorFlow does too.
  # absl's --verbosity: -1 warnings, -2 errors, -3 fatal only; TensorFlow's 1, 2, 3 alike.
  if verbosity < 0:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = str(min(-verbosity, 3))


class _FilteredTensorFlowImport(importlib.abc.MetaPathFinder):
  """Finds `tensorflow` once, through the other finders, and runs its import filtered."""

  def find_spec(self, name, path=None, target=None):
    if name != "tensorflow":
      return None
    sys.meta_path.remove(self)  # Once; and so that find_spec below does not find us.
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
      return spec
    real_loader = spec.loader
    spec.loader = _FilteredLoader(real_loader)
    return spec


class _FilteredLoader(importlib.abc.Loader):
  def __init__(self, loader):
    self._loader = loader

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    # The module keeps the real loader, as if nothing had been in between.
    module.__loader__ = self._loader
    if module.__spec__ is not None:
      module.__spec__.loader = self._loader
    with _stderr_without_tensorflow_log_lines():
      self._loader.exec_module(module)


@contextlib.contextmanager
def _stderr_without_tensorflow_log_lines():
  """Captures file descriptor 2 (where C++ writes) and writes back all but TensorFlow's lines."""
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError, AttributeError):
    yield  # No usable stderr: nothing to filter.
    return
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      kept = [line for line in captured.read().decode(errors="replace").splitlines(True)
              if not TENSORFLOW_LOG_LINE.match(line)]
      if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()
