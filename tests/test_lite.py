"""TFLite deployments: converted by TensorFlow's TFLite converter, run by LiteRT.

nasnet_mobile's comes from the session's export_all tree (conftest.nasnet_mobile_tree:
export-all converts it after its parent, classification version 5, and verifies it
with LiteRT against the Slim reference); nasnet_large's is converted here from the
session's export of its parent. Both are compared with the upstream goldens
(../shared/golden) in log space: LiteRT's log-probabilities on the golden images,
normalized to [-1, 1] as the card tells users to, against the log-softmax of the
golden logits, within conftest.GOLDEN_TOLERANCE.
"""
import hashlib
import os

import numpy as np
import pytest

import registry
from exporters import verification
from exporters.errors import ExportError
from exporters.export_tree import layout
from exporters.formats import lite
from tests.conftest import golden_failure

REGISTRY = registry.default()
DEPLOYMENTS = {d.parent.model.name: d for d in REGISTRY.deployments(kind="lite")}


def test_the_registry_lists_the_two_published_tflite_models():
  assert sorted(d.handle for d in DEPLOYMENTS.values()) == [
      "tensorflow/lite-model/nasnet/large/1/default/1",
      "tensorflow/lite-model/nasnet/mobile/1/default/1"]
  for deployment in DEPLOYMENTS.values():
    assert deployment.parent.handle_with_version.endswith("/classification/5")
    assert deployment.parent_handle_with_version == f"tensorflow/nasnet/{deployment.handle.split('/')[3]}/1"


@pytest.fixture(scope="module")
def mobile_tflite(nasnet_mobile_tree) -> str:
  """nasnet_mobile's TFLite model as export_all put it in the session's tree."""
  deployment = DEPLOYMENTS["nasnet_mobile"]
  [row] = [r for r in nasnet_mobile_tree.result.rows if r.format == "lite"]
  assert (row.handle, row.status) == (deployment.handle_dir, "exported"), row
  return str(layout.deployment_path(nasnet_mobile_tree.export_dir, deployment) / lite.MODEL_FILE)


def test_export_all_verified_it_with_litert_and_stamped_it(mobile_tflite, nasnet_mobile_tree):
  from exporters.export_tree import stamps
  deployment = DEPLOYMENTS["nasnet_mobile"]
  [row] = [r for r in nasnet_mobile_tree.result.rows if r.format == "lite"]
  assert row.verification["verified"] is True
  assert row.verification["max_abs_diff"] <= verification.TOLERANCE
  assert row.verification["runtime"].startswith("ai-edge-litert ")
  stamp = stamps.read_stamp(layout.deployment_stamp_path(nasnet_mobile_tree.export_dir,
                                                         deployment))
  assert stamp.export_format == "lite" and stamp.export["files"] == [lite.MODEL_FILE]
  assert stamp.export["parent"] == deployment.parent.handle_with_version
  assert os.listdir(os.path.dirname(mobile_tflite)) == [lite.MODEL_FILE]
  card = layout.deployment_card_path(nasnet_mobile_tree.export_dir, deployment).read_text()
  assert card.startswith(f"# Lite {deployment.card_handle}\n")
  assert "converted and verified (lite LiteRT " in nasnet_mobile_tree.output


def test_the_model_takes_one_normalized_image_and_gives_probabilities(mobile_tflite):
  interpreter = lite.interpreter(mobile_tflite)
  [given], [output] = interpreter.get_input_details(), interpreter.get_output_details()
  assert list(given["shape"]) == [1, 224, 224, 3] and given["dtype"] == np.float32
  assert list(output["shape"]) == [1, REGISTRY.publisher.num_classes]
  probabilities = lite.probabilities(mobile_tflite, np.zeros((1, 224, 224, 3), np.float32))
  assert abs(float(probabilities.sum()) - 1.0) < 1e-5 and probabilities.min() > 0


@pytest.fixture(scope="module")
def large_tflite(release_export, tmp_path_factory) -> str:
  """nasnet_large's TFLite model, converted from the session's export of its parent."""
  parent = release_export(DEPLOYMENTS["nasnet_large"].parent)
  output = tmp_path_factory.mktemp("lite_large") / "1"
  converted = lite.convert(parent.export_dir, str(output))
  assert converted.files == (lite.MODEL_FILE,)
  return str(output / lite.MODEL_FILE)


def _golden_log_probabilities_failure(model, tflite_path, golden, scale=True) -> str:
  arrays = golden(model)
  images = 2.0 * arrays["images"] - 1.0 if scale else arrays["images"]
  found = np.log(lite.probabilities(tflite_path, images).astype(np.float64))
  return golden_failure(model, "LiteRT log-probabilities", found,
                        verification.log_softmax(arrays["logits"]))


def test_litert_reproduces_the_nasnet_mobile_golden(mobile_tflite, golden):
  assert _golden_log_probabilities_failure("nasnet_mobile", mobile_tflite, golden) == ""
  # The check sees a wrong input: the [0, 1] images fed unnormalized.
  assert "max abs difference from the golden" in _golden_log_probabilities_failure(
      "nasnet_mobile", mobile_tflite, golden, scale=False)


@pytest.mark.late
def test_litert_reproduces_the_nasnet_large_golden(large_tflite, golden):
  assert _golden_log_probabilities_failure("nasnet_large", large_tflite, golden) == ""


def test_conversion_is_deterministic(mobile_tflite, release_export, tmp_path):
  """The same export converted again gives the same bytes."""
  parent = release_export(DEPLOYMENTS["nasnet_mobile"].parent)
  again = lite.convert(parent.export_dir, str(tmp_path / "again"))
  digest = lambda path: hashlib.sha256(open(path, "rb").read()).hexdigest()
  assert digest(os.path.join(again.output_dir, lite.MODEL_FILE)) == digest(mobile_tflite)


def test_verification_rejects_probabilities_that_differ(mobile_tflite):
  """verify_release_deployment against logits whose log-softmax is the model's own output
  passes; one logit moved by 1e-3 fails, naming the difference."""
  model_dir = os.path.dirname(mobile_tflite)
  release = DEPLOYMENTS["nasnet_mobile"].parent
  from exporters.network import slim_graph
  own = np.log(lite.probabilities(mobile_tflite,
                                  2.0 * slim_graph.probe_images(release.model) - 1.0))
  report = lite.verify_release_deployment(model_dir, release, {"logits": own}, "it")
  assert report["verified"] and report["max_abs_diff"] < 1e-5
  moved = own.copy()
  moved[0, 7] += 1e-3
  with pytest.raises(verification.VerificationError,
                     match=r"^it log-probabilities \(LiteRT\): differs from the reference by "):
    lite.verify_release_deployment(model_dir, release, {"logits": moved}, "it")


def test_a_parent_that_is_not_a_saved_model_is_one_line_and_leaves_nothing(tmp_path):
  (tmp_path / "parent").mkdir()
  with pytest.raises(ExportError, match=r"is not a SavedModel \(saved_model.pb is missing\)"):
    lite.convert(str(tmp_path / "parent"), str(tmp_path / "out"))
  assert sorted(os.listdir(tmp_path)) == ["parent"]


def test_a_converter_failure_is_one_line_and_leaves_nothing(tmp_path):
  """A saved_model.pb that does not parse: the converter's error in one line."""
  (tmp_path / "parent").mkdir()
  (tmp_path / "parent" / "saved_model.pb").write_bytes(b"not a SavedModel")
  with pytest.raises(ExportError) as e:
    lite.convert(str(tmp_path / "parent"), str(tmp_path / "out"))
  assert str(e.value).startswith("the TFLite converter failed on ") and "\n" not in str(e.value)
  assert sorted(os.listdir(tmp_path)) == ["parent"]


def test_published_with_its_card_and_served_whole_with_lite_format(mobile_tflite,
                                                                    nasnet_mobile_tree,
                                                                    tmp_path):
  """publish writes the deployment under its handle (model.tflite, card, manifest); serve
  answers `<handle>?lite-format=tflite` with the file, which LiteRT loads, and `<handle>`
  with the card."""
  import json
  from exporters.publishing import publish_lib, serve_lib
  from tests.test_serve import get, serving
  deployment = DEPLOYMENTS["nasnet_mobile"]
  release = deployment.parent
  publish_lib.run(publish_lib.PublishConfig(
      export_dir=str(nasnet_mobile_tree.export_dir), dest=str(tmp_path / "hub"),
      models=(release.model.name,), module_types=(release.module_type,),
      versions=(release.version.number,)), log=lambda _: None)
  folder = tmp_path / "hub" / deployment.handle
  assert os.listdir(folder) == [lite.MODEL_FILE]
  manifest = json.loads((folder.parent / f"{deployment.version}.manifest.json").read_text())
  assert manifest["format"] == "lite" and list(manifest["files"]) == [lite.MODEL_FILE]
  data = open(mobile_tflite, "rb").read()
  assert manifest["files"][lite.MODEL_FILE]["sha256"] == hashlib.sha256(data).hexdigest()
  with serving(tmp_path / "hub") as url:
    status, _, body = get(f"{url}/{deployment.handle}?lite-format=tflite")
    assert status == 200 and body == data
    status, _, card = get(f"{url}/{deployment.handle}")
    assert status == 200 and card.decode().startswith(f"# Lite {deployment.card_handle}\n")
    assert get(f"{url}/{deployment.handle}?lite-format=zip")[0] == 400
    assert get(f"{url}/{deployment.handle}/{lite.MODEL_FILE}?tfjs-format=file")[0] == 404
    assert get(f"{url}/{release.handle_with_version}?lite-format=tflite")[0] == 404
  served = tmp_path / "served.tflite"
  served.write_bytes(body)
  assert lite.interpreter(str(served)).get_output_details()[0]["shape"].tolist() == [1, 1001]
