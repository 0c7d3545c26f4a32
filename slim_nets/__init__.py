"""TF-Slim graph builders for NASNet-A and PNASNet-5 (graph code only).

`NETS` maps each model name to its builder and config, the way TF-Slim's
nets_factory does; `build()` applies the arg scope both families share
(cells.arg_scope, with the caller's weight decay: the registry's) and builds.
Importing this package applies the tf-slim compatibility fixes first.
"""
import collections

import tensorflow.compat.v1 as tf

from slim_nets import tf_slim_compat  # noqa: F401  (must precede any tf_slim use)
from slim_nets import cells, nasnet, pnasnet
from slim_nets.tf_slim_compat import slim

Net = collections.namedtuple("Net", ["build", "config"])

NETS = {
    "nasnet_mobile": Net(nasnet.build_nasnet_mobile, nasnet.nasnet_mobile_config),
    "nasnet_large": Net(nasnet.build_nasnet_large, nasnet.nasnet_large_config),
    "pnasnet_large": Net(pnasnet.build_pnasnet_large, pnasnet.pnasnet_large_config),
    "pnasnet_mobile": Net(pnasnet.build_pnasnet_mobile, pnasnet.pnasnet_mobile_config),
}


def get_net(name: str) -> Net:
  try:
    return NETS[name]
  except KeyError:
    raise ValueError(f"unknown network {name!r}; known: {', '.join(NETS)}") from None


def build(name, images, *, num_classes, batch_norm_decay, weight_decay, is_training=False,
          use_aux_head=False, batch_norm_updates_collections=tf.GraphKeys.UPDATE_OPS):
  """Builds network `name` under its arg scope; returns (logits, end_points).

  `images` are the network's own input, scaled to [-1, 1]. `num_classes=0`
  stops at the feature vector (`end_points["global_pool"]`), to which
  `build_classifier` can add the classifier.
  """
  net = get_net(name)
  with slim.arg_scope(cells.arg_scope(weight_decay, batch_norm_decay,
                                      batch_norm_updates_collections=batch_norm_updates_collections)):
    return net.build(images, num_classes=num_classes, is_training=is_training,
                     use_aux_head=use_aux_head)


def build_classifier(name, features, *, num_classes, weight_decay, is_training=False):
  """The classifier of network `name` on its feature vector; returns the logits."""
  net = get_net(name)
  # Batch norm is not used by the classifier; its arg scope needs a decay all the same.
  with slim.arg_scope(cells.arg_scope(weight_decay, batch_norm_decay=0.0)):
    with slim.arg_scope([slim.dropout], is_training=is_training):
      return cells.classifier(features, net.config(), num_classes, is_training)
