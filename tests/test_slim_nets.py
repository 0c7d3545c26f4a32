"""The Slim graphs create exactly the released variables and reproduce the reference outputs."""
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import registry
import slim_nets
from checkpoints import variable_list
from exporters.network import slim_graph
from exporters.network.reference import SlimReference
from slim_nets import manifest
from tests.conftest import require_shared

MODELS = list(registry.default().models)
LARGE = {name for name, m in registry.default().models.items() if m.image_size > 224}


def read_manifest(model):
  path = require_shared("checkpoints", "manifests", f"{model}.tsv")
  rows = []
  for line in path.read_text().splitlines():
    if line.strip():
      name, dims = line.split("\t")
      rows.append((name, tuple(int(d) for d in dims.split(",")) if dims else ()))
  return rows


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m in LARGE else m
                                   for m in MODELS])
def test_graph_variables_match_released_checkpoint(model):
  """The aux graph's list is checkpoints.variable_list's (manifest.graph_variables, kept in
  the session's cache folder), the one every export's checkpoint check reads: built once
  per session, here or by an export, whichever comes first."""
  released = dict(read_manifest(model))
  released.pop("global_step")
  with_aux = dict(variable_list.aux_graph_variables(model))
  assert with_aux == released
  without_aux = dict(manifest.graph_variables(model, aux=False))
  assert without_aux == {n: s for n, s in released.items() if not n.startswith("aux_")}


@pytest.mark.parametrize("model", MODELS)
def test_registry_agrees_with_graph_builders(model):
  """The cells and filters the cards state (registry) are the builders' (their configs)."""
  entry = registry.default().model(model)
  net = slim_nets.get_net(model)
  config = net.config()
  assert config.num_cells == entry.num_cells
  assert config.num_conv_filters == entry.num_conv_filters


def test_regularization_losses_carry_the_registrys_weight_decay():
  """Every weight's L2 loss is the registry's weight_decay * sum(w**2) / 2 (the classifier's
  too), so a wrong registry value shows in every training-mode export's losses."""
  import dataclasses
  # A decay no network has: the graph can only carry it by taking the registry's value.
  model = dataclasses.replace(registry.default().model("nasnet_mobile"), weight_decay=1e-3)
  graph = tf.Graph()
  with graph.as_default():
    images = tf.placeholder(tf.float32, model.input_shape)
    features = slim_graph.build_features(model, images, training=True, batch_norm_momentum=0.997,
                                         batch_norm_updates_collections=None)
    slim_graph.build_logits(model, features, training=True, num_classes=1001)
    losses = tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)
    weights = {v.op.name: v for v in tf.global_variables()
               if v.op.name.endswith(("weights", "depthwise_weights", "pointwise_weights"))}
    assert len(losses) == len(weights) and "final_layer/FC/weights" in weights
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      got = sess.run(losses)
      expected = sess.run([tf.nn.l2_loss(w) for w in weights.values()])
  # One loss per weight (op names differ: some layers name their kernel "kernel").
  np.testing.assert_allclose(sorted(got), sorted(model.weight_decay * np.array(expected)),
                             rtol=1e-5)


def test_manifest_cli_prints_checkpoint_format():
  out = subprocess.run([sys.executable, "-m", "slim_nets.manifest", "--model=nasnet_mobile"],
                       capture_output=True, text=True, check=True).stdout
  lines = out.splitlines()
  assert lines[0] == "conv0/weights\t3,3,3,32"
  assert all(not line.startswith("aux_") for line in lines)
  assert len(lines) == len([r for r in read_manifest("nasnet_mobile")
                            if not r[0].startswith("aux_") and r[0] != "global_step"])


def test_manifest_cli_rejects_unknown_model():
  result = subprocess.run([sys.executable, "-m", "slim_nets.manifest", "--model=resnet"],
                          capture_output=True, text=True)
  assert result.returncode != 0
  assert "unknown network 'resnet'" in result.stderr


def test_unknown_model_is_rejected():
  with pytest.raises(ValueError, match="unknown network 'resnet'.*nasnet_mobile"):
    slim_nets.get_net("resnet")


@pytest.fixture(scope="module")
def nasnet_mobile_outputs(ckpt_factory, golden_nasnet_mobile):
  prefix = ckpt_factory("nasnet_mobile")
  model = registry.default().model("nasnet_mobile")
  reference = SlimReference(model, registry.default().publisher.num_classes, str(prefix))
  images = golden_nasnet_mobile["images"]
  yield reference.outputs(images, training=False), reference.outputs(images, training=True)
  reference.close()


def test_inference_reproduces_golden(nasnet_mobile_outputs, golden_nasnet_mobile):
  inference, _ = nasnet_mobile_outputs
  np.testing.assert_allclose(inference["logits"], golden_nasnet_mobile["logits"], atol=1e-4, rtol=0)
  np.testing.assert_allclose(inference["features"], golden_nasnet_mobile["features"], atol=1e-4,
                             rtol=0)


def test_training_mode_reproduces_golden(nasnet_mobile_outputs, golden_nasnet_mobile):
  _, training = nasnet_mobile_outputs
  np.testing.assert_allclose(training["features"], golden_nasnet_mobile["train_features"],
                             atol=1e-4, rtol=0)


def test_training_mode_updates_moving_mean_with_tensor_decay(ckpt_factory, golden_nasnet_mobile):
  """A tensor batch-norm decay drives the moving-average update toward the batch mean."""
  prefix = ckpt_factory("nasnet_mobile")
  graph = tf.Graph()
  with graph.as_default():
    images = tf.placeholder(tf.float32, [None, 224, 224, 3])
    decay = tf.placeholder_with_default(0.9997, [])
    outputs = slim_graph.build_outputs(registry.default().model("nasnet_mobile"), images,
                                       training=True, batch_norm_momentum=decay,
                                       num_classes=registry.default().publisher.num_classes)
    updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    assert updates and tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)
    moving_mean = [v for v in tf.global_variables() if v.op.name == "conv0_bn/moving_mean"][0]
    with tf.Session() as session:
      tf.train.Saver().restore(session, str(prefix))
      old = session.run(moving_mean)
      session.run([outputs["features"], updates],
                  {images: golden_nasnet_mobile["images"], decay: 0.997})
      new = session.run(moving_mean)
  expected = 0.997 * old + 0.003 * golden_nasnet_mobile["train_conv0_batch_mean"]
  np.testing.assert_allclose(new, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model", ["nasnet_large", "pnasnet_large"])
def test_path_dropout_held_at_final_rate(model):
  """Training graphs drop paths at the final rate, with no dependence on a global step."""
  graph = tf.Graph()
  with graph.as_default():
    net = slim_nets.get_net(model)
    config = net.config()
    assert config.drop_path_keep_prob < 1.0
    from slim_nets import cells
    last = cells.cell_drop_path_keep_prob(config, config.total_num_cells - 1, True)
    assert last == pytest.approx(config.drop_path_keep_prob)
    assert cells.cell_drop_path_keep_prob(config, 0, False) is None
    assert tf.train.get_global_step() is None
