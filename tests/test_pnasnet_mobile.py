"""PNASNet-5 mobile: the released TF-Slim checkpoint TF Hub never published.

Every release (both module types, the TF1 Hub format and the TF2 SavedModel)
comes from one model run (conftest.pnasnet_mobile_exports) on the checkpoint
../shared/checkpoints/make_ckpt.py writes for seed 1, the seed of its golden.
The expected outputs are the golden's (../shared/golden/pnasnet_mobile_seed1.npz:
the original TF-Slim code's, which shares no code with the project), through
hub.KerasLayer and hub.load here and the real hub.Module in .venv-compat (the
session's one process, conftest.hub_module_report).
"""
from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest

import registry
from exporters import export_tree
from exporters.cards import docs_lib
from exporters.export_tree import stamps
from exporters.formats import hub_module, saved_model_2
from tests.conftest import FINE_TUNING_MOMENTUM, GOLDEN_TOLERANCE, implied_batch_mean

MODEL = "pnasnet_mobile"
pytestmark = pytest.mark.session_exports(MODEL)  # Made in the background (conftest.py).
RELEASES = list(registry.default().releases(models=[MODEL]))
IDS = [f"{r.module_type}-v{r.version.number}" for r in RELEASES]
TOLERANCE = GOLDEN_TOLERANCE
MOVING_MEAN_TOLERANCE = 1e-5


def _release(module_type: str, fmt: str) -> registry.Release:
  return next(r for r in RELEASES if r.module_type == module_type and r.version.format == fmt)


@pytest.fixture(scope="module")
def exports(pnasnet_mobile_exports):
  return lambda release: pnasnet_mobile_exports[
      release.model.name, release.module_type, release.version.number]


@pytest.fixture(scope="module")
def expected(golden):
  """The golden arrays (seed 1): images, logits, features, train_features, train_conv0_batch_mean."""
  return golden(MODEL)


def test_the_registry_publishes_it_under_its_own_publisher():
  unpublished = registry.default().publishers["unpublished"]["name"]
  assert len(RELEASES) == 4 and unpublished != "google"
  assert {(r.module_type, r.version.format) for r in RELEASES} == {
      (t, f) for t in registry.MODULE_TYPES for f in registry.FORMATS}
  assert all(r.handle.startswith(f"{unpublished}/imagenet/{MODEL}/") for r in RELEASES)


@pytest.mark.parametrize("release", RELEASES, ids=IDS)
def test_every_release_exports_and_verifies_against_the_slim_graph(exports, release):
  result = exports(release)
  assert result.release == release
  files = {"hub": hub_module.MODULE_DEF_FILENAME, "saved_model_2": "saved_model.pb"}
  assert os.path.isfile(os.path.join(result.export_dir, files[release.version.format]))
  report = result.verification
  if release.version.format == "hub":
    assert report["signatures"] == [s.name for s in hub_module.signatures(release)]
    assert set(report["max_abs_diff"]) == set(report["signatures"])
    assert max(report["max_abs_diff"].values()) <= TOLERANCE
    assert report["train_features_max_abs_diff"] <= TOLERANCE  # No path dropout in mobile.
  else:
    assert report["inference_max_abs_diff"] <= TOLERANCE
    assert report["regularization_losses"] > 0
    assert report["serving_max_abs_diff"] <= TOLERANCE
  assert "global_step" in result.unused_variables
  assert all(n.startswith("aux_") for n in result.unused_variables if n != "global_step")
  assert any("verified and written" in m for m in result.messages), result.messages


# TF2 SavedModel (as google's version 5): hub.KerasLayer (conftest.keras_layer_run: one
# hub.load per release, shared with tests/test_goldens.py).

@pytest.mark.parametrize("module_type", registry.MODULE_TYPES)
def test_keras_layer_reproduces_the_golden(keras_layer_run, expected, module_type):
  release = _release(module_type, "saved_model_2")
  run = keras_layer_run(release)
  golden = expected["logits" if module_type == "classification" else "features"]
  assert run.outputs.shape == golden.shape
  np.testing.assert_allclose(run.outputs, golden, rtol=0, atol=TOLERANCE)
  assert release.version.serving_signature
  np.testing.assert_allclose(run.served, golden, rtol=0, atol=TOLERANCE)


def test_keras_layer_training_moves_the_moving_mean_by_the_given_momentum(keras_layer_run,
                                                                          expected):
  run = keras_layer_run(_release("feature_vector", "saved_model_2"))
  assert run.momentum == FINE_TUNING_MOMENTUM
  np.testing.assert_allclose(run.train_outputs, expected["train_features"], rtol=0,
                             atol=TOLERANCE)
  old, new = run.moving_mean_before, run.moving_mean_after
  assert np.max(np.abs(new - old)) > 0
  np.testing.assert_allclose(
      new, FINE_TUNING_MOMENTUM * old + (1 - FINE_TUNING_MOMENTUM) * expected[
          "train_conv0_batch_mean"], rtol=0, atol=MOVING_MEAN_TOLERANCE)
  np.testing.assert_allclose(implied_batch_mean(old, new, FINE_TUNING_MOMENTUM),
                             expected["train_conv0_batch_mean"], rtol=0, atol=TOLERANCE)
  assert run.losses and all(loss > 0 for loss in run.losses)


# TF1 Hub format (as google's version 3): hub.load here, the real hub.Module in .venv-compat.

def test_hub_load_of_the_tf1_format_reproduces_the_golden(exports, expected):
  """hub.load once for the format: the classification release's signatures cover both
  outputs (the feature vector release is checked by hub.Module below)."""
  import tensorflow as tf
  import tensorflow_hub as hub
  release = _release("classification", "hub")
  assert release.version.bn_hparams_signatures and release.version.batch_norm_momentum == 0.99
  names = [s.name for s in hub_module.signatures(release)]
  assert "image_feature_vector_with_bn_hparams" in names
  loaded = hub.load(exports(release).export_dir, tags=[])
  assert sorted(loaded.signatures) == sorted(names)
  images = tf.constant(expected["images"])
  for signature in hub_module.signatures(release):
    inputs = {"images": images}
    if signature.bn_hparams:
      inputs["batch_norm_momentum"] = tf.constant(0.5)  # No effect in inference.
    got = loaded.signatures[signature.name](**inputs)["default"].numpy()
    np.testing.assert_allclose(got, expected[signature.output], rtol=0, atol=TOLERANCE,
                               err_msg=signature.name)


@pytest.mark.compat
@pytest.mark.parametrize("release", [_release(t, "hub") for t in registry.MODULE_TYPES],
                         ids=registry.MODULE_TYPES)
def test_real_hub_module_loads_and_fine_tunes_the_tf1_format(hub_module_report, release):
  found = hub_module_report(release)  # Against the golden, in the session's compat process.
  assert found["tags"] == [[], ["train"]]
  inference, train = found["inference"], found["train"]
  assert inference["image_size"] == [224, 224]
  assert inference["signatures"] == sorted(s.name for s in hub_module.signatures(release))
  assert set(inference["max_abs_diff"]) == set(inference["signatures"])
  assert all(diff <= TOLERANCE for diff in inference["max_abs_diff"].values()), inference
  assert train["regularization_losses"] > 0
  assert [c["signature"] for c in train["cases"]] == [
      "image_feature_vector_with_bn_hparams", "image_feature_vector"]
  assert [c["expected_momentum"] for c in train["cases"]] == [FINE_TUNING_MOMENTUM, 0.99]
  for case in train["cases"]:
    assert case["update_ops"] > 0 and case["moving_mean_moved"] > 0, case
    assert case["moving_mean_max_abs_err"] <= MOVING_MEAN_TOLERANCE, case
    assert case["batch_mean_max_abs_diff"] <= TOLERANCE, case
    assert case["train_features_max_abs_diff"] <= TOLERANCE, case


# Publish and serve: under the unpublished publisher's handles.

def test_serve_serves_it_under_its_own_publishers_handle(exports, expected, tmp_path,
                                                         monkeypatch):
  import tensorflow_hub as hub
  from exporters.publishing import publish_lib, serve_lib
  release = _release("feature_vector", "saved_model_2")
  tree = tmp_path / "exports"
  shutil.copytree(exports(release).export_dir, export_tree.export_path(tree, release))
  export_tree.card_path(tree, release).write_text(docs_lib.render_card(release))
  stamp = stamps.Stamp(key="test", inputs={"checkpoint_sha256": "c" * 64}, handle=release.handle,
                       version=release.version.number, export_format=release.version.format,
                       checkpoint_path="generated", code_version="test", seconds=0.0,
                       peak_rss_mb=None, export={})
  export_tree.stamp_path(tree, release).write_bytes(stamp.to_json())
  published = tmp_path / "published"
  publish_lib.run(publish_lib.PublishConfig(str(tree), str(published), models=(MODEL,),
                                            module_types=(release.module_type,),
                                            versions=(release.version.number,)),
                  log=lambda _: None)
  assert (published / release.handle / f"{release.version.number}.tar.gz").is_file()
  assert not (published / "google").exists()
  monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
  server = serve_lib.make_server(str(published), port=0)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    model = hub.load(f"{server.url}/{release.handle_with_version}")
  finally:
    server.shutdown()
    server.server_close()
  np.testing.assert_allclose(model(expected["images"]).numpy(), expected["features"], rtol=0,
                             atol=TOLERANCE)


def test_export_all_lists_it_in_its_table(tmp_path):
  from tests.trees import FAKE_EXPORTER, fake_checkpoint_dir
  checkpoints = fake_checkpoint_dir(tmp_path / "checkpoints", models=(MODEL,))
  lines = []
  result = export_tree.run(export_tree.ExportAllConfig(
      checkpoint_dir=str(checkpoints), export_dir=str(tmp_path / "exports"), models=(MODEL,),
      mirror=str(tmp_path / "empty_mirror"), exporter=FAKE_EXPORTER, heartbeat_s=0,
      in_process=True), log=lines.append)
  rows = [(r.handle, r.version, r.format, r.status) for r in result.rows]
  assert rows == [(r.handle, r.version.number, r.version.format, "exported") for r in RELEASES]
  output = "\n".join(lines)
  for release in RELEASES:
    assert release.handle in output
    assert export_tree.card_path(tmp_path / "exports", release).read_text() == \
        docs_lib.render_card(release)
