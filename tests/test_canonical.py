"""Canonical SavedModel bytes: the same object saves to the same files whatever ran before."""
import hashlib
import pathlib

import tensorflow as tf

from exporters.formats import canonical


def _module():
  module = tf.Module()
  module.v = tf.Variable(tf.ones([3]))
  module.losses = [tf.function(lambda: tf.reduce_sum(module.v), input_signature=[])
                   for _ in range(3)]

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
  def call(x):
    return x * module.v
  module.__call__ = call
  return module


def _hashes(directory: pathlib.Path) -> dict:
  return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(directory.rglob("*")) if p.is_file()}


def test_same_object_saved_after_other_traces_gives_the_same_bytes(tmp_path):
  tf.saved_model.save(_module(), str(tmp_path / "first"))
  canonical.make_saved_model_canonical(str(tmp_path / "first"))
  for _ in range(5):  # Moves TensorFlow's process-wide function counters on.
    tf.function(lambda x: x + 1).get_concrete_function(tf.constant(1.0))
  tf.saved_model.save(_module(), str(tmp_path / "second"))
  uncanonical = (tmp_path / "second" / "saved_model.pb").read_bytes()
  canonical.make_saved_model_canonical(str(tmp_path / "second"))
  assert _hashes(tmp_path / "first") == _hashes(tmp_path / "second")
  assert (tmp_path / "second" / "saved_model.pb").read_bytes() != uncanonical


def test_canonical_saved_model_still_loads_and_runs(tmp_path):
  tf.saved_model.save(_module(), str(tmp_path))
  canonical.make_saved_model_canonical(str(tmp_path))
  loaded = tf.saved_model.load(str(tmp_path))
  assert loaded(tf.constant([[1.0, 2.0, 3.0]])).numpy().tolist() == [[1.0, 2.0, 3.0]]
  assert [float(f()) for f in loaded.losses] == [3.0, 3.0, 3.0]


def test_functions_are_numbered_by_position_not_by_process_counters(tmp_path):
  from tensorflow.core.protobuf import saved_model_pb2
  tf.saved_model.save(_module(), str(tmp_path))
  canonical.make_saved_model_canonical(str(tmp_path))
  saved_model = saved_model_pb2.SavedModel.FromString(
      (tmp_path / "saved_model.pb").read_bytes())
  names = [f.signature.name for f in saved_model.meta_graphs[0].graph_def.library.function]
  assert [int(n.rsplit("_", 1)[1]) for n in names] == list(range(len(names)))
