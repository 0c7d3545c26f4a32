"""Shared test fixtures: the ../shared reference data and generated checkpoints."""
import dataclasses
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


@pytest.fixture(scope="session")
def golden_nasnet_mobile():
  import numpy as np
  return dict(np.load(require_shared("golden", "nasnet_mobile_seed0.npz")))


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


@pytest.fixture(scope="session")
def nasnet_mobile_tree(tmp_path_factory) -> RealTree:
  """One real `export_all --models=nasnet_mobile --jobs=2`: every published version, in one
  model run in a worker process. The TF1, TF2, compat, publish and serve tests all use it."""
  from exporters import export_tree
  root = tmp_path_factory.mktemp("nasnet_mobile_tree")
  checkpoint_dir = root / "checkpoints"
  make_checkpoint("nasnet_mobile", checkpoint_dir / "nasnet_mobile", seed=0)
  lines = []
  config = export_tree.ExportAllConfig(checkpoint_dir=str(checkpoint_dir),
                                       export_dir=str(root / "exports"),
                                       models=("nasnet_mobile",), mirror="", jobs=2,
                                       tfjs=False)  # tests/test_tfjs.py converts a copy.
  result = export_tree.run(config, log=lines.append)
  return RealTree(checkpoint_dir, root / "exports", result, "\n".join(lines))


# The releases of the large models that the slow tests check, each model's in one run.
LARGE_MODEL_RELEASES = {
    "nasnet_large": (("classification", 5),),
    "pnasnet_large": (("classification", 2), ("classification", 5)),
}


@pytest.fixture(scope="session")
def pnasnet_mobile_exports(ckpt_factory, tmp_path_factory) -> dict:
  """Every pnasnet_mobile release (both module types, both formats: TF Hub never
  published it), exported in ONE model run from the seed-0 checkpoint:
  (model, module_type, version) -> ReleaseExport."""
  import registry
  model = "pnasnet_mobile"
  releases = [(r.module_type, r.version.number) for r in registry.default().releases(models=[model])]
  return _one_model_run(model, releases, ckpt_factory, tmp_path_factory)


@pytest.fixture(scope="session")
def release_export(nasnet_mobile_tree, ckpt_factory, tmp_path_factory, request):
  """`release_export(release)` -> ReleaseExport.

  nasnet_mobile's come from the session's export_all tree (stamps and output);
  a large model's (LARGE_MODEL_RELEASES) from one pipeline.export_model run per
  model, made when a test first asks for one of them.
  """
  from exporters import export_tree
  large: dict[tuple, ReleaseExport] = {}

  def get(release) -> ReleaseExport:
    key = (release.model.name, release.module_type, release.version.number)
    if release.model.name == "nasnet_mobile":
      tree = nasnet_mobile_tree
      stamp = export_tree.read_stamp(export_tree.stamp_path(tree.export_dir, release))
      return ReleaseExport(
          release, str(export_tree.export_path(tree.export_dir, release)),
          stamp.export["verification"], tuple(stamp.export["unused_variables"]),
          _messages_about(release, tree.output.splitlines()))
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
  """(module_type, version) pairs of `model` exported in one model run:
  (model, module_type, version) -> ReleaseExport."""
  from exporters import pipeline
  root = tmp_path_factory.mktemp(f"{model}_exports")
  targets = tuple(pipeline.ReleaseTarget(t, v, str(root / f"{t}_{v}")) for t, v in releases)
  lines = []
  outcomes = pipeline.export_model(pipeline.ModelExportConfig(
      model, str(ckpt_factory(model)), targets), log=lines.append)
  found = {}
  for outcome in outcomes:
    assert not outcome.error, outcome.error
    release = outcome.release
    found[model, release.module_type, release.version.number] = ReleaseExport(
        release, outcome.result.export_dir, outcome.result.verification,
        outcome.result.unused_variables, _messages_about(release, lines))
  return found
