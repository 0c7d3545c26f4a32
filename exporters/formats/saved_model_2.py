"""Writes and verifies TF2 SavedModels (registry format "saved_model_2") for `hub.load` and `hub.KerasLayer`.

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

How the TF1-style Slim builder runs in TF2: `features` and `classify` of a
small tf.Module are decorated with tf_keras's `track_tf1_style_variables`
(exporters.compat.tf_keras_internals), and each release's `__call__` is a
`tf.function` around them (see SavedModel2Constructions). This reuses the one verified Slim builder
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
The saved bytes are made canonical (exporters.formats.canonical), so a
release is the same file whatever else its process traced before.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from exporters.compat import tf_internals, tf_keras_internals
from exporters.errors import ExportError
from exporters import verification
from exporters.formats import canonical
from exporters.verification import VerificationError
from exporters.network import slim_graph
from registry import SAVED_MODEL_2_FORMAT

# The serving signature's input and output names: the argument name of
# `__call__`, and the key TensorFlow gives a signature's single unnamed output.
SERVING_INPUT_KEY = "inputs"
SERVING_OUTPUT_KEY = "output_0"
# Batch norm's moving statistics: the only variables that must not train.
_MOVING_STATISTICS_SUFFIXES = ("/moving_mean", "/moving_variance")


def _variable_name(variable) -> str:
  """`conv0/weights:0` -> `conv0/weights` (the checkpoint's name)."""
  return variable.name.split(":")[0]


def _is_moving_statistic(name: str) -> bool:
  return name.endswith(_MOVING_STATISTICS_SUFFIXES)


def _network_module(model, values: dict[str, np.ndarray], num_classes: int):
  """A tf.Module whose `features` and `classify` build the network on its own variables."""
  import tensorflow as tf

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

  def checkpoint_scope():
    return tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(),
                                       custom_getter=from_checkpoint)

  class SlimNetwork(tf.Module):
    """Hosts the TF1-style Slim builder; the shim tracks its variables and regularizers."""

    @tf_keras_internals.track_tf1_style_variables
    def features(self, images, training: bool, batch_norm_momentum):
      with checkpoint_scope():
        return slim_graph.build_features(model, images, training=training,
                                         batch_norm_momentum=batch_norm_momentum,
                                         batch_norm_updates_collections=None)

    @tf_keras_internals.track_tf1_style_variables
    def classify(self, features, training: bool):
      with checkpoint_scope():
        return slim_graph.build_logits(model, features, training=training,
                                       num_classes=num_classes)

  return SlimNetwork(name=model.name)


def _regularization_loss_function(regularizer):
  import tensorflow as tf
  return tf.function(lambda: regularizer(), input_signature=[], autograph=False)


class SavedModel2Constructions:
  """A model's network traced once per mode; every TF2 release is derived from the traces.

  One eager pass at batch size 1 creates the variables (a tf.function that
  creates variables would trace twice). The feature vector is then traced
  once per mode (`training` is a Python bool), with `batch_norm_momentum` as
  a float32 scalar; the classification function calls that trace and adds
  the classifier, so the body is never constructed again. Each release's
  `__call__` is a thin tf.function with its version's default momentum that
  calls these traces, and `serving_default` calls its inference trace.
  Autograph is off: the Slim code branches on Python values only, and
  converting it made tracing about eight times slower.
  """

  format = SAVED_MODEL_2_FORMAT

  def __init__(self, releases, checkpoint, log: Callable[[str], None]):
    import tensorflow as tf

    model = releases[0].model
    self.checkpoint = checkpoint
    self._classification = any(r.module_type == "classification" for r in releases)
    self.images_spec = tf.TensorSpec(model.input_shape, tf.float32, name=SERVING_INPUT_KEY)
    classification = [r for r in releases if r.module_type == "classification"]
    network = _network_module(model, checkpoint.values,
                              slim_graph.num_classes(classification[0]) if classification else 0)
    log(f"{model.name}: creating the TF2 variables from the checkpoint")
    features = network.features(tf.zeros([1, *model.input_shape[1:]]), training=False,
                                batch_norm_momentum=tf.constant(0.0))
    self._variables = {"feature_vector": tf_keras_internals.shim_variables(network)}
    regularizers = {"feature_vector": tf_keras_internals.shim_regularizers(network)}
    if self._classification:
      network.classify(features, training=False)
      self._variables["classification"] = tf_keras_internals.shim_variables(network)
      regularizers["classification"] = tf_keras_internals.shim_regularizers(network)
    # One loss function per regularized weight, shared by the releases holding it.
    losses = {name: _regularization_loss_function(r)
              for name, r in regularizers.get("classification",
                                              regularizers["feature_vector"]).items()}
    self._losses = {t: [losses[name] for name in r] for t, r in regularizers.items()}

    images = tf.TensorSpec(model.input_shape, tf.float32)
    momentum = tf.TensorSpec([], tf.float32)
    self._features = tf.function(network.features, autograph=False)
    self._logits = tf.function(
        lambda images, training, batch_norm_momentum: network.classify(
            self._features(images, training, batch_norm_momentum), training),
        autograph=False)
    # Traced in the save context, where tf.saved_model.save looks traces up.
    with tf_internals.saving_context():
      for training in (False, True):
        log(f"{model.name}: tracing the TF2 network, training={training}")
        self._features.get_concrete_function(images, training, momentum)
        if self._classification:
          self._logits.get_concrete_function(images, training, momentum)

  def export_object(self, release):
    """Returns (root object, signatures) of `release`, ready for tf.saved_model.save."""
    import tensorflow as tf

    network_call = self._logits if release.module_type == "classification" else self._features
    default_momentum = float(release.version.batch_norm_momentum)
    momentum_spec = tf.TensorSpec([], tf.float32, name="batch_norm_momentum")

    def __call__(inputs, training=False, batch_norm_momentum=default_momentum):
      return network_call(inputs, training, batch_norm_momentum)
    call = tf.function(__call__, autograph=False)
    with tf_internals.saving_context():
      for training in (False, True):
        call.get_concrete_function(self.images_spec, training=training,
                                   batch_norm_momentum=momentum_spec)

    variables = self._variables[release.module_type]
    wanted = slim_graph.exported_variable_names(release.module_type, self.checkpoint.values)
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
    root.regularization_losses = list(self._losses[release.module_type])

    signatures = None
    if release.version.serving_signature:
      @tf.function(input_signature=[self.images_spec], autograph=False)
      def serving_default(inputs):
        # A momentum tensor, so this calls the traced inference function (no new trace).
        return {SERVING_OUTPUT_KEY: call(inputs, training=False,
                                         batch_norm_momentum=tf.constant(default_momentum))}
      with tf_internals.saving_context():
        signatures = {"serving_default": serving_default.get_concrete_function()}
    return root, signatures

  def write(self, release, export_dir: str, log: Callable[[str], None] = print) -> None:
    """Saves `release`'s object to `export_dir`, with canonical bytes."""
    import tensorflow as tf

    left_out = len(self.checkpoint.values) - len(
        slim_graph.exported_variable_names(release.module_type, self.checkpoint.values))
    if left_out:
      log(f"{release.handle_with_version}: leaving out {left_out} classifier variable(s)")
    root, signatures = self.export_object(release)
    log(f"{release.handle_with_version}: saving a TF2 SavedModel with {len(root.variables)} "
        f"variables, {len(root.regularization_losses)} regularization losses"
        + (", and a serving_default signature" if signatures else ""))
    tf.saved_model.save(root, export_dir, signatures=signatures)
    canonical.make_saved_model_canonical(export_dir)

  def verify(self, release, export_dir: str, reference, log) -> dict:
    return verify(release, export_dir, self.checkpoint, reference, log)

  def close(self) -> None:
    self._variables = self._losses = self._features = self._logits = None


def _verify_variables(loaded, checkpoint, module_type: str) -> dict:
  """Exactly the checkpoint's variables, bitwise; only moving statistics non-trainable."""
  names = [_variable_name(v) for v in loaded.variables]
  if len(set(names)) != len(names):
    raise VerificationError("the exported variables have duplicate names")
  expected = {n: checkpoint.values[n]
              for n in slim_graph.exported_variable_names(module_type, checkpoint.values)}
  if problem := verification.different_variables(
      {n: v.numpy() for n, v in zip(names, loaded.variables)}, expected):
    raise VerificationError(f"the exported variables: {problem}")
  trainable = {_variable_name(v) for v in loaded.trainable_variables}
  wrong = sorted(n for n in names if (n in trainable) == _is_moving_statistic(n))
  if wrong:
    raise VerificationError(f"trainability is wrong for {len(wrong)} variable(s) (moving "
                            f"statistics must be non-trainable, all else trainable): "
                            f"{', '.join(wrong[:5])}")
  return {"variables": len(names), "trainable_variables": len(trainable)}


def _verify_regularization_losses(loaded, reference) -> dict:
  """One zero-argument loss per weight the Slim arg scope regularizes, equal in value."""
  import tensorflow as tf

  exported = {_variable_name(v) for v in loaded.variables}
  # One function calling them all: one instantiation instead of one per loss.
  all_losses = tf.function(lambda: [f() for f in loaded.regularization_losses], autograph=False)
  count = verification.compare_losses(
      "the export's regularization losses", [float(v) for v in all_losses()],
      [loss for name, loss in reference.regularization_losses().items() if name in exported])
  return {"regularization_losses": count}


def _moving_statistics(loaded) -> dict[str, np.ndarray]:
  return {_variable_name(v): v.numpy() for v in loaded.variables
          if _is_moving_statistic(_variable_name(v))}


# The stem convolution's batch norm: its batch mean comes before any path
# dropout, so it is deterministic in every model's training mode.
_STEM_BATCH_NORM = "conv0_bn"


def _verify_training_step(release, before: dict, after: dict, reference) -> float:
  """A training call with the version's default momentum moved the moving statistics: each
  moving mean by that momentum toward the reference's batch mean (all of them without path
  dropout, else the stem's, the only ones ahead of any random path)."""
  unchanged = [n for n, v in after.items() if np.array_equal(v, before[n])]
  if unchanged:
    raise VerificationError(f"a training call left {len(unchanged)} moving statistic(s) "
                            f"unchanged: {', '.join(unchanged[:5])}")
  batch_means = reference.batch_means()
  every = verification.training_output_is_deterministic(release.model, verification.FEATURES)
  scopes = [s for s in batch_means if every or s == _STEM_BATCH_NORM]
  return verification.check_moving_means(
      "a training call with the default momentum", float(release.version.batch_norm_momentum),
      [before[f"{s}/moving_mean"] for s in scopes], [after[f"{s}/moving_mean"] for s in scopes],
      [batch_means[s] for s in scopes])


def verify(release, export_dir: str, checkpoint, reference, log: Callable[[str], None] = print
           ) -> dict:
  """Loads the export once with hub.load and checks it against the Slim graph (the rules of
  exporters.verification); raises VerificationError naming what differs."""
  # Grappler's options are left as they are: changing them, even and back, changes the
  # config every later trace in this process embeds, and so a release's bytes.
  return _verify(release, export_dir, checkpoint, reference, log)


def _verify(release, export_dir: str, checkpoint, reference, log) -> dict:
  import tensorflow as tf
  import tensorflow_hub as hub

  output_key = verification.OUTPUT_OF_MODULE_TYPE[release.module_type]
  loaded = hub.load(export_dir)
  report = _verify_variables(loaded, checkpoint, release.module_type)
  report.update(_verify_regularization_losses(loaded, reference))

  probe = slim_graph.probe_images(release.model)
  expected = reference.expected(training=False)[output_key]
  before = _moving_statistics(loaded)
  actual = loaded(tf.constant(probe), training=False).numpy()
  report["inference_max_abs_diff"] = verification.compare("inference output", actual, expected)
  if any(not np.array_equal(v, before[n]) for n, v in _moving_statistics(loaded).items()):
    raise VerificationError("an inference call changed batch norm's moving statistics")

  if release.version.serving_signature:
    if "serving_default" not in loaded.signatures:
      raise VerificationError("the export lacks its serving_default signature")
    served = loaded.signatures["serving_default"](**{SERVING_INPUT_KEY: tf.constant(probe)})
    report["serving_max_abs_diff"] = verification.compare(
        "serving_default output", served[SERVING_OUTPUT_KEY].numpy(), expected)

  # Training mode (the version's default momentum) updates this in-memory copy only.
  trained = loaded(tf.constant(probe), training=True).numpy()
  report["moving_mean_max_rel_err"] = _verify_training_step(
      release, before, _moving_statistics(loaded), reference)
  if verification.training_output_is_deterministic(release.model, output_key):
    report["training_max_abs_diff"] = verification.compare(
        "training-mode output", trained, reference.expected(training=True)[output_key])
  else:  # Random (dropout): only its shape and finiteness are checked.
    verification.check_shape("training-mode output", trained, expected.shape)
  log(f"{release.handle_with_version}: verified against the Slim graph: "
      + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                  for k, v in report.items()))
  return report
