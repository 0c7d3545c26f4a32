"""The benchmark harness keeps working; no speed is asserted anywhere.

Fast tests check the statistics, the phase clock, the targets and the three
writers on made-up results; one test runs `python -m bench` on a tiny
configuration (nasnet_mobile, batch 1, one round, no exports) and checks the
files it writes; a slow test also runs the export and export-all parts.
"""
import json
import subprocess
import sys
import time

import pytest

from bench import bench_lib, phases, report, targets
from bench import workloads as workloads_lib
from tests.conftest import REPO, require_shared


def test_summarize_median_min_max():
  assert bench_lib.summarize([3.0, 1.0, 2.0]) == {
      "median": 2.0, "min": 1.0, "max": 3.0, "values": [3.0, 1.0, 2.0]}
  assert bench_lib.summarize([1.0, 4.0])["median"] == 2.5
  assert bench_lib.ratio_summary([2.0, 3.0], [1.0, 3.0])["values"] == [2.0, 1.0]


def test_phase_clock_charges_exclusive_time_per_stage():
  clock = phases.PhaseClock()

  def build():
    time.sleep(0.05)

  timed_build = clock.wrap(build, "build")

  def trace():
    timed_build()
    time.sleep(0.02)

  writer = type("Writer", (), {})()
  writer.write = lambda: clock.wrap(trace, "trace_serialize")()
  writer.verify = timed_build
  for stage in phases.STAGES:
    setattr(writer, stage, clock.wrap_stage(getattr(writer, stage), stage))
  writer.write()
  writer.verify()
  write = clock.by_stage("write")
  assert write["build"] == pytest.approx(0.05, abs=0.03)
  assert write["trace_serialize"] == pytest.approx(0.02, abs=0.015)
  assert set(clock.by_stage("verify")) == {"build"}


def test_every_phase_probe_resolves():
  """A renamed writer helper or moved TF function would silently blur the export split."""
  assert phases.unresolved_probes() == []


def _run_summary(median, values=None):
  values = values or [median]
  return {"median": median, "min": min(values), "max": max(values), "values": values}


def fake_results(tmp_path):
  """Results shaped like bench_lib.run's, with one miss and one unmeasured target."""
  rows = []
  for workload, speed in ((workloads_lib.SLIM, 30.0), (workloads_lib.SAVED_MODEL, 29.0),
                          (workloads_lib.HUB_V3, 25.0), (workloads_lib.KERAS_APPLICATIONS, 20.0)):
    row = {"workload": workload, "batch_size": 1, "calls_per_run": 10,
           "throughput": _run_summary(speed, [speed, speed + 1]),
           "latency_ms": _run_summary(1000 / speed), "max_abs_diff_vs_slim": 0.0}
    if workload != workloads_lib.SLIM:
      row["ratio_to_slim"] = _run_summary(speed / 30.0)
    if workload != workloads_lib.KERAS_APPLICATIONS:
      row["ratio_to_keras"] = _run_summary(speed / 20.0)
    rows.append(row)
  seconds = {k: _run_summary(v) for k, v in dict(
      build=10.0, restore=1.0, trace_serialize=3.0, write=1.0, verify=5.0, verify_build=4.0,
      total=20.5, other=0.5, export_without_verify=15.5).items()}
  export = {"handle": "google/imagenet/nasnet_mobile/classification/5", "format": "saved_model_2",
            "repeats": 1, "seconds": seconds, "verify_over_export": _run_summary(5 / 15.5),
            "peak_rss_bytes": _run_summary(2e9), "baseline_rss_bytes": _run_summary(6e8),
            "peak_rss_over_checkpoint": _run_summary(64.0), "bytes_written": 2.2e7,
            "checkpoint_data_bytes": 3.1e7, "bytes_written_over_checkpoint": 0.71,
            "import_seconds": _run_summary(7.0), "probes_skipped": []}
  results = {
      "config": {"repeats": 2, "export_repeats": 1}, "wall_seconds": 600.0,
      "machine": {"date": "2026-01-01T00:00:00+00:00", "cpu": "Test CPU", "logical_cores": 2,
                  "usable_cores": 2, "memory_bytes": 2**34, "platform": "Linux",
                  "libraries": {"tensorflow": "2.21.0"}, "git": "abc",
                  "load_average_start": [1.0, 1.0, 1.0], "load_average_end": [2.0, 1.0, 1.0]},
      "models": ["nasnet_mobile"],
      "inference": {"nasnet_mobile": {"results": rows, "versions": {"saved_model": 5}}},
      "exports": {"nasnet_mobile": {"saved_model_2": export}},
      "export_all": {"models": ["nasnet_mobile"], "floor_seconds": 40.0,
                     "floor": {"nasnet_mobile": {"releases": 8, "seconds": {
                         "import": 7.0, "build_inference": 10.0}}},
                     "runs": [{"jobs": 1, "wall_seconds": 300.0, "timed_out": True,
                               "projected_wall_seconds": 600.0, "exports_finished": 4,
                               "exports_planned": 8, "peak_tree_rss_bytes": 2e9,
                               "ratio_to_floor": 15.0, "returncode": -15}]},
  }
  results["targets"] = targets.evaluate(results)
  return results


def test_targets_are_met_missed_or_not_measured(tmp_path):
  by_id = {t["id"]: t for t in fake_results(tmp_path)["targets"]}
  assert by_id["exported_vs_slim"]["status"] == targets.MISSED  # hub_v3 at 25/30.
  assert [c["met"] for c in by_id["exported_vs_slim"]["checks"]] == [True, False]
  assert by_id["exported_vs_keras"]["status"] == targets.MET
  assert by_id["verify_overhead"]["status"] == targets.MISSED
  assert by_id["export_peak_rss"]["status"] == targets.NOT_MEASURED  # No pnasnet_large.
  assert by_id["export_all_floor"]["status"] == targets.MISSED
  assert by_id["export_all_floor"]["checks"][0]["value"] == 15.0


def test_writers_produce_json_markdown_and_png(tmp_path):
  results = fake_results(tmp_path)
  report.write_all(results, tmp_path)
  assert json.loads((tmp_path / report.JSON_NAME).read_text())["targets"] == results["targets"]
  text = (tmp_path / report.MARKDOWN_NAME).read_text()
  assert text.startswith("# Benchmark\n\nMeasured 2026-01-01 on Test CPU")
  for heading in ("## Targets", "## Inference", "## Export cost", "## export-all"):
    assert heading in text
  assert "**missed**" in text and "stopped at 300 (projected 600)" in text
  assert (tmp_path / report.CHART_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_flags_fail_before_any_work():
  reg = bench_lib.registry_lib.default()
  with pytest.raises(bench_lib.BenchError, match="unknown --parts"):
    bench_lib.check_config(bench_lib.BenchConfig(parts=("speed",)), reg)
  with pytest.raises(bench_lib.BenchError, match="no published version"):
    bench_lib.check_config(bench_lib.BenchConfig(models=("pnasnet_mobile",)), reg)
  with pytest.raises(bench_lib.BenchError, match="no checkpoint at"):
    bench_lib.checkpoint_path(bench_lib.BenchConfig(checkpoint_dir="/nonexistent"), "nasnet_mobile")


def _bench(tmp_path, *flags, timeout):
  command = [sys.executable, "-m", "bench", "--models=nasnet_mobile", "--batch_sizes=1",
             "--repeats=1", "--warmup=1", "--min_run_seconds=0", f"--output_dir={tmp_path}",
             *flags]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  results = json.loads((tmp_path / "bench.json").read_text())
  assert (tmp_path / "bench.md").read_text().startswith("# Benchmark")
  assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
  assert {t["id"] for t in results["targets"]} == {f.__name__ for f in targets.TARGETS}
  return results


def test_tiny_inference_run(tmp_path):
  """The CLI end to end: generated checkpoint, Slim floor and keras.applications timed."""
  require_shared("checkpoints", "make_ckpt.py")
  results = _bench(tmp_path, "--parts=inference",
                   "--workloads=slim_session,keras_applications", timeout=600)
  rows = results["inference"]["nasnet_mobile"]["results"]
  assert [(r["workload"], r["batch_size"]) for r in rows] == [
      ("slim_session", 1), ("keras_applications", 1)]
  assert all(r["throughput"]["median"] > 0 for r in rows)
  assert rows[1]["ratio_to_slim"]["median"] > 0
  assert "nasnet_mobile" in results["checkpoints"]


@pytest.mark.slow
def test_tiny_run_with_exports_and_export_all(tmp_path):
  """Exports measured with their phase split; export-all stopped early and still reported."""
  require_shared("checkpoints", "make_ckpt.py")
  results = _bench(tmp_path, "--export_all_jobs=1", "--export_all_timeout_s=30", timeout=1800)
  exports = results["exports"]["nasnet_mobile"]
  assert set(exports) == {"hub", "saved_model_2"}
  for summary in exports.values():
    assert "error" not in summary, summary.get("error")
    assert summary["probes_skipped"] == []
    assert summary["seconds"]["build"]["median"] > 0
    assert summary["bytes_written"] > 0
  workloads_run = {r["workload"] for r in results["inference"]["nasnet_mobile"]["results"]}
  assert workloads_run == set(workloads_lib.ALL)
  for row in results["inference"]["nasnet_mobile"]["results"]:
    if row["workload"] in workloads_lib.EXPORTED:
      assert row["max_abs_diff_vs_slim"] < 1e-4
  run = results["export_all"]["runs"][0]
  assert run["jobs"] == 1 and run["timed_out"]
  assert results["export_all"]["floor_seconds"] > 0
