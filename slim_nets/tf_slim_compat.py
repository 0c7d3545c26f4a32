"""Makes tf-slim 1.1.0 usable on TensorFlow 2.21 (applied on import).

tf-slim 1.1.0 is the last release and breaks on current TensorFlow in two
known ways; each fix below is the smallest that restores the old behaviour:

1. `slim.batch_norm` builds `tensorflow.python.layers.normalization`, a lazy
   loader for `tf_keras.legacy_tf_layers.normalization`. tf_keras ships that
   module as `tf_keras.src.legacy_tf_layers.normalization`, so the import fails
   with "No module named 'tf_keras.legacy_tf_layers'" (google-research/tf-slim
   issue 24; fixed upstream, never released). We point tf_slim's module
   reference at the real tf_keras module.
2. `tf_slim.layers.utils.constant_value` (and a few other tf_slim helpers)
   test `isinstance(x, tensorflow.python.framework.ops.Tensor)`; current
   TensorFlow no longer defines `ops.Tensor`. We restore the name as an alias
   of `tf.Tensor`, which is what it used to be.

Import this module (slim_nets does, before any graph is built) instead of
importing tf_slim directly.
"""
import tensorflow as tf
from tensorflow.python.framework import ops as _tf_ops

if not hasattr(_tf_ops, "Tensor"):
  _tf_ops.Tensor = tf.Tensor  # Fix 2.

import tf_slim  # noqa: E402  (needs fix 2 in place before use)
from tf_slim.layers import layers as _slim_layers  # noqa: E402
from tf_keras.src.legacy_tf_layers import normalization as _keras_legacy_normalization  # noqa: E402

_slim_layers.normalization_layers = _keras_legacy_normalization  # Fix 1.

slim = tf_slim
