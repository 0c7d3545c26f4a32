"""The benchmark harness keeps working; no speed is asserted anywhere.

Fast tests check the statistics, the construction counter and its call
sites, the model-run summary, the targets and the three writers on made-up
results; one test runs `python -m bench` on a tiny configuration
(nasnet_mobile, one construction round, no exports, no inference) and checks
the files it writes; a slow test runs the export (one model run over one
release per format family, --module_types/--versions), inference over every
workload (batch 1, one round) and export-all parts on the session's generated
checkpoint.
"""
import dataclasses
import json
import pathlib
import subprocess
import sys
import types

import pytest

from bench import bench_lib, phases, report, targets
from bench import workloads as workloads_lib
from exporters.export_tree import events as events_lib
from tests.conftest import REPO, SHARED, make_checkpoint, require_shared, run_command


def test_summarize_median_min_max():
  assert bench_lib.summarize([3.0, 1.0, 2.0]) == {
      "median": 2.0, "min": 1.0, "max": 3.0, "values": [3.0, 1.0, 2.0]}
  assert bench_lib.summarize([1.0, 4.0])["median"] == 2.5
  assert bench_lib.ratio_summary([2.0, 3.0], [1.0, 3.0])["values"] == [2.0, 1.0]


def _frames(*names):
  """A call stack, innermost first, from "file:function" names."""
  return [tuple(name.split(":")) for name in names]


def test_call_site_names_who_constructed_and_the_model_run_step():
  pipeline = "/repo/exporters/pipeline/model_export.py"
  reference = "/repo/exporters/network/reference.py"
  hub = "/repo/exporters/formats/hub_module.py"
  slim_graph = "/repo/exporters/network/slim_graph.py"
  assert phases.call_site(_frames(f"{slim_graph}:build_outputs", f"{reference}:_build",
                                  f"{reference}:__init__", f"{pipeline}:export_model")) == (
      phases.REFERENCE, phases.STEP_REFERENCE)
  # The reference's training mode is constructed lazily, inside a release's verify.
  assert phases.call_site(_frames(
      f"{slim_graph}:build_outputs", f"{reference}:_build", f"{reference}:expected",
      f"{hub}:verify", f"{hub}:verify", f"{pipeline}:_export_release")) == (
      phases.REFERENCE, phases.STEP_VERIFY)
  assert phases.call_site(_frames(f"{slim_graph}:build_features", f"{hub}:__init__",
                                  f"{hub}:__init__", f"{pipeline}:_export_family")) == (
      phases.FORMAT, phases.STEP_CONSTRUCT)
  assert phases.call_site(_frames(f"{slim_graph}:build_features", "/tf/polymorphic.py:trace",
                                  f"{hub}:write", f"{pipeline}:_export_release")) == (
      phases.FORMAT, phases.STEP_WRITE)
  assert phases.call_site(_frames(f"{slim_graph}:build_outputs", "/bench/child.py:run")) == (
      phases.FORMAT, phases.STEP_OUTSIDE)


def test_construction_counter_records_calls_and_restores_the_builders():
  module = types.SimpleNamespace(build=lambda name, images, **kw: ("logits", {}),
                                 build_classifier=lambda name, features, **kw: "logits")
  originals = (module.build, module.build_classifier)
  counter = phases.ConstructionCounter()
  counter.install(module)
  assert module.build("nasnet_mobile", None, is_training=True, num_classes=1) == ("logits", {})
  module.build_classifier("nasnet_mobile", None, num_classes=1)
  counter.uninstall()
  assert (module.build, module.build_classifier) == originals
  records = counter.as_json()
  assert [(r["kind"], r["who"], r["step"], r["training"]) for r in records] == [
      ("network", phases.FORMAT, phases.STEP_OUTSIDE, True),
      ("classifier", phases.FORMAT, phases.STEP_OUTSIDE, False)]
  summary = phases.construction_summary(records + [dict(
      records[0], who=phases.REFERENCE, step=phases.STEP_VERIFY, seconds=2.0)])
  assert (summary["networks"], summary["networks_by_format_writers"],
          summary["networks_by_reference"]) == (2, 1, 1)
  assert summary["reference_seconds_outside_verify"] == 0.0


def test_model_phases_merge_the_releases_seconds():
  merged = phases.model_phases([
      {"reference": 5.0, "read_checkpoint": 0.1, "construct_hub": 9.0, "write": 1.0,
       "verify": 20.0},
      {"reference": 5.0, "read_checkpoint": 0.1, "construct_hub": 9.0,
       "construct_saved_model_2": 7.0, "write": 8.0, "verify": 11.0}])
  assert merged == {"reference": 5.0, "read_checkpoint": 0.1, "construct_hub": 9.0,
                    "construct_saved_model_2": 7.0}


def test_every_call_site_the_counter_relies_on_exists():
  """A renamed pipeline function or writer method would silently blur the export split."""
  assert phases.missing_call_sites() == []


def test_export_all_is_read_from_its_typed_events(tmp_path):
  path = tmp_path / "events.jsonl"
  release = dict(handle="google/imagenet/nasnet_mobile/classification", version=4,
                 status="exported")
  with events_lib.EventsFile(str(path)) as events:
    events(events_lib.Planned(to_do=8, releases=8, model_runs=1, jobs=1))
    events(events_lib.Done(**release, format="saved_model_2", seconds=65.0, elapsed_seconds=123.0))
    events(events_lib.Done(**dict(release, status="failed"), format="hub", seconds=3.0,
                           elapsed_seconds=126.0, error="OSError: full"))
    events(events_lib.Done(**release, format="tfjs", seconds=9.0, elapsed_seconds=135.0))
    events(events_lib.Finished(exported=2, failed=1, up_to_date=0, elapsed_seconds=140.0))
  # The failed release and the TF.js deployment are not exported releases.
  assert bench_lib.exported_releases(path) == (8, [65.0], [123.0])
  assert bench_lib.exported_releases(tmp_path / "never-written.jsonl") == (None, [], [])


def _run_summary(median, values=None):
  values = values or [median]
  return {"median": median, "min": min(values), "max": max(values), "values": values}


def fake_model_run() -> dict:
  """A model_export child's result: two releases, one per format family."""
  def release(handle, fmt, write, verify):
    return {"handle": handle, "module_type": "classification", "version": int(handle[-1]),
            "format": fmt, "seconds": write + verify, "write": write, "verify": verify,
            "error": None, "bytes_written": 3e7}

  def construction(who, step, training, seconds, kind="network"):
    return {"kind": kind, "who": who, "step": step, "training": training, "seconds": seconds}

  return {
      "model": "nasnet_mobile", "wall_seconds": 100.0,
      "import_seconds": {"tensorflow": 3.0, "exporters": 0.1},
      "model_seconds": {"reference": 6.0, "read_checkpoint": 0.1, "construct_hub": 19.0,
                        "construct_saved_model_2": 7.0},
      "releases": [release("google/imagenet/nasnet_mobile/classification/3", "hub", 1.0, 25.0),
                   release("google/imagenet/nasnet_mobile/classification/5", "saved_model_2",
                           9.0, 12.0)],
      "constructions": [
          construction(phases.REFERENCE, phases.STEP_REFERENCE, False, 6.0),
          construction(phases.FORMAT, phases.STEP_CONSTRUCT, False, 9.0),
          construction(phases.FORMAT, phases.STEP_CONSTRUCT, False, 0.1, kind="classifier"),
          construction(phases.FORMAT, phases.STEP_CONSTRUCT, True, 9.0),
          construction(phases.REFERENCE, phases.STEP_VERIFY, True, 3.5)],
      "baseline_rss_bytes": 6e8, "exporters_imported_rss_bytes": 6.1e8, "peak_rss_bytes": 2e9,
      "checkpoint_data_bytes": 3.1e7,
  }


def test_model_run_summary_splits_phases_and_costs():
  summary = bench_lib.summarize_model_export([fake_model_run(), fake_model_run()])
  s = summary["seconds"]
  assert s["write"]["median"] == 10.0 and s["verify"]["median"] == 37.0
  assert s["other"]["median"] == pytest.approx(100.0 - 6.0 - 0.1 - 19.0 - 7.0 - 10.0 - 37.0)
  # Verify calls plus the reference's inference construction (its training one is in verify).
  assert summary["verification_share"]["median"] == pytest.approx((37.0 + 6.0) / 100.0)
  assert summary["constructions"]["networks"] == 4
  assert summary["constructions"]["networks_by_reference"] == 2
  assert summary["peak_rss_above_baseline_over_checkpoint"]["median"] == pytest.approx(
      (2e9 - 6e8) / 3.1e7)
  assert [r["write"]["median"] for r in summary["releases"]] == [1.0, 9.0]
  assert summary["releases_exported"] == summary["releases_planned"] == 2


def fake_construction(with_fix: float, without_fix: float) -> dict:
  mode = {"with_fix": _run_summary(with_fix), "without_fix": _run_summary(without_fix),
          "ratio_with_to_without": _run_summary(with_fix / without_fix)}
  return {"model": "nasnet_mobile", "rounds": 1, "import_seconds": 3.0, "warmup_seconds": 5.0,
          "modes": {"inference": mode, "training": mode}, "peak_rss_bytes": 7e8}


def fake_results(tmp_path):
  """Results shaped like bench_lib.run's, with misses and one unmeasured target."""
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
  results = {
      "config": {"repeats": 2, "export_repeats": 1}, "wall_seconds": 600.0,
      "machine": {"date": "2026-01-01T00:00:00+00:00", "cpu": "Test CPU", "logical_cores": 2,
                  "usable_cores": 2, "memory_bytes": 2**34, "platform": "Linux",
                  "libraries": {"tensorflow": "2.21.0"}, "git": "abc",
                  "load_average_start": [1.0, 1.0, 1.0], "load_average_end": [2.0, 1.0, 1.0]},
      "models": ["nasnet_mobile"],
      "inference": {"nasnet_mobile": {"results": rows, "versions": {"saved_model": 5}}},
      "exports": {"nasnet_mobile": bench_lib.summarize_model_export([fake_model_run()])},
      "construction": {"nasnet_mobile": fake_construction(5.0, 7.0)},
      "export_all": {"models": ["nasnet_mobile"], "floor_seconds": 40.0,
                     "floor": {"nasnet_mobile": {"releases": 8, "constructions": 4, "seconds": {
                         "import": 7.0, "construct_hub_inference": 5.0}}},
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
  assert by_id["construction_time"]["status"] == targets.MISSED  # 5/7 > 1/3.
  assert [c["value"] for c in by_id["construction_time"]["checks"]] == [5 / 7, 5 / 7]
  assert by_id["verify_overhead"]["status"] == targets.MISSED  # 43 of 100 s.
  assert by_id["verify_overhead"]["checks"][0]["value"] == pytest.approx(0.43)
  assert by_id["export_peak_rss"]["status"] == targets.NOT_MEASURED  # No pnasnet_large.
  assert by_id["export_all_floor"]["status"] == targets.MISSED
  assert by_id["export_all_floor"]["checks"][0]["value"] == 15.0


def test_export_all_stopped_before_a_release_decides_only_a_miss():
  def stopped_at(wall):
    return {"export_all": {"floor_seconds": 30.0, "runs": [
        {"jobs": 1, "wall_seconds": wall, "timed_out": True, "projected_wall_seconds": None}]}}
  assert targets.export_all_floor(stopped_at(30.0))["status"] == targets.NOT_MEASURED
  missed = targets.export_all_floor(stopped_at(90.0))
  assert missed["status"] == targets.MISSED and missed["checks"][0]["value"] == 3.0


def test_construction_target_is_met_at_a_third():
  results = {"construction": {"nasnet_mobile": fake_construction(2.0, 7.0)}}
  assert targets.construction_time(results)["status"] == targets.MET


def test_writers_produce_json_markdown_and_png(tmp_path):
  results = fake_results(tmp_path)
  report.write_all(results, tmp_path)
  assert json.loads((tmp_path / report.JSON_NAME).read_text())["targets"] == results["targets"]
  text = (tmp_path / report.MARKDOWN_NAME).read_text()
  assert text.startswith("# Benchmark\n\nMeasured 2026-01-01 on Test CPU")
  for heading in ("## Targets", "## Inference", "## Export cost", "## Network construction",
                  "## export-all"):
    assert heading in text
  assert "**missed**" in text and "stopped at 300 (projected 600)" in text
  assert "| nasnet_mobile | 2/2 | 6.0 | 0.1 | 19.0 | 7.0 |" in text  # The model run's phases.
  assert "google/imagenet/nasnet_mobile/classification/5 | saved_model_2 | 9.0 | 12.0" in text
  assert (tmp_path / report.CHART_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "over every published release)" in text
  assert "`python -m exporters.export_all --models=nasnet_mobile` into" in text
  # Narrowed by --module_types/--versions, the export parts say so.
  results["config"].update(module_types=["classification"], versions=[3, 5])
  text = report.markdown(results)
  assert "over every published release that --module_types=classification --versions=3,5 " \
         "select)" in text
  assert "`python -m exporters.export_all --models=nasnet_mobile --module_types=classification " \
         "--versions=3,5` into" in text


def test_release_filters_narrow_what_the_export_parts_measure():
  reg = bench_lib.registry_lib.default()
  config = bench_lib.BenchConfig(models=("nasnet_mobile",), module_types=("classification",),
                                 versions=(3, 5))
  assert [r.handle_with_version for r in bench_lib.measured_releases(
      config, reg, "nasnet_mobile")] == ["google/imagenet/nasnet_mobile/classification/3",
                                         "google/imagenet/nasnet_mobile/classification/5"]
  assert len(bench_lib.measured_releases(bench_lib.BenchConfig(), reg, "nasnet_mobile")) == 8
  assert bench_lib.release_filter_flags(config) == bench_lib.release_filter_flags(
      dataclasses.asdict(config)) == ["--module_types=classification", "--versions=3,5"]
  assert bench_lib.release_filter_flags({}) == []
  with pytest.raises(bench_lib.BenchError, match="unknown module type 'image'"):
    bench_lib.check_config(dataclasses.replace(config, module_types=("image",)), reg)
  with pytest.raises(bench_lib.BenchError, match="no published release of nasnet_mobile "
                                                 "matches --versions=2"):  # pnasnet_large's.
    bench_lib.check_config(dataclasses.replace(config, module_types=(), versions=(2,)), reg)


def _fake_children(monkeypatch) -> list[dict]:
  """bench_lib.run_child answering every model_export task with fake_model_run's numbers for
  the task's targets; returns the tasks it was given."""
  tasks = []

  def run_child(task, log_path, timeout_s):
    tasks.append(task)
    result = fake_model_run()
    template = result["releases"][0]
    result["releases"] = [
        dict(template, handle=f"google/imagenet/{task['model']}/{module_type}/{version}",
             module_type=module_type, version=version)
        for module_type, version, _ in task["targets"]]
    return result
  monkeypatch.setattr(bench_lib, "run_child", run_child)
  return tasks


def test_filtered_export_cost_still_exports_what_inference_loads(tmp_path, monkeypatch):
  tasks = _fake_children(monkeypatch)
  config = bench_lib.BenchConfig(output_dir=str(tmp_path), module_types=("feature_vector",),
                                 versions=(5,))
  summary, dirs = bench_lib.measure_model_export(
      config, "nasnet_mobile", "ckpt", tmp_path, timed=True, formats={"hub", "saved_model_2"})
  targets_of = lambda task: [tuple(t[:2]) for t in task["targets"]]  # noqa: E731
  # The timed run is the selected release alone; inference's two then come untimed.
  assert [targets_of(t) for t in tasks] == [[("feature_vector", 5)],
                                            [("classification", 3), ("classification", 5)]]
  assert summary["releases_planned"] == 1
  assert dirs == {"hub": str(tmp_path / "exports/nasnet_mobile/classification/3"),
                  "saved_model_2": str(tmp_path / "exports/nasnet_mobile/classification/5")}
  tasks.clear()
  bench_lib.measure_model_export(dataclasses.replace(config, parts=("export",)), "nasnet_mobile",
                                 "ckpt", tmp_path, timed=True, formats={"hub", "saved_model_2"})
  assert [targets_of(t) for t in tasks] == [[("feature_vector", 5)]]  # Nothing to load.
  tasks.clear()
  _, dirs = bench_lib.measure_model_export(
      dataclasses.replace(config, module_types=("classification",), versions=(3, 5)),
      "nasnet_mobile", "ckpt", tmp_path, timed=True, formats={"hub", "saved_model_2"})
  assert [targets_of(t) for t in tasks] == [[("classification", 3), ("classification", 5)]]
  assert set(dirs) == {"hub", "saved_model_2"}


def test_bad_flags_fail_before_any_work():
  reg = bench_lib.registry_lib.default()
  with pytest.raises(bench_lib.BenchError, match="unknown --parts"):
    bench_lib.check_config(bench_lib.BenchConfig(parts=("speed",)), reg)
  without_own = dataclasses.replace(reg, unpublished_versions={})  # pnasnet_mobile: no versions.
  with pytest.raises(bench_lib.BenchError, match="no published version"):
    bench_lib.check_config(bench_lib.BenchConfig(models=("pnasnet_mobile",)), without_own)
  with pytest.raises(bench_lib.BenchError, match="no checkpoint at"):
    bench_lib.checkpoint_path(bench_lib.BenchConfig(checkpoint_dir="/nonexistent"), "nasnet_mobile")


def _bench_command(output_dir, *flags):
  return [sys.executable, "-m", "bench", "--models=nasnet_mobile", "--batch_sizes=1",
          "--repeats=1", "--warmup=1", "--min_run_seconds=0", f"--output_dir={output_dir}",
          *flags]


def _bench_results(run, output_dir):
  """A `python -m bench` run's results, once it ended well and wrote its three files."""
  done = run.result()
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  results = json.loads((output_dir / "bench.json").read_text())
  assert (output_dir / "bench.md").read_text().startswith("# Benchmark")
  assert (output_dir / "bench.png").read_bytes()[:4] == b"\x89PNG"
  assert {t["id"] for t in results["targets"]} == {f.__name__ for f in targets.TARGETS}
  return results


@dataclasses.dataclass(frozen=True)
class BenchRun:
  run: object  # conftest._Task: the subprocess, run in the background.
  output_dir: pathlib.Path
  checkpoint_dir: pathlib.Path | None = None


# The two `python -m bench` runs are subprocesses: they start with the session
# (conftest.background_exports calls start_in_background) and run beside the other tests;
# the tests that read them are marked late.
CONSTRUCTION_TEST = "test_tiny_construction_run"
EXPORT_TEST = "test_tiny_run_with_exports_and_export_all"


def start_in_background(background, tmp_path_factory, selected: set) -> dict:
  runs = {}
  if not SHARED.joinpath("checkpoints", "make_ckpt.py").exists():
    return runs  # The tests skip, saying why.
  if CONSTRUCTION_TEST in selected:
    out = tmp_path_factory.mktemp("bench_construction")
    command = _bench_command(out, "--parts=construction", "--construction_rounds=1")
    runs[CONSTRUCTION_TEST] = BenchRun(background.task(lambda: run_command(command, 900)), out)
  if EXPORT_TEST in selected:
    root = tmp_path_factory.mktemp("bench_export")
    checkpoint_dir = root / "checkpoint_dir"
    export_command = _bench_command(
        root / "bench", "--parts=export,inference,export_all", *MEASURED,
        f"--checkpoint_dir={checkpoint_dir}", "--export_all_jobs=1",
        # Stopped after planning (its first line, within seconds even beside the other
        # tests), before a release finishes (half a minute or more): the stopped run's
        # report is what is checked.
        "--export_all_timeout_s=20")

    def export_run():
      make_checkpoint("nasnet_mobile", checkpoint_dir / "nasnet_mobile")
      return run_command(export_command, 1800)
    runs[EXPORT_TEST] = BenchRun(background.task(export_run), root / "bench", checkpoint_dir)
  return runs


@pytest.fixture(scope="session")
def bench_runs(background_exports) -> dict:
  return background_exports.started[__name__]


@pytest.mark.late
def test_tiny_construction_run(bench_runs):
  """The CLI end to end: generated checkpoint, and the network constructed with and without
  fix 3. (Inference, every workload timed against the Slim floor and keras.applications:
  test_tiny_run_with_exports_and_export_all.)"""
  require_shared("checkpoints", "make_ckpt.py")
  out = bench_runs[CONSTRUCTION_TEST].output_dir
  results = _bench_results(bench_runs[CONSTRUCTION_TEST].run, out)
  assert results["checkpoints"] == {
      "nasnet_mobile": str((out / "checkpoints" / "nasnet_mobile" / "model.ckpt").resolve())}
  assert (out / "checkpoints" / "nasnet_mobile" / "model.ckpt.index").is_file()
  assert results["inference"] == {}
  construction = results["construction"]["nasnet_mobile"]
  assert "error" not in construction, construction.get("error")
  assert set(construction["modes"]) == {"inference", "training"}
  for mode in construction["modes"].values():
    assert len(mode["with_fix"]["values"]) == len(mode["without_fix"]["values"]) == 1
    assert mode["ratio_with_to_without"]["median"] > 0
  by_id = {t["id"]: t for t in results["targets"]}
  assert by_id["construction_time"]["status"] in (targets.MET, targets.MISSED)
  assert by_id["verify_overhead"]["status"] == targets.NOT_MEASURED
  assert results["exports"] == {}


# What the slow test's export parts measure: one release per format family (the ones its
# inference part loads), not all eight; the model run's phases and constructions are the
# same per family, and the session's export tree (tests/conftest.py) exports all eight.
MEASURED = ("--module_types=classification", "--versions=3,5")
MEASURED_HANDLES = ["google/imagenet/nasnet_mobile/classification/3",
                    "google/imagenet/nasnet_mobile/classification/5"]


@pytest.mark.slow
@pytest.mark.late
def test_tiny_run_with_exports_and_export_all(bench_runs):
  """One model run over a release per format family, split into phases; inference over every
  workload; export-all stopped early and still reported. The checkpoint is the session's
  (generated in the background); the construction part is test_tiny_construction_run's."""
  require_shared("checkpoints", "make_ckpt.py")
  bench = bench_runs[EXPORT_TEST]
  results = _bench_results(bench.run, bench.output_dir)
  assert results["checkpoints"] == {
      "nasnet_mobile": str(bench.checkpoint_dir / "nasnet_mobile" / "model.ckpt")}
  summary = results["exports"]["nasnet_mobile"]
  assert "error" not in summary, summary.get("error")
  assert summary["releases_exported"] == summary["releases_planned"] == len(MEASURED_HANDLES)
  assert [r["handle"] for r in summary["releases"]] == MEASURED_HANDLES
  assert {r["format"] for r in summary["releases"]} == {"hub", "saved_model_2"}
  for phase in ("reference", "read_checkpoint", "construct_hub", "construct_saved_model_2",
                "write", "verify", "wall"):
    assert summary["seconds"][phase]["median"] > 0, phase
  assert summary["constructions"]["networks_by_format_writers"] >= 4  # 2 modes, 2 families.
  assert summary["constructions"]["networks_by_reference"] >= 1
  assert 0 < summary["verification_share"]["median"] < 1
  assert summary["bytes_written"] > 0 and summary["peak_rss_above_baseline_bytes"]["median"] > 0
  rows = results["inference"]["nasnet_mobile"]["results"]
  assert [(r["workload"], r["batch_size"]) for r in rows] == [(w, 1) for w in workloads_lib.ALL]
  for row in rows:
    assert row["throughput"]["median"] > 0, row["workload"]
    if row["workload"] != workloads_lib.SLIM:
      assert row["ratio_to_slim"]["median"] > 0, row["workload"]
    if row["workload"] in workloads_lib.EXPORTED + (workloads_lib.LITERT,):
      # The TFLite model's log-probabilities against the log-softmax of the Slim logits.
      assert row["max_abs_diff_vs_slim"] < 1e-4, row["workload"]
  run = results["export_all"]["runs"][0]
  assert run["jobs"] == 1 and run["timed_out"] and run["exports_planned"] == len(MEASURED_HANDLES)
  assert results["export_all"]["floor_seconds"] > 0
  assert results["export_all"]["floor"]["nasnet_mobile"]["constructions"] == 4
  assert results["export_all"]["floor"]["nasnet_mobile"]["releases"] == len(MEASURED_HANDLES)
  text = (bench.output_dir / "bench.md").read_text()
  assert "## Export cost" in text and "## export-all" in text
  assert " ".join(MEASURED) in text
