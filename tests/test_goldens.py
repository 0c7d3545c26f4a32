"""Every model's exports against the upstream goldens, through hub.KerasLayer.

The goldens (../shared/golden/<model>_seed<seed>.npz) are the outputs of the
ORIGINAL TF-Slim code for the checkpoint make_ckpt.py writes for that seed: the
only references that share no code with the project. Each model is exported once
per session from its golden's seed (conftest.GOLDEN_SEEDS, conftest.release_export);
the newest TF2 release of each module type the session exports
(conftest.golden_releases) is loaded once by hub.load, wrapped in hub.KerasLayer
as users do (conftest.keras_layer_run) and must reproduce, within 1e-4 absolute:
the logits or features (and the serving signature's), the training-mode
features where the golden has them (no path dropout), and in training mode the
stem's first moving mean must move by the given momentum toward the golden
conv0 batch mean. The real hub.Module checks of the TF1 releases against the
same goldens are in tests/test_compat_hub_module.py. The large models' tests
are slow (their exports take minutes).
"""
import numpy as np
import pytest

import registry
from tests.conftest import (GOLDEN_SEEDS, golden_failure, golden_releases,
                            has_path_dropout, implied_batch_mean, is_large, release_id,
                            require_shared)

MODELS = list(registry.default().models)
RELEASES = [r for model in MODELS for r in golden_releases(model, "saved_model_2")]
MOVING_MEAN_TOLERANCE = 1e-5


def _param(release):
  return pytest.param(release, marks=[pytest.mark.slow] if is_large(release.model.name) else [],
                      id=release_id(release))


RELEASE_PARAMS = [_param(r) for r in RELEASES]
TRAIN_FEATURES_PARAMS = [_param(r) for r in RELEASES if r.module_type == "feature_vector"
                         and not has_path_dropout(r.model.name)]


def _output(release) -> str:
  return "logits" if release.module_type == "classification" else "features"


def _fail_unless_golden(model, what, got, expected):
  failure = golden_failure(model, what, got, expected)
  assert not failure, failure


# The goldens themselves (no export): which seed, which inputs, which arrays.

def test_every_model_has_a_golden_and_releases_of_both_formats_checked_against_it():
  assert set(GOLDEN_SEEDS) == set(MODELS)
  for model in MODELS:
    assert golden_releases(model, "hub"), f"{model}: no TF1 release is checked by hub.Module"
    assert golden_releases(model, "saved_model_2"), f"{model}: no TF2 release is checked"
  assert {r.model.name for r in RELEASES} == set(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_golden_is_for_the_documented_seed_and_shapes(model, golden):
  arrays = golden(model)
  entry = registry.default().model(model)
  size = entry.image_size
  assert arrays["images"].shape == (3, size, size, 3) and arrays["images"].dtype == np.float32
  assert 0 <= arrays["images"].min() and arrays["images"].max() <= 1  # As hub models get them.
  if (model, GOLDEN_SEEDS[model]) != ("nasnet_mobile", 0):  # That file predates the rule.
    # ../shared/README.md's rule for the images of a seed's golden: the file is that seed's.
    images = np.random.RandomState(1000 + GOLDEN_SEEDS[model]).uniform(
        0, 1, (3, size, size, 3)).astype(np.float32)
    np.testing.assert_array_equal(arrays["images"], images)
  assert arrays["logits"].shape == (3, registry.default().publisher.num_classes)
  assert arrays["features"].shape == (3, entry.feature_size)
  # Training mode is deterministic (and in the golden) only without path dropout.
  assert ("train_features" in arrays) == (not has_path_dropout(model))
  if "train_features" in arrays:
    assert arrays["train_features"].shape == (3, entry.feature_size)
  manifest = require_shared("checkpoints", "manifests", f"{model}.tsv").read_text()
  (channels,) = [line.split("\t")[1] for line in manifest.splitlines()
                 if line.startswith("conv0_bn/moving_mean\t")]
  assert arrays["train_conv0_batch_mean"].shape == (int(channels),)
  assert all(np.all(np.isfinite(a)) for a in arrays.values())


# hub.KerasLayer on each model's TF2 releases.

@pytest.mark.parametrize("release", RELEASE_PARAMS)
def test_keras_layer_reproduces_the_golden(release, keras_layer_run, golden):
  run = keras_layer_run(release)
  model = release.model.name
  _fail_unless_golden(model, f"{release_id(release)} hub.KerasLayer {_output(release)}",
                      run.outputs, golden(model)[_output(release)])
  if release.version.serving_signature:
    _fail_unless_golden(model, f"{release_id(release)} serving_default {_output(release)}",
                        run.served, golden(model)[_output(release)])


@pytest.mark.parametrize("release", RELEASE_PARAMS)
def test_keras_layer_fine_tuning_moves_the_moving_mean_toward_the_golden_batch_mean(
    release, keras_layer_run, golden):
  run = keras_layer_run(release)
  model = release.model.name
  batch_mean = golden(model)["train_conv0_batch_mean"]
  old, new, m = run.moving_mean_before, run.moving_mean_after, run.momentum
  assert np.max(np.abs(new - old)) > 0, f"{model}: training mode did not move the moving mean"
  err = float(np.max(np.abs(new - (m * old + (1 - m) * batch_mean))))
  assert err <= MOVING_MEAN_TOLERANCE, (
      f"{model} ({release_id(release)}): conv0_bn/moving_mean is {err:.3g} from "
      f"m*old + (1-m)*golden batch mean (momentum {m})")
  _fail_unless_golden(model, f"{release_id(release)} hub.KerasLayer training mode, momentum "
                      f"{m}: the conv0 batch mean the moving mean moved toward",
                      implied_batch_mean(old, new, m), batch_mean)
  assert run.train_outputs.shape == run.outputs.shape
  assert np.all(np.isfinite(run.train_outputs))
  assert run.losses and all(loss > 0 for loss in run.losses)


@pytest.mark.parametrize("release", TRAIN_FEATURES_PARAMS)
def test_keras_layer_training_features_reproduce_the_golden(release, keras_layer_run, golden):
  model = release.model.name
  _fail_unless_golden(model, f"{release_id(release)} hub.KerasLayer training-mode features",
                      keras_layer_run(release).train_outputs, golden(model)["train_features"])
