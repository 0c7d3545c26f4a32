"""Shared test fixtures: the ../shared reference data and generated checkpoints."""
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("SHARED_DIR", REPO.parent / "shared"))


_SUITE_CACHE_HOME: list[str] = []  # This session's cache folder (also make_checkpoint's).


def pytest_configure(config):
  # The suite's own user cache (checkpoints/variable_list.py keeps graph variable
  # lists there), shared by the CLIs the tests start: a run neither reads nor
  # leaves the developer's ~/.cache, and builds each graph's list once.
  _SUITE_CACHE_HOME[:] = [tempfile.mkdtemp(prefix="nasnet-hub-tests-cache-")]
  os.environ["XDG_CACHE_HOME"] = _SUITE_CACHE_HOME[0]


def pytest_unconfigure(config):
  if _SUITE_CACHE_HOME:
    shutil.rmtree(_SUITE_CACHE_HOME.pop(), ignore_errors=True)


def require_shared(*parts) -> pathlib.Path:
  """Returns ../shared/<parts>, or skips the test saying why."""
  path = SHARED.joinpath(*parts)
  if not path.exists():
    pytest.skip(f"reference data {path} is absent (../shared is only beside the project in CI "
                f"and developer checkouts)")
  return path


def make_checkpoint(model: str, out_dir: pathlib.Path, seed: int = 0) -> pathlib.Path:
  """Writes ../shared/checkpoints/make_ckpt.py's checkpoint for `model` into `out_dir`;
  returns its prefix. make_ckpt.py runs once per (model, seed) and session, into the
  suite's cache folder; each caller gets a copy of its own (tests damage theirs)."""
  out_dir.mkdir(parents=True, exist_ok=True)
  prefix = out_dir / "model.ckpt"
  if not (out_dir / "model.ckpt.index").exists():
    generated = _generated_checkpoint(model, seed)
    # The index last: a folder with an index holds the whole checkpoint.
    for source in sorted(generated.iterdir(), key=lambda f: f.name.endswith(".index")):
      shutil.copyfile(source, out_dir / source.name)
  return prefix


_GENERATED_LOCKS: dict[tuple[str, int], threading.Lock] = {}
_GENERATED_LOCKS_LOCK = threading.Lock()


def _generated_checkpoint(model: str, seed: int) -> pathlib.Path:
  """The folder of the session's one make_ckpt.py checkpoint of `model` at `seed`."""
  script = require_shared("checkpoints", "make_ckpt.py")
  manifest = require_shared("checkpoints", "manifests", f"{model}.tsv")
  with _GENERATED_LOCKS_LOCK:
    lock = _GENERATED_LOCKS.setdefault((model, seed), threading.Lock())
  folder = pathlib.Path(_SUITE_CACHE_HOME[0]) / "checkpoints" / f"{model}_seed{seed}"
  with lock:
    if not (folder / "model.ckpt.index").exists():
      folder.mkdir(parents=True, exist_ok=True)
      subprocess.run([sys.executable, str(script), str(manifest), str(folder / "model.ckpt"),
                      str(seed)], check=True, capture_output=True)
  return folder


@pytest.fixture(scope="session")
def ckpt_factory(tmp_path_factory):
  """`ckpt_factory(model, seed=0)` -> checkpoint prefix, cached for the session."""
  cache = {}

  def factory(model: str, seed: int = 0) -> pathlib.Path:
    key = (model, seed)
    if key not in cache:
      cache[key] = make_checkpoint(model, tmp_path_factory.mktemp(f"ckpt_{model}_{seed}"), seed)
    return cache[key]
  return factory


# ---- The upstream goldens: the original TF-Slim code's outputs (../shared/golden).

# The checkpoint seed (make_ckpt.py) each model's golden is for. Every model's
# session exports are made from that seed's checkpoint, so that the real
# clients can be compared with its golden.
GOLDEN_SEEDS = {"nasnet_mobile": 0, "nasnet_large": 0, "pnasnet_large": 1, "pnasnet_mobile": 1}
GOLDEN_TOLERANCE = 1e-4  # Absolute, float32, CPU (../shared/README.md); never loosened.
# What a consumer passes as batch_norm_momentum when fine-tuning (a
# *_with_bn_hparams signature, or a TF2 model's call argument).
FINE_TUNING_MOMENTUM = 0.997


def golden_path(model: str) -> pathlib.Path:
  """../shared/golden/<model>_seed<seed>.npz, or skips the test saying why."""
  return require_shared("golden", f"{model}_seed{GOLDEN_SEEDS[model]}.npz")


def has_path_dropout(model: str) -> bool:
  """Whether training mode drops paths (then training-mode outputs are random, and the
  goldens have no train_features)."""
  import slim_nets
  return slim_nets.get_net(model).config().drop_path_keep_prob < 1.0


@pytest.fixture(scope="session")
def golden():
  """`golden(model)` -> its golden arrays (images, logits, features, train_conv0_batch_mean,
  and train_features where the model has no path dropout), loaded once per session."""
  import numpy as np
  cache = {}

  def get(model: str) -> dict:
    if model not in cache:
      with np.load(golden_path(model)) as arrays:
        cache[model] = {name: arrays[name] for name in arrays.files}
    return cache[model]
  return get


@pytest.fixture(scope="session")
def golden_nasnet_mobile(golden):
  return golden("nasnet_mobile")


# ---- Real exports, shared by the whole session.

@dataclasses.dataclass(frozen=True)
class RealTree:
  """A real export_all run: its tree, result and everything it printed."""
  checkpoint_dir: pathlib.Path
  export_dir: pathlib.Path
  result: object  # exporters.export_tree.ExportAllResult
  output: str


@dataclasses.dataclass(frozen=True)
class ReleaseExport:
  """One verified release of a real model run, and what the run said about it."""
  release: object  # registry.Release
  export_dir: str
  verification: dict
  unused_variables: tuple[str, ...]
  messages: tuple[str, ...]  # The run's log lines that name this release.
  checkpoint_path: str  # The checkpoint it was exported from (its model's GOLDEN_SEEDS seed).


@pytest.fixture(scope="session")
def nasnet_mobile_tree(background_exports) -> RealTree:
  """One real `export_all --models=nasnet_mobile --jobs=2`: every published version, in one
  model run in a worker process, from the checkpoint of its golden's seed. The TF1, TF2,
  compat, publish and serve tests all use it. Started at the session's start when a
  selected test needs it (see "made in the background" below)."""
  return background_exports.tree.result()


def _export_nasnet_mobile_tree(root: pathlib.Path) -> RealTree:
  from exporters import export_tree
  checkpoint_dir = root / "checkpoints"
  make_checkpoint("nasnet_mobile", checkpoint_dir / "nasnet_mobile",
                  seed=GOLDEN_SEEDS["nasnet_mobile"])
  lines = []
  config = export_tree.ExportAllConfig(checkpoint_dir=str(checkpoint_dir),
                                       export_dir=str(root / "exports"),
                                       models=("nasnet_mobile",), mirror="", jobs=2,
                                       tfjs=False)  # tests/test_tfjs.py converts a copy.
  from exporters.errors import ExportError
  try:
    result = export_tree.run(config, log=lines.append)
  except ExportError as e:  # Say why, from the run's own lines, not only which failed.
    raise AssertionError(f"{e}\n" + "\n".join(lines[-12:])) from None
  return RealTree(checkpoint_dir, root / "exports", result, "\n".join(lines))


class _Task:
  """A function run in a thread of its own from the first result() call, or from start();
  result() waits for it and raises what it raised."""

  def __init__(self, fn):
    self._fn, self._thread, self._starting = fn, None, threading.Lock()
    self._done = threading.Event()
    self._value, self._error = None, None

  def start(self) -> "_Task":
    self.start_if_new()
    return self

  def start_if_new(self) -> bool:
    """Starts it unless it was started already; says whether this call started it."""
    with self._starting:
      if self._thread is not None:
        return False
      self._thread = threading.Thread(target=self._run, daemon=True)
      self._thread.start()
      return True

  def _run(self) -> None:
    try:
      self._value = self._fn()
    except BaseException as e:  # pytest.fail and skip too: raised again in each test.
      self._error = e
    finally:
      self._done.set()

  def wait(self) -> None:
    """Starts it if need be and waits for it to end, raising nothing."""
    self.start()._done.wait()

  def result(self):
    self.wait()
    if self._error is not None:
      raise self._error
    return self._value


# The releases of the large models the session exports (the slow tests), each
# model's in ONE model run from its golden's checkpoint seed: a TF1 Hub format
# release for the real hub.Module and a TF2 one for hub.KerasLayer. nasnet_large's
# version 3 has the *_with_bn_hparams signatures; pnasnet_large's version 2 is the
# one only it has (the UPDATE_OPS fix). Classification releases, so that both the
# logits and (through image_feature_vector) the features are checked.
LARGE_MODEL_RELEASES = {
    "nasnet_large": (("classification", 3), ("classification", 5)),
    "pnasnet_large": (("classification", 2), ("classification", 5)),
}


def session_releases(model: str) -> list:
  """The releases of `model` that the session exports (release_export serves): every
  release of the mobile models, LARGE_MODEL_RELEASES of the large ones."""
  import registry
  reg = registry.default()
  if model in LARGE_MODEL_RELEASES:
    return [reg.release(model, t, v) for t, v in LARGE_MODEL_RELEASES[model]]
  return list(reg.releases(models=[model]))


def golden_releases(model: str, fmt: str) -> list:
  """The session releases of `model` in format `fmt` ("hub" or "saved_model_2") that are
  compared with its golden through the real client, one per module type: for the TF1
  format (hub.Module) the classification's oldest version (its original momentum default)
  and the feature vector's newest (its *_with_bn_hparams signatures); for TF2
  (hub.KerasLayer) the newest of each. Every other release passed the same graph rules
  and the Slim reference at export time."""
  chosen = {}
  for release in (r for r in session_releases(model) if r.version.format == fmt):
    # Registry order is oldest version first: keep the first or the last.
    keep_oldest = fmt == "hub" and release.module_type == "classification"
    if not (keep_oldest and release.module_type in chosen):
      chosen[release.module_type] = release
  return list(chosen.values())


def release_id(release) -> str:
  return f"{release.model.name}-{release.module_type}-v{release.version.number}"


def is_large(model: str) -> bool:
  """Whether tests of `model`'s exports are slow (its session export is)."""
  return model in LARGE_MODEL_RELEASES


# ---- The session exports, made in the background.
#
# A model run is mostly single-threaded Python (graph construction, tracing,
# serialization), and most of the suite needs no export. So the session's
# exports are made beside the tests from the session's start: nasnet_mobile's
# tree in one thread (its export_all runs the model in a worker process), and
# in another, model after model, the other models': the golden seed's
# checkpoint, the model's session releases in an export_all worker process
# (the one export_all itself uses), then the real hub.Module over its TF1
# releases when a selected test asks for that. The tests run in this order
# (pytest_collection_modifyitems): those that need no export, then those
# that need nasnet_mobile's exports, then each background model's, by when
# their work is usually done; then those marked `late` (they read what their
# module started: start_in_background), in the same group order.

BACKGROUND_MODELS = ("pnasnet_mobile", "nasnet_large", "pnasnet_large")  # In the order made.


def _background_model(item) -> str | None:
  """The background model whose session exports a test item needs, if any: for a test
  that uses them (release_export, directly or through another fixture), its `release`
  parameter's model, or a `session_exports(model)` marker's."""
  if "pnasnet_mobile_exports" in item.fixturenames:
    return "pnasnet_mobile"
  if "release_export" not in item.fixturenames:
    return None
  release = _release_param(item)
  if release is not None and release.model.name in BACKGROUND_MODELS:
    return release.model.name
  marker = item.get_closest_marker("session_exports")
  return marker.args[0] if marker else None


def _needs_nasnet_mobile_tree(item) -> bool:
  return "nasnet_mobile_tree" in item.fixturenames or "release_export" in item.fixturenames


@pytest.hookimpl(trylast=True)  # After -m and -k have deselected.
def pytest_collection_modifyitems(session, config, items):
  """Runs the tests that need no export first, then nasnet_mobile's, then each background
  model's; notes what to start in the background."""
  models = {item: _background_model(item) for item in items}
  # The late tests last of all: while they wait for work queued after the exports
  # (after_exports), the other groups' tests have already run beside that work.
  items.sort(key=lambda item: (item.get_closest_marker("late") is not None,
                               BACKGROUND_MODELS.index(models[item]) + 2 if models[item]
                               else 1 if _needs_nasnet_mobile_tree(item) else 0))
  config.stash[_BACKGROUND_WORK] = {
      model: any(models[item] == model and "hub_module_report" in item.fixturenames
                 for item in items)
      for model in BACKGROUND_MODELS if model in models.values()}
  config.stash[_TREE_NEEDED] = any(_needs_nasnet_mobile_tree(item) and not models[item]
                                   for item in items)
  config.stash[_TREE_HUB_MODULE] = list({
      _release_key(release): release for item in items
      if "hub_module_report" in item.fixturenames and not models[item]
      and (release := _release_param(item)) is not None and release.version.format == "hub"
  }.values())


def _release_param(item):
  """A test item's `release` parameter, when it is a registry.Release."""
  import registry
  callspec = getattr(item, "callspec", None)
  release = callspec.params.get("release") if callspec else None
  return release if isinstance(release, registry.Release) else None


_BACKGROUND_WORK = pytest.StashKey[dict]()  # model -> whether hub.Module checks it too.
_TREE_NEEDED = pytest.StashKey[bool]()
_TREE_HUB_MODULE = pytest.StashKey[list]()  # nasnet_mobile's releases hub.Module checks.


@dataclasses.dataclass
class _BackgroundModel:
  done: threading.Event
  exports: dict | None = None  # (model, module_type, version) -> ReleaseExport.
  # The same keys -> check_hub_module.py's report; or why there is none (raised to the
  # hub.Module tests only).
  hub_module: dict | BaseException | None = None
  error: BaseException | None = None  # What stopped its exports (raised to its tests).


class BackgroundExports:
  """The session exports: nasnet_mobile's tree (a _Task), and the background models'
  exports and hub.Module reports; see above."""

  def __init__(self, root: pathlib.Path, work: dict[str, bool], tree: _Task,
               tree_hub_module: list):
    self.root, self.work, self.tree = root, work, tree
    self.started: dict[str, object] = {}  # Test module -> its start_in_background's result.
    # hub.Module over the tree's TF1 releases that the tests ask for, once it is made.
    self.tree_hub_module = _Task(lambda: self._check_tree(tree_hub_module))
    self.tree_hub_module_keys = {_release_key(r) for r in tree_hub_module}
    if tree_hub_module:
      self.tree_hub_module.start()
    self.models = {m: _BackgroundModel(threading.Event()) for m in work}
    # Work queued by the test modules (after_exports), and whether they are all done queuing.
    self._later: list[_Task] = []
    self._later_queued = threading.Event()
    self._models_done = threading.Event()
    self._later_lock = threading.Lock()
    self._second_runner: threading.Thread | None = None
    self._thread = threading.Thread(target=self._run, name="background-exports", daemon=True)
    self._thread.start()

  def task(self, fn) -> _Task:
    """Runs fn beside the tests, from now (e.g. run_command calls)."""
    return _Task(fn).start()

  def after_exports(self, fn) -> _Task:
    """Runs fn beside the tests once the background models' work is done, one such task
    after another (or from the first result() call, if that comes first).

    For work that keeps a core busy for a minute or more, in a process of its own: from
    then on the main process runs the export-consuming tests on one core, and this keeps
    the other busy; started earlier, it would only slow the background exports. Once the
    main process reaches the late tests, which mostly wait for this work, two such tasks
    run at a time (late_phase)."""
    task = _Task(fn)
    self._later.append(task)
    return task

  def done_queuing(self) -> None:
    self._later_queued.set()

  def late_phase(self) -> None:
    """The main process has reached the late tests: a second runner of the queued work
    starts (once the background models are done), using the core the tests leave idle."""
    with self._later_lock:
      if self._second_runner is None:
        self._second_runner = threading.Thread(target=self._run_later, daemon=True)
        self._second_runner.start()

  def get(self, model: str) -> _BackgroundModel:
    if model not in self.models:  # Asked for by a test the collection did not foresee.
      self.models[model] = _BackgroundModel(threading.Event())
      self._make(model, hub_module=False)
    state = self.models[model]
    state.done.wait()
    if state.error is not None:
      raise state.error
    return state

  def _check_tree(self, releases: list) -> dict:
    from exporters import export_tree
    tree = self.tree.result()
    report = run_hub_module_check(
        {"exports": [hub_module_check_spec(r, export_tree.export_path(tree.export_dir, r),
                                           golden_path(r.model.name)) for r in releases]},
        self.root / "nasnet_mobile_hub_module_spec.json")
    return dict(zip(map(_release_key, releases), report["exports"]))

  def _run(self) -> None:
    try:
      for model, hub_module in list(self.work.items()):
        self._make(model, hub_module)
    finally:
      self._models_done.set()
    self._run_later()

  def _run_later(self) -> None:
    """Runs the queued work, one task after another, each task once among the runners."""
    self._models_done.wait()
    self._later_queued.wait()
    for task in self._later:
      if task.start_if_new():
        task.wait()

  def _make(self, model: str, hub_module: bool) -> None:
    state = self.models[model]
    try:
      state.exports = self._export(model)
      if hub_module:
        releases = [e.release for e in state.exports.values() if e.release.version.format == "hub"]
        try:
          report = run_hub_module_check(
              {"exports": [hub_module_check_spec(r, state.exports[_release_key(r)].export_dir,
                                                 golden_path(model)) for r in releases]},
              self.root / model / "hub_module_spec.json")
          state.hub_module = dict(zip(map(_release_key, releases), report["exports"]))
        except BaseException as e:  # pytest.fail and skip too: raised again in each test.
          state.hub_module = e
    except BaseException as e:
      state.error = e
    finally:
      state.done.set()

  def _export(self, model: str) -> dict:
    """One export_all worker process over the model's session releases."""
    folder = self.root / model
    checkpoint = make_checkpoint(model, folder / "checkpoint", GOLDEN_SEEDS[model])
    releases = session_releases(model)
    targets = [[r.module_type, r.version.number, str(folder / f"{r.module_type}_{r.version.number}")]
               for r in releases]
    results_file = folder / "results.jsonl"
    spec = {"parent_pid": os.getpid(), "model": model, "checkpoint": str(checkpoint),
            "targets": targets, "results_file": str(results_file),
            "exporter": "exporters.pipeline:export_model"}
    run = subprocess.run([sys.executable, "-m", "exporters.export_tree.worker", json.dumps(spec)],
                         cwd=REPO, capture_output=True, text=True, timeout=3600)
    lines = run.stdout.splitlines()
    reports = {}
    if results_file.exists():
      for line in results_file.read_text().splitlines():
        report = json.loads(line)
        reports[report["index"]] = report
    found = {}
    for index, release in enumerate(releases):
      report = reports.get(index)
      if not report or report["error"]:
        why = report["error"] if report else "\n".join(lines[-20:]) + run.stderr[-3000:]
        pytest.fail(f"the session export of {release.handle_with_version} failed: {why}",
                    pytrace=False)
      found[_release_key(release)] = ReleaseExport(
          release, targets[index][2], report["result"]["verification"],
          tuple(report["result"]["unused_variables"]), _messages_about(release, lines),
          str(checkpoint))
    return found


@pytest.fixture(scope="session", autouse=True)
def background_exports(request, tmp_path_factory) -> BackgroundExports:
  """Starts the session's exports at the session's start (see above)."""
  # The session's base folder, made before any thread asks for a folder in it: two
  # threads making it at once make two, and a folder in the other fails mktemp's check.
  tmp_path_factory.getbasetemp()
  tree = _Task(lambda: _export_nasnet_mobile_tree(tmp_path_factory.mktemp("nasnet_mobile_tree")))
  if request.config.stash.get(_TREE_NEEDED, False):
    tree.start()
  work = request.config.stash.get(_BACKGROUND_WORK, {})
  background = BackgroundExports(tmp_path_factory.mktemp("background_exports"), work, tree,
                                 request.config.stash.get(_TREE_HUB_MODULE, []))
  # A test module may start work of its own now: start_in_background(background,
  # tmp_path_factory, names of its selected tests) -> what its tests read later.
  selected: dict[object, set] = {}
  for item in request.session.items:
    selected.setdefault(item.module, set()).add(item.originalname)
  try:
    for module, names in selected.items():
      start = getattr(module, "start_in_background", None)
      if start is not None:
        background.started[module.__name__] = start(background, tmp_path_factory, names)
  finally:
    background.done_queuing()
  request.config.stash[_BACKGROUND] = background
  return background


_BACKGROUND = pytest.StashKey[BackgroundExports]()


def pytest_runtest_setup(item):
  if item.get_closest_marker("late") is not None and _BACKGROUND in item.config.stash:
    item.config.stash[_BACKGROUND].late_phase()


def run_in_subprocess(function, out_dir: pathlib.Path, **kwargs) -> dict:
  """`function(**kwargs)` (a test module's helper returning numpy arrays by name) run in a
  fresh Python (tests/in_subprocess.py); returns its arrays, or fails saying why not."""
  import numpy as np
  out_dir.mkdir(parents=True, exist_ok=True)
  kwargs_file, out_file = out_dir / "kwargs.json", out_dir / "arrays.npz"
  kwargs_file.write_text(json.dumps(kwargs))
  run = run_command([sys.executable, "-m", "tests.in_subprocess",
                     f"{function.__module__}:{function.__name__}", str(kwargs_file),
                     str(out_file)], timeout=1800)
  if run.returncode != 0:
    pytest.fail(f"{function.__name__} failed in its process:\n{run.stderr[-4000:]}",
                pytrace=False)
  with np.load(out_file) as arrays:
    return {name: arrays[name] for name in arrays.files}


def run_command(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
  """A command run in the repository, its output captured."""
  return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def pnasnet_mobile_exports(background_exports) -> dict:
  """Every pnasnet_mobile release (both module types, both formats: TF Hub never
  published it), exported in ONE model run from the checkpoint of its golden's seed (1):
  (model, module_type, version) -> ReleaseExport."""
  return background_exports.get("pnasnet_mobile").exports


@pytest.fixture(scope="session")
def release_export(background_exports, request):
  """`release_export(release)` -> ReleaseExport.

  nasnet_mobile's come from the session's export_all tree (stamps and output);
  the other models' (session_releases) from the background model runs. Each
  model is exported once per session, from the checkpoint seed of its golden
  (GOLDEN_SEEDS).
  """
  from exporters import export_tree

  def get(release) -> ReleaseExport:
    key = _release_key(release)
    if release.model.name == "nasnet_mobile":
      tree = request.getfixturevalue("nasnet_mobile_tree")  # Only when asked for.
      stamp = export_tree.read_stamp(export_tree.stamp_path(tree.export_dir, release))
      return ReleaseExport(
          release, str(export_tree.export_path(tree.export_dir, release)),
          stamp.export["verification"], tuple(stamp.export["unused_variables"]),
          _messages_about(release, tree.output.splitlines()),
          str(tree.checkpoint_dir / "nasnet_mobile" / "model.ckpt"))
    exports = background_exports.get(release.model.name).exports
    if key not in exports:
      pytest.fail(f"{release.handle_with_version} is not among the session's exports of "
                  f"{release.model.name} (conftest.session_releases)", pytrace=False)
    return exports[key]
  return get


def _messages_about(release, lines) -> tuple[str, ...]:
  model_wide = f"{release.model.name}: "
  return tuple(line.strip() for line in lines
               if f"{release.handle_with_version}:" in line or line.strip().startswith(model_wide))


# ---- The real clients on the session's exports, against the goldens.

COMPAT_PYTHON = REPO / ".venv-compat" / "bin" / "python"
HUB_MODULE_SCRIPT = REPO / "tests" / "compat" / "check_hub_module.py"
_PASSED_ON = (Exception, pytest.skip.Exception, pytest.fail.Exception)


def hub_module_train_cases(release) -> list[dict]:
  """Signature applications in training mode, and the momentum each must use."""
  default = {"signature": "image_feature_vector", "momentum": None,
             "expected_momentum": release.version.batch_norm_momentum}
  if not release.version.bn_hparams_signatures:
    return [default]
  return [{"signature": "image_feature_vector_with_bn_hparams",
           "momentum": FINE_TUNING_MOMENTUM, "expected_momentum": FINE_TUNING_MOMENTUM},
          default]


def hub_module_check_spec(release, export_dir: str, golden_file) -> dict:
  """One export's entry in tests/compat/check_hub_module.py's spec."""
  from exporters.formats import hub_module
  signatures = hub_module.signatures(release)
  return {"path": str(export_dir), "golden": str(golden_file),
          "outputs": {s.name: s.output for s in signatures},
          "bn_hparams": [s.name for s in signatures if s.bn_hparams],
          "train_cases": hub_module_train_cases(release)}


def run_hub_module_check(spec: dict, spec_path: pathlib.Path) -> dict:
  """Runs check_hub_module.py in .venv-compat on `spec`; returns its report."""
  if not COMPAT_PYTHON.exists():
    pytest.fail(f"{COMPAT_PYTHON} is missing: the compat tests need the hub.Module "
                f"environment; build it with `make compat-env` (or deselect them with "
                f"-m 'not compat')", pytrace=False)
  spec_path.write_text(json.dumps(spec))
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  result = subprocess.run([str(COMPAT_PYTHON), str(HUB_MODULE_SCRIPT), str(spec_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
  if result.returncode != 0:
    pytest.fail(f"{HUB_MODULE_SCRIPT.name} failed in .venv-compat:\n{result.stderr[-4000:]}",
                pytrace=False)
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["tensorflow_hub"] == "0.15.0", report["tensorflow_hub"]
  return report


def _release_key(release) -> tuple:
  return (release.model.name, release.module_type, release.version.number)


@pytest.fixture(scope="session")
def hub_module_report(request, release_export, background_exports, tmp_path_factory):
  """`hub_module_report(release)` -> what the real hub.Module (.venv-compat) saw of the
  session export of TF1 Hub format `release`, compared with its model's golden.

  A background model's releases are checked by the background work, right
  after their export. nasnet_mobile's: the first call checks, in ONE
  .venv-compat process, every nasnet_mobile TF1 release that a selected test
  passes as its `release` parameter while using this fixture; a release
  asked for later gets a process of its own.
  """
  outcomes: dict[tuple, object] = {}  # Release key -> its report, or why there is none.

  def wanted(model: str) -> list:
    found = {}
    for item in request.session.items:
      release = _release_param(item)
      if ("hub_module_report" in getattr(item, "fixturenames", ())
          and release is not None and release.version.format == "hub"
          and release.model.name == model):
        found.setdefault(_release_key(release), release)
    return list(found.values())

  def check(releases) -> None:
    exports = {}
    for release in releases:
      try:
        exports[_release_key(release)] = hub_module_check_spec(
            release, release_export(release).export_dir, golden_path(release.model.name))
      except _PASSED_ON as e:  # An export that failed or was skipped fails or skips its tests.
        outcomes[_release_key(release)] = e
    if not exports:
      return
    try:
      report = run_hub_module_check(
          {"exports": list(exports.values())},
          tmp_path_factory.mktemp("hub_module_check") / "spec.json")
      outcomes.update(zip(exports, report["exports"]))
    except _PASSED_ON as e:
      outcomes.update((key, e) for key in exports)

  def get(release) -> dict:
    key = _release_key(release)
    model = release.model.name
    if background_exports.work.get(model):
      reports = background_exports.get(model).hub_module
      if isinstance(reports, BaseException):
        raise reports
      if key in reports:
        return reports[key]
    if model == "nasnet_mobile" and key in background_exports.tree_hub_module_keys:
      return background_exports.tree_hub_module.result()[key]
    if key not in outcomes:
      batch = [r for r in wanted(model) if _release_key(r) not in outcomes]
      if key not in {_release_key(r) for r in batch}:
        batch.append(release)
      check(batch)
    outcome = outcomes[key]
    if isinstance(outcome, BaseException):
      raise outcome
    return outcome
  return get


@dataclasses.dataclass(frozen=True)
class KerasLayerRun:
  """A TF2 release's session export in hub.KerasLayer on its golden's images: one
  `hub.load`, wrapped as users do, first in inference, then fine-tuning."""
  release: object  # registry.Release
  outputs: object  # np.ndarray: hub.KerasLayer(loaded)(images), inference.
  served: object  # np.ndarray, or None: the serving_default signature (inference).
  train_outputs: object  # KerasLayer(trainable=True, batch_norm_momentum=M)(images, training=True).
  momentum: float  # M, FINE_TUNING_MOMENTUM.
  moving_mean_before: object  # conv0_bn/moving_mean before the training call,
  moving_mean_after: object  # and after it.
  losses: tuple[float, ...]  # The trainable layer's losses (weight decay).


@pytest.fixture(scope="session")
def keras_layer_run(release_export, golden):
  """`keras_layer_run(release)` -> KerasLayerRun of a TF2 release, made once per session."""
  runs = {}

  def get(release) -> KerasLayerRun:
    key = _release_key(release)
    if key not in runs:
      runs[key] = _keras_layer_run(release, release_export(release).export_dir,
                                   golden(release.model.name)["images"])
    return runs[key]
  return get


def _keras_layer_run(release, export_dir: str, images) -> KerasLayerRun:
  import tensorflow as tf
  import tensorflow_hub as hub
  from exporters.formats import saved_model_2
  loaded = hub.load(export_dir)
  outputs = hub.KerasLayer(loaded)(images).numpy()
  served = None
  if release.version.serving_signature:
    served = loaded.signatures["serving_default"](
        **{saved_model_2.SERVING_INPUT_KEY: tf.constant(images)}
    )[saved_model_2.SERVING_OUTPUT_KEY].numpy()
  # Training mode last: it moves the moving statistics of `loaded`.
  layer = hub.KerasLayer(loaded, trainable=True,
                         arguments=dict(batch_norm_momentum=FINE_TUNING_MOMENTUM))
  (moving_mean,) = [w for w in layer.non_trainable_weights if w.name == "conv0_bn/moving_mean:0"]
  before = moving_mean.numpy().copy()
  train_outputs = layer(images, training=True).numpy()
  after = moving_mean.numpy().copy()
  return KerasLayerRun(release, outputs, served, train_outputs, FINE_TUNING_MOMENTUM, before,
                       after, tuple(float(loss) for loss in layer.losses))


def implied_batch_mean(before, after, momentum):
  """The batch mean a moving mean moved toward: after = m*before + (1-m)*mean, with m as the
  float32 the graph uses. Its error is the moving mean's float32 rounding over 1-m."""
  import numpy as np
  m = float(np.float32(momentum))
  return (np.asarray(after, np.float64) - m * np.asarray(before, np.float64)) / (1.0 - m)


def golden_failure(model: str, what: str, got, expected) -> str:
  """'' if `got` reproduces the golden `expected` within GOLDEN_TOLERANCE, else why not."""
  import numpy as np
  got, expected = np.asarray(got), np.asarray(expected)
  if got.shape != expected.shape:
    return f"{model} {what}: shape {list(got.shape)}, golden {list(expected.shape)}"
  diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
  if not diff <= GOLDEN_TOLERANCE:  # NaN fails too.
    return (f"{model} {what}: max abs difference from the golden {diff:.3g} > "
            f"{GOLDEN_TOLERANCE:g}")
  return ""
