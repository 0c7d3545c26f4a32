"""The real hub.Module loads and fine-tunes the TF1 Hub format exports.

hub.Module exists only up to tensorflow-hub 0.15, which needs TensorFlow
<= 2.15; it runs in the second environment .venv-compat (`make compat-env`)
through tests/compat/check_hub_module.py, which reports what it sees as JSON;
the expectations are here. The exports are the session's (conftest.release_export).
"""
import json
import os
import subprocess

import pytest

import registry
from exporters.formats import hub_module
from tests.conftest import REPO, require_shared

pytestmark = pytest.mark.compat

COMPAT_PYTHON = REPO / ".venv-compat" / "bin" / "python"
SCRIPT = REPO / "tests" / "compat" / "check_hub_module.py"
RELEASES = [r for r in registry.default().releases(models=["nasnet_mobile"])
            if r.version.format == "hub"]
IDS = [f"{r.model.name}-{r.module_type}-v{r.version.number}" for r in RELEASES]
TOLERANCE = 1e-4
MOVING_MEAN_TOLERANCE = 1e-5
FINE_TUNING_MOMENTUM = 0.997  # What a consumer passes to a *_with_bn_hparams signature.


def train_cases(release):
  """Signature applications in training mode, and the momentum each must use."""
  default = {"signature": "image_feature_vector", "momentum": None,
             "expected_momentum": release.version.batch_norm_momentum}
  if not release.version.bn_hparams_signatures:
    return [default]
  return [{"signature": "image_feature_vector_with_bn_hparams",
           "momentum": FINE_TUNING_MOMENTUM, "expected_momentum": FINE_TUNING_MOMENTUM},
          default]


def check_spec(release, export_dir):
  signatures = hub_module.signatures(release)
  return {"path": export_dir,
          "outputs": {s.name: s.output for s in signatures},
          "bn_hparams": [s.name for s in signatures if s.bn_hparams],
          "train_cases": train_cases(release)}


@pytest.fixture(scope="module")
def hub_module_report(release_export, tmp_path_factory):
  """Runs the real hub.Module once over every export; returns its report by release id."""
  if not COMPAT_PYTHON.exists():
    pytest.fail(f"{COMPAT_PYTHON} is missing: the compat tests need the hub.Module "
                f"environment; build it with `make compat-env` (or deselect them with "
                f"-m 'not compat')", pytrace=False)
  golden = require_shared("golden", "nasnet_mobile_seed0.npz")
  exports = [check_spec(r, release_export(r).export_dir) for r in RELEASES]
  spec_path = tmp_path_factory.mktemp("hub_module_check") / "spec.json"
  spec_path.write_text(json.dumps({"golden": str(golden), "exports": exports}))
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  result = subprocess.run([str(COMPAT_PYTHON), str(SCRIPT), str(spec_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
  if result.returncode != 0:
    pytest.fail(f"{SCRIPT.name} failed in .venv-compat:\n{result.stderr[-4000:]}",
                pytrace=False)
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["tensorflow_hub"] == "0.15.0"
  return dict(zip(IDS, report["exports"]))


@pytest.mark.parametrize("release", RELEASES, ids=IDS)
def test_hub_module_loads_the_inference_graph(release, hub_module_report):
  report = hub_module_report[IDS[RELEASES.index(release)]]
  assert report["tags"] == [[], ["train"]]
  inference = report["inference"]
  size = release.model.image_size
  assert inference["image_size"] == [size, size]
  assert inference["signatures"] == sorted(s.name for s in hub_module.signatures(release))
  assert set(inference["max_abs_diff"]) == set(inference["signatures"])
  for name, diff in inference["max_abs_diff"].items():
    assert diff <= TOLERANCE, name


@pytest.mark.parametrize("release", RELEASES, ids=IDS)
def test_hub_module_fine_tunes_the_train_graph(release, hub_module_report):
  train = hub_module_report[IDS[RELEASES.index(release)]]["train"]
  size = release.model.image_size
  assert train["image_size"] == [size, size]
  assert train["signatures"] == sorted(s.name for s in hub_module.signatures(release))
  assert train["regularization_losses"] > 0
  assert train["regularization_loss_total"] > 0
  assert [c["signature"] for c in train["cases"]] == [c["signature"] for c in train_cases(release)]
  for case in train["cases"]:
    assert case["update_ops"] > 0, case
    assert case["moving_mean_moved"] > 0, case
    assert case["moving_mean_max_abs_err"] <= MOVING_MEAN_TOLERANCE, case
    assert case["train_features_max_abs_diff"] <= TOLERANCE, case
