"""The verification reference: the original Slim graph, restored from the checkpoint file.

It stays independent of the format writers: its own construction (TF-Slim's
full network, `slim_graph.build_outputs`) in a `tf.compat.v1` session,
restored by a Saver from the checkpoint file, never from the values or graphs
a writer used. One reference serves every release of a model: each mode is
constructed once, in one graph that shares one set of variables (restored
once), and its outputs on the probe images are computed once.
"""
from __future__ import annotations

import numpy as np
import tensorflow.compat.v1 as tf

from checkpoints import integrity
from exporters.errors import ExportError
from exporters.network import slim_graph
from registry import Model


class SlimReference:
  """What every export of `model` must reproduce."""

  def __init__(self, model: Model, num_classes: int, checkpoint_path: str):
    self.model = model
    self.checkpoint_path = checkpoint_path
    self._num_classes = num_classes
    self._graph = tf.Graph()
    self._session = None
    self._images = None
    self._outputs = {}  # training -> {"logits", "features"} tensors.
    self._expected = {}  # training -> outputs on the probe images.
    self._regularization_losses = None
    self._batch_means = {}  # Batch norm scope -> its batch-mean tensor in training mode.
    self._build(training=False)

  @property
  def variables(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(name, shape) of every variable the network creates, in creation order."""
    return tuple((v.op.name, tuple(v.shape.as_list()))
                 for v in self._graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES))

  def _build(self, training: bool):
    if training in self._outputs:
      return self._outputs[training]
    with self._graph.as_default():
      if self._images is None:
        self._images = tf.placeholder(tf.float32, self.model.input_shape)
      # The second mode reuses the first one's variables. Its batch norms put
      # their moving-average updates into UPDATE_OPS, which is never run, so
      # the restored values stay as in the checkpoint; the decay then has no
      # effect on any output.
      before = len(self._graph.get_operations())
      with tf.variable_scope(tf.get_variable_scope(), reuse=bool(self._outputs)):
        self._outputs[training] = slim_graph.build_outputs(
            self.model, self._images, training=training, batch_norm_momentum=0.0,
            num_classes=self._num_classes)
      if training:
        for op in self._graph.get_operations()[before:]:
          if op.type.startswith("FusedBatchNorm"):
            # Slim names a batch norm's variables in its scope: beta is the offset input.
            scope = _variable_read_by(op.inputs[2]).rsplit("/", 1)[0]
            self._batch_means[scope] = op.outputs[1]
    return self._outputs[training]

  def _restored_session(self):
    if self._session is None:
      with self._graph.as_default():  # Saver.restore outside it would take the eager path.
        saver = tf.train.Saver(tf.global_variables())
        session = tf.Session(graph=self._graph)
        try:
          saver.restore(session, self.checkpoint_path)
        except (tf.errors.OpError, ValueError) as e:
          session.close()
          raise ExportError(f"the Slim reference cannot restore checkpoint "
                            f"{self.checkpoint_path!r}: {str(e).splitlines()[0]}") from None
      self._session = session
    return self._session

  def outputs(self, images: np.ndarray, training: bool = False) -> dict[str, np.ndarray]:
    """Runs the graph; training mode normalizes with batch statistics."""
    outputs = self._build(training)
    return self._restored_session().run(outputs, {self._images: images})

  def expected(self, training: bool = False) -> dict[str, np.ndarray]:
    """The outputs on `slim_graph.probe_images(model)`, computed once per mode."""
    if training not in self._expected:
      outputs = self._build(training)
      fetches = dict(outputs, batch_means=self._batch_means) if training else outputs
      values = self._restored_session().run(
          fetches, {self._images: slim_graph.probe_images(self.model)})
      batch_means = values.pop("batch_means", {})
      check_finite_outputs(dict(values, **batch_means), "training" if training else "inference")
      self._expected[training] = values
      if training:
        self._expected["batch_means"] = batch_means
    return self._expected[training]

  def batch_means(self) -> dict[str, np.ndarray]:
    """Batch norm scope -> the batch mean it normalizes the probe images' activations with in
    training mode (what a training step moves its moving mean toward)."""
    self.expected(training=True)
    return self._expected["batch_means"]

  def regularization_losses(self) -> dict[str, float]:
    """Variable name -> its L2 weight-decay loss, as the Slim arg scope defines them."""
    if self._regularization_losses is None:
      session = self._restored_session()
      losses = self._graph.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)
      names = [_variable_read_by(loss) for loss in losses]
      if len(set(names)) != len(names):
        raise ExportError("the Slim reference has more than one weight-decay loss per weight")
      values = dict(zip(names, session.run(losses)))
      check_finite_losses(values)
      self._regularization_losses = values
    return self._regularization_losses

  def close(self):
    if self._session is not None:
      self._session.close()
      self._session = None


# A comparison with a non-finite expectation proves nothing (NaN equals nothing,
# Inf is close to Inf), so the reference refuses to be one; these run before
# any writer compares the export with it.

def check_finite_outputs(outputs: dict[str, np.ndarray], mode: str) -> None:
  """Raises ExportError naming each output of the reference that is not finite."""
  bad = []
  for name, value in outputs.items():
    kinds = integrity.non_finite(value)
    if kinds:
      value = np.asarray(value)
      count = int(value.size - np.count_nonzero(np.isfinite(value)))
      bad.append(f"{kinds} in {name} ({count} of {value.size} values)")
  if bad:
    raise ExportError(f"non-finite reference output in {mode} mode: {'; '.join(bad)}; the "
                      f"checkpoint's values make the Slim network overflow")


def check_finite_losses(losses: dict[str, float]) -> None:
  """Raises ExportError naming the weights whose regularization loss is not finite."""
  bad = sorted((name, integrity.non_finite(value)) for name, value in losses.items()
               if integrity.non_finite(value))
  if bad:
    shown = ", ".join(f"{kinds} for {name}" for name, kinds in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    raise ExportError(f"non-finite regularization loss in the Slim reference: {shown}{more}")


def _variable_read_by(tensor) -> str:
  """The one variable a tensor (a regularization loss, a batch norm's offset) depends on."""
  found, seen, stack = set(), set(), [tensor.op]
  while stack:
    op = stack.pop()
    if op.type in ("VarHandleOp", "VariableV2"):
      found.add(op.name)
      continue
    for tensor in op.inputs:
      if tensor.op.name not in seen:
        seen.add(tensor.op.name)
        stack.append(tensor.op)
  if len(found) != 1:
    raise ValueError(f"{tensor.name} reads {sorted(found)}, not one variable")
  return found.pop()
