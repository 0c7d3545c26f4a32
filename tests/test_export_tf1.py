"""The TF1 Hub format exporter (versions 1-3): layout, strictness, and hub.load in TF 2.21.

The real hub.Module checks are in test_compat_hub_module.py; both share the
session exports of conftest.release_export (nasnet_mobile from the seed-0
checkpoint, the seed of its golden; the large models, marked slow, from the
seeds of theirs: conftest.GOLDEN_SEEDS).
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import variable_pb2
from tensorflow.core.protobuf import saved_model_pb2

import registry
from exporters.formats import hub_module
from exporters.errors import ExportError
from tests.conftest import LARGE_MODEL_RELEASES, REPO, golden_releases, release_id

FAST_MODEL = "nasnet_mobile"
RELEASES = [r for r in registry.default().releases(models=[FAST_MODEL])
            if r.version.format == "hub"]


IDS = [release_id(r) for r in RELEASES]
TOLERANCE = 1e-4


@pytest.fixture(scope="session")
def tf1_export(release_export):
  """`tf1_export(release)` -> conftest.ReleaseExport, from the session's shared model runs."""
  return release_export


def _release(module_type, version, model="nasnet_mobile"):
  return registry.default().release(model, module_type, version)


def _read_saved_model(export_dir):
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
    saved_model.ParseFromString(f.read())
  return {frozenset(m.meta_info_def.tags): m for m in saved_model.meta_graphs}


def _variable_names(meta_graph):
  names = []
  for serialized in meta_graph.collection_def["variables"].bytes_list.value:
    variable_def = variable_pb2.VariableDef()
    variable_def.ParseFromString(serialized)
    names.append(variable_def.variable_name)
  return names


# Without graphs: the format's small facts and the writer's strictness.

def test_module_def_is_format_3_in_wire_form():
  assert hub_module.encode_module_def() == b"\x08\x03"
  assert hub_module.decode_module_def(b"\x08\x03") == (3, [])
  assert hub_module.decode_module_def(b"\x08\x03\x12\x03abc") == (3, ["abc"])
  with pytest.raises(ValueError, match="unexpected field 3"):
    hub_module.decode_module_def(b"\x18\x01")


@pytest.mark.parametrize("release", [r for r in registry.default().releases()
                                     if r.version.format == "hub"],
                         ids=release_id)
def test_signatures_follow_module_type_and_registry(release):
  by_name = {s.name: s for s in hub_module.signatures(release)}
  plain = ({"default", "image_classification", "image_feature_vector"}
           if release.module_type == "classification" else {"default", "image_feature_vector"})
  with_bn = ({f"{n}_with_bn_hparams" for n in plain - {"default"}}
             if release.version.bn_hparams_signatures else set())
  assert set(by_name) == plain | with_bn
  assert by_name["default"].output == ("logits" if release.module_type == "classification"
                                       else "features")
  assert by_name["image_feature_vector"].output == "features"
  assert {n for n, s in by_name.items() if s.bn_hparams} == with_bn


def _spec(*shape):
  return (tuple(shape), "float32")


def _value(*shape):
  return np.zeros(shape, np.float32)


def test_check_variables_accepts_exact_match_and_leaves_out_only_a_feature_vectors_classifier():
  graph = {"conv0/weights": _spec(3, 3, 3, 32)}
  values = {"conv0/weights": _value(3, 3, 3, 32), "final_layer/FC/weights": _value(1056, 1001)}
  assert hub_module.check_variables(_release("feature_vector", 1), graph, values) == (
      "final_layer/FC/weights",)
  graph_with_classifier = dict(graph, **{"final_layer/FC/weights": _spec(1056, 1001)})
  assert hub_module.check_variables(_release("classification", 1), graph_with_classifier,
                                    values) == ()
  with pytest.raises(ExportError, match="does not use: final_layer/FC/weights"):
    hub_module.check_variables(_release("classification", 1), graph, values)


@pytest.mark.parametrize("graph, values, message", [
    ({"a": _spec(2)}, {}, "without a checkpoint value: a"),
    ({"a": _spec(2)}, {"a": _value(3)}, r"a \(checkpoint \[3\] float32, graph \[2\] float32\)"),
    ({"a": _spec(2)}, {"a": np.zeros(2, np.float64)}, "checkpoint .* float64, graph .* float32"),
    ({"a": _spec(2)}, {"a": _value(2), "cell_0/extra": _value(1)}, "does not use: cell_0/extra"),
], ids=["missing", "shape", "dtype", "unused"])
def test_check_variables_fails_on_any_other_mismatch(graph, values, message):
  with pytest.raises(ExportError, match=message):
    hub_module.check_variables(_release("feature_vector", 3), graph, values)


def test_cli_names_the_published_versions_of_an_unpublished_one(tmp_path):
  published = [v.number for v in registry.default().model_versions("nasnet_mobile")]
  unpublished = min(set(range(1, max(published) + 1)) - set(published))
  result = subprocess.run(
      [sys.executable, "-m", "exporters.export", "--model=nasnet_mobile",
       "--module_type=classification", f"--version={unpublished}",
       f"--checkpoint_path={tmp_path / 'model.ckpt'}", f"--export_dir={tmp_path / 'out'}"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert (f"nasnet_mobile has no published version {unpublished}; its versions: "
          f"{', '.join(map(str, published))}") in result.stderr
  assert not (tmp_path / "out").exists()


# Real exports of nasnet_mobile from the seed-0 checkpoint.

@pytest.mark.parametrize("release", RELEASES, ids=IDS)
def test_export_verifies_itself(release, tf1_export):
  result = tf1_export(release)
  report = result.verification
  assert report["signatures"] == [s.name for s in hub_module.signatures(release)]
  assert set(report["max_abs_diff"]) == set(report["signatures"])
  assert max(report["max_abs_diff"].values()) <= TOLERANCE
  assert report["train_features_max_abs_diff"] <= TOLERANCE  # No path dropout in mobile.
  assert all(n == "global_step" or n.startswith("aux_") for n in result.unused_variables)
  assert "global_step" in result.unused_variables
  classifier_note = [m for m in result.messages if "classifier" in m]
  assert bool(classifier_note) == (release.module_type == "feature_vector")


@pytest.mark.parametrize("release", RELEASES, ids=IDS)
def test_layout_is_the_tf1_hub_format(release, tf1_export):
  export_dir = tf1_export(release).export_dir
  files = sorted(os.path.relpath(os.path.join(d, f), export_dir)
                 for d, _, names in os.walk(export_dir) for f in names)
  assert files == ["saved_model.pb", "tfhub_module.pb", "variables/variables.data-00000-of-00001",
                   "variables/variables.index"]
  with open(os.path.join(export_dir, "tfhub_module.pb"), "rb") as f:
    assert f.read() == b"\x08\x03"
  meta_graphs = _read_saved_model(export_dir)
  assert set(meta_graphs) == {frozenset(), frozenset({"train"})}
  size = release.model.image_size
  for tags, meta_graph in meta_graphs.items():
    assert set(meta_graph.collection_def) <= hub_module.HUB_MODULE_COLLECTIONS
    assert meta_graph.saver_def.restore_op_name
    images = meta_graph.signature_def["default"].inputs["images"]
    assert [d.size for d in images.tensor_shape.dim] == [-1, size, size, 3]
    assert images.dtype == tf.float32.as_datatype_enum
    assert set(meta_graph.signature_def) == {s.name for s in hub_module.signatures(release)}
  train = meta_graphs[frozenset({"train"})].collection_def
  assert train["update_ops"].node_list.value
  assert train["regularization_losses"].node_list.value
  assert "update_ops" not in meta_graphs[frozenset()].collection_def
  # The same variables, by name, in both graphs.
  variables = {tags: sorted(_variable_names(m)) for tags, m in meta_graphs.items()}
  assert variables[frozenset()] == variables[frozenset({"train"})]


@pytest.mark.parametrize("release", RELEASES, ids=IDS)
def test_batch_norm_momentum_input_defaults_to_the_registry_value(release, tf1_export):
  meta_graphs = _read_saved_model(tf1_export(release).export_dir)
  for meta_graph in meta_graphs.values():
    nodes = {n.name: n for n in meta_graph.graph_def.node}
    if not release.version.bn_hparams_signatures:
      assert "batch_norm_momentum" not in nodes
      continue
    placeholder = nodes["batch_norm_momentum"]
    assert placeholder.op == "PlaceholderWithDefault"
    default = tf.make_ndarray(nodes[placeholder.input[0]].attr["value"].tensor)
    assert default == np.float32(release.version.batch_norm_momentum)
    signature = meta_graph.signature_def["image_feature_vector_with_bn_hparams"]
    assert signature.inputs["batch_norm_momentum"].name == "batch_norm_momentum:0"
    assert not signature.inputs["batch_norm_momentum"].tensor_shape.dim


@pytest.mark.parametrize("release", RELEASES, ids=IDS)
def test_variables_are_the_checkpoint_values_bitwise(release, tf1_export):
  export_dir = tf1_export(release).export_dir
  exported = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
  original = tf.train.load_checkpoint(tf1_export(release).checkpoint_path)
  names = set(exported.get_variable_to_shape_map())
  expected = {n for n in original.get_variable_to_shape_map()
              if n != "global_step" and not n.startswith("aux_")}
  if release.module_type == "feature_vector":
    expected = {n for n in expected if not n.startswith("final_layer/FC/")}
  assert names == expected
  for name in names:
    assert exported.get_tensor(name).tobytes() == original.get_tensor(name).tobytes(), name


def test_hub_load_reproduces_the_golden_outputs(tf1_export, golden_nasnet_mobile):
  """hub.load in TF 2.21, once for the format (the newest version, whose signatures cover
  both outputs; tests/test_serve.py loads the classification one through the server). Every
  other TF1 release is checked by the same graph rules at export time, and by the real
  hub.Module in tests/test_compat_hub_module.py."""
  import tensorflow_hub as hub
  release = _release("feature_vector", 3)
  export_dir = tf1_export(release).export_dir
  golden = golden_nasnet_mobile
  images = tf.constant(golden["images"])
  inference = hub.load(export_dir, tags=[])
  for signature in hub_module.signatures(release):
    inputs = {"images": images}
    if signature.bn_hparams:
      inputs["batch_norm_momentum"] = tf.constant(0.5)  # No effect in inference.
    got = inference.signatures[signature.name](**inputs)["default"].numpy()
    np.testing.assert_allclose(got, golden[signature.output], rtol=0, atol=TOLERANCE,
                               err_msg=signature.name)
  train = hub.load(export_dir, tags=["train"])
  got = train.signatures["image_feature_vector"](images=images)["default"].numpy()
  np.testing.assert_allclose(got, golden["train_features"], rtol=0, atol=TOLERANCE)
  inference_values = {v.name: v.numpy() for v in inference.variables}
  train_values = {v.name: v.numpy() for v in train.variables}
  assert inference_values.keys() == train_values.keys()
  assert all(np.array_equal(inference_values[n], train_values[n]) for n in inference_values)


def _corrupt_module_def(export_dir, meta_graphs):
  with open(os.path.join(export_dir, "tfhub_module.pb"), "wb") as f:
    f.write(b"\x08\x01")


def _add_unsupported_collection(export_dir, meta_graphs):
  meta_graphs[frozenset()].collection_def["saved_model_main_op"].node_list.value.append("init")


def _drop_update_ops(export_dir, meta_graphs):
  del meta_graphs[frozenset({"train"})].collection_def["update_ops"]


def _repeat_tag_set(export_dir, meta_graphs):
  meta_graphs[frozenset({"train"})].meta_info_def.tags[:] = []


def _drop_bn_hparams_signature(export_dir, meta_graphs):
  del meta_graphs[frozenset({"train"})].signature_def["image_feature_vector_with_bn_hparams"]


@pytest.mark.parametrize("corrupt, message", [
    (_corrupt_module_def, "format 1"),
    (_add_unsupported_collection, r"collections hub.Module refuses: \['saved_model_main_op'\]"),
    (_drop_update_ops, "train graph has no update_ops"),
    (_repeat_tag_set, "tag sets"),
    (_drop_bn_hparams_signature, "has signatures"),
], ids=["module_def", "collection", "update_ops", "tags", "signature"])
def test_verify_refuses_what_hub_module_cannot_use(corrupt, message, tf1_export, tmp_path):
  release = next(r for r in RELEASES
                 if r.module_type == "feature_vector" and r.version.bn_hparams_signatures)
  export_dir = str(tmp_path / "export")
  shutil.copytree(tf1_export(release).export_dir, export_dir)
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
    saved_model.ParseFromString(f.read())
  corrupt(export_dir, {frozenset(m.meta_info_def.tags): m for m in saved_model.meta_graphs})
  with open(os.path.join(export_dir, "saved_model.pb"), "wb") as f:
    f.write(saved_model.SerializeToString())
  # The layout is checked first: no checkpoint or reference is needed to refuse it.
  with pytest.raises(ExportError, match=message):
    hub_module.verify(release, export_dir, checkpoint=None, reference=None, log=print)


# The large models' TF1 releases (conftest.LARGE_MODEL_RELEASES): large graphs with path
# dropout. pnasnet_large's version 2 is the one only it has; nasnet_large's version 3 has the
# *_with_bn_hparams signatures.
LARGE_RELEASES = [r for model in LARGE_MODEL_RELEASES for r in golden_releases(model, "hub")]


@pytest.mark.slow
@pytest.mark.parametrize("release", LARGE_RELEASES, ids=release_id)
def test_large_model_export_verifies_itself(release, tf1_export):
  result = tf1_export(release)
  report = result.verification
  assert report["signatures"] == [s.name for s in hub_module.signatures(release)]
  assert set(report["max_abs_diff"]) == set(report["signatures"])
  assert max(report["max_abs_diff"].values()) <= TOLERANCE
  assert report["train_features_max_abs_diff"] is None  # Path dropout makes it random.
  assert report["fine_tuning"]["update_ops"] > 0
  assert "global_step" in result.unused_variables
  assert os.path.isfile(os.path.join(result.export_dir, "tfhub_module.pb"))


def test_the_large_tf1_releases_include_version_2_and_the_bn_hparams_signatures():
  assert ("pnasnet_large", 2) in {(r.model.name, r.version.number) for r in LARGE_RELEASES}
  assert {r.model.name for r in LARGE_RELEASES if r.version.bn_hparams_signatures} >= {
      "nasnet_large"}
