"""Exports every published release from the released checkpoints, skipping what is up to date.

A run goes through these steps, so that bad input stops it before any work:

  1. plan: the registry's releases, filtered by model, module type and version
     (an unknown name fails with the valid choices);
  2. checkpoints: each planned model's `<checkpoint_dir>/<model>/model.ckpt`,
     fetched with checkpoints.fetch_lib when absent; if any cannot be had, the
     run stops here with how to provide them (--mirror, or placing the files);
  3. cards: rendered and validated by exporters.docs_lib (written at the end);
  4. lock `<export_dir>` against a concurrent run and remove the temporary
     directories an interrupted run left behind;
  5. for each release, skip it when its stamp matches, else export it with
     exporters.export_lib in a fresh worker process (up to --jobs at once,
     admitted while the running exports' estimated memory fits the budget)
     and write its stamp once the verified export is in place;
  6. write the cards and return one row per release for the final table.

The export tree (what exporters.publish reads) is, per handle directory
`<export_dir>/google/imagenet/<model>/<module_type>/`:

  <version>/                 the SavedModel (or TF1 Hub module), as published
  <version>.md               its card
  .<version>.stamp.json      what it was made from (see `stamp_inputs`)

The stamp lies beside the export, not in it, because publish archives the
export directory whole. Its key is a sha256 over the checkpoint's content hash,
the exporter code version (the toolchain version, a hash of the source files
an export runs, and the library versions) and the release's registry facts an
export reads; a stamp whose key differs, or an export directory that is gone,
means the release is exported again. A content hash, not a file time, decides:
touching a checkpoint without changing it re-exports nothing.

Each export runs in a process of its own because an export's bytes depend on
what its process ran before: TensorFlow names traced functions with
process-wide counters, so the same release exported after another one in the
same process gives another saved_model.pb. A fresh process per export makes
the bytes independent of --jobs and of the plan, which is what lets publish
see an unchanged version as unchanged. (`in_process` is for tests and
debugging.)
"""
from __future__ import annotations

import configparser
import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import importlib
import importlib.metadata
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

import registry as registry_lib
from exporters.errors import ExportError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DISTRIBUTION = "nasnet-hub-toolchain"
STAMP_FORMAT = 1
LOCK_NAME = ".export_all.lock"
TEMP_PREFIXES = (".tmp-", ".old-")  # export_lib's and ours; safe to delete under the lock.
DEFAULT_EXPORTER = "exporters.export_lib:export"

# Source files whose change changes what an export writes: every module of
# these packages except the ones listed as not taking part in an export.
EXPORT_CODE_PACKAGES = ("exporters", "slim_nets", "registry")
NOT_EXPORT_CODE = frozenset({
    "exporters/export_all.py", "exporters/export_all_lib.py", "exporters/publish.py",
    "exporters/publish_lib.py", "exporters/serve.py", "exporters/serve_lib.py",
    "exporters/docs.py", "exporters/docs_lib.py", "exporters/card_validator.py",
    "exporters/export.py",
})
EXPORT_LIBRARIES = ("tensorflow", "tensorflow-cpu", "tf-keras", "tf-slim", "tensorflow-hub")

# Peak resident memory of one export process, in GB, by model. nasnet_mobile
# was measured (1.5 GB for version 3, 1.7 GB for version 4, on CPU); the large
# models are estimates to be replaced by the `peak_rss_mb` their stamps record.
# Unknown models get the default, the largest.
MEMORY_GB = {"nasnet_mobile": 2.0, "nasnet_large": 6.0, "pnasnet_large": 8.0}
DEFAULT_MEMORY_GB = 8.0
HEARTBEAT_S = 60.0
_interrupted = threading.Event()  # Set by interrupt_on_signal; the run loop checks it too.


@dataclasses.dataclass(frozen=True)
class ExportAllConfig:
  checkpoint_dir: str = "checkpoints"
  export_dir: str = "exports"
  models: tuple[str, ...] = ()
  module_types: tuple[str, ...] = ()
  versions: tuple[int, ...] = ()
  jobs: int = 1
  memory_budget_gb: float = 0.0  # 0: 80% of the memory available at the start.
  mirror: str | None = None  # Checkpoint archive mirror; None: $CHECKPOINT_MIRROR.
  force: bool = False  # Export again even what is up to date.
  heartbeat_s: float = HEARTBEAT_S
  exporter: str = DEFAULT_EXPORTER  # "module:function" with export_lib.export's signature.
  in_process: bool = False  # Tests and debugging: bytes then depend on the process's past.


@dataclasses.dataclass
class Job:
  """One planned release and what its stamp says about it."""
  index: int  # 1-based position in the plan.
  total: int
  release: registry_lib.Release
  checkpoint: pathlib.Path
  export_dir: pathlib.Path
  stamp_file: pathlib.Path
  card_file: pathlib.Path
  stamp_inputs: dict
  stamp_key: str
  up_to_date: bool
  memory_gb: float

  @property
  def label(self) -> str:
    return f"[{self.index}/{self.total}] {self.release.handle_with_version}"


@dataclasses.dataclass
class Row:
  """One line of the final table."""
  handle: str
  version: int
  format: str
  status: str  # "exported", "up to date" or "failed".
  size: int | None = None
  seconds: float | None = None
  verified: bool = False
  error: str = ""


@dataclasses.dataclass
class ExportAllResult:
  rows: list[Row]
  seconds: float
  cards_written: int

  @property
  def exported(self) -> list[Row]:
    return [r for r in self.rows if r.status == "exported"]

  @property
  def failed(self) -> list[Row]:
    return [r for r in self.rows if r.status == "failed"]


# ---- The export tree's layout (publish reads it through these).

def handle_dir(export_dir: str | os.PathLike, release: registry_lib.Release) -> pathlib.Path:
  return pathlib.Path(export_dir, *release.handle.split("/"))


def export_path(export_dir, release) -> pathlib.Path:
  return handle_dir(export_dir, release) / str(release.version.number)


def stamp_path(export_dir, release) -> pathlib.Path:
  return handle_dir(export_dir, release) / f".{release.version.number}.stamp.json"


def card_path(export_dir, release) -> pathlib.Path:
  return handle_dir(export_dir, release) / f"{release.version.number}.md"


def read_stamp(path: str | os.PathLike) -> dict | None:
  """The stamp's contents, or None when it is absent or unreadable (then: export again)."""
  try:
    stamp = json.loads(pathlib.Path(path).read_text())
  except (OSError, ValueError):
    return None
  return stamp if isinstance(stamp, dict) and stamp.get("format") == STAMP_FORMAT else None


# ---- Code version.

def toolchain_version() -> str:
  """The project's version: setup.cfg in a checkout, else the installed metadata."""
  setup_cfg = REPO_ROOT / "setup.cfg"
  if setup_cfg.is_file():
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    if parser.has_option("metadata", "version"):
      return parser.get("metadata", "version")
  try:
    return importlib.metadata.version(DISTRIBUTION)
  except importlib.metadata.PackageNotFoundError:
    return "0+unknown"


def export_source_files() -> list[pathlib.Path]:
  files = []
  for package in EXPORT_CODE_PACKAGES:
    for path in sorted((REPO_ROOT / package).rglob("*")):
      rel = path.relative_to(REPO_ROOT).as_posix()
      if path.suffix == ".py" and "__pycache__" not in rel and rel not in NOT_EXPORT_CODE:
        files.append(path)
  return files


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> dict:
  """What identifies the exporter code: version, source hash and library versions.

  registry/models.toml is hashed too only through the facts each stamp takes
  from it (`release_facts`), so editing a card text does not re-export.
  """
  h = hashlib.sha256()
  for path in export_source_files():
    h.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0")
    h.update(path.read_bytes() + b"\0")
  libraries = {}
  for name in EXPORT_LIBRARIES:
    try:
      libraries[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return {"toolchain_version": toolchain_version(), "sources_sha256": h.hexdigest(),
          "libraries": libraries}


def code_version() -> str:
  """`<toolchain version>+<12 hex digits of the source hash>`, as manifests state it."""
  fingerprint = code_fingerprint()
  return f"{fingerprint['toolchain_version']}+{fingerprint['sources_sha256'][:12]}"


def release_facts(release: registry_lib.Release) -> dict:
  """The registry facts an export reads (card-only `extra` fields left out)."""
  model = {f.name: getattr(release.model, f.name) for f in dataclasses.fields(release.model)
           if f.name != "extra"}
  version = {f.name: getattr(release.version, f.name) for f in dataclasses.fields(release.version)
             if f.name != "extra"}
  return {"handle": release.handle, "module_type": release.module_type,
          "model": model, "version": version}


def stamp_inputs(release: registry_lib.Release, checkpoint_sha256: str, exporter: str) -> dict:
  return {"release": release_facts(release), "checkpoint_sha256": checkpoint_sha256,
          "code": code_fingerprint(), "exporter": exporter}


def stamp_key(inputs: dict) -> str:
  return hashlib.sha256(_canonical_json(inputs).encode()).hexdigest()


def _canonical_json(value) -> str:
  return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(value):
  """json.dumps fallback for numpy scalars and arrays in verification reports."""
  if hasattr(value, "tolist"):
    return value.tolist()
  if isinstance(value, (set, frozenset, tuple)):
    return list(value)
  return str(value)


# ---- Planning.

def releases(config: ExportAllConfig, reg: registry_lib.Registry) -> list[registry_lib.Release]:
  try:
    planned = list(reg.releases(models=config.models, module_types=config.module_types,
                                versions=config.versions))
  except registry_lib.RegistryError as e:
    raise ExportError(str(e)) from None
  if not planned:
    raise ExportError("no published release matches --models/--module_types/--versions "
                      f"({_filters(config)}); see registry/models.toml for what is published")
  return planned


def _filters(config: ExportAllConfig) -> str:
  return (f"models={','.join(config.models) or 'all'}, "
          f"module_types={','.join(config.module_types) or 'all'}, "
          f"versions={','.join(map(str, config.versions)) or 'all'}")


def provide_checkpoints(models: list[str], config: ExportAllConfig,
                        log: Callable[[str], None]) -> dict[str, pathlib.Path]:
  """model -> checkpoint prefix, fetching the absent ones; raises before any export work."""
  from checkpoints import fetch_lib
  prefixes, problems = {}, []
  for model in models:
    prefix = fetch_lib.checkpoint_prefix(model, config.checkpoint_dir)
    if fetch_lib.has_checkpoint(prefix):
      prefixes[model] = prefix  # export_lib reads it strictly; no second graph check here.
      continue
    log(f"{model}: no checkpoint at {prefix}; fetching it")
    try:
      prefixes[model] = fetch_lib.ensure_checkpoint(
          model, config.checkpoint_dir, mirror=config.mirror,
          progress=fetch_lib.ProgressBar(sys.stderr))
    except fetch_lib.CheckpointError as e:
      problems.append(f"{model}: {e}")
  if problems:
    raise ExportError(
        "cannot export without the released checkpoints; nothing was exported.\n  "
        + "\n  ".join(problems)
        + f"\nProvide them with --mirror=<folder or URL holding the archives> (or "
          f"$CHECKPOINT_MIRROR), or place model.ckpt.index and model.ckpt.data-* under "
          f"{pathlib.Path(config.checkpoint_dir)}/<model>/.")
  return prefixes


def plan(config: ExportAllConfig, reg: registry_lib.Registry, planned: list,
         prefixes: dict[str, pathlib.Path]) -> list[Job]:
  from checkpoints import fetch_lib
  hashes = {model: fetch_lib.checkpoint_sha256(prefix) for model, prefix in prefixes.items()}
  jobs = []
  for i, release in enumerate(planned, 1):
    inputs = stamp_inputs(release, hashes[release.model.name], config.exporter)
    key = stamp_key(inputs)
    export_dir = export_path(config.export_dir, release)
    stamp = read_stamp(stamp_path(config.export_dir, release))
    up_to_date = (not config.force and stamp is not None and stamp.get("key") == key
                  and (export_dir / "saved_model.pb").is_file())
    jobs.append(Job(index=i, total=len(planned), release=release,
                    checkpoint=prefixes[release.model.name], export_dir=export_dir,
                    stamp_file=stamp_path(config.export_dir, release),
                    card_file=card_path(config.export_dir, release), stamp_inputs=inputs,
                    stamp_key=key, up_to_date=up_to_date,
                    memory_gb=MEMORY_GB.get(release.model.name, DEFAULT_MEMORY_GB)))
  return jobs


def render_cards(config: ExportAllConfig, reg: registry_lib.Registry,
                 planned: list) -> dict[pathlib.Path, str]:
  """Card file in the export tree -> its text, every card validated by docs_lib."""
  from exporters import card_validator, docs_lib
  docs_config = docs_lib.DocsConfig(output_dir=pathlib.Path(config.export_dir),
                                    models=config.models, module_types=config.module_types,
                                    versions=config.versions)
  try:
    texts = docs_lib.render_cards(docs_config, reg)
  except card_validator.CardError as e:
    raise ExportError(f"{e}:\n  " + "\n  ".join(getattr(e, "problems", ()) or ())) from None
  except registry_lib.RegistryError as e:
    raise ExportError(f"cannot render the cards: {e}") from None
  return {card_path(config.export_dir, r): texts[str(docs_lib.card_path(r))] for r in planned}


# ---- The export directory: lock, stale temporaries, atomic files.

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


def remove_stale_temporaries(export_dir: pathlib.Path, reg: registry_lib.Registry) -> list[str]:
  """Deletes what an interrupted run left (`.tmp-*`, `.old-*`) in the handle directories."""
  collection = export_dir / reg.publisher["name"] / reg.publisher["collection"]
  removed = []
  for handle in sorted(collection.glob("*/*")):
    if not handle.is_dir():
      continue
    for entry in sorted(handle.iterdir()):
      if entry.name.startswith(TEMP_PREFIXES):
        if entry.is_dir() and not entry.is_symlink():
          shutil.rmtree(entry, ignore_errors=True)
        else:
          entry.unlink(missing_ok=True)
        removed.append(str(entry))
  return removed


def write_atomically(path: pathlib.Path, data: bytes) -> None:
  """Writes a temporary sibling and renames it, so a crash never leaves half a file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def write_stamp(job: Job, result: dict, seconds: float) -> None:
  stamp = {
      "format": STAMP_FORMAT,
      "key": job.stamp_key,
      "inputs": job.stamp_inputs,
      "handle": job.release.handle,
      "version": job.release.version.number,
      "export_format": job.release.version.format,
      "checkpoint_path": str(job.checkpoint),
      "code_version": code_version(),
      "seconds": round(seconds, 3),
      "export": result,
  }
  write_atomically(job.stamp_file, (json.dumps(stamp, indent=2, sort_keys=True,
                                               default=_jsonable) + "\n").encode())


def directory_size(path: pathlib.Path) -> int:
  return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---- Progress.

def format_seconds(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
  """Prints which export runs, how far the plan is and the elapsed time; thread-safe."""

  def __init__(self, log: Callable[[str], None], heartbeat_s: float = HEARTBEAT_S):
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

  def skipped(self, job: Job) -> None:
    self.say(f"{job.label}: up to date, skipped")

  def started(self, job: Job) -> None:
    with self.lock:
      self.running[job.label] = time.monotonic()
      self.log(f"{job.label}: exporting ({job.release.version.format}) … "
               f"elapsed {self.elapsed()}")

  def finished(self, job: Job, seconds: float, error: str = "") -> None:
    with self.lock:
      self.running.pop(job.label, None)
      outcome = f"FAILED after {format_seconds(seconds)}: {error}" if error else (
          f"exported and verified in {format_seconds(seconds)}")
      self.log(f"{job.label}: {outcome} … elapsed {self.elapsed()}")

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
          busy = ", ".join(f"{label} ({format_seconds(now - t)})"
                           for label, t in self.running.items())
          self.log(f"… still exporting {busy}; elapsed {self.elapsed()}")


# ---- Running exports.

def _load_exporter(spec: str) -> Callable:
  module, _, name = spec.partition(":")
  return getattr(importlib.import_module(module), name)


def _export_config(job: Job) -> dict:
  return {"model": job.release.model.name, "module_type": job.release.module_type,
          "version": job.release.version.number,
          "checkpoint_path": os.path.abspath(job.checkpoint),
          "export_dir": os.path.abspath(job.export_dir), "overwrite": True}


def _result_dict(result) -> dict:
  """The JSON-safe summary of an ExportResult that the stamp keeps."""
  return json.loads(json.dumps({
      "unused_variables": len(getattr(result, "unused_variables", ()) or ()),
      "verification": getattr(result, "verification", None),
      "phase_seconds": getattr(result, "seconds", None),
  }, default=_jsonable))


def _error_text(e: BaseException) -> str:
  text = str(e) or type(e).__name__
  if isinstance(e, OSError) and e.errno == errno.ENOSPC:
    text = f"no space left on the device ({text})"
  return text if isinstance(e, ExportError) else f"{type(e).__name__}: {text}"


def _run_in_process(jobs: list[Job], config: ExportAllConfig, progress: Progress,
                    done: Callable[[Job, float, dict | None, str], None]) -> None:
  from exporters import export_lib
  exporter = _load_exporter(config.exporter)
  for job in jobs:
    progress.started(job)
    start = time.monotonic()
    try:
      result = exporter(export_lib.ExportConfig(**_export_config(job)),
                        log=lambda m: progress.say(f"    {m}"))
    except Exception as e:  # Any one export's failure is reported; the others still run.
      done(job, time.monotonic() - start, None, _error_text(e))
    else:
      done(job, time.monotonic() - start, _result_dict(result), "")


def _die_with_parent(parent_pid: int) -> None:
  """In a worker: be killed when export_all dies, even by SIGKILL (Linux only)."""
  try:
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    return
  if os.getppid() != parent_pid:  # It died before the line above.
    os._exit(1)


def _run_in_workers(jobs: list[Job], config: ExportAllConfig, progress: Progress,
                    done: Callable[[Job, float, dict | None, str], None]) -> None:
  """One fresh process per export, up to `config.jobs` at once, started while the
  estimated memory in use fits the budget."""
  budget = config.memory_budget_gb or default_memory_budget_gb()
  pending = list(jobs)
  running = {}  # Popen -> (job, start, result file, log file)
  with tempfile.TemporaryDirectory(prefix="export_all-") as work:
    try:
      while pending or running:
        if _interrupted.is_set():
          raise KeyboardInterrupt("interrupted")
        in_use = sum(job.memory_gb for job, *_ in running.values())
        while pending and len(running) < config.jobs:
          job = next((j for j in pending if in_use + j.memory_gb <= budget), None)
          if job is None and not running:
            job = pending[0]
            progress.say(f"{job.label}: its estimated {job.memory_gb:g} GB exceed the "
                         f"--memory_budget_gb of {budget:g}; running it alone")
          if job is None:
            break
          pending.remove(job)
          in_use += job.memory_gb
          running[_start_worker(job, config, work)] = (
              job, time.monotonic(), *_worker_files(job, work))
          progress.started(job)
        time.sleep(0.2)
        for proc in [p for p in running if p.poll() is not None]:
          job, start, result_file, log_file = running.pop(proc)
          seconds = time.monotonic() - start
          result, error = _worker_outcome(proc.returncode, result_file, log_file)
          done(job, seconds, result, error)
    except BaseException:
      for proc in running:
        proc.terminate()  # Workers die at once; run() then removes their temporary dirs.
      for proc in running:
        try:
          proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
          proc.kill()
          proc.wait()
      raise


def _worker_files(job: Job, work: str) -> tuple[pathlib.Path, pathlib.Path]:
  base = pathlib.Path(work) / f"job{job.index}"
  return base.with_suffix(".result.json"), base.with_suffix(".log")


def _start_worker(job: Job, config: ExportAllConfig, work: str) -> subprocess.Popen:
  result_file, log_file = _worker_files(job, work)
  spec = {"exporter": config.exporter, "config": _export_config(job),
          "result_file": str(result_file), "parent_pid": os.getpid()}
  with open(log_file, "wb") as log:
    return subprocess.Popen(
        [sys.executable, "-m", "exporters.export_all_lib", json.dumps(spec)],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)


def _worker_outcome(returncode: int, result_file: pathlib.Path,
                    log_file: pathlib.Path) -> tuple[dict | None, str]:
  try:
    outcome = json.loads(result_file.read_text())
  except (OSError, ValueError):
    tail = log_file.read_text(errors="replace").strip().splitlines()[-15:]
    reason = f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
    return None, f"the export process ended ({reason}) without a result; its last output:\n      " \
        + "\n      ".join(tail)
  if outcome.get("error"):
    return None, outcome["error"]
  return dict(outcome["result"], peak_rss_mb=outcome.get("peak_rss_mb")), ""


def default_memory_budget_gb() -> float:
  """80% of the memory available now."""
  try:
    import psutil
    available = psutil.virtual_memory().available
  except ImportError:
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  return 0.8 * available / 2**30


def _worker_main(argv: list[str]) -> int:
  """Runs one export in this process; `python -m exporters.export_all_lib SPEC_JSON`.

  SIGTERM kills it outright and Ctrl-C is left to the parent: an exception
  raised from a signal handler can land in a finalizer, which swallows it, so
  the parent (holding the lock) removes a stopped worker's temporary dir.
  """
  signal.signal(signal.SIGTERM, signal.SIG_DFL)
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  spec = json.loads(argv[0])
  _die_with_parent(spec.get("parent_pid", os.getppid()))
  from exporters import export_lib
  outcome = {}
  try:
    result = _load_exporter(spec["exporter"])(export_lib.ExportConfig(**spec["config"]),
                                              log=lambda m: print(m, flush=True))
    outcome["result"] = _result_dict(result)
  except Exception as e:
    outcome["error"] = _error_text(e)
  try:
    import resource
    outcome["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
  except ImportError:
    pass
  pathlib.Path(spec["result_file"]).write_text(json.dumps(outcome, default=_jsonable))
  return 0


def interrupt_on_signal(signum, frame):
  """SIGTERM handler for export_all: stop like Ctrl-C (the flag survives a swallowed raise)."""
  _interrupted.set()
  raise KeyboardInterrupt(f"signal {signum}")


# ---- The run.

def run(config: ExportAllConfig, log: Callable[[str], None] = print,
        reg: registry_lib.Registry | None = None) -> ExportAllResult:
  """Exports what is out of date, writes stamps and cards; raises ExportError if any failed.

  The error is raised after every export was tried; `ExportError.result`
  then holds the rows for the table.
  """
  if config.jobs < 1:
    raise ExportError(f"--jobs must be at least 1, not {config.jobs}")
  _interrupted.clear()
  reg = reg or registry_lib.default()
  planned = releases(config, reg)
  cards = render_cards(config, reg, planned)
  prefixes = provide_checkpoints(sorted({r.model.name for r in planned},
                                        key=list(reg.models).index), config, log)
  export_dir = pathlib.Path(config.export_dir)
  progress = Progress(log, config.heartbeat_s)
  rows: dict[int, Row] = {}
  with locked(export_dir), _removing_temporaries_on_error(export_dir, reg):
    stale = remove_stale_temporaries(export_dir, reg)
    if stale:
      log(f"removed {len(stale)} temporary file(s) left by an interrupted run")
    jobs = plan(config, reg, planned, prefixes)
    todo = [j for j in jobs if not j.up_to_date]
    for job in jobs:
      if job.up_to_date:
        progress.skipped(job)
        rows[job.index] = _row(job, "up to date", verified=True,
                               size=directory_size(job.export_dir))

    def done(job: Job, seconds: float, result: dict | None, error: str) -> None:
      if not error:
        try:
          write_stamp(job, result, seconds)
        except OSError as e:
          error = f"exported, but its stamp could not be written: {_error_text(e)}"
      progress.finished(job, seconds, error)
      if error:
        rows[job.index] = _row(job, "failed", seconds=seconds, error=error)
      else:
        rows[job.index] = _row(job, "exported", seconds=seconds, verified=True,
                               size=directory_size(job.export_dir))

    if todo:
      log(f"{len(todo)} of {len(jobs)} export(s) to do"
          + (f", up to {config.jobs} at a time" if config.jobs > 1 and len(todo) > 1 else ""))
      with progress:
        if config.in_process:
          _run_in_process(todo, config, progress, done)
        else:
          _run_in_workers(todo, config, progress, done)
    cards_written = 0
    for path, text in cards.items():
      data = text.encode("utf-8")
      if not path.is_file() or path.read_bytes() != data:
        write_atomically(path, data)
        cards_written += 1
  result = ExportAllResult(rows=[rows[j.index] for j in jobs],
                           seconds=time.monotonic() - progress.t0, cards_written=cards_written)
  if not todo:
    log(f"all {len(jobs)} export(s) up to date; no export work done "
        f"({cards_written} card(s) rewritten)")
  else:
    log(f"{len(result.exported)} exported, {len(jobs) - len(todo)} up to date, "
        f"{len(result.failed)} failed; {cards_written} card(s) written; "
        f"elapsed {format_seconds(result.seconds)}")
  if result.failed:
    error = ExportError(f"{len(result.failed)} of {len(todo)} export(s) failed: " + "; ".join(
        f"{r.handle}/{r.version}" for r in result.failed))
    error.result = result
    raise error
  return result


@contextlib.contextmanager
def _removing_temporaries_on_error(export_dir: pathlib.Path, reg: registry_lib.Registry):
  """After an interruption (the workers are stopped by then), removes what they left."""
  try:
    yield
  except BaseException:
    remove_stale_temporaries(export_dir, reg)
    raise


def _row(job: Job, status: str, **fields) -> Row:
  release = job.release
  return Row(handle=release.handle, version=release.version.number,
             format=release.version.format, status=status, **fields)


def format_table(rows: list[Row]) -> str:
  """handle | version | format | size | seconds | verified, one line per release."""
  header = ("handle", "version", "format", "size", "seconds", "verified")
  lines = [header]
  for r in rows:
    verified = {"exported": "yes", "up to date": "yes (up to date)"}.get(r.status, "FAILED")
    lines.append((r.handle, str(r.version), r.format,
                  _size(r.size) if r.size is not None else "-",
                  f"{r.seconds:.1f}" if r.seconds is not None and r.status != "up to date"
                  else "-", verified))
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
  text.insert(1, "  ".join("-" * w for w in widths))
  for r in rows:
    if r.error:
      text.append(f"{r.handle}/{r.version}: {r.error}")
  return "\n".join(text)


def _size(n: int) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if n < 1024 or unit == "GiB":
      return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024
  return str(n)


if __name__ == "__main__":
  sys.exit(_worker_main(sys.argv[1:]))
