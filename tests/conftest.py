"""Shared test fixtures: the ../shared reference data and generated checkpoints."""
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
