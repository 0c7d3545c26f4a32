"""TFLite deployments: converted by TensorFlow's TFLite converter, run by LiteRT and MediaPipe.

nasnet_mobile's two (plain and with metadata) come from the session's export_all tree
(conftest.nasnet_mobile_tree: export-all converts them after their parent,
classification version 5, and verifies them with LiteRT against the Slim reference,
the metadata model with MediaPipe too); nasnet_large's plain model is converted here
from the session's export of its parent, and its metadata model written from it by
the metadata step. Both plain models are compared with the upstream goldens
(../shared/golden) in log space: LiteRT's log-probabilities on the golden images,
normalized to [-1, 1] as the card tells users to, against the log-softmax of the
golden logits, within conftest.GOLDEN_TOLERANCE. Both metadata models are run by
MediaPipe Tasks' ImageClassifier, which reads their normalization and labels.
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
ALL = {(d.parent.model.name, d.variant): d for d in REGISTRY.deployments(kind="lite")}
DEPLOYMENTS = {model: d for (model, variant), d in ALL.items() if variant == "default"}
METADATA = {model: d for (model, variant), d in ALL.items() if variant == "metadata"}


def test_the_registry_lists_the_four_published_tflite_models():
  assert sorted(d.handle for d in ALL.values()) == [
      "tensorflow/lite-model/nasnet/large/1/default/1",
      "tensorflow/lite-model/nasnet/large/1/metadata/1",
      "tensorflow/lite-model/nasnet/mobile/1/default/1",
      "tensorflow/lite-model/nasnet/mobile/1/metadata/1"]
  for deployment in ALL.values():
    assert deployment.parent.handle_with_version.endswith("/classification/5")
    assert deployment.parent_handle_with_version == f"tensorflow/nasnet/{deployment.handle.split('/')[3]}/1"
    assert deployment.variant in lite.VARIANTS


def _tree_row(tree, deployment):
  [row] = [r for r in tree.result.rows if r.handle == deployment.handle_dir]
  assert (row.format, row.status) == ("lite", "exported"), row
  return row


@pytest.fixture(scope="module")
def mobile_tflite(nasnet_mobile_tree) -> str:
  """nasnet_mobile's TFLite model as export_all put it in the session's tree."""
  deployment = DEPLOYMENTS["nasnet_mobile"]
  _tree_row(nasnet_mobile_tree, deployment)
  return str(layout.deployment_path(nasnet_mobile_tree.export_dir, deployment) / lite.MODEL_FILE)


@pytest.fixture(scope="module")
def mobile_metadata_tflite(nasnet_mobile_tree) -> str:
  """nasnet_mobile's TFLite model with metadata as export_all put it in the session's tree."""
  deployment = METADATA["nasnet_mobile"]
  _tree_row(nasnet_mobile_tree, deployment)
  return str(layout.deployment_path(nasnet_mobile_tree.export_dir, deployment) / lite.MODEL_FILE)


def test_export_all_verified_it_with_litert_and_stamped_it(mobile_tflite, nasnet_mobile_tree):
  from exporters.export_tree import stamps
  deployment = DEPLOYMENTS["nasnet_mobile"]
  row = _tree_row(nasnet_mobile_tree, deployment)
  assert row.verification["verified"] is True and "mediapipe" not in row.verification
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
                                                                    mobile_metadata_tflite,
                                                                    nasnet_mobile_tree,
                                                                    tmp_path):
  """publish writes the deployment under its handle (model.tflite, card, manifest); serve
  answers `<handle>?lite-format=tflite` with the file, which LiteRT loads, and `<handle>`
  with the card. The metadata model as served: MediaPipe classifies with it."""
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
    with_metadata = METADATA["nasnet_mobile"]
    status, _, metadata_body = get(f"{url}/{with_metadata.handle}?lite-format=tflite")
    assert status == 200 and metadata_body == open(mobile_metadata_tflite, "rb").read()
    status, _, card = get(f"{url}/{with_metadata.handle}")
    assert status == 200 and card.decode().startswith(f"# Lite {with_metadata.card_handle}\n")
  served = tmp_path / "served.tflite"
  served.write_bytes(body)
  assert lite.interpreter(str(served)).get_output_details()[0]["shape"].tolist() == [1, 1001]
  served_metadata = tmp_path / "served_metadata.tflite"
  served_metadata.write_bytes(metadata_body)
  diff, names = _mediapipe_against_litert(str(served_metadata), 224)
  assert diff <= verification.TOLERANCE and len(names) == 1001 and names[0] == "background"


# --- The metadata variant: image-classifier metadata, run by MediaPipe Tasks. ---

def _digest(path) -> str:
  return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _square_pixels(size: int, count: int = 2, seed: int = 0):
  """uint8 RGB images at the model's input size (MediaPipe stretches other sizes)."""
  return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def _mediapipe_against_litert(model_path: str, size: int) -> tuple[float, list[str]]:
  """MediaPipe's scores against LiteRT's on the same uint8 images normalized by hand, in
  log space; and MediaPipe's category names in class order."""
  pixels = _square_pixels(size)
  scores, names = lite.classify_with_mediapipe(model_path, pixels)
  by_hand = lite.probabilities(model_path, lite.normalized(pixels))
  return verification.compare_log_probabilities("MediaPipe", scores, np.log(by_hand)), names


@pytest.fixture(scope="module")
def large_metadata_tflite(large_tflite, tmp_path_factory) -> str:
  """nasnet_large's model with metadata, written from its plain model by the metadata step."""
  work = tmp_path_factory.mktemp("lite_large_metadata")
  labels = lite.write_labels(str(work / lite.LABELS_FILE), REGISTRY.publisher.num_classes)
  out = str(work / lite.MODEL_FILE)
  assert lite.add_metadata(large_tflite, labels, out) == "tflite-support 0.4.4"
  return out


def test_export_all_verified_the_metadata_model_with_litert_and_mediapipe(
    mobile_metadata_tflite, nasnet_mobile_tree):
  from exporters.export_tree import stamps
  deployment = METADATA["nasnet_mobile"]
  row = _tree_row(nasnet_mobile_tree, deployment)
  assert row.verification["verified"] is True
  assert row.verification["max_abs_diff"] <= verification.TOLERANCE
  assert row.verification["mediapipe"]["runtime"] == "mediapipe 1.2.3"
  assert row.verification["mediapipe"]["categories"] == REGISTRY.publisher.num_classes
  assert row.verification["mediapipe"]["max_abs_diff"] <= verification.TOLERANCE
  stamp = stamps.read_stamp(layout.deployment_stamp_path(nasnet_mobile_tree.export_dir,
                                                         deployment))
  assert stamp.export["files"] == [lite.MODEL_FILE]
  assert stamp.export["converted_by"].endswith(", tflite-support 0.4.4")
  assert os.listdir(os.path.dirname(mobile_metadata_tflite)) == [lite.MODEL_FILE]
  card = layout.deployment_card_path(nasnet_mobile_tree.export_dir, deployment).read_text()
  assert card.startswith(f"# Lite {deployment.card_handle}\n")
  assert "This model contains both TFLite model metadata and the label file." in card


@pytest.mark.parametrize("model", ["nasnet_mobile", "nasnet_large"])
def test_the_metadata_reads_back_with_its_normalization_and_1001_labels(
    model, mobile_metadata_tflite, request):
  path = (mobile_metadata_tflite if model == "nasnet_mobile"
          else request.getfixturevalue("large_metadata_tflite"))
  found = lite.read_metadata(path)
  assert found["normalization"] == {"mean": [127.5], "std": [127.5]}
  assert found["color_space"] == "RGB"
  assert found["packed_files"] == found["label_files"] == [lite.LABELS_FILE]
  labels = found["labels"]
  assert len(labels) == REGISTRY.publisher.num_classes == 1001
  # "background" (TF-Slim's class 0), then ImageNet's classes in synset order.
  assert labels[:4] == ["background", "tench, Tinca tinca", "goldfish, Carassius auratus",
                        "great white shark, white shark, man-eater, man-eating shark, "
                        "Carcharodon carcharias"]
  assert labels[-1] == "toilet tissue, toilet paper, bathroom tissue"
  assert len(set(labels)) == 1001


def test_the_metadata_model_computes_what_the_plain_one_does(mobile_tflite,
                                                             mobile_metadata_tflite):
  images = lite.normalized(_square_pixels(224, count=1))
  assert np.array_equal(lite.probabilities(mobile_metadata_tflite, images),
                        lite.probabilities(mobile_tflite, images))


@pytest.mark.parametrize("model", ["nasnet_mobile", "nasnet_large"])
def test_mediapipe_classifies_with_the_metadata_as_litert_does_by_hand(
    model, mobile_metadata_tflite, request):
  """All 1001 categories, named by the metadata's labels; MediaPipe's scores on uint8
  images equal LiteRT's on the same images normalized by hand (mean 127.5, std 127.5)."""
  path = (mobile_metadata_tflite if model == "nasnet_mobile"
          else request.getfixturevalue("large_metadata_tflite"))
  diff, names = _mediapipe_against_litert(path, REGISTRY.models[model].image_size)
  assert diff <= verification.TOLERANCE
  assert names == lite.read_metadata(path)["labels"]
  # The check sees a wrong input: MediaPipe against LiteRT on unnormalized pixels.
  pixels = _square_pixels(REGISTRY.models[model].image_size)
  scores, _ = lite.classify_with_mediapipe(path, pixels)
  with pytest.raises(verification.VerificationError, match="differs from the reference"):
    verification.compare_log_probabilities(
        "MediaPipe", scores, np.log(lite.probabilities(path, pixels / 255.0)))


def test_mediapipe_refuses_the_plain_model_for_lack_of_normalization(mobile_tflite):
  with pytest.raises(ExportError, match=r"^MediaPipe's ImageClassifier cannot load .*"
                                        r"NormalizationOptions metadata"):
    lite.classify_with_mediapipe(mobile_tflite, _square_pixels(224, count=1))


def test_writing_the_metadata_is_deterministic(mobile_tflite, mobile_metadata_tflite, tmp_path):
  """The metadata step on the same plain model gives the export's bytes, whenever it runs
  (the packed labels carry a fixed time)."""
  labels = lite.write_labels(str(tmp_path / lite.LABELS_FILE), REGISTRY.publisher.num_classes)
  lite.add_metadata(mobile_tflite, labels, str(tmp_path / "again.tflite"))
  assert _digest(tmp_path / "again.tflite") == _digest(mobile_metadata_tflite)


def _tiny_classifier(path, classes: int) -> str:
  """A TF2 SavedModel classifier of 8x8 images into `classes` logits, as a release's
  serving signature has it: a parent that converts in seconds."""
  import tensorflow as tf

  class Tiny(tf.Module):
    def __init__(self):
      self.w = tf.Variable(tf.random.stateless_normal([3, classes], seed=[1, 2]))

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
    def __call__(self, images):
      return tf.matmul(tf.reduce_mean(images, axis=[1, 2]), self.w)

  tiny = Tiny()
  tf.saved_model.save(tiny, str(path), signatures={"serving_default": tiny.__call__})
  return str(path)


def test_labels_of_the_wrong_count_are_one_line_and_leave_nothing(tmp_path, monkeypatch):
  """1001 labels for a model of 10 classes: one line naming both counts; nothing written."""
  parent = _tiny_classifier(tmp_path / "parent", classes=10)
  with pytest.raises(ExportError) as e:
    lite.convert(parent, str(tmp_path / "out"), variant="metadata")
  assert "\n" not in str(e.value)
  assert str(e.value).startswith("the TFLite metadata writer failed writing the labels: "
                                 "the labels source ")
  assert str(e.value).endswith("gives 1001 labels with 'background', not the model's 10 "
                               "classes")
  assert sorted(os.listdir(tmp_path)) == ["parent"]
  # The same parent with a labels source of its count: converted, with the labels.
  source = tmp_path / "source"
  (source / "names").mkdir(parents=True)
  (source / "names" / "__init__.py").write_text("")
  (source / "names" / "these.py").write_text(
      f"CLASSES = {[f'class {i}' for i in range(9)]!r}\n")
  monkeypatch.setenv("PYTHONPATH", str(source))  # Where the metadata tool finds `names`.
  converted = lite.convert(parent, str(tmp_path / "out"), variant="metadata",
                           labels_source=lite.LabelsSource("names", "these.py", "CLASSES",
                                                           "background"))
  assert converted.files == (lite.MODEL_FILE,)
  assert sorted(os.listdir(tmp_path)) == ["out", "parent", "source"]
  labels = lite.read_metadata(str(tmp_path / "out" / lite.MODEL_FILE))["labels"]
  assert labels == ["background", *[f"class {i}" for i in range(9)]]


def test_an_unknown_variant_and_a_missing_metadata_environment_are_one_line(tmp_path,
                                                                            monkeypatch):
  parent = _tiny_classifier(tmp_path / "parent", classes=3)
  with pytest.raises(ExportError, match=r"^the TFLite converter makes the variants default, "
                                        r"metadata, not 'quantized'$"):
    lite.convert(parent, str(tmp_path / "out"), variant="quantized")
  monkeypatch.setattr(lite, "METADATA_PYTHON", str(tmp_path / "nowhere" / "bin" / "python"))
  with pytest.raises(ExportError, match=r"environment .*nowhere is missing; build it with "
                                        r"`make metadata-env`$"):
    lite.convert(parent, str(tmp_path / "out"), variant="metadata")
  assert sorted(os.listdir(tmp_path)) == ["parent"]


def test_every_registry_variant_is_one_its_converter_makes():
  from exporters import formats
  for deployment in REGISTRY.deployments():
    assert deployment.variant in formats.converter_for(deployment.kind).VARIANTS, deployment.handle
