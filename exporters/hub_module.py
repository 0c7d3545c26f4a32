"""Writes and verifies the TF1 Hub format (versions 1-3): what `hub.Module` loads.

tensorflow-hub 0.16 has no `hub.Module` any more, and 0.15 cannot be imported
on TensorFlow 2.16 or later, so this writer produces the format itself with
TensorFlow 2.21's `tf.compat.v1` graph APIs; the compat tests prove it with
the real `hub.Module` of tensorflow-hub 0.15 on TensorFlow 2.15.

The format facts relied on (tensorflow-hub 0.15.0: native_module.py,
saved_model_lib.py, module_def_pb2.py, image_util.py, tensor_info.py;
TensorFlow: saved_model.proto, meta_graph.proto, load_v1_in_v2.py):

- `tfhub_module.pb` holds a serialized `tensorflow_hub.ModuleDef`: field 1
  `format` (enum; FORMAT_V3 = 3, the only one the loader accepts) and field 2
  `required_features` (repeated string; the loader supports none). We write
  its proto3 wire form by hand: tag byte 0x08 (field 1, varint) and 3.
- `saved_model.pb` is a `SavedModel` with one MetaGraphDef per tag set;
  hub.Module picks the one whose tags equal the requested set and refuses a
  repeated set. The variables are stored once, in `variables/variables` (a V2
  checkpoint keyed by variable name), shared by all MetaGraphDefs: hub.Module
  points the variables' initializers at it (`init_from_checkpoint`), a TF2
  `hub.load` restores it through the MetaGraphDef's `saver_def`.
- hub.Module refuses a MetaGraphDef with a collection outside
  `HUB_MODULE_COLLECTIONS`. It imports the variables collections into its
  state graph, with `trainable=True` also REGULARIZATION_LOSSES there and
  UPDATE_OPS in every signature application (where the signature's inputs
  are mapped in), so the train graph carries both.
- State ops (VarHandleOp) are instantiated once and become resource-typed
  placeholders in each application, so all variables are resource variables;
  a state op or a signature input must not be colocated with anything else.
- A signature is a SignatureDef (empty method name) from input names to
  tensors; `module(images)` applies `default`. `hub.get_expected_image_size`
  reads [height, width] from input `images` of `default` (we attach no
  ImageModuleInfo). Applying a signature imports the whole graph with its
  inputs mapped, so version 3's `batch_norm_momentum` is a
  placeholder_with_default: signatures without that input leave the default.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from exporters import slim_graph
from exporters.checkpoint_reader import CheckpointValues
from exporters.errors import ExportError
from registry import Release

tf1 = tf.compat.v1

MODULE_DEF_FILENAME = "tfhub_module.pb"
MODULE_DEF_FORMAT_V3 = 3
SAVED_MODEL_FILENAME = "saved_model.pb"
VARIABLES_PREFIX = os.path.join("variables", "variables")
INFERENCE_TAGS = frozenset()
TRAIN_TAGS = frozenset({"train"})
GRAPH_VARIANTS = ((INFERENCE_TAGS, False), (TRAIN_TAGS, True))  # (tags, training mode)
IMAGES_INPUT = "images"
MOMENTUM_INPUT = "batch_norm_momentum"
OUTPUT = "default"

# native_module._SUPPORTED_COLLECTIONS: hub.Module refuses any other collection.
HUB_MODULE_COLLECTIONS = frozenset({
    tf1.GraphKeys.GLOBAL_VARIABLES, tf1.GraphKeys.TRAINABLE_VARIABLES,
    tf1.GraphKeys.MODEL_VARIABLES, tf1.GraphKeys.TABLE_INITIALIZERS,
    tf1.GraphKeys.UPDATE_OPS, tf1.GraphKeys.REGULARIZATION_LOSSES,
    tf1.GraphKeys.ASSET_FILEPATHS, tf1.GraphKeys.COND_CONTEXT, tf1.GraphKeys.WHILE_CONTEXT,
    "hub_module_attachments",
})
# What our modules carry, where the graph has it.
EXPORTED_COLLECTIONS = (
    tf1.GraphKeys.GLOBAL_VARIABLES, tf1.GraphKeys.TRAINABLE_VARIABLES,
    tf1.GraphKeys.MODEL_VARIABLES, tf1.GraphKeys.UPDATE_OPS,
    tf1.GraphKeys.REGULARIZATION_LOSSES,
)
# Graph ops that hold state; hub.Module handles only resource variables.
_STATE_OPS = ("VarHandleOp",)
_REF_VARIABLE_OPS = ("VariableV2", "Variable")


@dataclasses.dataclass(frozen=True)
class Signature:
  name: str
  output: str  # The slim_graph output it returns: "logits" or "features".
  bn_hparams: bool  # Also takes the scalar `batch_norm_momentum`.


def signatures(release: Release) -> tuple[Signature, ...]:
  """The signatures of a release: the hub's common image signatures by module type."""
  classification = release.module_type == "classification"
  named = ([("image_classification", "logits")] if classification else [])
  named.append(("image_feature_vector", "features"))
  result = [Signature("default", named[0][1], False)]
  result += [Signature(name, output, False) for name, output in named]
  if release.version.bn_hparams_signatures:
    result += [Signature(f"{name}_with_bn_hparams", output, True) for name, output in named]
  return tuple(result)


def num_classes(release: Release) -> int:
  """Classifier width; 0 (no classifier) for feature-vector modules."""
  if release.module_type == "classification":
    return int(release.registry.publisher["num_classes"])
  return 0


def encode_module_def(fmt: int = MODULE_DEF_FORMAT_V3) -> bytes:
  """`ModuleDef{format: fmt}` in proto3 wire form (fmt < 128: one varint byte)."""
  if not 0 < fmt < 128:
    raise ValueError(f"ModuleDef format {fmt} does not fit one varint byte")
  return bytes([(1 << 3) | 0, fmt])  # Field 1, wire type 0 (varint).


def decode_module_def(data: bytes) -> tuple[int, list[str]]:
  """Returns (format, required_features) of a serialized ModuleDef; unknown fields fail."""
  fmt, features, pos = 0, [], 0

  def varint():
    nonlocal pos
    value, shift = 0, 0
    while True:
      if pos >= len(data):
        raise ValueError("truncated varint")
      byte = data[pos]
      pos += 1
      value |= (byte & 0x7F) << shift
      shift += 7
      if not byte & 0x80:
        return value

  while pos < len(data):
    key = varint()
    field, wire_type = key >> 3, key & 7
    if field == 1 and wire_type == 0:
      fmt = varint()
    elif field == 2 and wire_type == 2:
      length = varint()
      if pos + length > len(data):
        raise ValueError("truncated string")
      features.append(data[pos:pos + length].decode("utf-8"))
      pos += length
    else:
      raise ValueError(f"unexpected field {field} (wire type {wire_type})")
  return fmt, features


def check_variables(release: Release, graph_variables: dict[str, tuple[tuple[int, ...], str]],
                    values: dict[str, np.ndarray]) -> tuple[str, ...]:
  """Matches the module graph's variables to the checkpoint's values.

  Returns the checkpoint variables the module leaves out (only a
  feature-vector module's classifier may be); raises ExportError naming any
  missing, mis-shaped or otherwise unused variable.
  """
  missing = sorted(n for n in graph_variables if n not in values)
  mismatched = sorted(
      f"{n} (checkpoint {list(values[n].shape)} {values[n].dtype}, graph {list(shape)} {dtype})"
      for n, (shape, dtype) in graph_variables.items()
      if n in values and (tuple(values[n].shape) != tuple(shape) or values[n].dtype.name != dtype))
  unused = sorted(n for n in values if n not in graph_variables)
  left_out = set(values) - set(slim_graph.exported_variable_names(release.module_type, values))
  unexpected = [n for n in unused if n not in left_out]
  problems = []
  if missing:
    problems.append(f"{len(missing)} graph variable(s) without a checkpoint value: "
                    f"{', '.join(missing[:5])}")
  if mismatched:
    problems.append(f"{len(mismatched)} mismatch(es): {', '.join(mismatched[:3])}")
  if unexpected:
    problems.append(f"{len(unexpected)} checkpoint variable(s) the module does not use: "
                    f"{', '.join(unexpected[:5])}")
  if problems:
    raise ExportError(f"{release.handle_with_version}: the module graph does not match "
                      f"checkpoint values: " + "; ".join(problems))
  return tuple(unused)


@dataclasses.dataclass
class _ModuleGraph:
  graph: tf.Graph
  variables: list
  saver: object  # tf.compat.v1.train.Saver
  signature_defs: dict


def _build_graph(release: Release, training: bool) -> _ModuleGraph:
  """One graph variant: placeholders in, slim network, signatures out."""
  size = release.model.image_size
  graph = tf.Graph()
  with graph.as_default(), tf1.variable_scope("", use_resource=True):
    images = tf1.placeholder(tf.float32, [None, size, size, 3], name=IMAGES_INPUT)
    momentum = release.version.batch_norm_momentum
    if release.version.bn_hparams_signatures:
      momentum = tf1.placeholder_with_default(tf.constant(momentum, tf.float32), [],
                                              name=MOMENTUM_INPUT)
    outputs = slim_graph.build_outputs(
        release.model, images, training=training, batch_norm_momentum=momentum,
        batch_norm_updates_collections=tf1.GraphKeys.UPDATE_OPS,
        num_classes=num_classes(release))
    variables = tf1.global_variables()
    saver = tf1.train.Saver(variables, sharded=True, write_version=tf1.train.SaverDef.V2)
  signature_defs = {}
  for signature in signatures(release):
    inputs = {IMAGES_INPUT: images}
    if signature.bn_hparams:
      inputs[MOMENTUM_INPUT] = momentum
    signature_defs[signature.name] = _signature_def(
        inputs, {OUTPUT: outputs[signature.output]})
  return _ModuleGraph(graph, variables, saver, signature_defs)


def _tensor_info(tensor) -> meta_graph_pb2.TensorInfo:
  return meta_graph_pb2.TensorInfo(name=tensor.name, dtype=tensor.dtype.as_datatype_enum,
                                   tensor_shape=tensor.shape.as_proto())


def _signature_def(inputs: dict, outputs: dict) -> meta_graph_pb2.SignatureDef:
  """A SignatureDef as hub.add_signature made them: tensors by name, no method name."""
  signature_def = meta_graph_pb2.SignatureDef()
  for name, tensor in inputs.items():
    signature_def.inputs[name].CopyFrom(_tensor_info(tensor))
  for name, tensor in outputs.items():
    signature_def.outputs[name].CopyFrom(_tensor_info(tensor))
  return signature_def


def _variable_specs(variables) -> dict[str, tuple[tuple[int, ...], str]]:
  return {v.op.name: (tuple(v.shape.as_list()), v.dtype.base_dtype.name) for v in variables}


def _save_variables(module_graph: _ModuleGraph, values: dict[str, np.ndarray],
                    export_dir: str) -> None:
  """Sets every variable to its checkpoint value and writes variables/ once."""
  os.makedirs(os.path.join(export_dir, os.path.dirname(VARIABLES_PREFIX)), exist_ok=True)
  with tf1.Session(graph=module_graph.graph) as session:
    # Feeding each initializer's value input assigns the checkpoint value in one run.
    feeds = {v.initializer.inputs[1]: values[v.op.name] for v in module_graph.variables}
    session.run([v.initializer for v in module_graph.variables], feeds)
    module_graph.saver.save(session, os.path.join(export_dir, VARIABLES_PREFIX),
                            write_meta_graph=False, write_state=False)


def _meta_graph_def(module_graph: _ModuleGraph, tags: frozenset):
  graph = module_graph.graph
  present = set(graph.get_all_collection_keys())
  with graph.as_default():  # export_meta_graph refuses to run eagerly.
    meta_graph = tf1.train.export_meta_graph(
        graph=graph, saver_def=module_graph.saver.as_saver_def(),
        collection_list=[key for key in EXPORTED_COLLECTIONS if key in present],
        clear_devices=True, strip_default_attrs=True)
  meta_graph.meta_info_def.tags.extend(sorted(tags))
  for name, signature_def in module_graph.signature_defs.items():
    meta_graph.signature_def[name].CopyFrom(signature_def)
  return meta_graph


def write(release: Release, checkpoint: CheckpointValues, export_dir: str, log) -> None:
  """Writes the module: one MetaGraphDef per tag set, variables once, tfhub_module.pb.

  The SavedModel is assembled here rather than with tf.compat.v1's
  SavedModelBuilder (which can add a second MetaGraphDef, but exports every
  collection of the graph): each MetaGraphDef names its collections, so the
  module carries only what hub.Module accepts.
  """
  saved_model = saved_model_pb2.SavedModel(saved_model_schema_version=1)
  first_specs = None
  for tags, training in GRAPH_VARIANTS:
    module_graph = _build_graph(release, training)
    specs = _variable_specs(module_graph.variables)
    left_out = check_variables(release, specs, checkpoint.values)
    if first_specs is None:
      if left_out:
        log(f"{release.handle_with_version}: leaving out {len(left_out)} classifier "
            f"variable(s) a feature vector does not use: {', '.join(left_out)}")
      _save_variables(module_graph, checkpoint.values, export_dir)
      first_specs = specs
    elif specs != first_specs:
      raise ExportError(f"{release.handle_with_version}: the graph for tags {set(tags)} has "
                        f"other variables than the one whose variables were written")
    saved_model.meta_graphs.append(_meta_graph_def(module_graph, tags))
    del module_graph  # Frees this graph before the next one is built.
  with open(os.path.join(export_dir, SAVED_MODEL_FILENAME), "wb") as f:
    f.write(saved_model.SerializeToString(deterministic=True))
  with open(os.path.join(export_dir, MODULE_DEF_FILENAME), "wb") as f:
    f.write(encode_module_def())


# Verification.

def _fail(release: Release, message: str):
  raise ExportError(f"{release.handle_with_version}: verification failed: {message}")


def _check_signature_def(release, tags, signature: Signature, signature_def) -> None:
  size = release.model.image_size
  expected_inputs = {IMAGES_INPUT: (tf.float32, [-1, size, size, 3])}
  if signature.bn_hparams:
    expected_inputs[MOMENTUM_INPUT] = (tf.float32, [])
  got = {name: (tf.as_dtype(t.dtype), [d.size for d in t.tensor_shape.dim])
         for name, t in signature_def.inputs.items()}
  if got != expected_inputs:
    _fail(release, f"signature {signature.name!r} (tags {set(tags)}) has inputs {got}, "
                   f"expected {expected_inputs}")
  if set(signature_def.outputs) != {OUTPUT}:
    _fail(release, f"signature {signature.name!r} (tags {set(tags)}) has outputs "
                   f"{sorted(signature_def.outputs)}, expected [{OUTPUT!r}]")


def _check_meta_graph(release: Release, tags, meta_graph, training: bool) -> None:
  """What hub.Module checks or relies on when it loads one graph variant."""
  collections = set(meta_graph.collection_def)
  if not collections <= HUB_MODULE_COLLECTIONS:
    _fail(release, f"graph for tags {set(tags)} has collections hub.Module refuses: "
                   f"{sorted(collections - HUB_MODULE_COLLECTIONS)}")
  if training:
    for key in (tf1.GraphKeys.UPDATE_OPS, tf1.GraphKeys.REGULARIZATION_LOSSES):
      if not meta_graph.collection_def[key].node_list.value:
        _fail(release, f"train graph has no {key} (fine-tuning needs them; hub issue 86)")
  nodes = {node.name: node for node in meta_graph.graph_def.node}
  ref_variables = [n.name for n in nodes.values() if n.op in _REF_VARIABLE_OPS]
  if ref_variables:
    _fail(release, f"graph for tags {set(tags)} has ref variables: {ref_variables[:3]}")
  for node in nodes.values():
    if node.op in _STATE_OPS and "_class" in node.attr:
      targets = [c.decode().removeprefix("loc:@") for c in node.attr["_class"].list.s]
      others = [t for t in targets if t not in nodes or nodes[t].op not in _STATE_OPS]
      if others:
        _fail(release, f"state op {node.name} is colocated with non-state ops {others}")
  expected = {s.name: s for s in signatures(release)}
  if set(meta_graph.signature_def) != set(expected):
    _fail(release, f"graph for tags {set(tags)} has signatures "
                   f"{sorted(meta_graph.signature_def)}, expected {sorted(expected)}")
  for name, signature in expected.items():
    signature_def = meta_graph.signature_def[name]
    _check_signature_def(release, tags, signature, signature_def)
    for tensor_info in signature_def.inputs.values():
      if "_class" in nodes[tensor_info.name.split(":")[0]].attr:
        _fail(release, f"signature input {tensor_info.name} has a colocation constraint")


def _check_layout(release: Release, export_dir: str) -> dict:
  with open(os.path.join(export_dir, MODULE_DEF_FILENAME), "rb") as f:
    fmt, required_features = decode_module_def(f.read())
  if fmt != MODULE_DEF_FORMAT_V3 or required_features:
    _fail(release, f"{MODULE_DEF_FILENAME} has format {fmt} and required features "
                   f"{required_features}; hub.Module needs format 3 and none")
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(export_dir, SAVED_MODEL_FILENAME), "rb") as f:
    saved_model.ParseFromString(f.read())
  tag_sets = [frozenset(m.meta_info_def.tags) for m in saved_model.meta_graphs]
  if sorted(tag_sets, key=sorted) != sorted((t for t, _ in GRAPH_VARIANTS), key=sorted):
    _fail(release, f"tag sets {[set(t) for t in tag_sets]}, expected "
                   f"{[set(t) for t, _ in GRAPH_VARIANTS]}")
  training_of = dict(GRAPH_VARIANTS)
  for meta_graph in saved_model.meta_graphs:
    tags = frozenset(meta_graph.meta_info_def.tags)
    _check_meta_graph(release, tags, meta_graph, training_of[tags])
  return {frozenset(m.meta_info_def.tags): m for m in saved_model.meta_graphs}


def _check_values(release: Release, what: str, got: dict[str, np.ndarray],
                  values: dict[str, np.ndarray]) -> None:
  """Bitwise equality with the checkpoint for exactly the module's variables."""
  expected_names = set(slim_graph.exported_variable_names(release.module_type, values))
  if set(got) != expected_names:
    _fail(release, f"{what} has other variables than the checkpoint's; symmetric difference: "
                   f"{sorted(set(got) ^ expected_names)[:5]}")
  different = [n for n in got if got[n].dtype != values[n].dtype
               or got[n].tobytes() != values[n].tobytes()]
  if different:
    _fail(release, f"{what}: {len(different)} variable(s) differ from the checkpoint: "
                   f"{', '.join(sorted(different)[:5])}")


def _check_fine_tuning(release: Release, export_dir: str, meta_graph, reference,
                       probe: np.ndarray) -> dict:
  """Runs the train graph's collections as a hub.Module consumer would.

  Every batch norm's moving mean must move by the version's default momentum
  toward its batch mean when the UPDATE_OPS run, and REGULARIZATION_LOSSES
  must hold the Slim reference's weight decay of each of the module's weights.
  """
  momentum = release.version.batch_norm_momentum
  graph = tf.Graph()
  with graph.as_default():
    saver = tf1.train.import_meta_graph(meta_graph, clear_devices=True)
    update_ops = graph.get_collection(tf1.GraphKeys.UPDATE_OPS)
    losses = graph.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES)
    variables = {v.op.name: v for v in tf1.global_variables()}
    batch_norms = [op for op in graph.get_operations() if op.type.startswith("FusedBatchNorm")]
    # Slim names a batch norm's ops and variables in one scope.
    moving_means = [variables[f"{op.name.rsplit('/', 1)[0]}/moving_mean"] for op in batch_norms]
    batch_means = [op.outputs[1] for op in batch_norms]
    images = graph.get_tensor_by_name(meta_graph.signature_def["default"].inputs[IMAGES_INPUT].name)
    with tf1.Session(graph=graph) as session:
      saver.restore(session, os.path.join(export_dir, VARIABLES_PREFIX))
      loss_values = np.array(sorted(session.run(losses)))
      old = session.run(moving_means)
      means, _ = session.run([batch_means, update_ops], {images: probe})
      new = session.run(moving_means)
  if len(update_ops) != 2 * len(batch_norms):
    _fail(release, f"train graph has {len(update_ops)} UPDATE_OPS for {len(batch_norms)} "
                   f"batch norms (expected a mean and a variance update each)")
  errors = [np.max(np.abs(n - (momentum * o + (1.0 - momentum) * m)) / (1.0 + np.abs(m)))
            for o, n, m in zip(old, new, means)]
  if not max(errors) <= 1e-5:
    _fail(release, f"running UPDATE_OPS does not move the moving means by momentum "
                   f"{momentum} (worst relative error {max(errors):.3g})")
  expected = np.array(sorted(v for n, v in reference.regularization_losses().items()
                             if n in variables))
  if loss_values.shape != expected.shape or not np.allclose(loss_values, expected, rtol=1e-5):
    _fail(release, f"train graph REGULARIZATION_LOSSES ({len(loss_values)}) differ from the "
                   f"Slim reference's weight decay ({len(expected)})")
  return {"update_ops": len(update_ops), "regularization_losses": len(loss_values),
          "moving_mean_max_rel_err": float(max(errors))}


def _run_signature(loaded, signature: Signature, images: np.ndarray,
                   momentum: float) -> np.ndarray:
  inputs = {IMAGES_INPUT: tf.constant(images)}
  if signature.bn_hparams:
    inputs[MOMENTUM_INPUT] = tf.constant(momentum, tf.float32)
  return loaded.signatures[signature.name](**inputs)[OUTPUT].numpy()


def _has_path_dropout(release: Release) -> bool:
  import slim_nets
  return slim_nets.get_net(release.model.name).config().drop_path_keep_prob < 1.0


def verify(release: Release, export_dir: str, checkpoint: CheckpointValues, reference,
           log, tolerance: float = 1e-4) -> dict:
  """Checks the written module with `hub.load` against the Slim reference.

  The layout and each graph variant are checked for what hub.Module needs,
  and the train graph's UPDATE_OPS and REGULARIZATION_LOSSES are run;
  `hub.load(tags=[])` and `hub.load(tags=["train"])` must restore the
  checkpoint's values bitwise; every inference signature must reproduce the
  reference within `tolerance`, and the train graph's features the
  reference's training mode (batch statistics) unless path dropout makes
  them random.
  """
  import tensorflow_hub as hub

  meta_graphs = _check_layout(release, export_dir)
  reader = tf.train.load_checkpoint(os.path.join(export_dir, VARIABLES_PREFIX))
  stored = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
  _check_values(release, VARIABLES_PREFIX, stored, checkpoint.values)

  probe = slim_graph.probe_images(release.model)
  expected = reference.outputs(probe, training=False)
  momentum = release.version.batch_norm_momentum
  report = {"signatures": [s.name for s in signatures(release)], "max_abs_diff": {}}
  report["fine_tuning"] = _check_fine_tuning(release, export_dir, meta_graphs[TRAIN_TAGS],
                                             reference, probe)
  for tags, training in GRAPH_VARIANTS:
    loaded = hub.load(export_dir, tags=sorted(tags))
    variables = {v.name.split(":")[0]: v.numpy() for v in loaded.variables}
    _check_values(release, f"hub.load(tags={sorted(tags)})", variables, checkpoint.values)
    if set(loaded.signatures.keys()) != {s.name for s in signatures(release)}:
      _fail(release, f"hub.load(tags={sorted(tags)}) has signatures "
                     f"{sorted(loaded.signatures.keys())}")
    if not training:
      for signature in signatures(release):
        got = _run_signature(loaded, signature, probe, momentum)
        diff = float(np.max(np.abs(got - expected[signature.output])))
        report["max_abs_diff"][signature.name] = diff
        if not diff <= tolerance:
          _fail(release, f"signature {signature.name!r} differs from the Slim reference by "
                         f"{diff:.3g} (tolerance {tolerance})")
    else:
      feature_signature = next(s for s in signatures(release) if s.name == "image_feature_vector")
      got = _run_signature(loaded, feature_signature, probe, momentum)
      if _has_path_dropout(release):
        if got.shape != (len(probe), release.model.feature_size) or not np.all(np.isfinite(got)):
          _fail(release, f"train graph features have shape {got.shape} or are not finite")
        report["train_features_max_abs_diff"] = None  # Random: path dropout.
      else:
        train_expected = reference.outputs(probe, training=True)["features"]
        diff = float(np.max(np.abs(got - train_expected)))
        report["train_features_max_abs_diff"] = diff
        if not diff <= tolerance:
          _fail(release, f"train graph features differ from the Slim reference's training "
                         f"mode by {diff:.3g} (tolerance {tolerance})")
    del loaded
  log(f"{release.handle_with_version}: hub.load (tags [] and ['train']) matches the Slim "
      f"reference; largest difference {max(report['max_abs_diff'].values()):.2g}")
  return report
