"""Writes and verifies the TF1 Hub format (registry format "hub"): what `hub.Module` loads.

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
from tensorflow.core.protobuf import meta_graph_pb2, rewriter_config_pb2, saved_model_pb2

from exporters.network import slim_graph
from exporters.network.checkpoint_reader import CheckpointValues
from exporters.errors import ExportError
from exporters import verification
from registry import TF1_HUB_FORMAT, Release

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


# The momentum default's Const: one construction serves every version, and
# each release sets its own default value in its copy of the graph.
MOMENTUM_DEFAULT = "batch_norm_momentum_default"
# The savers of the two module types; both always exist (the classification
# graph is the feature-vector graph plus the classifier, so its saver is made
# second), which keeps every release's names independent of the plan.
SAVER_SCOPES = {"feature_vector": "save", "classification": "save_1"}


def _tensor_info(tensor) -> meta_graph_pb2.TensorInfo:
  return meta_graph_pb2.TensorInfo(name=tensor.name, dtype=tensor.dtype.as_datatype_enum,
                                   tensor_shape=tensor.shape.as_proto())


def _signature_def(inputs: dict, outputs: dict) -> meta_graph_pb2.SignatureDef:
  """A SignatureDef as hub.add_signature made them: tensors by name, no method name."""
  signature_def = meta_graph_pb2.SignatureDef()
  for name, tensor_info in inputs.items():
    signature_def.inputs[name].CopyFrom(tensor_info)
  for name, tensor_info in outputs.items():
    signature_def.outputs[name].CopyFrom(tensor_info)
  return signature_def


def _variable_specs(variables) -> dict[str, tuple[tuple[int, ...], str]]:
  return {v.op.name: (tuple(v.shape.as_list()), v.dtype.base_dtype.name) for v in variables}


@dataclasses.dataclass(frozen=True)
class _Snapshot:
  """One module type's graph in one mode, as constructed: collections and a saver."""
  meta_graph: meta_graph_pb2.MetaGraphDef
  tensors: dict[str, meta_graph_pb2.TensorInfo]  # images, momentum, features, logits.


class _ModeGraph:
  """One mode's construction: the feature vector, then (if wanted) the classifier added."""

  def __init__(self, model, training: bool, classification: bool, num_classes: int):
    self.graph = tf.Graph()
    self.savers, self.variables, self.snapshots = {}, {}, {}
    with self.graph.as_default(), tf1.variable_scope("", use_resource=True):
      images = tf1.placeholder(tf.float32, model.input_shape, name=IMAGES_INPUT)
      momentum = tf1.placeholder_with_default(
          tf.constant(np.nan, tf.float32, name=MOMENTUM_DEFAULT), [], name=MOMENTUM_INPUT)
      tensors = {IMAGES_INPUT: images, MOMENTUM_INPUT: momentum}
      tensors["features"] = slim_graph.build_features(
          model, images, training=training, batch_norm_momentum=momentum,
          batch_norm_updates_collections=tf1.GraphKeys.UPDATE_OPS)
      self._snapshot("feature_vector", tensors)
      if classification:
        tensors["logits"] = slim_graph.build_logits(model, tensors["features"],
                                                    training=training, num_classes=num_classes)
        self._snapshot("classification", tensors)

  def _snapshot(self, module_type: str, tensors: dict) -> None:
    variables = tf1.global_variables()
    saver = tf1.train.Saver(variables, sharded=True, write_version=tf1.train.SaverDef.V2,
                            name=SAVER_SCOPES[module_type])
    present = set(self.graph.get_all_collection_keys())
    meta_graph = tf1.train.export_meta_graph(
        graph=self.graph, saver_def=saver.as_saver_def(),
        collection_list=[key for key in EXPORTED_COLLECTIONS if key in present],
        # The construction places nothing on a device, and clearing devices
        # would make TensorFlow copy the graph node by node in Python.
        clear_devices=False, strip_default_attrs=True)
    # Another module type's saver is not part of this module.
    others = tuple(f"{scope}/" for t, scope in SAVER_SCOPES.items() if t != module_type)
    kept = [n for n in meta_graph.graph_def.node if not n.name.startswith(others)]
    del meta_graph.graph_def.node[:]
    meta_graph.graph_def.node.extend(kept)
    self.savers[module_type] = saver
    self.variables[module_type] = variables
    self.snapshots[module_type] = _Snapshot(
        meta_graph, {name: _tensor_info(t) for name, t in tensors.items()})


def _release_meta_graph(release: Release, snapshot: _Snapshot, tags) -> meta_graph_pb2.MetaGraphDef:
  """The snapshot as this release has it: its momentum default and signatures, its tags."""
  meta_graph = meta_graph_pb2.MetaGraphDef.FromString(
      snapshot.meta_graph.SerializeToString(deterministic=True))
  nodes = meta_graph.graph_def.node
  default = next(n for n in nodes if n.name == MOMENTUM_DEFAULT)
  default.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(
      release.version.batch_norm_momentum, tf.float32))
  if not release.version.bn_hparams_signatures:
    # No signature feeds the momentum: its readers read the constant instead.
    kept = [n for n in nodes if n.name != MOMENTUM_INPUT]
    for node in kept:
      node.input[:] = [MOMENTUM_DEFAULT if i == MOMENTUM_INPUT else i for i in node.input]
    del meta_graph.graph_def.node[:]
    meta_graph.graph_def.node.extend(kept)
  meta_graph.meta_info_def.tags.extend(sorted(tags))
  for signature in signatures(release):
    inputs = {IMAGES_INPUT: snapshot.tensors[IMAGES_INPUT]}
    if signature.bn_hparams:
      inputs[MOMENTUM_INPUT] = snapshot.tensors[MOMENTUM_INPUT]
    meta_graph.signature_def[signature.name].CopyFrom(
        _signature_def(inputs, {OUTPUT: snapshot.tensors[signature.output]}))
  return meta_graph


class HubModuleConstructions:
  """A model's TF1 Hub format graphs, constructed once per mode; writes and verifies releases.

  Both module types come from the same construction per mode: the feature
  vector's graph is snapshotted (collections and its saver) before the
  classifier is added. The momentum is a placeholder_with_default, so that
  versions differ only in its default value and in whether a signature
  feeds it, which each release sets in its copy of the snapshot: writing a
  release constructs and imports nothing. The variables are set to the
  checkpoint's values once, in the inference graph's session, whose savers
  write each release's `variables/`.
  """

  format = TF1_HUB_FORMAT

  def __init__(self, releases: list[Release], checkpoint: CheckpointValues, log):
    model = releases[0].model
    self.checkpoint = checkpoint
    classification = [r for r in releases if r.module_type == "classification"]
    num_classes = slim_graph.num_classes(classification[0]) if classification else 0
    self.snapshots = {}
    self._inference = None
    for tags, training in GRAPH_VARIANTS:
      log(f"{model.name}: constructing the TF1 Hub format graph for tags {sorted(tags)}")
      mode = _ModeGraph(model, training, bool(classification), num_classes)
      for module_type, snapshot in mode.snapshots.items():
        self.snapshots[module_type, training] = snapshot
      if not training:
        self._inference = mode
    representative = {r.module_type: r for r in releases}
    self._left_out = {t: check_variables(r, _variable_specs(self._inference.variables[t]),
                                         checkpoint.values)
                      for t, r in representative.items()}
    self._session = tf1.Session(graph=self._inference.graph)
    with self._inference.graph.as_default():
      variables = self._inference.variables["classification" if classification
                                            else "feature_vector"]
      # Feeding each initializer's value input assigns the checkpoint value in one run.
      feeds = {v.initializer.inputs[1]: checkpoint.values[v.op.name] for v in variables}
      self._session.run([v.initializer for v in variables], feeds)

  def write(self, release: Release, export_dir: str, log) -> None:
    """Writes the module: one MetaGraphDef per tag set, variables once, tfhub_module.pb."""
    left_out = self._left_out[release.module_type]
    if left_out:
      log(f"{release.handle_with_version}: leaving out {len(left_out)} classifier "
          f"variable(s) a feature vector does not use: {', '.join(left_out)}")
    os.makedirs(os.path.join(export_dir, os.path.dirname(VARIABLES_PREFIX)), exist_ok=True)
    with self._inference.graph.as_default():
      self._inference.savers[release.module_type].save(
          self._session, os.path.join(export_dir, VARIABLES_PREFIX), write_meta_graph=False,
          write_state=False)
    # Assembled here rather than with tf.compat.v1's SavedModelBuilder (which
    # exports every collection of the graph): each MetaGraphDef names its
    # collections, so the module carries only what hub.Module accepts.
    saved_model = saved_model_pb2.SavedModel(saved_model_schema_version=1)
    for tags, training in GRAPH_VARIANTS:
      saved_model.meta_graphs.append(_release_meta_graph(
          release, self.snapshots[release.module_type, training], tags))
    with open(os.path.join(export_dir, SAVED_MODEL_FILENAME), "wb") as f:
      f.write(saved_model.SerializeToString(deterministic=True))
    with open(os.path.join(export_dir, MODULE_DEF_FILENAME), "wb") as f:
      f.write(encode_module_def())

  def verify(self, release: Release, export_dir: str, reference, log) -> dict:
    return verify(release, export_dir, self.checkpoint, reference, log)

  def close(self) -> None:
    self._session.close()


# Verification.

def _fail(release: Release, message: str):
  raise ExportError(f"{release.handle_with_version}: verification failed: {message}")


def _check_signature_def(release, tags, signature: Signature, signature_def) -> None:
  # A graph's unknown dimension reads back as -1.
  expected_inputs = {IMAGES_INPUT: (tf.float32, [-1 if d is None else d
                                                 for d in release.model.input_shape])}
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
  expected = {n: values[n] for n in slim_graph.exported_variable_names(release.module_type,
                                                                         values)}
  if problem := verification.different_variables(got, expected):
    _fail(release, f"{what}: {problem}")


# Grappler would rewrite the graph again for each set of fetches (most of the
# cost of a verification run); the graph as written is what is checked.
_VERIFICATION_SESSION_CONFIG = tf1.ConfigProto(graph_options=tf1.GraphOptions(
    rewrite_options=rewriter_config_pb2.RewriterConfig(disable_meta_optimizer=True)))


def _restored_session(release: Release, export_dir: str, meta_graph, tags):
  """The graph of one tag set in a tf.compat.v1 session, restored from the module's variables
  by its own saver: how hub.Module instantiates a module (one graph per tag set, every
  signature in it), without pruning one function per signature."""
  graph = tf.Graph()
  with graph.as_default():
    saver = tf1.train.import_meta_graph(meta_graph)
    session = tf1.Session(graph=graph, config=_VERIFICATION_SESSION_CONFIG)
    try:
      saver.restore(session, os.path.join(export_dir, VARIABLES_PREFIX))
    except (tf.errors.OpError, ValueError) as e:
      session.close()
      _fail(release, f"the graph for tags {sorted(tags)} cannot restore {VARIABLES_PREFIX}: "
                     f"{str(e).splitlines()[0]}")
    variables = {v.op.name: v for v in graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES)}
  return graph, session, variables


def _signature_tensors(graph, meta_graph, signature: Signature):
  signature_def = meta_graph.signature_def[signature.name]
  inputs = {name: graph.get_tensor_by_name(t.name) for name, t in signature_def.inputs.items()}
  return inputs, graph.get_tensor_by_name(signature_def.outputs[OUTPUT].name)


def _check_inference(release: Release, graph, session, meta_graph, variables, checkpoint,
                     reference, probe: np.ndarray) -> dict:
  """Every signature of the inference graph and every variable in one run, each against the
  reference and the checkpoint."""
  expected = reference.expected(training=False)
  feeds, fetches = {}, {}
  for signature in signatures(release):
    inputs, output = _signature_tensors(graph, meta_graph, signature)
    feeds[inputs[IMAGES_INPUT]] = probe
    if signature.bn_hparams:
      feeds[inputs[MOMENTUM_INPUT]] = release.version.batch_norm_momentum
    fetches[signature.name] = output
  got, values = session.run((fetches, variables), feeds)
  _check_values(release, "the graph for tags []", values, checkpoint.values)
  try:
    return {s.name: verification.compare(f"signature {s.name!r}", got[s.name],
                                         expected[s.output]) for s in signatures(release)}
  except verification.VerificationError as e:
    _fail(release, str(e))


def _check_train_graph(release: Release, graph, session, meta_graph, variables, checkpoint,
                       reference, probe: np.ndarray) -> dict:
  """Runs the train graph's collections as hub.Module's fine-tuning would.

  With only the images fed (the version's momentum default), every batch
  norm's moving mean must move by that momentum toward its batch mean when
  the UPDATE_OPS run, REGULARIZATION_LOSSES must hold the Slim reference's
  weight decay of each of the module's weights, and the feature vector must
  reproduce the reference's training mode where that is deterministic.
  """
  momentum = release.version.batch_norm_momentum
  update_ops = graph.get_collection(tf1.GraphKeys.UPDATE_OPS)
  losses = graph.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES)
  batch_norms = [op for op in graph.get_operations() if op.type.startswith("FusedBatchNorm")]
  if len(update_ops) != 2 * len(batch_norms):
    _fail(release, f"train graph has {len(update_ops)} UPDATE_OPS for {len(batch_norms)} "
                   f"batch norms (expected a mean and a variance update each)")
  # Slim names a batch norm's ops and variables in one scope.
  moving_means = [variables[f"{op.name.rsplit('/', 1)[0]}/moving_mean"] for op in batch_norms]
  feature_signature = next(s for s in signatures(release) if s.name == "image_feature_vector")
  inputs, features = _signature_tensors(graph, meta_graph, feature_signature)
  values = session.run(variables)
  _check_values(release, "the graph for tags ['train']", values, checkpoint.values)
  old = [values[v.op.name] for v in moving_means]
  loss_values, means, _, train_features = session.run(
      [losses, [op.outputs[1] for op in batch_norms], update_ops, features],
      {inputs[IMAGES_INPUT]: probe})
  new = session.run(moving_means)
  what = "the train graph after running UPDATE_OPS"
  if problem := verification.non_finite_values(what, [
      *((f"batch mean of {v.op.name}", m) for v, m in zip(moving_means, means)),
      *((f"moving mean {v.op.name}", n) for v, n in zip(moving_means, new))]):
    _fail(release, problem)
  try:
    report = {
        "update_ops": len(update_ops),
        "moving_mean_max_rel_err": verification.check_moving_means(what, momentum, old, new,
                                                                   means),
        "regularization_losses": verification.compare_losses(
            "the train graph's REGULARIZATION_LOSSES", loss_values,
            [v for n, v in reference.regularization_losses().items() if n in variables]),
    }
    if verification.training_output_is_deterministic(release.model, feature_signature.output):
      report["train_features_max_abs_diff"] = verification.compare(
          "the train graph's features", train_features,
          reference.expected(training=True)[feature_signature.output])
    else:  # Random (path dropout): only its shape and finiteness are checked.
      verification.check_shape("the train graph's features", train_features,
                               (len(probe), release.model.feature_size))
      report["train_features_max_abs_diff"] = None
  except verification.VerificationError as e:
    _fail(release, str(e))
  return report


def verify(release: Release, export_dir: str, checkpoint: CheckpointValues, reference,
           log) -> dict:
  """Checks the written module, as hub.Module loads it, against the Slim reference.

  The layout and each graph variant are checked for what hub.Module needs;
  the variables file and each tag set's restored graph must hold the
  checkpoint's values bitwise; every inference signature must reproduce the
  reference (exporters.verification's rules), and the train graph's
  UPDATE_OPS, REGULARIZATION_LOSSES and features are run and compared.
  Each tag set's graph is imported once, in one session that runs all of its
  signatures (the tests load the releases with the real hub.Module and
  hub.load too).
  """
  meta_graphs = _check_layout(release, export_dir)
  reader = tf.train.load_checkpoint(os.path.join(export_dir, VARIABLES_PREFIX))
  stored = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
  _check_values(release, VARIABLES_PREFIX, stored, checkpoint.values)

  probe = slim_graph.probe_images(release.model)
  report = {"signatures": [s.name for s in signatures(release)]}
  for tags, training in GRAPH_VARIANTS:
    graph, session, variables = _restored_session(release, export_dir, meta_graphs[tags], tags)
    try:
      if training:
        report["fine_tuning"] = _check_train_graph(release, graph, session, meta_graphs[tags],
                                                   variables, checkpoint, reference, probe)
        report["train_features_max_abs_diff"] = report["fine_tuning"].pop(
            "train_features_max_abs_diff")
      else:
        report["max_abs_diff"] = _check_inference(release, graph, session, meta_graphs[tags],
                                                  variables, checkpoint, reference, probe)
    finally:
      session.close()
  log(f"{release.handle_with_version}: every signature of tags [] and ['train'] matches the "
      f"Slim reference; largest difference {max(report['max_abs_diff'].values()):.2g}")
  return report
