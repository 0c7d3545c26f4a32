"""The Slim graph as a hub model sees it: [0, 1] images in, logits and features out.

Both export formats and the verification reference build the network
through here, so the input convention (the network sees 2*x-1) and the
output names are stated once.
"""
from __future__ import annotations

import numpy as np
import tensorflow.compat.v1 as tf

import slim_nets
from registry import Model, Release


# The classifier layer (slim_nets.cells.classifier_head): feature-vector
# exports leave it out, as the published ones do ("save the space occupied by
# the classification layer").
CLASSIFIER_SCOPE = "final_layer/FC/"


def exported_variable_names(module_type: str, checkpoint_names) -> list[str]:
  """The checkpoint variables an export of `module_type` holds (in the given order)."""
  if module_type == "classification":
    return list(checkpoint_names)
  return [n for n in checkpoint_names if not n.startswith(CLASSIFIER_SCOPE)]


def num_classes(release: Release) -> int:
  """The classifier's width (the registry's); 0 for a feature vector, which has none."""
  if release.module_type == "classification":
    return release.registry.publisher.num_classes
  return 0


def build_outputs(model: Model, images, *, training: bool, batch_norm_momentum, num_classes: int,
                  batch_norm_updates_collections=tf.GraphKeys.UPDATE_OPS) -> dict:
  """Builds all of `model` on [0, 1] `images`; returns {"logits", "features"} tensors.

  The verification reference's construction: TF-Slim's own full network.
  `num_classes=0` leaves the classifier out; the result then has no "logits".
  """
  logits, end_points = slim_nets.build(
      model.name, 2.0 * images - 1.0, is_training=training, num_classes=num_classes,
      use_aux_head=False, batch_norm_decay=batch_norm_momentum, weight_decay=model.weight_decay,
      batch_norm_updates_collections=batch_norm_updates_collections)
  outputs = {"features": end_points["global_pool"]}
  if num_classes:
    outputs["logits"] = logits
  return outputs


def build_features(model: Model, images, *, training: bool, batch_norm_momentum,
                   batch_norm_updates_collections):
  """The network without its classifier on [0, 1] `images`: the feature vector.

  `batch_norm_momentum` may be a scalar tensor. With
  `batch_norm_updates_collections=None` the moving-average updates run with
  the outputs (TF2 style); otherwise they go to that collection (TF1 style).
  """
  return build_outputs(model, images, training=training, batch_norm_momentum=batch_norm_momentum,
                       num_classes=0,
                       batch_norm_updates_collections=batch_norm_updates_collections)["features"]


def build_logits(model: Model, features, *, training: bool, num_classes: int):
  """The classifier on `build_features`' output: what a classification module adds."""
  return slim_nets.build_classifier(model.name, features, num_classes=num_classes,
                                    weight_decay=model.weight_decay, is_training=training)


def probe_images(model: Model, batch_size: int = 2, seed: int = 0) -> np.ndarray:
  """A deterministic batch of [0, 1] images for verification."""
  rng = np.random.RandomState(seed)
  return rng.uniform(0.0, 1.0, (batch_size, *model.input_shape[1:])).astype(
      np.float32)
