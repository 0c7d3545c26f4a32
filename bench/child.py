"""One benchmark measurement in a fresh process: `python -m bench.child TASK_JSON RESULT_JSON`.

A fresh process per measurement keeps them apart: an export's peak RSS is its
own (`ru_maxrss`), and no measurement inherits another's graphs, threads or
allocator state. The task is a JSON object with a `task` key (`inference`,
`export` or `floor`); the result (or `{"error": traceback}`) is written to
RESULT_JSON. Heavy imports happen inside the tasks, after the clock starts.
"""
from __future__ import annotations

import time

_PROCESS_START = time.monotonic()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402


def peak_rss_bytes() -> int:
  """This process's peak resident set size so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
  import psutil
  return psutil.Process().memory_info().rss


def directory_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


def checkpoint_data_bytes(checkpoint_path: str) -> int:
  """Size of the checkpoint's data file(s): `<prefix>.data-*`."""
  folder, prefix = os.path.split(os.path.abspath(checkpoint_path))
  return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)
             if name.startswith(prefix + ".data-"))


def _summary(values: list[float]) -> dict:
  return {"median": statistics.median(values), "min": min(values), "max": max(values),
          "values": values}


def run_inference(task: dict) -> dict:
  """Loads every workload of one model, then times them interleaved, round by round.

  Per batch size: `warmup` untimed calls per workload, then `repeats` rounds;
  in each round every workload makes the same number of calls (sized so the
  floor's run lasts about `min_run_seconds`), in an order rotated per round
  so that no workload always runs right after another. Throughput of a run
  is images / total time; its latency is the median call time.
  """
  import numpy as np

  import registry
  from bench import workloads as workloads_lib

  imported = time.monotonic()
  model = registry.default().model(task["model"])
  loaded, loads = [], {}
  for name in task["workloads"]:
    workload = workloads_lib.load(name, model, task["checkpoint_path"], task["exports"])
    loaded.append(workload)
    loads[name] = workload.load_seconds
  results = []
  rng = np.random.RandomState(task.get("seed", 0))
  for batch_size in task["batch_sizes"]:
    images = rng.uniform(0.0, 1.0, (batch_size, model.image_size, model.image_size, 3)).astype(
        np.float32)
    inputs = {w.name: w.prepare(images) for w in loaded}
    outputs, first_call = {}, {}
    for w in loaded:
      for _ in range(max(1, task["warmup"])):
        start = time.perf_counter()
        outputs[w.name] = w.run(inputs[w.name])
        first_call[w.name] = time.perf_counter() - start
    pace = first_call.get(workloads_lib.SLIM, statistics.median(first_call.values()))
    calls = max(1, int(round(task["min_run_seconds"] / max(pace, 1e-6))))
    runs = {w.name: {"throughput": [], "latency_ms": []} for w in loaded}
    for round_index in range(task["repeats"]):
      shift = round_index % len(loaded)
      for w in loaded[shift:] + loaded[:shift]:
        times = []
        for _ in range(calls):
          start = time.perf_counter()
          w.run(inputs[w.name])
          times.append(time.perf_counter() - start)
        runs[w.name]["throughput"].append(calls * batch_size / sum(times))
        runs[w.name]["latency_ms"].append(1000.0 * statistics.median(times))
    reference = outputs.get(workloads_lib.SLIM)
    for w in loaded:
      diff = None
      if reference is not None and w.name in workloads_lib.EXPORTED + (workloads_lib.SLIM,):
        diff = float(np.max(np.abs(outputs[w.name] - reference)))
      results.append({
          "workload": w.name, "batch_size": batch_size, "calls_per_run": calls,
          "throughput": _summary(runs[w.name]["throughput"]),
          "latency_ms": _summary(runs[w.name]["latency_ms"]),
          "max_abs_diff_vs_slim": diff,
      })
  for w in loaded:
    w.close()
  return {"model": model.name, "import_seconds": imported - _PROCESS_START,
          "load_seconds": loads, "results": results, "peak_rss_bytes": peak_rss_bytes()}


def run_export(task: dict) -> dict:
  """One export through export_lib, its wall time split into phases (see bench.phases)."""
  import tensorflow  # noqa: F401  (imported up front: the baseline is TensorFlow's footprint)
  import tensorflow_hub  # noqa: F401

  import registry
  from bench import phases
  from exporters import export_lib

  release = registry.default().release(task["model"], task["module_type"], task["version"])
  writer = export_lib.writer_for(release.version.format)
  imported = time.monotonic()
  baseline_rss = current_rss_bytes()
  clock = phases.PhaseClock()
  clock.install(writer)
  config = export_lib.ExportConfig(
      model=task["model"], module_type=task["module_type"], version=task["version"],
      checkpoint_path=task["checkpoint_path"], export_dir=task["export_dir"], overwrite=True)
  start = time.monotonic()
  result = export_lib.export(config, log=lambda message: print(message, flush=True))
  total = time.monotonic() - start
  return {
      "handle": release.handle_with_version, "format": release.version.format,
      "import_seconds": imported - _PROCESS_START, "total_seconds": total,
      "export_lib_seconds": dict(result.seconds),
      "phase_seconds": {stage: clock.by_stage(stage) for stage in ("other", "write", "verify")},
      "phase_calls": {f"{stage}.{phase}": n for (stage, phase), n in clock.calls.items()},
      "probes_skipped": clock.skipped,
      "baseline_rss_bytes": baseline_rss, "peak_rss_bytes": peak_rss_bytes(),
      "bytes_written": directory_bytes(task["export_dir"]),
      "checkpoint_data_bytes": checkpoint_data_bytes(task["checkpoint_path"]),
  }


def run_floor(task: dict) -> dict:
  """What any export-all of one model must do: read, build twice, write each release's bytes.

  Reading is the network's values from the checkpoint (no graph); the two
  graph constructions (inference and training mode) are the Slim builder
  alone in fresh graphs; the write puts the variables' bytes into a scratch
  file once per release, as the exports must.
  """
  import numpy as np
  import tensorflow.compat.v1 as tf1

  import tensorflow as tf
  import tensorflow_hub  # noqa: F401  (what an export-all process imports too)

  import registry
  from exporters import slim_graph

  imported = time.monotonic()
  model = registry.default().model(task["model"])
  seconds = {"import": imported - _PROCESS_START}
  start = time.monotonic()
  reader = tf.train.load_checkpoint(task["checkpoint_path"])
  values = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "global_step" and not name.startswith("aux_")}
  seconds["read_checkpoint"] = time.monotonic() - start
  for training in (False, True):
    graph = tf1.Graph()
    with graph.as_default():
      images = tf1.placeholder(tf1.float32, [None, model.image_size, model.image_size, 3])
      start = time.monotonic()
      slim_graph.build_outputs(model, images, training=training)
      seconds["build_training" if training else "build_inference"] = time.monotonic() - start
  os.makedirs(task["scratch_dir"], exist_ok=True)
  scratch = os.path.join(task["scratch_dir"], "floor-write.bin")
  arrays = [np.ascontiguousarray(v) for v in values.values()]
  start = time.monotonic()
  for _ in range(task["releases"]):
    with open(scratch, "wb") as f:
      for array in arrays:
        f.write(array.data)
    os.remove(scratch)
  seconds["write"] = time.monotonic() - start
  return {"model": model.name, "seconds": seconds, "releases": task["releases"],
          "bytes_per_release": int(sum(a.nbytes for a in arrays)),
          "peak_rss_bytes": peak_rss_bytes()}


TASKS = {"inference": run_inference, "export": run_export, "floor": run_floor}


def main(argv: list[str]) -> int:
  task_file, result_file = argv
  with open(task_file) as f:
    task = json.load(f)
  try:
    result = TASKS[task["task"]](task)
    code = 0
  except Exception:  # Reported to the parent, which records it and goes on.
    result = {"error": traceback.format_exc()}
    code = 1
  with open(result_file, "w") as f:
    json.dump(result, f, indent=1)
  return code


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
