"""NASNet-A for ImageNet (Zoph et al. 2017, arXiv:1707.07012), TF-Slim layout.

Builders take images already scaled to [-1, 1] (the hub exports map their
[0, 1] inputs with 2*x-1) and return `(logits, end_points)`, where
`end_points["global_pool"]` is the feature vector after the final ReLU.
"""

from slim_nets import cells
from slim_nets.tf_slim_compat import slim

NORMAL_CELL = cells.CellSpec(
    combinations=(("separable_5x5_2", 0, "separable_3x3_2", 1),
                  ("separable_5x5_2", 1, "separable_3x3_2", 1),
                  ("avg_pool_3x3", 0, "none", 1),
                  ("avg_pool_3x3", 1, "avg_pool_3x3", 1),
                  ("separable_3x3_2", 0, "none", 0)),
    used_states=(0,))

REDUCTION_CELL = cells.CellSpec(
    combinations=(("separable_5x5_2", 0, "separable_7x7_2", 1),
                  ("max_pool_3x3", 0, "separable_7x7_2", 1),
                  ("avg_pool_3x3", 0, "separable_5x5_2", 1),
                  ("none", 3, "avg_pool_3x3", 2),
                  ("separable_3x3_2", 2, "max_pool_3x3", 0)),
    used_states=(0, 1, 2))


def nasnet_mobile_config() -> cells.NetConfig:
  return cells.NetConfig(num_cells=12, num_conv_filters=44, stem_multiplier=1.0,
                         filter_scaling_rate=2.0, num_reduction_layers=2,
                         drop_path_keep_prob=1.0, dense_dropout_keep_prob=0.5,
                         skip_reduction_layer_input=False,
                         total_num_cells=12 + 2 + 2)  # + reduction cells + stem cells


def nasnet_large_config() -> cells.NetConfig:
  return cells.NetConfig(num_cells=18, num_conv_filters=168, stem_multiplier=3.0,
                         filter_scaling_rate=2.0, num_reduction_layers=2,
                         drop_path_keep_prob=0.7, dense_dropout_keep_prob=0.5,
                         skip_reduction_layer_input=True,
                         total_num_cells=18 + 2 + 2)


def build_nasnet(images, config: cells.NetConfig, *, num_classes, is_training=False,
                 use_aux_head=False):
  """NASNet-A: stem, normal cells with two reduction cells between them, head."""
  end_points = {}
  with slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
    states = cells.imagenet_stem(images, config, REDUCTION_CELL, is_training)
    net = states[-1]
    reductions = cells.reduction_indices(config.num_cells, config.num_reduction_layers)
    aux_cell = reductions[1] - 1
    filter_scaling = 1.0
    cell_number = 2  # Counts every cell, stem included, for the path-dropout schedule.
    for i in range(config.num_cells):
      prev = states[-2]
      if i in reductions:
        filter_scaling *= config.filter_scaling_rate
        net = cells.build_cell(
            REDUCTION_CELL, net, states[-2], scope=f"reduction_cell_{reductions.index(i)}",
            num_filters=int(config.num_conv_filters * filter_scaling), stride=2,
            drop_path_keep_prob=cells.cell_drop_path_keep_prob(config, cell_number, is_training))
        cell_number += 1
        states.append(net)
        if not config.skip_reduction_layer_input:
          prev = states[-2]
      net = cells.build_cell(
          NORMAL_CELL, net, prev, scope=f"cell_{i}",
          num_filters=int(config.num_conv_filters * filter_scaling), stride=1,
          drop_path_keep_prob=cells.cell_drop_path_keep_prob(config, cell_number, is_training))
      cell_number += 1
      end_points[f"Cell_{i}"] = net
      if use_aux_head and num_classes and i == aux_cell:
        end_points["AuxLogits"] = cells.aux_head(net, num_classes, scope=f"aux_{i}")
      states.append(net)
    logits = cells.classifier_head(net, config, num_classes, is_training, end_points)
  return logits, end_points


def build_nasnet_mobile(images, *, num_classes, is_training=False, use_aux_head=False):
  return build_nasnet(images, nasnet_mobile_config(), num_classes=num_classes,
                      is_training=is_training, use_aux_head=use_aux_head)


def build_nasnet_large(images, *, num_classes, is_training=False, use_aux_head=False):
  return build_nasnet(images, nasnet_large_config(), num_classes=num_classes,
                      is_training=is_training, use_aux_head=use_aux_head)
