"""export_all: planning, stamps, progress, parallel runs within a memory budget, bad input.

The fast tests stand tests/trees.py's fake exporter in for
pipeline.export_model (in-process and in worker processes); the end-to-end tests run the real
exporters on the checkpoint ../shared/checkpoints/make_ckpt.py writes: one
session-wide export of every nasnet_mobile version (shared with test_publish
and test_serve), and a real export killed midway and run again.
"""
import dataclasses
import errno
import fcntl
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

import registry
from exporters import export_tree
from exporters.cards import docs_lib
from exporters.export_tree import events as events_lib, layout, plan as plan_lib, stamps
from exporters.publishing import publish_lib
from exporters.errors import ExportError
from tests.conftest import make_checkpoint
from tests.trees import FAKE_EXPORTER, fake_checkpoint_dir, nasnet_mobile_releases

REPO = pathlib.Path(__file__).resolve().parents[1]
HANDLE_DIR = pathlib.PurePosixPath("google/imagenet/nasnet_mobile/classification")
NUM_RELEASES = len(nasnet_mobile_releases())


def config(tmp_path, **kw):
  fields = dict(checkpoint_dir=str(tmp_path / "checkpoints"), export_dir=str(tmp_path / "exports"),
                models=("nasnet_mobile",), mirror=str(tmp_path / "empty_mirror"),
                exporter=FAKE_EXPORTER, heartbeat_s=0, in_process=True, tfjs=False,
                lite=False)
  fields.update(kw)
  return export_tree.ExportAllConfig(**fields)


def run(cfg):
  lines = []
  try:
    result = export_tree.run(cfg, log=lines.append)
  except ExportError as e:
    e.output = "\n".join(lines)
    raise
  return result, "\n".join(lines)


def statuses(result):
  return [r.status for r in result.rows]


def leftovers(export_dir: pathlib.Path):
  return sorted(str(p.relative_to(export_dir)) for p in export_dir.rglob(".*")
                if p.name.startswith(export_tree.TEMP_PREFIXES))


@pytest.fixture
def fake_ckpts(tmp_path):
  return fake_checkpoint_dir(tmp_path / "checkpoints",
                             models=("nasnet_mobile", "nasnet_large", "pnasnet_large"))


# ---- Fast: the fake exporter.

def test_exports_everything_then_nothing_then_what_changed(tmp_path, fake_ckpts):
  cfg = config(tmp_path)
  exports = tmp_path / "exports"
  result, output = run(cfg)
  assert statuses(result) == ["exported"] * NUM_RELEASES
  for release in nasnet_mobile_releases():
    assert (export_tree.export_path(exports, release) / "saved_model.pb").is_file()
    stamp = export_tree.read_stamp(export_tree.stamp_path(exports, release))
    assert stamp.inputs["checkpoint_sha256"] and stamp.code_version
    card = export_tree.card_path(exports, release).read_text()
    assert card == docs_lib.render_card(release)
  assert f"nasnet_mobile ({NUM_RELEASES} release(s): hub, saved_model_2): exporting … elapsed" \
      in output
  assert f"{NUM_RELEASES} of {NUM_RELEASES} export(s) to do in 1 model run(s)" in output
  assert f"[{NUM_RELEASES}/{NUM_RELEASES}] google/imagenet/nasnet_mobile/feature_vector/5: " \
         f"exported and verified in" in output
  assert result.cards_written == NUM_RELEASES

  again, output = run(cfg)
  assert statuses(again) == ["up to date"] * NUM_RELEASES
  # One line, not one per release (`make publish` runs export-all first).
  assert output == f"all {NUM_RELEASES} release(s) up to date; no export work done"
  assert again.cards_written == 0

  # A new file time alone changes nothing: the stamp is over the content.
  for path in (fake_ckpts / "nasnet_mobile").iterdir():
    os.utime(path, (time.time() + 100, time.time() + 100))
  assert statuses(run(cfg)[0]) == ["up to date"] * NUM_RELEASES
  # New checkpoint content re-exports everything made from it.
  (fake_ckpts / "nasnet_mobile" / "model.ckpt.data-00000-of-00001").write_bytes(b"data v2")
  assert statuses(run(cfg)[0]) == ["exported"] * NUM_RELEASES
  # A deleted export is exported again, alone.
  shutil.rmtree(exports / HANDLE_DIR / "3")
  result, _ = run(cfg)
  assert [r.version for r in result.rows if r.status == "exported"] == [3]
  assert leftovers(exports) == []


def test_code_or_registry_change_makes_releases_stale(tmp_path, fake_ckpts, monkeypatch):
  cfg = config(tmp_path, versions=(4,))
  run(cfg)
  fingerprint = dict(stamps.code_fingerprint(), sources_sha256="0" * 64)
  monkeypatch.setattr(stamps, "code_fingerprint", lambda: fingerprint)
  assert statuses(run(cfg)[0]) == ["exported", "exported"]
  assert statuses(run(cfg)[0]) == ["up to date", "up to date"]
  # A registry fact an export reads (not a card text) is part of the stamp.
  reg = registry.default()
  changed = registry.Registry(
      publisher=reg.publisher, models=reg.models, cards=reg.cards, papers=reg.papers,
      families=reg.families,
      versions={**reg.versions, 4: registry.Version(**{
          **{f: getattr(reg.versions[4], f) for f in reg.versions[4].__dataclass_fields__},
          "batch_norm_momentum": 0.9})})
  jobs = plan_lib.plan(cfg, changed, list(changed.releases(models=["nasnet_mobile"],
                                                                 versions=[4])),
                        {"nasnet_mobile": fake_ckpts / "nasnet_mobile" / "model.ckpt"})
  assert [j.up_to_date for j in jobs] == [False, False]


def test_the_code_fingerprint_covers_every_package_a_release_export_imports():
  # A package an export imports but the fingerprint leaves out would let a
  # change to it (a cell's wiring, the reference) keep stale releases "up to
  # date". Only the shared one-file helpers beside the packages (errors,
  # filesystem) write no release byte and stay out.
  listing = subprocess.run(
      [sys.executable, "-c",
       # The model run imports the reference only when it starts constructing.
       "import sys, exporters.pipeline, exporters.verification, exporters.network.reference\n"
       "from exporters.formats import hub_module, saved_model_2\n"
       "print('\\n'.join(getattr(m, '__file__', None) or '' for m in list(sys.modules.values())))"],
      cwd=stamps.REPO_ROOT, capture_output=True, text=True, check=True).stdout.split()
  covered = {p.resolve() for p in stamps.export_source_files()}
  project = [pathlib.Path(f).resolve() for f in listing
             if pathlib.Path(f).resolve().is_relative_to(stamps.REPO_ROOT)
             and ".venv" not in pathlib.Path(f).parts]
  assert project
  missing = sorted(str(f.relative_to(stamps.REPO_ROOT)) for f in project
                   if f not in covered and f.parent != stamps.REPO_ROOT / "exporters")
  assert not missing


def test_the_events_file_holds_the_run_as_typed_records(tmp_path, fake_ckpts, monkeypatch):
  monkeypatch.setenv("FAKE_EXPORT_FAIL", "nasnet_mobile/classification/4")
  path = tmp_path / "events.jsonl"
  path.write_text("an older, longer run's events\n" * 1000)  # Replaced whole.
  with pytest.raises(ExportError) as e:
    run(config(tmp_path, events_file=str(path)))
  rows = e.value.result.rows
  planned, *done, finished = events_lib.read_events(path)
  assert planned == events_lib.Planned(to_do=NUM_RELEASES, releases=NUM_RELEASES, model_runs=1,
                                       jobs=1)
  assert [(d.handle, d.version, d.format, d.status, d.error) for d in done] == [
      (r.handle, r.version, r.format, r.status, r.error) for r in rows]
  assert [d.status for d in done].count("failed") == 1
  elapsed = [d.elapsed_seconds for d in done]
  assert elapsed == sorted(elapsed) and elapsed[-1] <= finished.elapsed_seconds
  assert finished == events_lib.Finished(exported=NUM_RELEASES - 1, failed=1, up_to_date=0,
                                         elapsed_seconds=finished.elapsed_seconds)


def test_an_events_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path, fake_ckpts):
  fifo = tmp_path / "events.fifo"
  os.mkfifo(fifo)  # Opened for writing the usual way, it would wait for a reader forever.
  with pytest.raises(ExportError, match=r"^--events_file .*events.fifo.* cannot be written"):
    run(config(tmp_path, events_file=str(fifo)))
  (tmp_path / "dir").mkdir()
  with pytest.raises(ExportError, match=r"^--events_file .*dir.* cannot be written"):
    run(config(tmp_path, events_file=str(tmp_path / "dir")))
  assert not (tmp_path / "exports").exists()


def test_a_line_that_is_not_an_event_is_named(tmp_path):
  path = tmp_path / "events.jsonl"
  path.write_text('{"event": "Finished", "exported": 1, "failed": 0, "up_to_date": 0, '
                  '"elapsed_seconds": 1.0}\n{"event": "Exploded"}\n')
  with pytest.raises(ValueError, match=r"events.jsonl:2: not an export_all event"):
    events_lib.read_events(path)


def test_force_exports_again(tmp_path, fake_ckpts):
  run(config(tmp_path, versions=(5,)))
  assert statuses(run(config(tmp_path, versions=(5,), force=True))[0]) == ["exported"] * 2


def test_table(tmp_path, fake_ckpts):
  result, _ = run(config(tmp_path, module_types=("classification",)))
  table = export_tree.format_table(result.rows).splitlines()
  assert table[0].split() == ["handle", "version", "format", "size", "seconds", "verified"]
  assert len(table) == 2 + len(result.rows) + 1
  assert table[2].split()[:3] == [str(HANDLE_DIR), "1", "hub"]
  assert table[2].split()[-1] == "yes" and "KiB" in table[2]
  assert table[-1] == ("checkpoint of nasnet_mobile: unverified local checkpoint: never matched "
                       "against a pinned release archive; check it before publishing")
  result, _ = run(config(tmp_path, module_types=("classification",)))
  assert export_tree.format_table(result.rows).splitlines()[2].endswith("yes (up to date)")


THREE_MODELS = ("nasnet_mobile", "nasnet_large", "pnasnet_large")


def _events(path: pathlib.Path) -> list[dict]:
  return sorted((json.loads(line) for line in path.read_text().splitlines()),
                key=lambda e: (e["t"], e["event"] == "start"))


def _memory_estimates(monkeypatch, gb: dict[str, float]) -> None:
  """export-all's registry, with these models' memory_gb (the estimate before a stamp)."""
  import tomllib
  data = tomllib.loads(pathlib.Path(registry.REGISTRY_FILE).read_text())
  for model, value in gb.items():
    data["models"][model]["memory_gb"] = value
  edited = registry.from_dict(data)
  monkeypatch.setattr(registry, "default", lambda: edited)


def test_parallel_model_runs_stay_within_the_memory_budget(tmp_path, fake_ckpts, monkeypatch):
  events = tmp_path / "events.jsonl"
  monkeypatch.setenv("FAKE_EXPORT_LOG", str(events))
  monkeypatch.setenv("FAKE_EXPORT_SECONDS", "2")  # Overlap despite slow worker starts.
  _memory_estimates(monkeypatch, dict.fromkeys(THREE_MODELS, 2.0))
  # Room for 3 model runs, memory for 2.
  result, output = run(config(tmp_path, models=THREE_MODELS, versions=(4, 5), jobs=3,
                              memory_budget_gb=4.5, in_process=False))
  assert statuses(result) == ["exported"] * 12
  running, most = 0, 0
  for event in _events(events):
    running += 1 if event["event"] == "start" else -1
    most = max(most, running)
  assert most == 2
  assert "12 of 12 export(s) to do in 3 model run(s), up to 3 at a time" in output
  # Each model run recorded its process's peak memory, which the next plan uses.
  for release in result.rows:
    stamp = export_tree.read_stamp(tmp_path / "exports" / release.handle /
                                   f".{release.version}.stamp.json")
    assert stamp.peak_rss_mb > 0
  cfg = config(tmp_path)
  job = plan_lib.model_jobs(cfg, plan_lib.plan(
      cfg, registry.default(), nasnet_mobile_releases(versions=[4]),
      {"nasnet_mobile": fake_ckpts / "nasnet_mobile" / "model.ckpt"}))
  assert job == []  # Up to date.
  release = nasnet_mobile_releases(versions=[4])[0]
  measured = export_tree.read_stamp(export_tree.stamp_path(tmp_path / "exports", release))
  assert plan_lib.memory_gb(cfg, release) >= measured.peak_rss_mb / 1024


def test_one_model_at_a_time_each_in_its_own_process(tmp_path, fake_ckpts, monkeypatch):
  events = tmp_path / "events.jsonl"
  monkeypatch.setenv("FAKE_EXPORT_LOG", str(events))
  result, output = run(config(tmp_path, models=THREE_MODELS[:2], versions=(4, 5),
                              in_process=False, jobs=1))
  assert statuses(result) == ["exported"] * 8
  order = [(e["event"], e["model"]) for e in _events(events)]
  assert order == [("start", "nasnet_mobile"), ("end", "nasnet_mobile"),
                   ("start", "nasnet_large"), ("end", "nasnet_large")]
  assert "at a time" not in output


def test_a_model_larger_than_the_budget_runs_alone(tmp_path, fake_ckpts, monkeypatch):
  _memory_estimates(monkeypatch, {"nasnet_mobile": 10.0})
  result, output = run(config(tmp_path, jobs=2, memory_budget_gb=1, versions=(4,),
                              in_process=False))
  assert statuses(result) == ["exported"] * 2
  assert "nasnet_mobile: its estimated 10 GB exceed the --memory_budget_gb of 1; " \
         "running it alone" in output


# ---- How many model runs at once when --jobs is not given (plan.choose_jobs).

def _machine(monkeypatch, cores: int, available_gb: float | None) -> None:
  """This machine, as choose_jobs sees it: usable cores and MemAvailable (None: not read)."""
  def unread():
    raise AssertionError("the available memory was read although --memory_budget_gb was given")
  monkeypatch.setattr(plan_lib, "usable_cores", lambda: cores)
  monkeypatch.setattr(plan_lib, "available_memory_gb",
                      unread if available_gb is None else lambda: available_gb)


def _model_jobs(*estimates_gb):
  return [plan_lib.ModelJob(f"model{i}", pathlib.Path("ckpt"), [], gb)
          for i, gb in enumerate(estimates_gb)]


@pytest.mark.parametrize("cores, available_gb, budget_gb, estimates, jobs, fit", [
    (4, 20.0, 0, (2.0, 6.0, 6.0), 3, 3),  # Budget 16 GB holds all three (14 GB).
    (2, 20.0, 0, (2.0, 6.0, 6.0), 2, 3),  # Cores.
    (16, 20.0, 0, (2.0,), 1, 1),  # Model runs.
    (16, 10.0, 0, (2.0, 6.0, 6.0), 1, 1),  # Budget 8 GB: one 6 GB run, not two.
    (16, 11.0, 0, (6.0, 2.0, 2.0), 2, 2),  # Budget 8.8 GB: 6 + 2 fit, 6 + 2 + 2 do not.
    (16, 4.0, 0, (6.0, 6.0), 1, 0),  # Nothing fits: still one (it runs alone).
    (16, None, 13.0, (6.0, 6.0, 6.0), 2, 2),  # --memory_budget_gb instead of the machine's.
    (1, 64.0, 0, (2.0, 2.0), 1, 2),
])
def test_jobs_default_to_what_cores_model_runs_and_memory_allow(
    tmp_path, monkeypatch, cores, available_gb, budget_gb, estimates, jobs, fit):
  _machine(monkeypatch, cores, available_gb)
  choice = plan_lib.choose_jobs(config(tmp_path, memory_budget_gb=budget_gb),
                                _model_jobs(*estimates))
  assert (choice.jobs, choice.fit, choice.chosen) == (jobs, fit, True)
  assert choice.memory_budget_gb == pytest.approx(
      budget_gb or plan_lib.MEMORY_BUDGET_SHARE * available_gb)


def test_an_explicit_jobs_wins(tmp_path, monkeypatch):
  _machine(monkeypatch, cores=1, available_gb=1.0)
  choice = plan_lib.choose_jobs(config(tmp_path, jobs=3), _model_jobs(6.0, 6.0, 6.0))
  assert (choice.jobs, choice.chosen) == (3, False)
  assert choice.memory_budget_gb == pytest.approx(plan_lib.MEMORY_BUDGET_SHARE * 1.0)


def test_the_machine_readers_read_the_affinity_and_memavailable():
  with open("/proc/meminfo") as f:
    kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
  assert plan_lib.available_memory_gb() == pytest.approx(kb / 2**20, rel=0.2)
  assert plan_lib.usable_cores() == len(os.sched_getaffinity(0))


def test_the_run_says_its_jobs_choice_first_and_runs_that_many(tmp_path, fake_ckpts,
                                                                 monkeypatch):
  events = tmp_path / "events.jsonl"
  monkeypatch.setenv("FAKE_EXPORT_LOG", str(events))
  monkeypatch.setenv("FAKE_EXPORT_SECONDS", "2")  # Overlap despite slow worker starts.
  two_models = THREE_MODELS[:2]
  _memory_estimates(monkeypatch, dict.fromkeys(two_models, 2.0))
  _machine(monkeypatch, cores=4, available_gb=21.3)
  result, output = run(config(tmp_path, models=two_models, versions=(4,), in_process=False))
  assert statuses(result) == ["exported"] * 4
  assert output.splitlines()[0] == (
      "4 of 4 export(s) to do in 2 model run(s), --jobs=2 (4 core(s), 21.3 GB available: "
      "budget 17.0 GB fits 2 of these model runs at once; pass --jobs to choose)")
  running, most = 0, 0
  for event in _events(events):
    running += 1 if event["event"] == "start" else -1
    most = max(most, running)
  assert most == 2
  # Given, --jobs wins, and the line says no more than before.
  events.unlink()
  _, output = run(config(tmp_path, models=two_models, versions=(4,), in_process=False, jobs=1,
                         force=True))
  assert output.splitlines()[0] == "4 of 4 export(s) to do in 2 model run(s)"
  assert [e["event"] for e in _events(events)] == ["start", "end"] * 2


_CLI_JOBS = """
import sys
from exporters import cli, export_all, export_tree
export_tree.run = lambda config, log: sys.exit(f"jobs={config.jobs}")
sys.argv[0] = "export_all"
cli.run(export_all.main)
"""


@pytest.mark.parametrize("flags, jobs", [((), None), (("--jobs=3",), 3)])
def test_cli_leaves_jobs_to_the_run_unless_given(tmp_path, flags, jobs):
  """The flag's default is the run's choice (plan.choose_jobs), not a number of its own."""
  done = subprocess.run([sys.executable, "-c", _CLI_JOBS, f"--export_dir={tmp_path}", *flags],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert done.stderr.strip().splitlines()[-1] == f"jobs={jobs}"


def test_failed_export_in_a_worker_leaves_nothing_and_others_finish(tmp_path, fake_ckpts,
                                                                     monkeypatch):
  monkeypatch.setenv("FAKE_EXPORT_FAIL", "nasnet_mobile/classification/4")
  with pytest.raises(ExportError, match=r"1 of 8 export\(s\) failed: .*classification/4") as e:
    run(config(tmp_path, jobs=2, in_process=False))
  rows = {(r.handle, r.version): r for r in e.value.result.rows}
  failed = rows[(str(HANDLE_DIR), 4)]
  assert failed.status == "failed" and "no space left on the device" in failed.error
  assert sum(r.status == "exported" for r in rows.values()) == NUM_RELEASES - 1
  exports = tmp_path / "exports"
  assert not (exports / HANDLE_DIR / "4").exists()
  assert not (exports / HANDLE_DIR / ".4.stamp.json").exists()
  assert leftovers(exports) == []
  monkeypatch.delenv("FAKE_EXPORT_FAIL")
  result, _ = run(config(tmp_path, jobs=2, in_process=False))
  assert [r.version for r in result.rows if r.status == "exported"] == [4]


class _FullDiskWriter:
  """A format writer that runs out of disk space halfway through its files."""

  def __init__(self, releases, checkpoint, log):
    pass

  def write(self, release, export_dir, log):
    pathlib.Path(export_dir, "saved_model.pb").write_bytes(b"half")
    raise OSError(errno.ENOSPC, "No space left on device")

  def close(self):
    pass


class _TinyWriter(_FullDiskWriter):
  def write(self, release, export_dir, log):
    pathlib.Path(export_dir, "saved_model.pb").write_bytes(b"tiny")

  def verify(self, release, export_dir, reference, log):
    return {"tiny": True}


def test_full_disk_during_a_real_model_run(tmp_path, ckpt_factory, monkeypatch):
  """pipeline.export_model itself (real checkpoint reading) with a writer that hits ENOSPC."""
  from exporters import formats
  prefix = ckpt_factory("nasnet_mobile")
  shutil.copytree(prefix.parent, tmp_path / "checkpoints" / "nasnet_mobile")
  cfg = config(tmp_path, exporter=export_tree.DEFAULT_EXPORTER, versions=(4,),
               module_types=("classification",))
  monkeypatch.setattr(formats, "writer_for", lambda fmt: _FullDiskWriter)
  with pytest.raises(ExportError, match="1 of 1 export") as e:
    run(cfg)
  assert "no space left on the device" in e.value.result.rows[0].error
  exports = tmp_path / "exports"
  # No card for the failed release, and the folders the model run made for it are gone.
  assert not (exports / HANDLE_DIR).exists()
  monkeypatch.setattr(formats, "writer_for", lambda fmt: _TinyWriter)
  result, _ = run(cfg)
  assert statuses(result) == ["exported"]
  assert (exports / HANDLE_DIR / "4" / "saved_model.pb").read_bytes() == b"tiny"


def test_stamp_that_cannot_be_written_means_export_again(tmp_path, fake_ckpts, monkeypatch):
  cfg = config(tmp_path, versions=(5,), module_types=("classification",))
  real = layout.write_atomically

  def full_disk_for_stamps(path, data):
    if path.name.endswith(".stamp.json"):
      raise OSError(errno.ENOSPC, "No space left on device")
    return real(path, data)

  monkeypatch.setattr(layout, "write_atomically", full_disk_for_stamps)
  with pytest.raises(ExportError) as e:
    run(cfg)
  assert "stamp could not be written" in e.value.result.rows[0].error
  monkeypatch.undo()
  assert statuses(run(cfg)[0]) == ["exported"]


@pytest.mark.parametrize("field,value", [
    ("peak_rss_mb", "lots"), ("inputs", ["not", "a", "dict"]), ("version", True),
    ("seconds", None), ("key", 7)])
def test_a_hand_edited_stamp_of_the_wrong_type_means_export_again(tmp_path, fake_ckpts,
                                                                   field, value):
  """The plan (memory from peak_rss_mb) and publish read stamps: one whose field has the
  wrong type is no stamp, so the release is exported again, not a TypeError later."""
  cfg = config(tmp_path, versions=(5,), module_types=("classification",))
  run(cfg)
  release = nasnet_mobile_releases(versions=[5], module_types=["classification"])[0]
  path = export_tree.stamp_path(tmp_path / "exports", release)
  data = json.loads(path.read_text())
  data[field] = value
  path.write_text(json.dumps(data))
  assert export_tree.read_stamp(path) is None
  assert statuses(run(cfg)[0]) == ["exported"]
  assert export_tree.read_stamp(path).inputs["checkpoint_sha256"]


_INTERRUPTIBLE_RUN = """
import signal, sys
from exporters import export_tree
signal.signal(signal.SIGTERM, export_tree.interrupt_on_signal)
config = export_tree.ExportAllConfig(
    checkpoint_dir=sys.argv[1], export_dir=sys.argv[2], models=("nasnet_mobile", "nasnet_large"),
    jobs=2, memory_budget_gb=100, exporter="tests.trees:fake_export_model", heartbeat_s=0,
    tfjs=False, lite=False)
try:
  export_tree.run(config)
except KeyboardInterrupt:
  sys.exit(130)
"""


def test_sigterm_stops_the_workers_and_removes_their_temporaries(tmp_path, fake_ckpts):
  exports = tmp_path / "exports"
  env = dict(os.environ, FAKE_EXPORT_SECONDS="60")
  proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTIBLE_RUN, str(fake_ckpts),
                           str(exports)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
  try:
    assert _wait_for(lambda: len(_release_temporaries(exports)) == 2, 60, proc), \
        proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
  finally:
    proc.kill()
  assert leftovers(exports) == []
  assert not list(exports.glob("google/imagenet/*/*/[0-9]*"))


def _release_temporaries(exports: pathlib.Path) -> list[str]:
  """leftovers() less the workers' folder (`.tmp-export_all-*` at the tree's top)."""
  return [p for p in leftovers(exports) if not p.startswith(".tmp-export_all-")]


_KILLABLE_RUN_WITH_A_CONVERTER = """
import sys
from exporters import export_tree
from exporters.formats import tfjs
tfjs.RUNTIME_DIR = sys.argv[3]  # Absent: the fake converter's files are not run.
export_tree.run(export_tree.ExportAllConfig(
    checkpoint_dir=sys.argv[1], export_dir=sys.argv[2], models=("nasnet_mobile",),
    module_types=("classification",), versions=(3,), exporter="tests.trees:fake_export_model",
    heartbeat_s=0, tfjs_converter=sys.argv[4], lite=False))
"""


def test_a_sigkilled_run_leaves_no_process_running_and_its_folders_are_swept(
    tmp_path, fake_ckpts):
  """SIGKILL cannot be handled: the model runs and the converter export_all runs die with
  it (no orphan writing into the tree), and the workers' folder it leaves lies in the tree,
  where the next run removes it, not in /tmp."""
  from tests.trees import fake_tfjs_converter
  exports, pid_file = tmp_path / "exports", tmp_path / "converter.pid"
  converter = fake_tfjs_converter(tmp_path / "bin")
  argv = [sys.executable, "-c", _KILLABLE_RUN_WITH_A_CONVERTER, str(fake_ckpts), str(exports),
          str(tmp_path / "no_tfjs_runtime"), str(converter)]
  # Killed while its model run exports.
  proc = subprocess.Popen(argv, cwd=REPO, env=dict(os.environ, FAKE_EXPORT_SECONDS="60"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  try:
    assert _wait_for(lambda: _release_temporaries(exports), 60, proc), proc.communicate()[0]
    proc.kill()
    proc.wait(timeout=30)
  finally:
    proc.kill()
  [workers_dir] = exports.glob(".tmp-export_all-*")  # Its results and logs: in the tree.
  # Killed while the TF.js converter runs (this run sweeps what the first one left).
  proc = subprocess.Popen(argv, cwd=REPO, env=dict(os.environ, FAKE_TFJS_HANG=str(pid_file)),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  try:
    assert _wait_for(lambda: pid_file.is_file() and pid_file.read_text(), 120, proc), \
        proc.communicate()[0]
    converter_pid = int(pid_file.read_text())
    assert not workers_dir.exists()
    proc.kill()
    proc.wait(timeout=30)
  finally:
    proc.kill()
  deadline = time.monotonic() + 10
  while time.monotonic() < deadline and _running(converter_pid):
    time.sleep(0.1)
  assert not _running(converter_pid), "the converter runs on after export_all was killed"
  result, output = run(config(tmp_path, versions=(3,), module_types=("classification",)))
  assert "temporary file(s) left by an interrupted run" in output  # The converter's.
  assert leftovers(exports) == []


def _running(pid: int) -> bool:
  """Whether `pid` is a live process (a zombie, killed but not yet reaped, is not)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


def test_stale_temporaries_are_removed(tmp_path, fake_ckpts):
  cfg = config(tmp_path, versions=(4,), module_types=("classification",))
  run(cfg)
  handle = tmp_path / "exports" / HANDLE_DIR
  (handle / ".tmp-4-abcd" / "variables").mkdir(parents=True)
  (handle / ".old-efgh").mkdir()
  (handle / ".tmp-.4.stamp.json-xyz").write_text("{")
  result, output = run(cfg)
  assert "removed 3 temporary file(s) left by an interrupted run" in output
  assert leftovers(tmp_path / "exports") == []
  assert statuses(result) == ["up to date"]


def test_a_second_concurrent_run_is_refused_before_it_fetches_a_checkpoint(tmp_path):
  """A second run is refused while the first holds the tree, and downloads nothing (it
  leaves the tree's folders as they were)."""
  (tmp_path / "empty_mirror").mkdir()
  exports = tmp_path / "exports"
  exports.mkdir()
  fd = os.open(exports / export_tree.LOCK_NAME, os.O_RDWR | os.O_CREAT)
  fcntl.flock(fd, fcntl.LOCK_EX)
  try:
    with pytest.raises(ExportError, match="another export_all is running"):
      run(config(tmp_path, checkpoint_dir=str(tmp_path / "no_such_dir")))
  finally:
    os.close(fd)
  assert not (tmp_path / "no_such_dir").exists()  # Nothing was fetched into it.
  assert sorted(os.listdir(exports)) == [export_tree.LOCK_NAME]  # Not the run's to remove.


def test_a_fifo_as_the_checkpoint_data_file_is_one_error_line(tmp_path, ckpt_factory):
  """Planning hashes the checkpoint: a FIFO there is refused unopened, in one line (issue
  20: it was a traceback), and the tree is left as it was."""
  folder = tmp_path / "checkpoints" / "nasnet_mobile"
  folder.mkdir(parents=True)
  shutil.copyfile(ckpt_factory("nasnet_mobile").parent / "model.ckpt.index",
                  folder / "model.ckpt.index")
  os.mkfifo(folder / "model.ckpt.data-00000-of-00001")
  exports = tmp_path / "exports"
  result = subprocess.run(
      [sys.executable, "-m", "exporters.export_all", f"--checkpoint_dir={folder.parent}",
       f"--export_dir={exports}", "--models=nasnet_mobile", "--notfjs"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "model.ckpt.data-00000-of-00001 is a FIFO, not a regular file" \
      in errors[0], result.stderr[-3000:]
  if exports.exists():  # Nothing but the lock file it may have taken.
    assert leftovers(exports) == [] and not list(exports.rglob("*.json"))


def test_unknown_model_stops_before_any_work(tmp_path, fake_ckpts):
  with pytest.raises(ExportError, match="unknown model 'nasnet_tiny'; known models: nasnet_mobile"):
    run(config(tmp_path, models=("nasnet_tiny",)))
  with pytest.raises(ExportError, match="no published release matches .*versions=2"):
    run(config(tmp_path, versions=(2,)))
  assert not (tmp_path / "exports").exists()


def test_missing_checkpoints_stop_before_any_work_saying_how_to_provide_them(tmp_path):
  (tmp_path / "empty_mirror").mkdir()
  cfg = config(tmp_path, checkpoint_dir=str(tmp_path / "no_such_dir"),
               models=("nasnet_mobile", "nasnet_large"))
  with pytest.raises(ExportError) as e:
    run(cfg)
  message = str(e.value)
  assert "nothing was exported" in message
  assert "nasnet_mobile: could not fetch nasnet-a_mobile_04_10_2017.tar.gz" in message
  assert "nasnet_large: could not fetch" in message
  assert "--mirror" in message
  assert f"model.ckpt.index and model.ckpt.data-* under {tmp_path / 'no_such_dir'}/<model>/" \
      in message
  assert not (tmp_path / "exports").exists()


def test_cli_bad_input(tmp_path):
  (tmp_path / "empty_mirror").mkdir()
  base = [sys.executable, "-m", "exporters.export_all", f"--export_dir={tmp_path}/exports",
          f"--checkpoint_dir={tmp_path}/none", f"--mirror={tmp_path}/empty_mirror"]
  done = subprocess.run(base + ["--models=nasnet_mobile"], cwd=REPO, capture_output=True,
                        text=True)
  assert done.returncode == 1
  assert "error: cannot export without the released checkpoints" in done.stderr
  assert "--mirror" in done.stderr and "model.ckpt.index" in done.stderr
  done = subprocess.run(base + ["--models=nasnet_tiny"], cwd=REPO, capture_output=True,
                        text=True)
  assert done.returncode == 1 and "unknown model 'nasnet_tiny'" in done.stderr
  assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("bad,message", [
    ("--versions=abc", "--versions must be numbers, not abc"),
    ("--models=", "--models has no value; leave the flag out for all"),
    ("--versions=3,", "--versions has an empty item (3,); leave the flag out for all"),
    ("stray", "unexpected arguments: stray"),
], ids=["versions_not_numbers", "models_empty", "versions_empty_item", "stray_argument"])
def test_cli_usage_errors_are_one_line_and_exit_status_2(tmp_path, bad, message):
  done = subprocess.run([sys.executable, "-m", "exporters.export_all",
                         f"--export_dir={tmp_path}/exports", f"--checkpoint_dir={tmp_path}/c",
                         bad], cwd=REPO, capture_output=True, text=True)
  assert (done.returncode, done.stderr) == (2, f"error: {message}\n")
  assert not (tmp_path / "exports").exists()


# ---- End to end: the real exporters.

@pytest.mark.slow
def test_real_export_all_writes_every_version_and_card(nasnet_mobile_tree):
  tree = nasnet_mobile_tree
  # Every release, then nasnet_mobile's two TFLite deployments (tests/test_lite.py checks them).
  assert statuses(tree.result) == ["exported"] * (NUM_RELEASES + 2)
  assert [r.format for r in tree.result.rows][NUM_RELEASES:] == ["lite", "lite"]
  assert all(r.verified and r.size > 1_000_000 for r in tree.result.rows)
  for release in nasnet_mobile_releases():
    export = export_tree.export_path(tree.export_dir, release)
    assert (export / "saved_model.pb").is_file()
    assert (export / "tfhub_module.pb").is_file() == (release.version.format == "hub")
    assert export_tree.card_path(tree.export_dir, release).read_text() == \
        docs_lib.render_card(release)
    assert export_tree.read_stamp(export_tree.stamp_path(tree.export_dir, release))
  assert leftovers(tree.export_dir) == []
  assert f"[4/{NUM_RELEASES}] {HANDLE_DIR}/5: exported and verified" in tree.output


@pytest.mark.slow
def test_real_second_run_does_no_export_work(nasnet_mobile_tree):
  """Every release and both TFLite deployments up to date, from their stamps: no model run,
  no converter, no client."""
  tree = nasnet_mobile_tree
  cfg = export_tree.ExportAllConfig(checkpoint_dir=str(tree.checkpoint_dir),
                                       export_dir=str(tree.export_dir), models=("nasnet_mobile",),
                                       tfjs=False)
  result, output = run(cfg)
  assert statuses(result) == ["up to date"] * (NUM_RELEASES + 2)
  assert output == (f"all {NUM_RELEASES} release(s) and 2 deployment(s) up to date; "
                    f"no export work done")


@pytest.mark.slow
def test_real_changed_checkpoint_makes_every_release_stale(nasnet_mobile_tree, tmp_path):
  tree = nasnet_mobile_tree
  cfg = export_tree.ExportAllConfig(checkpoint_dir=str(tree.checkpoint_dir),
                                       export_dir=str(tree.export_dir), models=("nasnet_mobile",),
                                       tfjs=False, lite=False)
  reg = registry.default()
  planned = plan_lib.releases(cfg, reg)
  prefix = tree.checkpoint_dir / "nasnet_mobile" / "model.ckpt"
  for path in prefix.parent.iterdir():
    os.utime(path)  # Touched, same content: still up to date.
  assert all(j.up_to_date for j in plan_lib.plan(cfg, reg, planned,
                                                        {"nasnet_mobile": prefix}))
  other = make_checkpoint("nasnet_mobile", tmp_path / "seed1" / "nasnet_mobile", seed=1)
  assert not any(j.up_to_date for j in plan_lib.plan(cfg, reg, planned,
                                                            {"nasnet_mobile": other}))


def _wait_for(predicate, timeout, proc):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if predicate():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.2)
  return False


# The one extra real export of this module (beside the session tree): export_all of two
# releases, one per format family, killed twice while writing and then run again; the
# SIGTERM/SIGKILL test checks the kills and the recovery, the plan test the bytes.
KILLED_RELEASES = nasnet_mobile_releases(module_types=["feature_vector"], versions=[3, 5])


@dataclasses.dataclass(frozen=True)
class KilledAndRecovered:
  exports: pathlib.Path
  handle: pathlib.Path  # The releases' handle folder.
  after_kill: dict  # Signal -> what was there after export_all died of it.
  recovery: subprocess.CompletedProcess  # The next, uninterrupted run.


KILLED_TESTS = {"test_real_export_killed_midway_leaves_nothing_and_the_next_run_recovers",
                "test_release_bytes_do_not_depend_on_the_plan"}


def start_in_background(background, tmp_path_factory, selected: set):
  """The killed runs and the recovery, once the background models are done (conftest:
  after_exports): the tests that read them are marked late."""
  if not KILLED_TESTS & selected:
    return None
  exports = tmp_path_factory.mktemp("killed") / "exports"
  return background.after_exports(lambda: _kill_and_recover(background.tree.result(), exports))


@pytest.fixture(scope="session")
def killed_and_recovered(background_exports) -> KilledAndRecovered:
  return background_exports.started[__name__].result()


def _kill_and_recover(tree, exports: pathlib.Path) -> KilledAndRecovered:
  """`python -m exporters.export_all` over KILLED_RELEASES, stopped by SIGTERM and then by
  SIGKILL a second after a release's temporary dir appeared, then run to the end."""
  handle = exports / "google/imagenet/nasnet_mobile/feature_vector"
  cmd = [sys.executable, "-m", "exporters.export_all",
         f"--checkpoint_dir={tree.checkpoint_dir}", f"--export_dir={exports}",
         "--models=nasnet_mobile", "--module_types=feature_vector", "--versions=3,5",
         "--notfjs"]
  after_kill = {}
  for sig in (signal.SIGTERM, signal.SIGKILL):
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
      assert _wait_for(lambda: _temp_dirs(handle), 300, proc), \
          proc.communicate()[0].decode()[-3000:]
      time.sleep(1)
      proc.send_signal(sig)
      proc.wait(timeout=120)
    finally:
      proc.kill()
    after_kill[sig] = {  # Exports, stamps, cards: whatever is there but temporary dirs.
        "kept": sorted(str(p.relative_to(exports)) for p in exports.rglob("*")
                       if p.is_file() and p.name != export_tree.LOCK_NAME
                       and not any(part.startswith(".tmp-")
                                   for part in p.relative_to(exports).parts)),
        "temp_dirs": _temp_dirs(handle),
        "workers_dirs": sorted(exports.glob(".tmp-export_all-*"))}
  recovery = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  return KilledAndRecovered(exports, handle, after_kill, recovery)


def _temp_dirs(handle: pathlib.Path) -> list[pathlib.Path]:
  """The temporary dirs of a model run writing into `handle` (pipeline._temporary_dir)."""
  return sorted(handle.glob(".tmp-*")) if handle.exists() else []


@pytest.mark.slow
@pytest.mark.late
def test_real_export_killed_midway_leaves_nothing_and_the_next_run_recovers(
    killed_and_recovered, nasnet_mobile_tree):
  """SIGTERM stops it and removes the temporary dir; after SIGKILL the next run removes it."""
  killed = killed_and_recovered
  for sig, left in killed.after_kill.items():
    # No release, card or stamp of a killed run: nothing partial.
    assert left["kept"] == [], (sig, left)
    if sig == signal.SIGTERM:
      assert left["temp_dirs"] == [], "an interrupted export must remove its temporary dir"
      assert left["workers_dirs"] == [], "an interrupted run must remove its workers' folder"
  # The next run cleans up what SIGKILL left: the release's temporary dir and the workers'
  # folder (in the tree, not in /tmp).
  assert len(killed.after_kill[signal.SIGKILL]["temp_dirs"]) == 1
  assert len(killed.after_kill[signal.SIGKILL]["workers_dirs"]) == 1

  done = killed.recovery
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert "removed 2 temporary file(s) left by an interrupted run" in done.stdout
  for i, release in enumerate(KILLED_RELEASES, 1):
    assert f"[{i}/{len(KILLED_RELEASES)}] {release.handle_with_version}: exported and " \
           f"verified" in done.stdout
    assert (export_tree.export_path(killed.exports, release) / "saved_model.pb").is_file()
    assert export_tree.stamp_path(killed.exports, release).is_file()
  assert _temp_dirs(killed.handle) == [] and leftovers(killed.exports) == []
  # Equal to an uninterrupted run: byte for byte what the session tree's model run wrote
  # among all of nasnet_mobile's releases.
  for release in KILLED_RELEASES:
    assert_same_bytes(export_tree.export_path(killed.exports, release),
                      export_tree.export_path(nasnet_mobile_tree.export_dir, release))


def file_hashes(directory: pathlib.Path) -> dict[str, str]:
  import hashlib
  return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_same_bytes(export: pathlib.Path, other: pathlib.Path) -> None:
  """Every file's sha256 is equal, and publishing either gives the same archive."""
  hashes = file_hashes(export)
  assert "saved_model.pb" in hashes and hashes == file_hashes(other)
  assert publish_lib.write_archive(str(export), io.BytesIO()) == \
      publish_lib.write_archive(str(other), io.BytesIO())


@pytest.mark.slow
@pytest.mark.late
def test_release_bytes_do_not_depend_on_the_plan(killed_and_recovered, nasnet_mobile_tree):
  """Another plan (two releases, one per format, in one model run, after two interrupted
  runs) writes the same bytes as the session tree's run of all eight: files and archives."""
  assert killed_and_recovered.recovery.returncode == 0, killed_and_recovered.recovery.stderr
  assert {r.version.format for r in KILLED_RELEASES} == {"hub", "saved_model_2"}
  for release in KILLED_RELEASES:
    assert_same_bytes(export_tree.export_path(killed_and_recovered.exports, release),
                      export_tree.export_path(nasnet_mobile_tree.export_dir, release))


# ---- Provenance, failed releases' cards, a quiet CLI.

def _pin(lock_file: pathlib.Path, prefix: pathlib.Path, model="nasnet_mobile") -> str:
  """A lock file pinning an archive whose checkpoint content is the one at `prefix`."""
  from checkpoints import fetch_lib
  archive_sha256 = "ab" * 32
  lock_file.write_text(json.dumps({"archives": {fetch_lib.entry(model).archive_name: {
      "sha256": archive_sha256, "size": 1,
      "checkpoint_sha256": fetch_lib.checkpoint_sha256(prefix)}}}))
  return archive_sha256


def test_checkpoint_provenance_in_stamps_and_table(tmp_path, fake_ckpts):
  """Placed by hand: "unverified local checkpoint"; once pinned, the stamps say so without
  exporting again (same bytes); a stamp of format 2 gets its provenance the same way."""
  exports = tmp_path / "exports"
  lock_file = tmp_path / "lock.json"
  cfg = config(tmp_path, versions=(4,), lock_file=str(lock_file))
  result, _ = run(cfg)
  assert statuses(result) == ["exported", "exported"]
  releases = nasnet_mobile_releases(versions=[4])
  for release in releases:
    stamp = export_tree.read_stamp(export_tree.stamp_path(exports, release))
    assert stamp.checkpoint_provenance == "unverified local checkpoint"
  assert "checkpoint of nasnet_mobile: unverified local checkpoint: never matched against a " \
         "pinned release archive" in export_tree.format_table(result.rows)

  archive_sha256 = _pin(lock_file, fake_ckpts / "nasnet_mobile" / "model.ckpt")
  result, _ = run(cfg)
  assert statuses(result) == ["up to date", "up to date"]
  for release in releases:
    stamp = export_tree.read_stamp(export_tree.stamp_path(exports, release))
    assert stamp.checkpoint_provenance == f"pinned archive sha256 {archive_sha256}"
  table = export_tree.format_table(result.rows)
  assert table.splitlines()[-1] == \
      f"checkpoint of nasnet_mobile: pinned archive sha256 {archive_sha256[:12]}…"
  assert export_tree.provenance_lines(result.rows, only_unverified=True) == []

  # A stamp written before provenance was recorded (format 2): up to date, then stamped.
  path = export_tree.stamp_path(exports, releases[0])
  data = json.loads(path.read_text())
  del data["checkpoint_provenance"]
  path.write_text(json.dumps(dict(data, format=2)))
  assert export_tree.read_stamp(path).checkpoint_provenance == stamps.UNKNOWN_PROVENANCE
  assert statuses(run(cfg)[0]) == ["up to date", "up to date"]
  assert export_tree.read_stamp(path).checkpoint_provenance == \
      f"pinned archive sha256 {archive_sha256}"

  # Changed by hand after it was pinned: unverified again (and exported again: new bytes).
  (fake_ckpts / "nasnet_mobile" / "model.ckpt.data-00000-of-00001").write_bytes(b"data v2")
  result, _ = run(cfg)
  assert statuses(result) == ["exported", "exported"]
  assert {r.checkpoint_provenance for r in result.rows} == {"unverified local checkpoint"}


def test_a_failed_release_gets_no_card_and_its_row_says_why(tmp_path, fake_ckpts, monkeypatch):
  monkeypatch.setenv("FAKE_EXPORT_FAIL", "nasnet_mobile/classification/4")
  cfg = config(tmp_path, versions=(4, 5), module_types=("classification",))
  with pytest.raises(ExportError) as e:
    run(cfg)
  failed = [r for r in e.value.result.rows if r.status == "failed"]
  assert [(r.version, r.status) for r in e.value.result.rows] == [(4, "failed"), (5, "exported")]
  assert e.value.result.cards_written == 1
  handle = tmp_path / "exports" / HANDLE_DIR
  assert sorted(p.name for p in handle.iterdir()) == [".5.stamp.json", "5", "5.md"]
  table = export_tree.format_table(e.value.result.rows)
  assert f"{HANDLE_DIR}/4: OSError: no space left on the device" in table
  assert "FAILED" in table.splitlines()[2]


def _stamped_for_the_real_exporter(tmp_path, fake_ckpts) -> pathlib.Path:
  """An export tree that is up to date for `python -m exporters.export_all` (the default
  exporter), made by the fake exporter and stamped with the key the real one would have."""
  exports = tmp_path / "exports"
  run(config(tmp_path))
  prefix = fake_ckpts / "nasnet_mobile" / "model.ckpt"
  cfg = config(tmp_path, exporter=export_tree.DEFAULT_EXPORTER)
  for job in plan_lib.plan(cfg, registry.default(), nasnet_mobile_releases(),
                           {"nasnet_mobile": prefix}):
    stamps.write_stamp(job.stamp_file, stamps.Stamp(**{
        **{f: getattr(job.stamp, f) for f in job.stamp.__dataclass_fields__},
        "key": job.stamp_key, "inputs": job.stamp_inputs}))
  return exports


def test_cli_with_nothing_to_do_says_one_line(tmp_path, fake_ckpts):
  """What `make publish` shows of export-all on an up-to-date tree: one line (and the
  unverified checkpoint), nothing on stderr."""
  exports = _stamped_for_the_real_exporter(tmp_path, fake_ckpts)
  done = subprocess.run(
      [sys.executable, "-m", "exporters.export_all", f"--checkpoint_dir={fake_ckpts}",
       f"--export_dir={exports}", "--models=nasnet_mobile", "--notfjs", "--nolite"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout + done.stderr
  assert done.stderr == ""
  assert done.stdout.splitlines() == [
      f"all {NUM_RELEASES} release(s) up to date; no export work done",
      "checkpoint of nasnet_mobile: unverified local checkpoint: never matched against a "
      "pinned release archive; check it before publishing"]


def test_cli_errors_are_one_line_on_a_quiet_stderr(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  done = subprocess.run([sys.executable, "-m", "exporters.export_all",
                         f"--export_dir={a_file}/exports", "--models=nasnet_tiny"],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 1
  assert done.stderr.splitlines() == [
      "error: unknown model 'nasnet_tiny'; known models: nasnet_mobile, nasnet_large, "
      "pnasnet_large, pnasnet_mobile"]


# ---- TF.js deployments ([deployments.tfjs]): converted after their parents, stamped, skipped when
# up to date. The fast tests stand tests/trees.py's fake converter in for the real one
# (tests/test_tfjs.py runs the real converter and runtime).

DEPLOYMENTS = registry.default().deployments(models=["nasnet_mobile"], kind="tfjs")


def tfjs_config(tmp_path, monkeypatch, **kw):
  from exporters.formats import tfjs
  from tests.trees import fake_tfjs_converter
  monkeypatch.setenv("FAKE_TFJS_LOG", str(tmp_path / "conversions.log"))
  # The fake converter's output is no graph model: no TF.js runtime to verify it in.
  monkeypatch.setattr(tfjs, "RUNTIME_DIR", str(tmp_path / "no_tfjs_runtime"))
  return config(tmp_path, tfjs=True, tfjs_converter=str(fake_tfjs_converter(tmp_path / "bin")),
                **kw)


def conversions(tmp_path) -> list[str]:
  log = tmp_path / "conversions.log"
  lines = log.read_text().splitlines() if log.exists() else []
  log.unlink(missing_ok=True)
  return lines


def test_deployments_follow_their_parents_with_stamps_and_cards(tmp_path, fake_ckpts, monkeypatch):
  cfg = tfjs_config(tmp_path, monkeypatch)
  exports = tmp_path / "exports"
  result, output = run(cfg)
  assert [(r.format, r.status) for r in result.rows] == (
      [(r.version.format, "exported") for r in nasnet_mobile_releases()]
      + [("tfjs", "exported")] * 4)
  assert [f"{r.handle}/{r.version}" for r in result.rows[NUM_RELEASES:]] == [
      d.handle for d in DEPLOYMENTS] == [
      f"google/tfjs-model/imagenet/nasnet_mobile/{t}/{v}/default/1"
      for t in ("classification", "feature_vector") for v in (1, 3)]
  assert conversions(tmp_path) == [str(layout.export_path(exports, d.parent)) for d in DEPLOYMENTS]
  total = NUM_RELEASES + 4
  for i, d in enumerate(DEPLOYMENTS, NUM_RELEASES + 1):
    folder = exports / d.handle
    assert sorted(os.listdir(folder)) == ["group1-shard1of1.bin", "model.json"]
    assert (folder / "group1-shard1of1.bin").read_bytes() == (
        layout.export_path(exports, d.parent) / "saved_model.pb").read_bytes()
    assert (exports / d.handle_dir / "1.md").read_text() == docs_lib.render_deployment_card(d)
    stamp = stamps.read_stamp(exports / d.handle_dir / ".1.stamp.json")
    parent_stamp = stamps.read_stamp(layout.stamp_path(exports, d.parent))
    assert stamp.inputs["parent_stamp_key"] == parent_stamp.key
    assert stamp.export["parent"] == d.parent.handle_with_version
    assert f"[{i}/{total}] {d.handle}: converted in" in output
  assert result.cards_written == total
  table = export_tree.format_table(result.rows).splitlines()
  assert table[2 + NUM_RELEASES].split()[:3] == [DEPLOYMENTS[0].handle_dir, "1", "tfjs"]
  assert table[2 + NUM_RELEASES].endswith("converted, not verified")

  again, output = run(cfg)  # Reads stamps; starts no converter.
  assert statuses(again) == ["up to date"] * total and conversions(tmp_path) == []
  assert output == f"all {NUM_RELEASES} release(s) and 4 deployment(s) up to date; " \
                   f"no export work done"
  # A deleted deployment alone is converted again; a re-exported parent makes its own stale.
  shutil.rmtree(exports / DEPLOYMENTS[1].handle)
  shutil.rmtree(layout.export_path(exports, DEPLOYMENTS[2].parent))
  result, output = run(cfg)
  assert [f"{r.handle}/{r.version}" for r in result.rows if r.status == "exported"] == [
      DEPLOYMENTS[2].parent.handle_with_version, DEPLOYMENTS[1].handle, DEPLOYMENTS[2].handle]
  assert f"{DEPLOYMENTS[0].handle}: up to date, skipped" in output
  assert leftovers(exports) == []


def test_a_changed_converter_environment_converts_again(tmp_path, fake_ckpts, monkeypatch):
  cfg = tfjs_config(tmp_path, monkeypatch, versions=(1,), module_types=("classification",))
  run(cfg)
  conversions(tmp_path)
  fingerprint = dict(stamps.converter_fingerprint("tfjs"), sources_sha256="0" * 64)
  monkeypatch.setattr(stamps, "converter_fingerprint", lambda kind: fingerprint)
  assert statuses(run(cfg)[0]) == ["up to date", "exported"]
  assert len(conversions(tmp_path)) == 1


def test_a_missing_converter_stops_before_any_work_saying_how_to_build_it(tmp_path, fake_ckpts):
  cfg = config(tmp_path, tfjs=True, tfjs_converter=str(tmp_path / "no" / "converter"))
  with pytest.raises(ExportError) as e:
    run(cfg)
  assert str(e.value) == (
      f"the TF.js converter {tmp_path / 'no' / 'converter'} is missing; build its environment "
      f"with `make tfjs-env`; 4 tfjs deployment(s) need it (or pass --notfjs to export "
      f"without them); nothing was exported")
  assert not list((tmp_path / "exports").rglob("*.pb"))
  # Releases without a deployment need no converter.
  assert statuses(run(dataclasses_replace(cfg, versions=(4,)))[0]) == ["exported"] * 2


def dataclasses_replace(cfg, **kw):
  import dataclasses
  return dataclasses.replace(cfg, **kw)


def test_failed_parent_or_conversion_fails_only_that_deployment(tmp_path, fake_ckpts, monkeypatch):
  monkeypatch.setenv("FAKE_EXPORT_FAIL", "nasnet_mobile/classification/1")
  monkeypatch.setenv("FAKE_TFJS_FAIL", "feature_vector/3")
  cfg = tfjs_config(tmp_path, monkeypatch, versions=(1, 3))
  with pytest.raises(ExportError) as e:
    run(cfg)
  rows = {f"{r.handle}/{r.version}": r for r in e.value.result.rows}
  d = {f"{x.parent.module_type}/{x.parent.version.number}": x.handle for x in DEPLOYMENTS}
  assert rows[d["classification/1"]].status == "failed"
  assert rows[d["classification/1"]].error == (
      "not converted: its parent google/imagenet/nasnet_mobile/classification/1 failed")
  assert rows[d["feature_vector/3"]].error.startswith(
      "the TF.js converter failed on ") and rows[d["feature_vector/3"]].error.endswith(
      ": ValueError: fake converter failure")
  assert [rows[d[k]].status for k in ("classification/3", "feature_vector/1")] == ["exported"] * 2
  exports = tmp_path / "exports"
  for key in ("classification/1", "feature_vector/3"):
    folder = exports / d[key]
    assert not folder.parent.exists() or sorted(os.listdir(folder.parent)) == []
  assert leftovers(exports) == []


@pytest.mark.late
def test_the_deployments_reference_from_a_child_process_is_the_slim_reference(
    nasnet_mobile_tree):
  """The deployments' reference outputs come from a child process (TF-Slim keeps its arg
  scopes on one global stack, so a Slim graph built while another thread of the same
  process is inside an arg scope can take that scope's arguments: a session tree's TFLite
  check once saw logits 1.54 away). The child's outputs are the in-process reference's,
  bit for bit."""
  import numpy as np
  from exporters.network import reference
  model = registry.default().models["nasnet_mobile"]
  prefix = str(nasnet_mobile_tree.checkpoint_dir / "nasnet_mobile" / "model.ckpt")
  num_classes = registry.default().publisher.num_classes
  in_process = reference.SlimReference(model, num_classes, prefix)
  expected = in_process.expected()
  in_process.close()
  from exporters.network import reference_cache
  from_child = reference_cache.expected_in_child_process(model, num_classes, prefix)
  assert sorted(from_child) == sorted(expected)
  for name, value in expected.items():
    assert np.array_equal(from_child[name], value), name
  with pytest.raises(ExportError, match=r"^the Slim reference failed on '.*missing': "):
    reference_cache.expected_in_child_process(model, num_classes, prefix + ".missing")
