"""The real hub.Module loads and fine-tunes every model's TF1 Hub format exports as the
original TF-Slim code computes them (../shared/golden).

hub.Module exists only up to tensorflow-hub 0.15, which needs TensorFlow
<= 2.15; it runs in the second environment .venv-compat (`make compat-env`)
through tests/compat/check_hub_module.py, which reports what it sees as JSON;
the expectations are here. The exports are the session's (conftest.release_export,
each model from the checkpoint seed of its golden), and one .venv-compat process
checks all of them (conftest.hub_module_report). Per model (registry order):
every TF1 release the session exports (conftest.golden_releases), the large
models' marked slow. Each signature's output must be the golden's within 1e-4;
the train graph's features too where training mode is deterministic (not with
path dropout: nasnet_large, pnasnet_large); and one training-mode application
must move the stem's first moving mean by the momentum toward the golden batch mean.
"""
import pytest

import registry
from exporters.formats import hub_module
from tests.conftest import (GOLDEN_TOLERANCE, golden_releases, has_path_dropout,
                            hub_module_train_cases, is_large, release_id)

pytestmark = pytest.mark.compat

MODELS = list(registry.default().models)
RELEASES = [r for model in MODELS for r in golden_releases(model, "hub")]
MOVING_MEAN_TOLERANCE = 1e-5


def _param(release, *more, id_suffix=""):
  marks = [pytest.mark.slow] if is_large(release.model.name) else []
  return pytest.param(release, *more, marks=marks, id=release_id(release) + id_suffix)


RELEASE_PARAMS = [_param(r) for r in RELEASES]
SIGNATURE_PARAMS = [_param(r, s.name, id_suffix=f"-{s.name}")
                    for r in RELEASES for s in hub_module.signatures(r)]
CASE_PARAMS = [_param(r, i, id_suffix=f"-train-{c['signature']}")
               for r in RELEASES for i, c in enumerate(hub_module_train_cases(r))]
DETERMINISTIC_CASE_PARAMS = [p for p in CASE_PARAMS
                             if not has_path_dropout(p.values[0].model.name)]


def _case(hub_module_report, release, index):
  case = hub_module_report(release)["train"]["cases"][index]
  expected = hub_module_train_cases(release)[index]
  assert (case["signature"], case["expected_momentum"]) == (
      expected["signature"], expected["expected_momentum"]), case
  return case


def test_every_model_has_a_tf1_release_checked_against_its_golden():
  assert {r.model.name for r in RELEASES} == set(MODELS)


@pytest.mark.parametrize("release", RELEASE_PARAMS)
def test_hub_module_loads_the_inference_graph(release, hub_module_report):
  report = hub_module_report(release)
  assert report["tags"] == [[], ["train"]]
  inference = report["inference"]
  size = release.model.image_size
  assert inference["image_size"] == [size, size]
  assert inference["signatures"] == sorted(s.name for s in hub_module.signatures(release))
  assert set(inference["max_abs_diff"]) == set(inference["signatures"])


@pytest.mark.parametrize("release, signature", SIGNATURE_PARAMS)
def test_hub_module_signature_reproduces_the_golden(release, signature, hub_module_report):
  diff = hub_module_report(release)["inference"]["max_abs_diff"][signature]
  assert diff <= GOLDEN_TOLERANCE, (
      f"{release.model.name} ({release_id(release)}): hub.Module signature {signature!r} "
      f"differs from the golden by max abs {diff:.3g} (tolerance {GOLDEN_TOLERANCE:g})")


@pytest.mark.parametrize("release", RELEASE_PARAMS)
def test_hub_module_fine_tunes_the_train_graph(release, hub_module_report):
  train = hub_module_report(release)["train"]
  size = release.model.image_size
  assert train["image_size"] == [size, size]
  assert train["signatures"] == sorted(s.name for s in hub_module.signatures(release))
  assert train["regularization_losses"] > 0
  assert train["regularization_loss_total"] > 0
  assert [c["signature"] for c in train["cases"]] == [
      c["signature"] for c in hub_module_train_cases(release)]
  for case in train["cases"]:
    assert case["update_ops"] > 0, case
    assert case["moving_mean_moved"] > 0, case
    # With path dropout the features are random, but never malformed.
    assert case["train_features_shape"] == [3, release.model.feature_size], case
    assert case["train_features_finite"], case


@pytest.mark.parametrize("release, case_index", CASE_PARAMS)
def test_hub_module_moves_the_moving_mean_toward_the_golden_batch_mean(
    release, case_index, hub_module_report):
  case = _case(hub_module_report, release, case_index)
  where = (f"{release.model.name} ({release_id(release)}): hub.Module signature "
           f"{case['signature']!r} in training mode, momentum {case['expected_momentum']}")
  assert case["moving_mean_max_abs_err"] <= MOVING_MEAN_TOLERANCE, (
      f"{where}: conv0_bn/moving_mean is {case['moving_mean_max_abs_err']:.3g} from "
      f"m*old + (1-m)*golden batch mean")
  assert case["batch_mean_max_abs_diff"] <= GOLDEN_TOLERANCE, (
      f"{where}: the move implies a conv0 batch mean that differs from the golden by max abs "
      f"{case['batch_mean_max_abs_diff']:.3g} (tolerance {GOLDEN_TOLERANCE:g})")


@pytest.mark.parametrize("release, case_index", DETERMINISTIC_CASE_PARAMS)
def test_hub_module_train_graph_features_reproduce_the_golden(release, case_index,
                                                              hub_module_report):
  case = _case(hub_module_report, release, case_index)
  diff = case["train_features_max_abs_diff"]
  assert diff is not None, f"{release.model.name}: its golden has no train_features"
  assert diff <= GOLDEN_TOLERANCE, (
      f"{release.model.name} ({release_id(release)}): hub.Module signature "
      f"{case['signature']!r} in training mode differs from the golden train_features by "
      f"max abs {diff:.3g} (tolerance {GOLDEN_TOLERANCE:g})")
