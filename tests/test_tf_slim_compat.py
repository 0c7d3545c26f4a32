"""Each known tf-slim 1.1.0 breakage on TensorFlow 2.21 is fixed by slim_nets.tf_slim_compat."""
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow.compat.v1 as tf

from slim_nets.tf_slim_compat import slim


def test_unpatched_tf_slim_is_still_broken():
  """Guards the premise: without the compat module, both calls fail (else drop the fix)."""
  script = textwrap.dedent("""
      import tensorflow.compat.v1 as tf
      tf.disable_eager_execution()
      import tf_slim as slim
      from tf_slim.layers import utils
      for name, call in [
          ("batch_norm", lambda: slim.batch_norm(tf.zeros([1, 2, 2, 3]), is_training=True)),
          ("constant_value", lambda: utils.constant_value(tf.constant(True)))]:
        try:
          call()
          print(name, "ok")
        except Exception as e:
          print(name, type(e).__name__)
      """)
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       check=True).stdout.split("\n")
  assert "batch_norm ModuleNotFoundError" in out
  assert "constant_value AttributeError" in out


def test_batch_norm_builds_through_keras_legacy_layer():
  graph = tf.Graph()
  with graph.as_default():
    x = tf.constant(np.arange(24, dtype=np.float32).reshape(2, 2, 2, 3))
    # The default updates_collections takes the tf_keras legacy layer path (breakage 1).
    y = slim.batch_norm(x, is_training=True, scale=True)
    assert tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      out = session.run(y)
  np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)


def test_constant_value_handles_tensors():
  from tf_slim.layers import utils
  graph = tf.Graph()
  with graph.as_default():
    assert utils.constant_value(tf.constant(True)) is True or utils.constant_value(
        tf.constant(True)) == True  # noqa: E712  (numpy bool)
    assert utils.constant_value(tf.placeholder(tf.bool, [])) is None
