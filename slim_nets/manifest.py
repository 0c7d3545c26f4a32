"""Lists the variables a model's graph creates, in the checkpoint manifest format.

  python -m slim_nets.manifest --model=nasnet_mobile [--aux]

prints `name<TAB>d0,d1,...` per variable (as ../shared/checkpoints/manifests).
Libraries import `graph_variables` from here; the flags are defined only
when this module runs as a program, so importing it never clashes with the
importer's own flags.
"""
import functools
import sys

from absl import app, flags


@functools.lru_cache(maxsize=None)
def graph_variables(model: str, aux: bool = False) -> tuple[tuple[str, tuple[int, ...]], ...]:
  """(name, shape) of every variable the graph for `model` creates, in creation order.

  Cached per process: building a graph costs seconds, and fetch, export and
  verification all ask for the same list.
  """
  import tensorflow.compat.v1 as tf

  import registry
  import slim_nets
  slim_nets.get_net(model)  # An unknown name fails here, naming the known ones.
  reg = registry.default()
  entry = reg.model(model)
  graph = tf.Graph()
  with graph.as_default():
    images = tf.placeholder(tf.float32, [1, *entry.input_shape[1:]])
    # Training mode: the aux head exists only there in TF-Slim's own graphs.
    # The variables do not depend on the batch-norm decay; the registry's
    # classifier width decides the classifier's shape.
    slim_nets.build(model, images, is_training=aux, use_aux_head=aux, batch_norm_decay=0.0,
                    weight_decay=entry.weight_decay, num_classes=reg.publisher.num_classes)
    return tuple((v.op.name, tuple(v.shape.as_list())) for v in tf.global_variables())


def format_manifest(variables) -> str:
  return "".join(f"{name}\t{','.join(map(str, shape))}\n" for name, shape in variables)


def main(argv):
  del argv
  try:
    variables = graph_variables(flags.FLAGS.model, flags.FLAGS.aux)
  except ValueError as e:
    sys.exit(f"error: {e}")
  sys.stdout.write(format_manifest(variables))


if __name__ == "__main__":
  flags.DEFINE_string("model", None, "Network name, e.g. nasnet_mobile.", required=True)
  flags.DEFINE_bool("aux", False, "Include the auxiliary head's variables.")
  app.run(main)
