"""The Slim graph as a hub model sees it: [0, 1] images in, logits and features out.

Both export formats and the verification reference build the network
through here, so the input convention (the network sees 2*x-1) and the
output names are stated once.
"""
from __future__ import annotations

import numpy as np
import tensorflow.compat.v1 as tf

import slim_nets
from registry import Model


# The classifier layer (slim_nets.cells.classifier_head): feature-vector
# exports leave it out, as the published ones do ("save the space occupied by
# the classification layer").
CLASSIFIER_SCOPE = "final_layer/FC/"


def exported_variable_names(module_type: str, checkpoint_names) -> list[str]:
  """The checkpoint variables an export of `module_type` holds (in the given order)."""
  if module_type == "classification":
    return list(checkpoint_names)
  return [n for n in checkpoint_names if not n.startswith(CLASSIFIER_SCOPE)]


def build_outputs(model: Model, images, *, training: bool, batch_norm_momentum=0.9997,
                  batch_norm_updates_collections=tf.GraphKeys.UPDATE_OPS,
                  num_classes: int = 1001) -> dict:
  """Builds `model` on [0, 1] `images`; returns {"logits", "features"} tensors.

  `batch_norm_momentum` may be a scalar tensor. With
  `batch_norm_updates_collections=None` the moving-average updates run with
  the outputs (TF2 style); otherwise they go to that collection (TF1 style).
  `num_classes=0` leaves the classifier out (feature-vector modules); the
  result then has no "logits".
  """
  logits, end_points = slim_nets.build(
      model.name, 2.0 * images - 1.0, is_training=training, num_classes=num_classes,
      use_aux_head=False, batch_norm_decay=batch_norm_momentum,
      batch_norm_updates_collections=batch_norm_updates_collections)
  outputs = {"features": end_points["global_pool"]}
  if num_classes:
    outputs["logits"] = logits
  return outputs


def probe_images(model: Model, batch_size: int = 2, seed: int = 0) -> np.ndarray:
  """A deterministic batch of [0, 1] images for verification."""
  rng = np.random.RandomState(seed)
  return rng.uniform(0.0, 1.0, (batch_size, model.image_size, model.image_size, 3)).astype(
      np.float32)


class SlimReference:
  """The original Slim graph restored from a checkpoint: what exports must reproduce."""

  def __init__(self, model: Model, checkpoint_path: str):
    self.model = model
    self.checkpoint_path = checkpoint_path
    self._sessions = {}

  def _session(self, training: bool):
    if training not in self._sessions:
      graph = tf.Graph()
      with graph.as_default():
        images = tf.placeholder(tf.float32, [None, self.model.image_size, self.model.image_size, 3])
        outputs = build_outputs(self.model, images, training=training,
                                batch_norm_updates_collections=None)
        saver = tf.train.Saver(tf.global_variables())
        session = tf.Session(graph=graph)
        saver.restore(session, self.checkpoint_path)
      self._sessions[training] = (session, images, outputs)
    return self._sessions[training]

  def outputs(self, images: np.ndarray, training: bool = False) -> dict[str, np.ndarray]:
    """Runs the graph; training mode uses batch statistics (and updates its own copy)."""
    session, placeholder, outputs = self._session(training)
    return session.run(outputs, {placeholder: images})

  def regularization_losses(self) -> dict[str, float]:
    """Variable name -> its L2 weight-decay loss, as the Slim arg scope defines them."""
    session, _, _ = self._session(False)
    losses = session.graph.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)
    names = [_variable_read_by(loss) for loss in losses]
    return dict(zip(names, session.run(losses)))

  def close(self):
    for session, _, _ in self._sessions.values():
      session.close()
    self._sessions.clear()


def _variable_read_by(loss) -> str:
  """The one variable a regularization loss tensor depends on."""
  found, seen, stack = set(), set(), [loss.op]
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
    raise ValueError(f"regularization loss {loss.name} reads {sorted(found)}, not one variable")
  return found.pop()
