"""Shared test fixtures: the ../shared reference data and generated checkpoints."""
import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("SHARED_DIR", REPO.parent / "shared"))


def require_shared(*parts) -> pathlib.Path:
  """Returns ../shared/<parts>, or skips the test saying why."""
  path = SHARED.joinpath(*parts)
  if not path.exists():
    pytest.skip(f"reference data {path} is absent (../shared is only beside the project in CI "
                f"and developer checkouts)")
  return path


def make_checkpoint(model: str, out_dir: pathlib.Path, seed: int = 0) -> pathlib.Path:
  """Writes ../shared/checkpoints/make_ckpt.py's checkpoint for `model`; returns its prefix."""
  script = require_shared("checkpoints", "make_ckpt.py")
  manifest = require_shared("checkpoints", "manifests", f"{model}.tsv")
  out_dir.mkdir(parents=True, exist_ok=True)
  prefix = out_dir / "model.ckpt"
  if not (out_dir / "model.ckpt.index").exists():
    subprocess.run([sys.executable, str(script), str(manifest), str(prefix), str(seed)],
                   check=True, capture_output=True)
  return prefix


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
def nasnet_mobile_tree(tmp_path_factory) -> RealTree:
  """One real `export_all --models=nasnet_mobile --jobs=2`: every published version, in one
  model run in a worker process, from the checkpoint of its golden's seed. The TF1, TF2,
  compat, publish and serve tests all use it."""
  from exporters import export_tree
  root = tmp_path_factory.mktemp("nasnet_mobile_tree")
  checkpoint_dir = root / "checkpoints"
  make_checkpoint("nasnet_mobile", checkpoint_dir / "nasnet_mobile",
                  seed=GOLDEN_SEEDS["nasnet_mobile"])
  lines = []
  config = export_tree.ExportAllConfig(checkpoint_dir=str(checkpoint_dir),
                                       export_dir=str(root / "exports"),
                                       models=("nasnet_mobile",), mirror="", jobs=2,
                                       tfjs=False)  # tests/test_tfjs.py converts a copy.
  result = export_tree.run(config, log=lines.append)
  return RealTree(checkpoint_dir, root / "exports", result, "\n".join(lines))


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
  compared with its golden through the real client: every TF1 one (hub.Module), the newest
  TF2 version of each module type (hub.KerasLayer)."""
  releases = [r for r in session_releases(model) if r.version.format == fmt]
  if fmt == "hub":
    return releases
  newest = {}
  for release in releases:  # Registry order: oldest version first.
    newest[release.module_type] = release
  return list(newest.values())


def release_id(release) -> str:
  return f"{release.model.name}-{release.module_type}-v{release.version.number}"


def is_large(model: str) -> bool:
  """Whether tests of `model`'s exports are slow (its session export is)."""
  return model in LARGE_MODEL_RELEASES


@pytest.fixture(scope="session")
def pnasnet_mobile_exports(ckpt_factory, tmp_path_factory) -> dict:
  """Every pnasnet_mobile release (both module types, both formats: TF Hub never
  published it), exported in ONE model run from the checkpoint of its golden's seed (1):
  (model, module_type, version) -> ReleaseExport."""
  model = "pnasnet_mobile"
  releases = [(r.module_type, r.version.number) for r in session_releases(model)]
  return _one_model_run(model, releases, ckpt_factory, tmp_path_factory)


@pytest.fixture(scope="session")
def release_export(ckpt_factory, tmp_path_factory, request):
  """`release_export(release)` -> ReleaseExport.

  nasnet_mobile's come from the session's export_all tree (stamps and output);
  pnasnet_mobile's from pnasnet_mobile_exports; a large model's
  (LARGE_MODEL_RELEASES) from one pipeline.export_model run per model, made
  when a test first asks for one of them. Each model is exported once per
  session, from the checkpoint seed of its golden (GOLDEN_SEEDS).
  """
  from exporters import export_tree
  large: dict[tuple, ReleaseExport] = {}

  def get(release) -> ReleaseExport:
    key = (release.model.name, release.module_type, release.version.number)
    if release.model.name == "nasnet_mobile":
      tree = request.getfixturevalue("nasnet_mobile_tree")  # Only when asked for.
      stamp = export_tree.read_stamp(export_tree.stamp_path(tree.export_dir, release))
      return ReleaseExport(
          release, str(export_tree.export_path(tree.export_dir, release)),
          stamp.export["verification"], tuple(stamp.export["unused_variables"]),
          _messages_about(release, tree.output.splitlines()),
          str(tree.checkpoint_dir / "nasnet_mobile" / "model.ckpt"))
    if release.model.name == "pnasnet_mobile":
      return request.getfixturevalue("pnasnet_mobile_exports")[key]
    if key not in large:
      large.update(_export_large_model(release.model.name, ckpt_factory, tmp_path_factory))
    return large[key]
  return get


def _messages_about(release, lines) -> tuple[str, ...]:
  model_wide = f"{release.model.name}: "
  return tuple(line.strip() for line in lines
               if f"{release.handle_with_version}:" in line or line.strip().startswith(model_wide))


def _export_large_model(model, ckpt_factory, tmp_path_factory) -> dict:
  return _one_model_run(model, LARGE_MODEL_RELEASES[model], ckpt_factory, tmp_path_factory)


def _one_model_run(model, releases, ckpt_factory, tmp_path_factory) -> dict:
  """(module_type, version) pairs of `model` exported in one model run from the
  checkpoint of its golden's seed: (model, module_type, version) -> ReleaseExport."""
  from exporters import pipeline
  root = tmp_path_factory.mktemp(f"{model}_exports")
  targets = tuple(pipeline.ReleaseTarget(t, v, str(root / f"{t}_{v}")) for t, v in releases)
  checkpoint = str(ckpt_factory(model, GOLDEN_SEEDS[model]))
  lines = []
  outcomes = pipeline.export_model(pipeline.ModelExportConfig(model, checkpoint, targets),
                                   log=lines.append)
  found = {}
  for outcome in outcomes:
    assert not outcome.error, outcome.error
    release = outcome.release
    found[model, release.module_type, release.version.number] = ReleaseExport(
        release, outcome.result.export_dir, outcome.result.verification,
        outcome.result.unused_variables, _messages_about(release, lines), checkpoint)
  return found


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
def hub_module_report(request, release_export, tmp_path_factory):
  """`hub_module_report(release)` -> what the real hub.Module (.venv-compat) saw of the
  session export of TF1 Hub format `release`, compared with its model's golden.

  The first call checks, in ONE .venv-compat process, every TF1 release that
  a selected test of the session passes as its `release` parameter while
  using this fixture (so `-m "not slow"` never exports a large model for it);
  a release asked for later gets a process of its own.
  """
  import registry
  outcomes: dict[tuple, object] = {}  # Release key -> its report, or why there is none.

  def wanted() -> list:
    found = {}
    for item in request.session.items:
      callspec = getattr(item, "callspec", None)
      release = callspec.params.get("release") if callspec else None
      if ("hub_module_report" in getattr(item, "fixturenames", ())
          and isinstance(release, registry.Release) and release.version.format == "hub"):
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
    if key not in outcomes:
      batch = [r for r in wanted() if _release_key(r) not in outcomes]
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
