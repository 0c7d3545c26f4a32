"""Building blocks shared by NASNet-A and PNASNet-5: operations, cells, stem, head.

Both networks are stacks of cells found by architecture search. A cell takes
two hidden states (the previous cell's output and the one before it), runs
five "combinations" (two operations, each on an earlier hidden state, summed)
and concatenates the hidden states no combination consumed. The variable
names follow the released TF-Slim checkpoints exactly (see the manifests in
../shared/checkpoints), so scope names here are part of the file format.

Hidden-state numbering inside a cell: 0 is the current input (after a ReLU,
1x1 conv and batch norm), 1 is the previous input (resized to match), and
2..6 are the outputs of the five combinations.
"""
from __future__ import annotations

import dataclasses

import tensorflow.compat.v1 as tf

from slim_nets.tf_slim_compat import slim


@dataclasses.dataclass(frozen=True)
class CellSpec:
  """One searched cell: five (left op, left input, right op, right input)."""
  combinations: tuple[tuple[str, int, str, int], ...]
  # Hidden states consumed by some combination (or deliberately dropped);
  # all others are concatenated to form the cell's output.
  used_states: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class NetConfig:
  """Hyperparameters of one network variant (what TF-Slim calls hparams)."""
  num_cells: int
  num_conv_filters: int
  stem_multiplier: float
  filter_scaling_rate: float
  num_reduction_layers: int
  drop_path_keep_prob: float  # Final (maximal-dropout) value of training.
  dense_dropout_keep_prob: float
  # Whether a cell after a reduction takes the reduction's input (True) or the
  # reduction's output's predecessor (False) as its "previous" hidden state.
  skip_reduction_layer_input: bool
  total_num_cells: int  # Normalizer of the per-cell path-dropout schedule.


def reduction_indices(num_cells: int, num_reductions: int) -> list[int]:
  """Cell indices before which the network halves resolution (evenly spaced)."""
  return [int(num_cells * k / (num_reductions + 1)) for k in range(1, num_reductions + 1)]


def channels(x) -> int:
  return int(x.shape[-1])


def drop_path(net, keep_prob: float):
  """Drops the whole path for a random subset of examples (scaled to keep the mean)."""
  batch_size = tf.shape(net)[0]
  keep = tf.floor(keep_prob + tf.random_uniform([batch_size, 1, 1, 1], dtype=tf.float32))
  return net * tf.cast(1.0 / keep_prob, net.dtype) * tf.cast(keep, net.dtype)


def factorized_reduction(net, num_filters: int, stride: int):
  """Matches a hidden state's resolution and width to another's.

  For stride 2 it concatenates two half-width 1x1 convolutions over strided
  subsamplings offset by one pixel, so no input pixel is skipped entirely.
  """
  if stride == 1:
    net = slim.conv2d(net, num_filters, 1, scope="path_conv")
    return slim.batch_norm(net, scope="path_bn")
  strides = [1, stride, stride, 1]
  path1 = tf.nn.avg_pool(net, [1, 1, 1, 1], strides, "VALID")
  path1 = slim.conv2d(path1, num_filters // 2, 1, scope="path1_conv")
  # Shift by one pixel: pad bottom/right with zeros and drop the first row/column.
  path2 = tf.pad(net, [[0, 0], [0, 1], [0, 1], [0, 0]])[:, 1:, 1:, :]
  path2 = tf.nn.avg_pool(path2, [1, 1, 1, 1], strides, "VALID")
  path2 = slim.conv2d(path2, num_filters // 2 + num_filters % 2, 1, scope="path2_conv")
  net = tf.concat([path1, path2], axis=3)
  return slim.batch_norm(net, scope="final_path_bn")


def _separable_stack(net, op: str, num_filters: int, stride: int):
  """`separable_KxK_N`: N x (ReLU, depthwise-separable KxK conv, batch norm)."""
  kernel_text, repeats = op[len("separable_"):].split("_")
  kernel = int(kernel_text.split("x")[0])
  for layer in range(1, int(repeats) + 1):
    net = tf.nn.relu(net)
    net = slim.separable_conv2d(net, num_filters, kernel, depth_multiplier=1, stride=stride,
                                scope=f"separable_{kernel}x{kernel}_{layer}")
    net = slim.batch_norm(net, scope=f"bn_sep_{kernel}x{kernel}_{layer}")
    stride = 1  # Only the first layer of the stack downsamples.
  return net


def _apply_operation(net, op: str, num_filters: int, stride: int, drop_path_keep_prob):
  in_filters = channels(net)
  if op.startswith("separable_"):
    net = _separable_stack(net, op, num_filters, stride)
  elif op == "none":
    if stride > 1 or in_filters != num_filters:
      net = tf.nn.relu(net)
      net = slim.conv2d(net, num_filters, 1, stride=stride, scope="1x1")
      net = slim.batch_norm(net, scope="bn_1")
  elif op in ("avg_pool_3x3", "max_pool_3x3"):
    pool = slim.avg_pool2d if op.startswith("avg") else slim.max_pool2d
    net = pool(net, [3, 3], stride=stride, padding="SAME")
    if in_filters != num_filters:
      net = slim.conv2d(net, num_filters, 1, scope="1x1")
      net = slim.batch_norm(net, scope="bn_1")
  else:
    raise ValueError(f"unknown cell operation {op!r}")
  if op != "none" and drop_path_keep_prob is not None:
    net = drop_path(net, drop_path_keep_prob)
  return net


def _match_previous(prev, current, num_filters: int):
  """Brings the previous hidden state to the current one's resolution and width."""
  if prev is None:
    return current
  if int(prev.shape[2]) != int(current.shape[2]):
    return factorized_reduction(tf.nn.relu(prev), num_filters, stride=2)
  if channels(prev) != num_filters:
    prev = slim.conv2d(tf.nn.relu(prev), num_filters, 1, scope="prev_1x1")
    return slim.batch_norm(prev, scope="prev_bn")
  return prev


def build_cell(spec: CellSpec, net, prev, *, scope: str, num_filters: int, stride: int,
               drop_path_keep_prob=None):
  """Builds one cell; `drop_path_keep_prob=None` disables path dropout."""
  with tf.variable_scope(scope):
    prev = _match_previous(prev, net, num_filters)
    net = tf.nn.relu(net)
    net = slim.conv2d(net, num_filters, 1, scope="1x1")
    net = slim.batch_norm(net, scope="beginning_bn")
    states = [net, prev]
    for i, (left_op, left_in, right_op, right_in) in enumerate(spec.combinations):
      with tf.variable_scope(f"comb_iter_{i}"):
        outputs = []
        for side, op, index in (("left", left_op, left_in), ("right", right_op, right_in)):
          # Only the cell's two inputs are downsampled; later states already are.
          op_stride = stride if index < 2 else 1
          with tf.variable_scope(side):
            outputs.append(_apply_operation(states[index], op, num_filters, op_stride,
                                            drop_path_keep_prob))
        with tf.variable_scope("combine"):
          states.append(outputs[0] + outputs[1])
    with tf.variable_scope("cell_output"):
      final = states[-1]
      unused = []
      for index, state in enumerate(states):
        if index in spec.used_states:
          continue
        if (int(state.shape[2]) != int(final.shape[2])
            or channels(state) != channels(final)):
          with tf.variable_scope(f"reduction_{index}"):
            reduce_stride = 2 if int(state.shape[2]) != int(final.shape[2]) else 1
            state = factorized_reduction(state, channels(final), reduce_stride)
        unused.append(state)
      return tf.concat(unused, axis=3)


def cell_drop_path_keep_prob(config: NetConfig, cell_number: int, is_training: bool):
  """Path-dropout keep probability of one cell, or None when inactive.

  TF-Slim scales the drop rate linearly with depth and ramps it up over the
  training steps; the published models hold the ramp at its end (maximal
  dropout), independent of any global step, so fine-tuning sees the rate the
  final checkpoint was trained with.
  """
  if not is_training or config.drop_path_keep_prob >= 1.0:
    return None
  depth_ratio = (cell_number + 1) / float(config.total_num_cells)
  return 1.0 - depth_ratio * (1.0 - config.drop_path_keep_prob)


def imagenet_stem(images, config: NetConfig, stem_cell: CellSpec, is_training: bool):
  """Strided 3x3 conv plus two strided cells; returns the list of hidden states."""
  net = slim.conv2d(images, int(32 * config.stem_multiplier), [3, 3], stride=2,
                    padding="VALID", scope="conv0")
  net = slim.batch_norm(net, scope="conv0_bn")
  outputs = [None, net]
  filter_scaling = 1.0 / config.filter_scaling_rate ** 2
  for i in range(2):
    net = build_cell(stem_cell, outputs[-1], outputs[-2], scope=f"cell_stem_{i}",
                     num_filters=int(config.num_conv_filters * filter_scaling), stride=2,
                     drop_path_keep_prob=cell_drop_path_keep_prob(config, i, is_training))
    outputs.append(net)
    filter_scaling *= config.filter_scaling_rate
  return outputs


def aux_head(net, num_classes: int, scope: str):
  """The auxiliary classifier used only in the original training."""
  with tf.variable_scope(scope):
    net = tf.identity(tf.nn.relu(net))
    with tf.variable_scope("aux_logits"):
      net = slim.avg_pool2d(net, [5, 5], stride=3, padding="VALID")
      net = slim.conv2d(net, 128, [1, 1], scope="proj")
      net = tf.nn.relu(slim.batch_norm(net, scope="aux_bn0"))
      net = slim.conv2d(net, 768, net.shape[1:3], padding="VALID")
      net = tf.nn.relu(slim.batch_norm(net, scope="aux_bn1"))
      net = tf.reshape(net, [-1, 768])  # Spatial size is 1x1 here.
      return slim.fully_connected(net, num_classes)


def classifier_head(net, config: NetConfig, num_classes: int, is_training: bool, end_points):
  """Final ReLU, global average pool (the feature vector), dropout, logits."""
  with tf.variable_scope("final_layer"):
    net = tf.nn.relu(net)
    net = tf.reduce_mean(net, [1, 2], name="global_pool")
    end_points["global_pool"] = net
    if not num_classes:
      return None
    logits = _dropout_and_logits(net, config, num_classes, is_training)
    end_points["Logits"] = logits
    end_points["Predictions"] = tf.nn.softmax(logits, name="predictions")
    return logits


def classifier(features, config: NetConfig, num_classes: int, is_training: bool):
  """The classifier alone, on a feature vector built before (`num_classes=0`).

  Same variables as the full network's head, so a classification module can
  be its feature-vector module with this added.
  """
  with tf.variable_scope("final_layer"):
    return _dropout_and_logits(features, config, num_classes, is_training)


def _dropout_and_logits(features, config: NetConfig, num_classes: int, is_training: bool):
  net = slim.dropout(features, config.dense_dropout_keep_prob, is_training=is_training,
                     scope="dropout")
  return slim.fully_connected(net, num_classes)


def arg_scope(weight_decay: float, batch_norm_decay, batch_norm_epsilon: float = 1e-3,
              batch_norm_updates_collections=tf.GraphKeys.UPDATE_OPS):
  """TF-Slim arg scope of both families: L2 weight decay, bias-free convs, batch norm.

  `batch_norm_decay` may be a float or a scalar tensor. Moving-average
  updates go to `batch_norm_updates_collections`, or, when None, run as part
  of each batch norm's output (what a TF2 SavedModel needs).
  """
  if batch_norm_updates_collections is not None:
    # A list (not the bare UPDATE_OPS key) keeps slim on its own fused batch
    # norm, which accepts a tensor decay, instead of the Keras layer path.
    batch_norm_updates_collections = [batch_norm_updates_collections]
  batch_norm_params = dict(decay=batch_norm_decay, epsilon=batch_norm_epsilon, scale=True,
                           fused=True, updates_collections=batch_norm_updates_collections)
  regularizer = slim.l2_regularizer(weight_decay)
  initializer = slim.variance_scaling_initializer(mode="FAN_OUT")
  with slim.arg_scope([slim.fully_connected, slim.conv2d, slim.separable_conv2d],
                      weights_regularizer=regularizer, weights_initializer=initializer):
    with slim.arg_scope([slim.fully_connected], activation_fn=None, scope="FC"):
      with slim.arg_scope([slim.conv2d, slim.separable_conv2d], activation_fn=None,
                          biases_initializer=None):
        with slim.arg_scope([slim.batch_norm], **batch_norm_params) as scope:
          return scope
