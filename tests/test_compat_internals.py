"""Every TensorFlow / tf_keras internal the exporters touch (exporters.compat), exercised.

A TensorFlow or tf_keras upgrade that moves one of them fails here, naming it,
before any export test does.
"""
import tensorflow as tf

from exporters.compat import tf_internals, tf_keras_internals


class _Tiny(tf.Module):
  def __init__(self):
    super().__init__()
    self.w = tf.Variable([[1.0, 2.0]])

  @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
  def __call__(self, x):
    return tf.matmul(x, self.w, transpose_b=True)


def test_write_fingerprint_rewrites_a_readable_fingerprint_with_a_stable_uuid(tmp_path):
  tf.saved_model.save(_Tiny(), str(tmp_path))
  fingerprint = tmp_path / "fingerprint.pb"
  fingerprint.unlink()
  tf_internals.write_fingerprint(str(tmp_path))
  first = fingerprint.read_bytes()
  read = tf.saved_model.experimental.read_fingerprint(str(tmp_path))
  assert read.saved_model_checksum and read.graph_def_program_hash
  tf_internals.write_fingerprint(str(tmp_path))
  assert fingerprint.read_bytes() == first  # The uuid is derived, not random.


def test_tf1_shim_exposes_variables_and_regularizers_by_slim_name():
  class Net(tf.Module):
    @tf_keras_internals.track_tf1_style_variables
    def __call__(self, x):
      with tf.compat.v1.variable_scope("layer"):
        w = tf.compat.v1.get_variable(
            "weights", [2, 3], regularizer=lambda v: 0.5 * tf.reduce_sum(v * v),
            initializer=tf.compat.v1.ones_initializer())
        b = tf.compat.v1.get_variable("biases", [3], initializer=tf.compat.v1.zeros_initializer())
      return tf.matmul(x, w) + b

  net = Net()
  net(tf.ones([1, 2]))
  net(tf.ones([1, 2]))  # Reused, not created again.
  variables = tf_keras_internals.shim_variables(net)
  assert list(variables) == ["layer/weights", "layer/biases"]
  regularizers = tf_keras_internals.shim_regularizers(net)
  assert len(regularizers) == 1
  assert float(next(iter(regularizers.values()))()) == 3.0  # 0.5 * six ones.


def test_saving_context_is_the_one_tf_saved_model_save_traces_in():
  from tensorflow.python.saved_model import save_context
  assert not save_context.in_save_context()
  with tf_internals.saving_context():
    assert save_context.in_save_context()
    assert isinstance(save_context.get_save_options(), tf.saved_model.SaveOptions)
  assert not save_context.in_save_context()
