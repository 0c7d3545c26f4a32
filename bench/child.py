"""One benchmark measurement in a fresh process: `python -m bench.child TASK_JSON RESULT_JSON`.

A fresh process per measurement keeps them apart: a model run's peak RSS is
its own (`ru_maxrss`), and no measurement inherits another's graphs, threads
or allocator state. The task is a JSON object with a `task` key; the result
(or `{"error": traceback}`) is written to RESULT_JSON. Heavy imports happen
inside the tasks, after the clock starts. Tasks: `inference` (the workloads
of bench.workloads, timed interleaved), `model_export` (one model run over
its releases, split into phases: bench.phases), `floor` (what any export-all
of a model must do) and `construction` (tf_slim_compat's fix 3 side by side).
"""
from __future__ import annotations

import time

_PROCESS_START = time.monotonic()

import contextlib  # noqa: E402
import gc  # noqa: E402
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
    images = rng.uniform(0.0, 1.0, (batch_size, *model.input_shape[1:])).astype(
        np.float32)
    active = [w for w in loaded if w.batch_size in (None, batch_size)]
    inputs = {w.name: w.prepare(images) for w in active}
    outputs, first_call = {}, {}
    for w in active:
      for _ in range(max(1, task["warmup"])):
        start = time.perf_counter()
        outputs[w.name] = w.run(inputs[w.name])
        first_call[w.name] = time.perf_counter() - start
    pace = first_call.get(workloads_lib.SLIM, statistics.median(first_call.values()))
    calls = max(1, int(round(task["min_run_seconds"] / max(pace, 1e-6))))
    runs = {w.name: {"throughput": [], "latency_ms": []} for w in active}
    for round_index in range(task["repeats"]):
      shift = round_index % len(active)
      for w in active[shift:] + active[:shift]:
        times = []
        for _ in range(calls):
          start = time.perf_counter()
          w.run(inputs[w.name])
          times.append(time.perf_counter() - start)
        runs[w.name]["throughput"].append(calls * batch_size / sum(times))
        runs[w.name]["latency_ms"].append(1000.0 * statistics.median(times))
    reference = outputs.get(workloads_lib.SLIM)
    for w in active:
      diff = None
      if reference is not None and w.log_probabilities:  # Against the log-softmax.
        from exporters import verification
        diff = float(np.max(np.abs(outputs[w.name] - verification.log_softmax(reference))))
      elif reference is not None and w.name in workloads_lib.EXPORTED + (workloads_lib.SLIM,):
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


def run_model_export(task: dict) -> dict:
  """One model run (pipeline.export_model) over the task's releases, split into phases.

  The clock and the RSS baseline start after importing TensorFlow and
  tensorflow_hub (what every export process imports); the exporters' own
  imports (slim_nets, tf_slim, tf_keras, ...) count as the run's.
  """
  import tensorflow  # noqa: F401
  import tensorflow_hub  # noqa: F401

  tensorflow_imported = time.monotonic()
  baseline_rss = current_rss_bytes()

  from bench import phases
  from exporters import pipeline

  imported = time.monotonic()
  exporters_rss = current_rss_bytes()
  config = pipeline.ModelExportConfig(
      model=task["model"], checkpoint_path=task["checkpoint_path"], overwrite=True,
      targets=tuple(pipeline.ReleaseTarget(module_type, version, export_dir)
                    for module_type, version, export_dir in task["targets"]))
  with phases.ConstructionCounter() as counter:
    start = time.monotonic()
    outcomes = pipeline.export_model(config, log=lambda message: print(message, flush=True))
    wall = time.monotonic() - start
  releases = []
  for outcome in outcomes:
    seconds = outcome.result.seconds if outcome.result else {}
    releases.append({
        "handle": outcome.release.handle_with_version, "module_type": outcome.release.module_type,
        "version": outcome.release.version.number, "format": outcome.release.version.format,
        "seconds": outcome.seconds, "write": seconds.get("write"),
        "verify": seconds.get("verify"), "error": outcome.error or None,
        "bytes_written": (directory_bytes(outcome.target.export_dir)
                          if outcome.result else 0),
    })
  return {
      "model": task["model"], "wall_seconds": wall,
      "import_seconds": {"tensorflow": tensorflow_imported - _PROCESS_START,
                         "exporters": imported - tensorflow_imported},
      "model_seconds": phases.model_phases([o.result.seconds for o in outcomes if o.result]),
      "releases": releases, "constructions": counter.as_json(),
      "baseline_rss_bytes": baseline_rss, "exporters_imported_rss_bytes": exporters_rss,
      "peak_rss_bytes": peak_rss_bytes(),
      "checkpoint_data_bytes": checkpoint_data_bytes(task["checkpoint_path"]),
  }


def run_floor(task: dict) -> dict:
  """What any export-all of one model must do: read, construct, write each release's bytes.

  Reading is the network's values from the checkpoint (no graph); the
  constructions are the Slim builder alone in fresh graphs, once in
  inference and once in training mode per format family the model's
  releases use (each family needs its own graphs: TF1 graphs or TF2 traces);
  the write puts the variables' bytes into a scratch file once per release,
  as the exports must.
  """
  import numpy as np
  import tensorflow.compat.v1 as tf1

  import tensorflow as tf
  import tensorflow_hub  # noqa: F401  (what an export-all process imports too)

  import registry
  from exporters.network import slim_graph

  imported = time.monotonic()
  reg = registry.default()
  model = reg.model(task["model"])
  num_classes = reg.publisher.num_classes
  seconds = {"import": imported - _PROCESS_START}
  start = time.monotonic()
  reader = tf.train.load_checkpoint(task["checkpoint_path"])
  values = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "global_step" and not name.startswith("aux_")}
  seconds["read_checkpoint"] = time.monotonic() - start
  for fmt in task["formats"]:
    for training in (False, True):
      graph = tf1.Graph()
      with graph.as_default():
        images = tf1.placeholder(tf1.float32, model.input_shape)
        start = time.monotonic()
        slim_graph.build_outputs(model, images, training=training, batch_norm_momentum=0.997,
                                 num_classes=num_classes)
        seconds[f"construct_{fmt}_{'training' if training else 'inference'}"] = (
            time.monotonic() - start)
      del graph
      gc.collect()  # Outside the clock: the next construction does not pay for this one.
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
          "formats": task["formats"], "constructions": 2 * len(task["formats"]),
          "bytes_per_release": int(sum(a.nbytes for a in arrays)),
          "peak_rss_bytes": peak_rss_bytes()}


def run_construction(task: dict) -> dict:
  """Times graph-mode constructions of one network with and without tf_slim_compat's fix 3.

  After one untimed construction (lazy imports, first-call caches), each
  round constructs the network in both modes, each mode once with and once
  without the fix, in fresh graphs; which variant goes first alternates per
  round, so neither always runs on a warmer process. The ratio with/without
  is taken per round and mode (the two runs are adjacent in time).
  """
  import tensorflow.compat.v1 as tf1

  import registry
  import slim_nets
  from slim_nets import tf_slim_compat

  imported = time.monotonic()
  reg = registry.default()
  model = reg.model(task["model"])
  num_classes = reg.publisher.num_classes

  def construct(training: bool, fixed: bool) -> float:
    gc.collect()  # Garbage of the previous graph is not this construction's cost.
    graph = tf1.Graph()
    with graph.as_default():
      images = tf1.placeholder(tf1.float32, model.input_shape)
      variant = contextlib.nullcontext() if fixed else tf_slim_compat.without_fix_3()
      with variant:
        start = time.perf_counter()
        slim_nets.build(model.name, images, num_classes=num_classes, batch_norm_decay=0.997,
                        weight_decay=model.weight_decay, is_training=training)
        return time.perf_counter() - start

  warmup = construct(training=False, fixed=True)
  seconds = {mode: {"with_fix": [], "without_fix": []} for mode in ("inference", "training")}
  for round_index in range(task["rounds"]):
    order = (True, False) if round_index % 2 == 0 else (False, True)
    for mode in seconds:
      for fixed in order:
        seconds[mode]["with_fix" if fixed else "without_fix"].append(
            construct(training=mode == "training", fixed=fixed))
  results = {}
  for mode, runs in seconds.items():
    results[mode] = {
        "with_fix": _summary(runs["with_fix"]), "without_fix": _summary(runs["without_fix"]),
        "ratio_with_to_without": _summary([a / b for a, b in zip(runs["with_fix"],
                                                                 runs["without_fix"])]),
    }
  return {"model": model.name, "rounds": task["rounds"],
          "import_seconds": imported - _PROCESS_START, "warmup_seconds": warmup,
          "modes": results, "peak_rss_bytes": peak_rss_bytes()}


TASKS = {"inference": run_inference, "model_export": run_model_export, "floor": run_floor,
         "construction": run_construction}


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
