"""Writes and verifies versions 4-5: TF2 SavedModels for `hub.load` and `hub.KerasLayer`.

The exported object follows TF Hub's Reusable SavedModel API:

  obj = hub.load(export_dir)
  outputs = obj(images, training=False, batch_norm_momentum=0.99)
  obj.variables, obj.trainable_variables, obj.regularization_losses

`images` are float32 [batch, S, S, 3] in [0, 1]; `outputs` are the logits
[batch, 1001] or the feature vector [batch, F]. `training=True` normalizes
with batch statistics, updates the moving mean and variance with momentum
`batch_norm_momentum` inside the call, and turns on the classifier's dropout
and the path dropout (at its final rate). A release with
`serving_signature` also gets a `serving_default` signature (inference).

How the TF1-style Slim builder runs in TF2: `forward` of a small tf.Module
is decorated with tf_keras's `track_tf1_style_variables`
(tf_keras.src.legacy_tf_layers.variable_scope_shim), and `__call__` is a
`tf.function` around it. This reuses the one verified Slim builder
(slim_nets) unchanged, so the export cannot drift from the reference graph,
and the shim yields what a Reusable SavedModel needs as it is: variables with
their Slim names (`conv0_bn/moving_mean`), Slim's own trainable flags (the
moving statistics are not trainable) and one loss callable per weight that
the arg scope regularizes. Batch norm is built with `updates_collections=None`,
so its moving-average updates run inside the call (TF2 runs no UPDATE_OPS)
and its decay can be the `batch_norm_momentum` tensor argument.
Alternatives considered: `tf.compat.v1.wrap_function` prunes one TF1 graph
per wrapping, so both `training` values would need two wrapped graphs sharing
variables by hand, with trainability and regularizers recovered from graph
collections; `tf.compat.v1.make_template` is graph-mode only; rewriting the
networks as Keras layers would duplicate the Slim code the checkpoints fit.

A custom getter gives every variable its checkpoint value as initializer,
so no random initialization is ever run or kept, and a variable the graph
wants but the checkpoint lacks (or holds in another shape) fails the export.
One eager pass at batch size 1 creates the variables; `training` is a Python
bool, so `__call__` is then traced twice (False, True), both with
`batch_norm_momentum` as a float32 scalar whose Python default comes from
the registry. `serving_default` calls the inference trace. Autograph is off:
the Slim code branches on Python values only, and converting it made
tracing about eight times slower.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from exporters import slim_graph
from exporters.errors import ExportError

# The serving signature's input and output names: the argument name of
# `__call__`, and the key TensorFlow gives a signature's single unnamed output.
SERVING_INPUT_KEY = "inputs"
SERVING_OUTPUT_KEY = "output_0"
# What `__call__` returns for each module type (keys of slim_graph.build_outputs).
_OUTPUT_FOR_MODULE_TYPE = {"classification": "logits", "feature_vector": "features"}
# Batch norm's moving statistics: the only variables that must not train.
_MOVING_STATISTICS_SUFFIXES = ("/moving_mean", "/moving_variance")
_MAX_ABS_DIFF = 1e-4


def _variable_name(variable) -> str:
  """`conv0/weights:0` -> `conv0/weights` (the checkpoint's name)."""
  return variable.name.split(":")[0]


def _is_moving_statistic(name: str) -> bool:
  return name.endswith(_MOVING_STATISTICS_SUFFIXES)


def _build_network_module(release, values: dict[str, np.ndarray]):
  """Returns the tf.Module whose `forward` builds the Slim network on its own variables."""
  import tensorflow as tf
  from tf_keras.src.legacy_tf_layers.variable_scope_shim import track_tf1_style_variables


  output_key = _OUTPUT_FOR_MODULE_TYPE[release.module_type]
  num_classes = release.registry.publisher["num_classes"] if output_key == "logits" else 0
  model = release.model

  def checkpoint_initializer(value):
    def initializer(shape, dtype=tf.float32, partition_info=None):
      del shape, partition_info  # Checked by the getter.
      return tf.constant(value, dtype=dtype)
    return initializer

  def from_checkpoint(getter, name, *args, shape=None, initializer=None, **kwargs):
    """Initializes each graph variable from the checkpoint, never randomly."""
    del initializer
    if name not in values:
      raise ExportError(f"the {model.name} graph creates variable {name!r}, which the "
                        f"checkpoint values lack")
    value = values[name]
    if shape is None or tuple(shape) != value.shape:
      raise ExportError(f"variable {name!r}: the {model.name} graph wants shape "
                        f"{list(shape or [])}, the checkpoint has {list(value.shape)}")
    return getter(name, *args, shape=shape, initializer=checkpoint_initializer(value), **kwargs)

  class SlimNetwork(tf.Module):
    """Hosts the TF1-style Slim builder; the shim tracks its variables and regularizers."""

    @track_tf1_style_variables
    def forward(self, images, training: bool, batch_norm_momentum):
      with tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(),
                                       custom_getter=from_checkpoint):
        outputs = slim_graph.build_outputs(
            model, images, training=training, batch_norm_momentum=batch_norm_momentum,
            batch_norm_updates_collections=None, num_classes=num_classes)
      return outputs[output_key]

    @property
    def slim_variables(self) -> dict:
      """Slim name -> variable, in creation (graph) order."""
      return dict(self._tf1_style_var_store._vars)

    @property
    def slim_regularizers(self) -> list[Callable]:
      return list(self._tf1_style_var_store._regularizers.values())

  return SlimNetwork(name=f"{model.name}_{release.module_type}")


def _make_call(network, default_momentum: float):
  """The object's `__call__`: a tf.function with the registry's default momentum."""
  import tensorflow as tf

  def __call__(inputs, training=False, batch_norm_momentum=default_momentum):
    return network.forward(inputs, training=training, batch_norm_momentum=batch_norm_momentum)
  # No autograph: the Slim code branches on Python values only.
  return tf.function(__call__, autograph=False)


def _regularization_loss_function(regularizer):
  import tensorflow as tf
  return tf.function(lambda: regularizer(), input_signature=[], autograph=False)


def build_export_object(release, values: dict[str, np.ndarray]):
  """Returns (root object, signatures) ready for tf.saved_model.save."""
  import tensorflow as tf

  size = release.model.image_size
  images_spec = tf.TensorSpec([None, size, size, 3], tf.float32, name=SERVING_INPUT_KEY)
  momentum_spec = tf.TensorSpec([], tf.float32, name="batch_norm_momentum")
  default_momentum = float(release.version.batch_norm_momentum)

  network = _build_network_module(release, values)
  # One eager pass creates the variables (a tf.function that creates variables
  # would trace twice); the traces below only reuse them.
  network.forward(tf.zeros([1, size, size, 3]), training=False,
                  batch_norm_momentum=tf.constant(default_momentum))
  call = _make_call(network, default_momentum)
  for training in (False, True):
    call.get_concrete_function(images_spec, training=training, batch_norm_momentum=momentum_spec)

  variables = network.slim_variables
  wanted = slim_graph.exported_variable_names(release.module_type, values)
  missing = sorted(set(wanted) - set(variables))
  extra = sorted(set(variables) - set(wanted))
  if missing or extra:
    raise ExportError(f"the {release.module_type} graph of {release.model.name} does not hold "
                      f"the checkpoint variables it should: missing {missing[:5]}, "
                      f"extra {extra[:5]}")

  root = tf.__internal__.tracking.AutoTrackable()
  root.__call__ = call
  root.variables = list(variables.values())
  root.trainable_variables = [v for v in variables.values() if v.trainable]
  root.regularization_losses = [_regularization_loss_function(r)
                                for r in network.slim_regularizers]

  signatures = None
  if release.version.serving_signature:
    @tf.function(input_signature=[images_spec], autograph=False)
    def serving_default(inputs):
      # A momentum tensor, so this calls the traced inference function (no third trace).
      return {SERVING_OUTPUT_KEY: call(inputs, training=False,
                                       batch_norm_momentum=tf.constant(default_momentum))}
    signatures = {"serving_default": serving_default.get_concrete_function()}
  return root, signatures


def write(release, checkpoint, export_dir: str, log: Callable[[str], None] = print) -> None:
  """Builds the object from the checkpoint's values and saves it to `export_dir`."""
  import tensorflow as tf

  left_out = len(checkpoint.values) - len(
      slim_graph.exported_variable_names(release.module_type, checkpoint.values))
  if left_out:
    log(f"{release.handle_with_version}: leaving out {left_out} classifier variable(s)")
  log(f"{release.handle_with_version}: tracing {release.model.name} (inference and training)")
  root, signatures = build_export_object(release, checkpoint.values)
  log(f"{release.handle_with_version}: saving a TF2 SavedModel with {len(root.variables)} "
      f"variables, {len(root.regularization_losses)} regularization losses"
      + (", and a serving_default signature" if signatures else ""))
  tf.saved_model.save(root, export_dir, signatures=signatures)
  _make_fingerprint_deterministic(export_dir)


def _make_fingerprint_deterministic(export_dir: str) -> None:
  """Replaces the random uuid TensorFlow writes into fingerprint.pb.

  Published versions are immutable and compared by archive hash, so the same
  inputs must give the same bytes; the uuid is derived from the fingerprint's
  own content hashes instead.
  """
  import uuid

  from tensorflow.core.protobuf import fingerprint_pb2

  path = os.path.join(export_dir, "fingerprint.pb")
  if not os.path.exists(path):
    return
  fingerprint = fingerprint_pb2.FingerprintDef()
  with open(path, "rb") as f:
    fingerprint.ParseFromString(f.read())
  fingerprint.uuid = str(uuid.uuid5(uuid.NAMESPACE_OID, (
      f"{fingerprint.saved_model_checksum}/{fingerprint.graph_def_program_hash}/"
      f"{fingerprint.signature_def_hash}/{fingerprint.saved_object_graph_hash}/"
      f"{fingerprint.checkpoint_hash}")))
  with open(path, "wb") as f:
    f.write(fingerprint.SerializeToString(deterministic=True))


def _max_abs_diff(actual, expected, what: str) -> float:
  actual, expected = np.asarray(actual), np.asarray(expected)
  if actual.shape != expected.shape:
    raise ExportError(f"{what}: the export gives shape {list(actual.shape)}, "
                      f"the Slim graph {list(expected.shape)}")
  if not np.all(np.isfinite(actual)):
    raise ExportError(f"{what}: the export gives non-finite values")
  diff = float(np.max(np.abs(actual - expected)))
  if diff > _MAX_ABS_DIFF:
    raise ExportError(f"{what}: the export differs from the Slim graph by {diff:.3g} "
                      f"(allowed {_MAX_ABS_DIFF})")
  return diff


def _verify_variables(loaded, checkpoint, module_type: str) -> dict:
  """Exactly the checkpoint's variables, bitwise; only moving statistics non-trainable."""
  names = [_variable_name(v) for v in loaded.variables]
  if len(set(names)) != len(names):
    raise ExportError("the exported variables have duplicate names")
  expected = set(slim_graph.exported_variable_names(module_type, checkpoint.values))
  if set(names) != expected:
    missing, extra = sorted(expected - set(names)), sorted(set(names) - expected)
    raise ExportError(f"exported variables differ from the checkpoint's: missing {missing[:5]}, "
                      f"extra {extra[:5]}")
  changed = [n for n, v in zip(names, loaded.variables)
             if not np.array_equal(v.numpy(), checkpoint.values[n])]
  if changed:
    raise ExportError(f"{len(changed)} exported variable(s) differ from the checkpoint: "
                      f"{', '.join(changed[:5])}")
  trainable = {_variable_name(v) for v in loaded.trainable_variables}
  wrong = sorted(n for n in names if (n in trainable) == _is_moving_statistic(n))
  if wrong:
    raise ExportError(f"trainability is wrong for {len(wrong)} variable(s) (moving statistics "
                      f"must be non-trainable, all else trainable): {', '.join(wrong[:5])}")
  return {"variables": len(names), "trainable_variables": len(trainable)}


def _verify_regularization_losses(loaded, reference) -> dict:
  """One zero-argument loss per weight the Slim arg scope regularizes, equal in value."""
  exported = {_variable_name(v) for v in loaded.variables}
  expected = sorted(loss for name, loss in reference.regularization_losses().items()
                    if name in exported)
  actual = sorted(float(f()) for f in loaded.regularization_losses)
  if len(actual) != len(expected):
    raise ExportError(f"the export has {len(actual)} regularization losses, the Slim graph "
                      f"{len(expected)} for the exported weights")
  if not np.allclose(actual, expected, rtol=1e-5, atol=1e-9):
    raise ExportError("the export's regularization losses differ from the Slim graph's")
  return {"regularization_losses": len(actual)}


def _moving_statistics(loaded) -> dict[str, np.ndarray]:
  return {_variable_name(v): v.numpy() for v in loaded.variables
          if _is_moving_statistic(_variable_name(v))}


def _training_is_deterministic(release) -> bool:
  """Training outputs are comparable only without path dropout and dense dropout."""
  import slim_nets
  config = slim_nets.get_net(release.model.name).config()
  return release.module_type == "feature_vector" and config.drop_path_keep_prob >= 1.0


def verify(release, export_dir: str, checkpoint, reference, log: Callable[[str], None] = print
           ) -> dict:
  """Reloads the export with hub.load and checks it against the Slim graph; raises ExportError."""
  import tensorflow as tf
  import tensorflow_hub as hub


  output_key = _OUTPUT_FOR_MODULE_TYPE[release.module_type]
  loaded = hub.load(export_dir)
  report = _verify_variables(loaded, checkpoint, release.module_type)
  report.update(_verify_regularization_losses(loaded, reference))

  probe = slim_graph.probe_images(release.model)
  expected = reference.outputs(probe, training=False)[output_key]
  before = _moving_statistics(loaded)
  actual = loaded(tf.constant(probe), training=False).numpy()
  report["inference_max_abs_diff"] = _max_abs_diff(actual, expected, "inference output")
  if any(not np.array_equal(v, before[n]) for n, v in _moving_statistics(loaded).items()):
    raise ExportError("an inference call changed batch norm's moving statistics")

  if release.version.serving_signature:
    if "serving_default" not in loaded.signatures:
      raise ExportError("the export lacks its serving_default signature")
    served = loaded.signatures["serving_default"](**{SERVING_INPUT_KEY: tf.constant(probe)})
    report["serving_max_abs_diff"] = _max_abs_diff(
        served[SERVING_OUTPUT_KEY].numpy(), expected, "serving_default output")

  # Training mode updates the moving statistics of this in-memory copy only.
  momentum = float(release.version.batch_norm_momentum)
  trained = loaded(tf.constant(probe), training=True, batch_norm_momentum=momentum).numpy()
  if trained.shape != expected.shape or not np.all(np.isfinite(trained)):
    raise ExportError(f"training-mode output has shape {list(trained.shape)} or non-finite values")
  after = _moving_statistics(loaded)
  unchanged = [n for n, v in after.items() if np.array_equal(v, before[n])]
  if unchanged:
    raise ExportError(f"a training call left {len(unchanged)} moving statistic(s) unchanged: "
                      f"{', '.join(unchanged[:5])}")
  if _training_is_deterministic(release):
    expected_training = reference.outputs(probe, training=True)[output_key]
    report["training_max_abs_diff"] = _max_abs_diff(trained, expected_training,
                                                    "training-mode output")
  log(f"{release.handle_with_version}: verified against the Slim graph: "
      + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                  for k, v in report.items()))
  return report
