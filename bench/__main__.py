r"""Benchmarks the exports against the Slim graph and keras.applications, and the export cost.

  python -m bench --models=nasnet_mobile                # what `make bench` runs in CI
  python -m bench --models=nasnet_mobile --parts=inference --batch_sizes=1 --repeats=1
  python -m bench --models=nasnet_mobile --parts=construction --construction_rounds=1
  python -m bench --models=nasnet_mobile --module_types=classification --versions=3,5

--models picks the models (default: every model with a published version);
--module_types and --versions narrow the releases the export cost and
export-all parts measure (default: every published release of the models).

Writes <output_dir>/bench.json, bench.md and bench.png (plus logs/ and the
generated checkpoints and exports it measured). The logic is bench/bench_lib.py.
"""
import sys

from absl import app, flags

from bench import bench_lib, workloads
from exporters import cli
from exporters import release_flags  # --models, --module_types, --versions.

_DEFAULTS = bench_lib.BenchConfig()

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", [], "Inference batch sizes (default: 1,32 for "
                                 "the mobile models, 1,8 for the large ones).")
_REPEATS = flags.DEFINE_integer("repeats", _DEFAULTS.repeats,
                                "Timed inference rounds per batch size.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", _DEFAULTS.warmup,
                               "Untimed calls per workload before timing.", lower_bound=1)
_MIN_RUN_SECONDS = flags.DEFINE_float("min_run_seconds", _DEFAULTS.min_run_seconds,
                                      "Length of one timed inference run.", lower_bound=0.0)
_EXPORT_REPEATS = flags.DEFINE_integer(
    "export_repeats", _DEFAULTS.export_repeats,
    "Timed model runs (every published release of the model) per model.", lower_bound=1)
_CONSTRUCTION_ROUNDS = flags.DEFINE_integer(
    "construction_rounds", _DEFAULTS.construction_rounds,
    "Rounds of network constructions with and without tf_slim_compat's fix 3 (each round: "
    "both modes, both variants).", lower_bound=1)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", _DEFAULTS.output_dir,
                                  "Where bench.json, bench.md and bench.png go.")
_PARTS = flags.DEFINE_list("parts", list(bench_lib.PARTS), "What to measure: "
                           + ", ".join(bench_lib.PARTS) + ".")
_WORKLOADS = flags.DEFINE_list("workloads", list(workloads.ALL),
                               "Inference workloads: " + ", ".join(workloads.ALL) + ".")
_CHECKPOINT_DIR = flags.DEFINE_string(
    "checkpoint_dir", None, "Folder holding <model>/model.ckpt.* (e.g. the released ones); "
    "default: generate them from ../shared/checkpoints into <output_dir>/checkpoints.")
_EXPORT_ALL_JOBS = flags.DEFINE_list("export_all_jobs",
                                     [str(jobs) for jobs in _DEFAULTS.export_all_jobs],
                                     "--jobs values to run export-all with.")
_EXPORT_ALL_TIMEOUT_S = flags.DEFINE_float(
    "export_all_timeout_s", _DEFAULTS.export_all_timeout_s,
    "Stop an export-all run after this long and extrapolate from the releases it finished "
    "(the default lets a nasnet_mobile run finish).",
    lower_bound=1.0)


def _ints(values: list[str], flag: str) -> tuple[int, ...]:
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise app.UsageError(f"--{flag} must be whole numbers, not {','.join(values)}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  filters = release_flags.parsed()
  config = bench_lib.BenchConfig(
      output_dir=_OUTPUT_DIR.value, models=filters.models, module_types=filters.module_types,
      versions=filters.versions,
      batch_sizes=_ints(_BATCH_SIZES.value, "batch_sizes"), repeats=_REPEATS.value,
      warmup=_WARMUP.value, min_run_seconds=_MIN_RUN_SECONDS.value,
      export_repeats=_EXPORT_REPEATS.value, construction_rounds=_CONSTRUCTION_ROUNDS.value,
      parts=tuple(_PARTS.value),
      workloads=tuple(_WORKLOADS.value), checkpoint_dir=_CHECKPOINT_DIR.value,
      export_all_jobs=_ints(_EXPORT_ALL_JOBS.value, "export_all_jobs"),
      export_all_timeout_s=_EXPORT_ALL_TIMEOUT_S.value)
  try:
    bench_lib.run(config)
  except bench_lib.BenchError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  cli.run(main)
