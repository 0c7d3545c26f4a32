"""The benchmark harness behind `make bench` / `python -m bench`.

A run, on the current machine, in this order (each measurement that needs a
clean process runs in `bench.child`):

  1. checkpoints: `--checkpoint_dir/<model>/model.ckpt`, or generated from
     ../shared/checkpoints (released layout, deterministic values) into
     `<output_dir>/checkpoints/`;
  2. export cost (part `export`): per model, one model run
     (exporters.pipeline.export_model) over every published release of the
     model (or those --module_types and --versions select) in a fresh
     process: its wall time split into the pipeline's own phases and its
     network constructions counted (bench.phases), peak RSS, bytes written
     vs the checkpoint's data; its newest classification
     releases are also what part `inference` loads;
  3. inference (part `inference`): per model, every workload (bench.workloads)
     loaded in one process and timed interleaved; throughput and latency as
     median, min and max over `repeats` rounds after warm-up;
  4. construction (part `construction`): per model, graph-mode constructions
     of the network with and without tf_slim_compat's fix 3, alternated in
     one process (bench.child.run_construction);
  5. export-all (part `export_all`): `python -m exporters.export_all` over the
     models' every release (or the selected ones), once per `--export_all_jobs`
     value, against its floor (bench.child.run_floor).

Ratios are the headline; `targets.evaluate` marks each target met or missed.
Results go to `<output_dir>/bench.json`, `bench.md` and `bench.png` (bench.report).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

import registry as registry_lib
from bench import phases as phases_lib
from bench import workloads as workloads_lib
from bench.workloads import release_filter_flags
from exporters.export_tree import events as events_lib
from exporters.fingerprint import installed_versions

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DIR = pathlib.Path(os.environ.get("SHARED_DIR", REPO_ROOT.parent / "shared"))
PARTS = ("export", "inference", "construction", "export_all")
# Batch sizes when --batch_sizes is not given: 32 for the mobile models, 8 for the large.
DEFAULT_BATCH_SIZES = {224: (1, 32), 331: (1, 8)}
INFERENCE_MODULE_TYPE = "classification"


class BenchError(RuntimeError):
  """The benchmark cannot run as configured; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  output_dir: str = "bench_results"
  models: tuple[str, ...] = ()  # Empty: every model with a published version.
  # The releases the export cost and export-all parts measure (empty: all of the models').
  module_types: tuple[str, ...] = ()
  versions: tuple[int, ...] = ()
  batch_sizes: tuple[int, ...] = ()  # Empty: DEFAULT_BATCH_SIZES by image size.
  repeats: int = 5  # Timed inference rounds per batch size.
  warmup: int = 2  # Untimed calls per workload and batch size before timing.
  min_run_seconds: float = 1.0  # Length of one timed run (at the floor's speed).
  export_repeats: int = 1  # Fresh-process model runs per model.
  parts: tuple[str, ...] = PARTS
  workloads: tuple[str, ...] = workloads_lib.ALL
  checkpoint_dir: str | None = None  # Holds <model>/model.ckpt; None: generate.
  construction_rounds: int = 3  # Rounds of constructions with and without fix 3, per mode.
  export_all_jobs: tuple[int, ...] = (1, 2)
  # Per export-all run: enough for nasnet_mobile's to finish (a stopped run is extrapolated).
  export_all_timeout_s: float = 900.0
  child_timeout_s: float = 3600.0


def _log(message: str) -> None:
  print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- Statistics.

def summarize(values: list[float]) -> dict:
  """Median, min and max (and the values) of repeated measurements."""
  ordered = sorted(values)
  n = len(ordered)
  median = ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
  return {"median": median, "min": ordered[0], "max": ordered[-1], "values": list(values)}


def ratio_summary(numerators: list[float], denominators: list[float]) -> dict:
  """Per-round ratios (runs of a round are adjacent in time, so load drifts cancel)."""
  return summarize([a / b for a, b in zip(numerators, denominators)])


# ---- The machine.

def machine_info() -> dict:
  """What the numbers came from, for the report's header."""
  import psutil

  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  versions = installed_versions(
      ("tensorflow", "tensorflow-cpu", "tf-keras", "tensorflow-hub", "tf-slim", "numpy"))
  if "tensorflow" not in versions and "tensorflow-cpu" in versions:
    versions["tensorflow"] = versions["tensorflow-cpu"]
  return {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "platform": platform.platform(), "cpu": cpu, "logical_cores": os.cpu_count(),
      "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
      "memory_bytes": psutil.virtual_memory().total, "python": platform.python_version(),
      "libraries": versions, "git": _git_revision(), "load_average_start": os.getloadavg(),
  }


def _git_revision() -> str | None:
  try:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, text=True,
                          capture_output=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=REPO_ROOT, text=True, capture_output=True).stdout.strip()
    return head + ("+dirty" if dirty else "")
  except (OSError, subprocess.CalledProcessError):
    return None


# ---- Child processes.

def run_child(task: dict, log_path: pathlib.Path, timeout_s: float) -> dict:
  """Runs `bench.child` on `task`; returns its result ({"error": ...} on failure)."""
  log_path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix="bench-child-") as work:
    task_file, result_file = os.path.join(work, "task.json"), os.path.join(work, "result.json")
    with open(task_file, "w") as f:
      json.dump(task, f)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.monotonic()
    with open(log_path, "w") as log:
      try:
        subprocess.run([sys.executable, "-m", "bench.child", task_file, result_file],
                       cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                       timeout=timeout_s)
      except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s (log: {log_path})"}
    wall = time.monotonic() - start
    try:
      with open(result_file) as f:
        result = json.load(f)
    except (OSError, ValueError):
      tail = log_path.read_text(errors="replace").strip().splitlines()[-10:]
      return {"error": "the child process ended without a result:\n" + "\n".join(tail)}
  result["process_wall_seconds"] = wall
  return result


# ---- Checkpoints.

def checkpoint_path(config: BenchConfig, model: str) -> pathlib.Path:
  """`<checkpoint_dir>/<model>/model.ckpt`, generating it when no --checkpoint_dir is given."""
  if config.checkpoint_dir:
    prefix = pathlib.Path(config.checkpoint_dir, model, "model.ckpt")
    if not pathlib.Path(f"{prefix}.index").exists():
      raise BenchError(f"no checkpoint at {prefix} (expected {prefix}.index and .data-*); "
                       f"fetch it with `python -m checkpoints.fetch --model={model}` or point "
                       f"--checkpoint_dir at a folder holding <model>/model.ckpt.*")
    return prefix
  prefix = pathlib.Path(config.output_dir, "checkpoints", model, "model.ckpt").resolve()
  if pathlib.Path(f"{prefix}.index").exists():
    return prefix
  script = SHARED_DIR / "checkpoints" / "make_ckpt.py"
  manifest = SHARED_DIR / "checkpoints" / "manifests" / f"{model}.tsv"
  if not (script.exists() and manifest.exists()):
    raise BenchError(f"no checkpoint for {model}: pass --checkpoint_dir=DIR holding "
                     f"DIR/{model}/model.ckpt.* (the released checkpoints; "
                     f"`python -m checkpoints.fetch` gets them), or run beside ../shared, "
                     f"whose {script.relative_to(SHARED_DIR)} generates one")
  _log(f"{model}: generating a checkpoint of the released layout at {prefix}")
  prefix.parent.mkdir(parents=True, exist_ok=True)
  subprocess.run([sys.executable, str(script), str(manifest), str(prefix), "0"], check=True,
                 capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  return prefix


# ---- Part 2: export cost.

def export_releases(reg: registry_lib.Registry, model: str) -> dict[str, registry_lib.Release]:
  """format -> the newest classification release of `model` in it: what inference loads."""
  newest = {}
  for version in reg.model_versions(model):
    newest[version.format] = reg.release(model, INFERENCE_MODULE_TYPE, version.number)
  return newest


def measured_releases(config: BenchConfig, reg: registry_lib.Registry,
                      model: str) -> list[registry_lib.Release]:
  """The releases of `model` that the export cost and export-all parts measure: every
  published one, or those --module_types and --versions select."""
  return list(reg.releases(models=[model], module_types=config.module_types,
                           versions=config.versions))


def export_dir_for(config: BenchConfig, release: registry_lib.Release) -> pathlib.Path:
  return pathlib.Path(config.output_dir, "exports", release.model.name, release.module_type,
                      str(release.version.number)).resolve()


def _model_export_task(config: BenchConfig, model: str, releases, checkpoint) -> dict:
  return {"task": "model_export", "model": model, "checkpoint_path": str(checkpoint),
          "targets": [[r.module_type, r.version.number, str(export_dir_for(config, r))]
                      for r in releases]}


def verification_seconds(run: dict) -> float:
  """What verifying costs a model run: its releases' verify calls, plus the reference's
  constructions outside them (its inference graph, built before any release; it also
  lists the variables the checkpoint is read against, so this errs on the high side)."""
  constructions = phases_lib.construction_summary(run["constructions"])
  return (sum(r["verify"] or 0.0 for r in run["releases"])
          + constructions["reference_seconds_outside_verify"])


def summarize_model_export(runs: list[dict]) -> dict:
  """Repeated model runs of one model: median/min/max of every phase, with the headline ratios.

  Model-level phases come from the pipeline's ExportResult.seconds (reference,
  read_checkpoint, construct_<format>); per release its write and verify;
  `other` is the rest of the run's wall time (moving into place, gc, logging).
  Memory is the child's peak RSS, also above its RSS right after importing
  TensorFlow (`baseline`); ratios are to the checkpoint's data file.
  """
  first = runs[0]
  ckpt = first["checkpoint_data_bytes"]
  phase_names = list(dict.fromkeys(k for r in runs for k in r["model_seconds"]))
  per_run = []
  for run in runs:
    released = run["releases"]
    numbers = {name: run["model_seconds"].get(name, 0.0) for name in phase_names}
    numbers["write"] = sum(r["write"] or 0.0 for r in released)
    numbers["verify"] = sum(r["verify"] or 0.0 for r in released)
    numbers["wall"] = run["wall_seconds"]
    numbers["other"] = numbers["wall"] - sum(
        numbers[k] for k in phase_names + ["write", "verify"])
    numbers["verification"] = verification_seconds(run)
    per_run.append(numbers)
  releases = []
  for index, release in enumerate(first["releases"]):
    entry = {k: release[k] for k in ("handle", "module_type", "version", "format")}
    errors = [r["releases"][index]["error"] for r in runs if r["releases"][index]["error"]]
    if errors:
      entry["error"] = errors[0]
    else:
      for phase in phases_lib.RELEASE_PHASES:
        entry[phase] = summarize([r["releases"][index][phase] for r in runs])
      entry["bytes_written"] = release["bytes_written"]
      entry["bytes_written_over_checkpoint"] = release["bytes_written"] / ckpt
    releases.append(entry)
  peak = [r["peak_rss_bytes"] for r in runs]
  above = [r["peak_rss_bytes"] - r["baseline_rss_bytes"] for r in runs]
  bytes_written = sum(r["bytes_written"] for r in first["releases"])
  constructions = phases_lib.construction_summary(first["constructions"])
  return {
      "model": first["model"], "repeats": len(runs),
      "releases_exported": sum("error" not in r for r in releases),
      "releases_planned": len(releases),
      "seconds": {k: summarize([p[k] for p in per_run]) for k in per_run[0]},
      "verification_share": summarize([p["verification"] / p["wall"] for p in per_run]),
      "releases": releases,
      "constructions": constructions,
      "import_seconds": summarize([sum(r["import_seconds"].values()) for r in runs]),
      "peak_rss_bytes": summarize(peak),
      "baseline_rss_bytes": summarize([r["baseline_rss_bytes"] for r in runs]),
      "peak_rss_above_baseline_bytes": summarize(above),
      "peak_rss_over_checkpoint": summarize([p / ckpt for p in peak]),
      "peak_rss_above_baseline_over_checkpoint": summarize([a / ckpt for a in above]),
      "checkpoint_data_bytes": ckpt,
      "bytes_written": bytes_written,
      "bytes_written_over_checkpoint": bytes_written / ckpt,
  }


def measure_model_export(config: BenchConfig, model: str, checkpoint, logs: pathlib.Path,
                         timed: bool, formats) -> tuple[dict | None, dict]:
  """Model runs of `model`; returns (summary or None, format -> dir of what inference loads).

  Timed (part `export`): each run exports the model's measured releases
  (measured_releases) whose format is in `formats`, in a fresh process,
  `export_repeats` times; what inference loads and they leave out is then
  exported untimed. Untimed, one run exports only the newest classification
  release per format, to have something to load.
  """
  reg = registry_lib.default()
  loaded = {fmt: r for fmt, r in export_releases(reg, model).items() if fmt in formats}
  if timed:
    releases = [r for r in measured_releases(config, reg, model) if r.version.format in formats]
  else:
    releases = list(loaded.values())
  if not releases:
    return None, {}
  repeats = config.export_repeats if timed else 1
  runs = []
  for attempt in range(repeats):
    _log(f"{model}: model run over {len(releases)} release(s)"
         f"{' (timed)' if timed else ''} {attempt + 1}/{repeats}")
    result = run_child(_model_export_task(config, model, releases, checkpoint),
                       logs / f"model_export-{model}-{attempt}.log", config.child_timeout_s)
    if "error" in result:
      _log(f"{model}: model run FAILED: {result['error'].strip().splitlines()[-1]}")
      return {"model": model, "error": result["error"]}, {}
    for release in result["releases"]:
      if release["error"]:
        _log(f"{release['handle']}: export FAILED: {release['error'].splitlines()[-1]}")
    runs.append(result)
  failed = {r["handle"] for r in runs[-1]["releases"] if r["error"]}
  exported = {r.handle_with_version for r in releases}
  dirs = {fmt: str(export_dir_for(config, r)) for fmt, r in loaded.items()
          if r.handle_with_version in exported and r.handle_with_version not in failed}
  if not timed:
    return None, dirs
  unexported = {fmt for fmt, r in loaded.items() if r.handle_with_version not in exported}
  if unexported and "inference" in config.parts:  # Filtered out of the timed runs.
    dirs.update(measure_model_export(config, model, checkpoint, logs, timed=False,
                                     formats=unexported)[1])
  summary = summarize_model_export(runs)
  s = summary["seconds"]
  _log(f"{model}: {summary['releases_exported']}/{summary['releases_planned']} releases in "
       f"{s['wall']['median']:.0f} s (verify {s['verify']['median']:.0f} s), "
       f"{summary['constructions']['networks']} network constructions, peak RSS "
       f"{summary['peak_rss_bytes']['median'] / 2**20:.0f} MiB")
  return summary, dirs


# ---- Network construction (tf_slim_compat's fix 3).

def measure_construction(config: BenchConfig, model: str, logs: pathlib.Path) -> dict:
  """Constructions of `model` with and without fix 3, side by side in one child."""
  _log(f"{model}: constructing the network with and without tf_slim_compat's fix 3, "
       f"{config.construction_rounds} round(s)")
  result = run_child({"task": "construction", "model": model,
                      "rounds": config.construction_rounds},
                     logs / f"construction-{model}.log", config.child_timeout_s)
  if "error" in result:
    _log(f"{model}: construction FAILED: {result['error'].strip().splitlines()[-1]}")
    return result
  for mode, m in result["modes"].items():
    _log(f"{model} {mode}: {m['with_fix']['median']:.1f} s with fix 3, "
         f"{m['without_fix']['median']:.1f} s without "
         f"({m['ratio_with_to_without']['median']:.2f}x)")
  return result


# ---- Part 1: inference.

def batch_sizes_for(config: BenchConfig, model: registry_lib.Model) -> tuple[int, ...]:
  return config.batch_sizes or DEFAULT_BATCH_SIZES.get(model.image_size, (1, 8))


def measure_inference(config: BenchConfig, model: registry_lib.Model, checkpoint,
                      export_dirs: dict, logs: pathlib.Path) -> dict:
  """Times the model's workloads; adds per-round throughput ratios to the floor and keras."""
  reg = registry_lib.default()
  releases = export_releases(reg, model.name)
  exports, wanted = {}, []
  for name in config.workloads:
    if not workloads_lib.applies(name, model.name):
      continue
    fmt = workloads_lib.FORMAT_OF.get(name)
    if fmt:
      if fmt not in export_dirs:
        _log(f"{model.name}: skipping {name}: no {fmt} export to load")
        continue
      exports[fmt] = export_dirs[fmt]
    wanted.append(name)
  task = {"task": "inference", "model": model.name, "checkpoint_path": str(checkpoint),
          "exports": exports, "workloads": wanted,
          "batch_sizes": list(batch_sizes_for(config, model)), "repeats": config.repeats,
          "warmup": config.warmup, "min_run_seconds": config.min_run_seconds}
  _log(f"{model.name}: inference, workloads {', '.join(wanted)}, batch sizes "
       f"{task['batch_sizes']}, {config.repeats} round(s)")
  result = run_child(task, logs / f"inference-{model.name}.log", config.child_timeout_s)
  if "error" in result:
    _log(f"{model.name}: inference FAILED: {result['error'].splitlines()[-1]}")
    return result
  result["versions"] = {}  # Workload -> the version of the export it loaded.
  for name in wanted:
    fmt = workloads_lib.FORMAT_OF.get(name)
    if fmt in releases:
      result["versions"][name] = releases[fmt].version.number
  by_key = {(r["workload"], r["batch_size"]): r for r in result["results"]}
  for r in result["results"]:
    for baseline, key in ((workloads_lib.SLIM, "ratio_to_slim"),
                          (workloads_lib.KERAS_APPLICATIONS, "ratio_to_keras")):
      base = by_key.get((baseline, r["batch_size"]))
      if base and r["workload"] != baseline:
        r[key] = ratio_summary(r["throughput"]["values"], base["throughput"]["values"])
    _log(f"{model.name} {r['workload']} batch {r['batch_size']}: "
         f"{r['throughput']['median']:.1f} images/s, {r['latency_ms']['median']:.1f} ms"
         + (f", {r['ratio_to_slim']['median']:.3f}x slim" if "ratio_to_slim" in r else ""))
  return result


# ---- Part 3: export-all.

def exported_releases(events_path: pathlib.Path) -> tuple[int | None, list[float], list[float]]:
  """From an export_all run's typed records (its progress lines are for people): the releases
  it planned to export, and per release exported, its seconds and the run's elapsed seconds
  when it was done. A run that failed before it opened its events file has none."""
  run_events = events_lib.read_events(events_path) if events_path.exists() else []
  planned = next((e.to_do for e in run_events if isinstance(e, events_lib.Planned)), None)
  exported = [e for e in run_events if isinstance(e, events_lib.Done) and e.status == "exported"
              and e.format in registry_lib.FORMATS]  # Not the TF.js deployments.
  return planned, [e.seconds for e in exported], [e.elapsed_seconds for e in exported]


def _process_tree_rss(process) -> int:
  import psutil
  try:
    tree = [process] + process.children(recursive=True)
  except psutil.Error:
    return 0
  total = 0
  for p in tree:
    try:
      total += p.memory_info().rss
    except psutil.Error:
      pass
  return total


def run_export_all(config: BenchConfig, models: list[str], checkpoint_dir: pathlib.Path,
                   jobs: int, logs: pathlib.Path) -> dict:
  """One `exporters.export_all` run in a scratch dir, stopped (and extrapolated) at the timeout."""
  import psutil

  scratch = pathlib.Path(config.output_dir, f"export_all_scratch_jobs{jobs}").resolve()
  shutil.rmtree(scratch, ignore_errors=True)
  command = [sys.executable, "-m", "exporters.export_all", f"--checkpoint_dir={checkpoint_dir}",
             f"--export_dir={scratch}", f"--models={','.join(models)}",
             *release_filter_flags(config), f"--jobs={jobs}"]
  log_path = logs / f"export_all-jobs{jobs}.log"
  events_path = logs / f"export_all-jobs{jobs}.events.jsonl"
  command.append(f"--events_file={events_path}")
  _log(f"export-all --jobs={jobs} over {', '.join(models)} (stopped after "
       f"{config.export_all_timeout_s:.0f} s)")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  peak_rss, timed_out = 0, False
  start = time.monotonic()
  with open(log_path, "w") as log:
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    watched = psutil.Process(proc.pid)
    while proc.poll() is None:
      peak_rss = max(peak_rss, _process_tree_rss(watched))
      if time.monotonic() - start > config.export_all_timeout_s:
        timed_out = True
        os.killpg(proc.pid, signal.SIGTERM)  # Its own session: export_all and its workers.
        try:
          proc.wait(timeout=15)  # Its scratch directory is deleted below either way.
        except subprocess.TimeoutExpired:
          os.killpg(proc.pid, signal.SIGKILL)
          proc.wait()
        break
      time.sleep(0.25)
  wall = time.monotonic() - start
  planned, durations, finished_at = exported_releases(events_path)
  finished = len(durations)
  result = {"jobs": jobs, "wall_seconds": wall, "returncode": proc.returncode,
            "timed_out": timed_out, "exports_finished": finished, "exports_planned": planned,
            "export_seconds": durations, "finished_at_seconds": finished_at,
            "peak_tree_rss_bytes": peak_rss, "log": str(log_path)}
  if timed_out:
    # A fallback only (the default timeout lets a nasnet_mobile run finish): the wall time
    # so far plus each unfinished release at the mean time of the finished ones, as many
    # at a time as model runs can be (one per model). Release times leave out the model
    # runs' own phases (reference, checkpoint, constructions), so models not started yet
    # make this too low. None when no release finished.
    parallel = max(1, min(jobs, len(models)))
    result["projected_wall_seconds"] = (
        wall + (planned - finished) * (sum(durations) / finished) / parallel
        if finished else None)
  elif proc.returncode:
    result["error"] = f"export_all exited {proc.returncode}; see {log_path}"
  result["bytes_written"] = sum(p.stat().st_size for p in scratch.rglob("*") if p.is_file()) \
      if scratch.exists() else 0
  shutil.rmtree(scratch, ignore_errors=True)
  _log(f"export-all --jobs={jobs}: {wall:.0f} s, {finished}/{planned} exports"
       + (" (stopped at the timeout)" if timed_out else ""))
  return result


def measure_export_all(config: BenchConfig, models: list[str], checkpoints: dict,
                       logs: pathlib.Path) -> dict:
  """Export-all per --export_all_jobs value, and its floor (bench.child.run_floor): per model,
  reading the checkpoint, one inference and one training construction per format family
  and writing each release's bytes, after one process start."""
  reg = registry_lib.default()
  checkpoint_dirs = {pathlib.Path(p).parent.parent for p in checkpoints.values()}
  if len(checkpoint_dirs) != 1:
    raise BenchError("export-all needs every model's checkpoint under one <dir>/<model>/")
  checkpoint_dir = checkpoint_dirs.pop()
  floors = {}
  for model in models:
    releases = measured_releases(config, reg, model)
    formats = list(dict.fromkeys(r.version.format for r in releases))
    _log(f"{model}: measuring the export-all floor ({len(releases)} releases, "
         f"format families {', '.join(formats)})")
    floors[model] = run_child(
        {"task": "floor", "model": model, "checkpoint_path": str(checkpoints[model]),
         "releases": len(releases), "formats": formats,
         "scratch_dir": str(pathlib.Path(config.output_dir).resolve())},
        logs / f"floor-{model}.log", config.child_timeout_s)
  floor_parts = [f for f in floors.values() if "error" not in f]
  floor = None
  if len(floor_parts) == len(models):
    # One process start (imports) for the run, then per model: read, constructions, writes.
    floor = max(f["seconds"]["import"] for f in floor_parts) + sum(
        s for f in floor_parts for k, s in f["seconds"].items() if k != "import")
  runs = [run_export_all(config, models, checkpoint_dir, jobs, logs)
          for jobs in config.export_all_jobs]
  result = {"models": models, "floor_seconds": floor, "floor": floors, "runs": runs}
  for run in runs:
    wall = run.get("projected_wall_seconds") if run["timed_out"] else run["wall_seconds"]
    run["effective_wall_seconds"] = wall
    if floor and wall:
      run["ratio_to_floor"] = wall / floor
  base = next((r for r in runs if r["jobs"] == 1 and r.get("effective_wall_seconds")), None)
  for run in runs:
    if base and run.get("effective_wall_seconds"):
      run["speedup_vs_jobs1"] = base["effective_wall_seconds"] / run["effective_wall_seconds"]
  return result


# ---- The run.

def published_models(reg: registry_lib.Registry) -> list[str]:
  return [name for name in reg.models if reg.model_versions(name)]


def check_config(config: BenchConfig, reg: registry_lib.Registry) -> list[str]:
  """The models to measure; raises BenchError on a flag that cannot work."""
  unknown = [p for p in config.parts if p not in PARTS]
  if unknown:
    raise BenchError(f"unknown --parts {unknown}; choose from {', '.join(PARTS)}")
  unknown = [w for w in config.workloads if w not in workloads_lib.ALL]
  if unknown:
    raise BenchError(f"unknown --workloads {unknown}; choose from {', '.join(workloads_lib.ALL)}")
  if config.repeats < 1 or config.export_repeats < 1 or config.construction_rounds < 1:
    raise BenchError("--repeats, --export_repeats and --construction_rounds must be at least 1")
  if any(b < 1 for b in config.batch_sizes) or any(j < 1 for j in config.export_all_jobs):
    raise BenchError("--batch_sizes and --export_all_jobs must be positive")
  published = published_models(reg)
  models = list(config.models) or published
  for name in models:
    if name not in reg.models:
      raise BenchError(f"unknown model {name!r}; known: {', '.join(reg.models)}")
    if name not in published:
      raise BenchError(f"{name} has no published version to export; "
                       f"models with versions: {', '.join(published)}")
    try:
      selected = measured_releases(config, reg, name)
    except registry_lib.RegistryError as e:
      raise BenchError(str(e)) from None
    if not selected:
      raise BenchError(f"no published release of {name} matches "
                       f"{' '.join(release_filter_flags(config))}")
  return models


def run(config: BenchConfig, log: Callable[[str], None] = _log) -> dict:
  """Measures what `config` asks for and writes bench.json, bench.md and bench.png."""
  from bench import report, targets

  reg = registry_lib.default()
  models = check_config(config, reg)
  output_dir = pathlib.Path(config.output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  logs = output_dir / "logs"
  started = time.monotonic()
  results = {"config": dataclasses.asdict(config), "machine": machine_info(),
             "models": models, "inference": {}, "exports": {}, "construction": {},
             "export_all": None}
  checkpoints = {m: checkpoint_path(config, m) for m in models}
  results["checkpoints"] = {m: str(p) for m, p in checkpoints.items()}
  timed_exports = "export" in config.parts
  formats = set(registry_lib.FORMATS) if timed_exports else {
      workloads_lib.FORMAT_OF[w] for w in config.workloads
      if w in workloads_lib.FORMAT_OF and "inference" in config.parts}
  for model in models:
    summary, dirs = measure_model_export(config, model, checkpoints[model], logs,
                                         timed=timed_exports, formats=formats)
    if timed_exports and summary:
      results["exports"][model] = summary
    if "inference" in config.parts:
      results["inference"][model] = measure_inference(config, reg.model(model),
                                                      checkpoints[model], dirs, logs)
    if "construction" in config.parts:
      results["construction"][model] = measure_construction(config, model, logs)
  if "export_all" in config.parts:
    results["export_all"] = measure_export_all(config, models, checkpoints, logs)
  results["machine"]["load_average_end"] = os.getloadavg()
  results["wall_seconds"] = time.monotonic() - started
  results["targets"] = targets.evaluate(results)
  report.write_all(results, output_dir)
  log(f"wrote {output_dir / 'bench.json'}, bench.md and bench.png in "
      f"{results['wall_seconds'] / 60:.1f} min")
  return results
