"""PNASNet-5 for ImageNet (Liu et al. 2017, arXiv:1712.00559), TF-Slim layout.

Unlike NASNet-A, PNASNet uses one cell type throughout: cells at the
reduction points (and the two stem cells) run it with stride 2.
Builders take images scaled to [-1, 1] and return `(logits, end_points)`.
"""

from slim_nets import cells
from slim_nets.tf_slim_compat import slim

CELL = cells.CellSpec(
    combinations=(("separable_5x5_2", 1, "max_pool_3x3", 1),
                  ("separable_7x7_2", 0, "max_pool_3x3", 0),
                  ("separable_5x5_2", 0, "separable_3x3_2", 0),
                  ("separable_3x3_2", 4, "max_pool_3x3", 0),
                  ("separable_3x3_2", 1, "none", 0)),
    used_states=(0, 1))


def pnasnet_large_config() -> cells.NetConfig:
  return cells.NetConfig(num_cells=12, num_conv_filters=216, stem_multiplier=3.0,
                         filter_scaling_rate=2.0, num_reduction_layers=2,
                         drop_path_keep_prob=0.6, dense_dropout_keep_prob=0.5,
                         skip_reduction_layer_input=True,
                         total_num_cells=12 + 2)  # + stem cells


def pnasnet_mobile_config() -> cells.NetConfig:
  return cells.NetConfig(num_cells=9, num_conv_filters=54, stem_multiplier=1.0,
                         filter_scaling_rate=2.0, num_reduction_layers=2,
                         drop_path_keep_prob=1.0, dense_dropout_keep_prob=0.5,
                         skip_reduction_layer_input=True,
                         total_num_cells=9 + 2)


def build_pnasnet(images, config: cells.NetConfig, *, num_classes, is_training=False,
                  use_aux_head=False):
  end_points = {}
  with slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
    states = cells.imagenet_stem(images, config, CELL, is_training)
    net = states[-1]
    reductions = cells.reduction_indices(config.num_cells, config.num_reduction_layers)
    aux_cell = reductions[1] - 1
    filter_scaling = 1.0
    for i in range(config.num_cells):
      stride = 1
      if i in reductions:
        stride = 2
        filter_scaling *= config.filter_scaling_rate
      net = cells.build_cell(
          CELL, net, states[-2], scope=f"cell_{i}",
          num_filters=int(config.num_conv_filters * filter_scaling), stride=stride,
          drop_path_keep_prob=cells.cell_drop_path_keep_prob(config, i + 2, is_training))
      end_points[f"Cell_{i}"] = net
      states.append(net)
      if use_aux_head and num_classes and i == aux_cell:
        end_points["AuxLogits"] = cells.aux_head(net, num_classes, scope=f"aux_{i}")
    logits = cells.classifier_head(net, config, num_classes, is_training, end_points)
  return logits, end_points


def build_pnasnet_large(images, *, num_classes, is_training=False, use_aux_head=False):
  return build_pnasnet(images, pnasnet_large_config(), num_classes=num_classes,
                       is_training=is_training, use_aux_head=use_aux_head)


def build_pnasnet_mobile(images, *, num_classes, is_training=False, use_aux_head=False):
  return build_pnasnet(images, pnasnet_mobile_config(), num_classes=num_classes,
                       is_training=is_training, use_aux_head=use_aux_head)
