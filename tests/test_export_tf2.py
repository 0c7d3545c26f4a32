"""Versions 4-5 (TF2 SavedModels): exported, reloaded the way users load them, fine-tuned.

Every export here is the session's (conftest.release_export): made by the
real model run, so it has also verified itself against the Slim graph.
nasnet_mobile's (both module types of version 4, one of version 5) are the
acceptance tests against ../shared/golden; the large models (marked slow)
export and reload once each (their golden checks, like every model's, are
in tests/test_goldens.py).
"""
from __future__ import annotations

import gc
import hashlib
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import registry
from exporters.formats import saved_model_2
from exporters.network import slim_graph

FAST_MODEL = "nasnet_mobile"
FINE_TUNING_MOMENTUM = 0.997


def saved_model_releases(models=None) -> list[registry.Release]:
  return [r for r in registry.default().releases(models=models)
          if r.version.format == "saved_model_2"]


def release_id(release: registry.Release) -> str:
  return f"{release.model.name}-{release.module_type}-v{release.version.number}"


def newest(model: str, module_type: str, serving_signature: bool) -> registry.Release:
  """The newest saved_model_2 release of `model` with or without a serving signature."""
  return [r for r in saved_model_releases([model]) if r.module_type == module_type
          and r.version.serving_signature == serving_signature][-1]


@pytest.fixture(scope="module")
def exports(release_export):
  """`exports(release)` -> (conftest.ReleaseExport, the run's messages about it)."""
  def export(release):
    result = release_export(release)
    return result, list(result.messages)
  return export


@pytest.fixture(scope="module")
def loaded(exports):
  """`loaded(release)` -> hub.load of its export, shared by tests that change no state.

  Tests that run training mode (which moves the moving statistics) use `training_loaded`.
  """
  return _loader(exports)


def _loader(exports):
  """`load(release)` -> one hub.load of its export per loader."""
  import tensorflow_hub as hub
  cache = {}

  def load(release):
    key = release_id(release)
    if key not in cache:
      cache[key] = hub.load(exports(release)[0].export_dir)
    return cache[key]
  return load


@pytest.fixture(scope="module")
def training_loaded(exports):
  """`training_loaded(release)` -> another hub.load of its export, shared by the tests that
  run it in training mode without training it: each compares a moving mean with the value it
  read just before its own training call, and training-mode outputs do not depend on the
  moving statistics (the batch's are used). A test that changes trainable weights loads its
  own."""
  return _loader(exports)


def files_digest(export_dir: str) -> dict:
  """Every file under `export_dir` -> its sha256."""
  root = pathlib.Path(export_dir)
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def checkpoint_values(ckpt_factory):
  from exporters.network import checkpoint_reader
  return checkpoint_reader.read_checkpoint(FAST_MODEL, str(ckpt_factory(FAST_MODEL))).values


def output_size(release: registry.Release) -> int:
  if release.module_type == "classification":
    return release.registry.publisher.num_classes
  return release.model.feature_size


def keras_layer(handle, **kwargs):
  """How users load versions 4-5; `handle` is a path or an object hub.load returned."""
  import tensorflow_hub as hub
  return hub.KerasLayer(handle, **kwargs)


def find_weight(weights, name: str):
  found = [w for w in weights if w.name == name]
  assert len(found) == 1, f"{name} among {len(weights)} weights: {len(found)} found"
  return found[0]


# Cheap checks of every published TF2 release (no export).

@pytest.mark.parametrize("release", saved_model_releases(), ids=release_id)
def test_every_tf2_release_is_written_by_this_module(release):
  from exporters import formats
  assert formats.writer_for(release.version.format) is saved_model_2.SavedModel2Constructions
  assert 0.0 < release.version.batch_norm_momentum < 1.0  # The __call__ default.
  assert release.model.feature_size > 0 and release.model.image_size > 0


def test_feature_vectors_leave_out_exactly_the_classifier(checkpoint_values):
  classification = slim_graph.exported_variable_names("classification", checkpoint_values)
  features = slim_graph.exported_variable_names("feature_vector", checkpoint_values)
  assert classification == list(checkpoint_values)
  assert sorted(set(classification) - set(features)) == ["final_layer/FC/biases",
                                                         "final_layer/FC/weights"]


# nasnet_mobile version 4: the published acceptance behaviour.

V4_CLASSIFICATION = newest(FAST_MODEL, "classification", serving_signature=False)
V4_FEATURE_VECTOR = newest(FAST_MODEL, "feature_vector", serving_signature=False)
V4_RELEASES = [V4_CLASSIFICATION, V4_FEATURE_VECTOR]


@pytest.mark.parametrize("release", V4_RELEASES, ids=release_id)
def test_export_reports_what_it_left_out_and_verified(exports, release):
  result, messages = exports(release)
  assert os.path.isdir(result.export_dir)
  assert all(n.startswith("aux_") for n in result.unused_variables if n != "global_step")
  assert "global_step" in result.unused_variables
  assert result.verification["inference_max_abs_diff"] <= 1e-4
  assert result.verification["regularization_losses"] > 0
  assert any("verified and written" in m for m in messages)
  leftover = [p for p in pathlib.Path(result.export_dir).parent.iterdir()
              if p.name.startswith((".tmp-", ".old-"))]
  assert not leftover, f"temporary directories left behind: {leftover}"


@pytest.mark.parametrize("release", V4_RELEASES, ids=release_id)
def test_keras_layer_inference_reproduces_golden(loaded, release, golden_nasnet_mobile):
  layer = keras_layer(loaded(release))
  expected = golden_nasnet_mobile[
      "logits" if release.module_type == "classification" else "features"]
  outputs = layer(golden_nasnet_mobile["images"]).numpy()
  assert outputs.shape == (3, output_size(release))
  np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-4)
  # Inference never moves the moving statistics.
  again = layer(golden_nasnet_mobile["images"], training=True).numpy()  # Not trainable: inference.
  np.testing.assert_array_equal(again, outputs)


@pytest.mark.parametrize("release", V4_RELEASES, ids=release_id)
def test_variables_are_the_checkpoints_with_slim_names(loaded, release, checkpoint_values):
  layer = keras_layer(loaded(release), trainable=True)
  expected = slim_graph.exported_variable_names(release.module_type, checkpoint_values)
  assert sorted(w.name for w in layer.weights) == sorted(f"{n}:0" for n in expected)
  for weight in layer.weights:
    np.testing.assert_array_equal(weight.numpy(), checkpoint_values[weight.name[:-2]])
  non_trainable = {w.name for w in layer.non_trainable_weights}
  assert non_trainable == {f"{n}:0" for n in expected
                           if n.endswith(("/moving_mean", "/moving_variance"))}


@pytest.mark.parametrize("release", V4_RELEASES, ids=release_id)
def test_fine_tuning_call_updates_moving_mean_with_given_momentum(exports, training_loaded,
                                                                  release,
                                                                  golden_nasnet_mobile):
  export_dir = exports(release)[0].export_dir
  on_disk = files_digest(export_dir)
  layer = keras_layer(training_loaded(release), trainable=True,
                      arguments=dict(batch_norm_momentum=FINE_TUNING_MOMENTUM))
  moving_mean = find_weight(layer.non_trainable_weights, "conv0_bn/moving_mean:0")
  old = moving_mean.numpy().copy()
  outputs = layer(golden_nasnet_mobile["images"], training=True).numpy()
  expected_mean = (FINE_TUNING_MOMENTUM * old
                   + (1 - FINE_TUNING_MOMENTUM) * golden_nasnet_mobile["train_conv0_batch_mean"])
  np.testing.assert_allclose(moving_mean.numpy(), expected_mean, rtol=0, atol=1e-5)
  if release.module_type == "feature_vector":
    np.testing.assert_allclose(outputs, golden_nasnet_mobile["train_features"], rtol=0, atol=1e-4)
  else:  # The classifier's dropout is on: two training calls differ, inference does not.
    assert not np.array_equal(outputs, layer(golden_nasnet_mobile["images"], training=True))
  assert layer.losses and all(float(loss) > 0 for loss in layer.losses)
  # The export on disk is untouched by what the loaded copy did: every file's bytes.
  assert files_digest(export_dir) == on_disk


def test_default_momentum_comes_from_the_registry(training_loaded, golden_nasnet_mobile):
  import tensorflow as tf
  release = V4_FEATURE_VECTOR
  loaded = training_loaded(release)
  moving_mean = [v for v in loaded.variables if v.name == "conv0_bn/moving_mean:0"][0]
  old = moving_mean.numpy().copy()
  loaded(tf.constant(golden_nasnet_mobile["images"]), training=True)
  momentum = release.version.batch_norm_momentum
  np.testing.assert_allclose(
      moving_mean.numpy(),
      momentum * old + (1 - momentum) * golden_nasnet_mobile["train_conv0_batch_mean"],
      rtol=0, atol=1e-5)


def test_regularization_losses_one_per_regularized_weight(loaded, checkpoint_values):
  losses = [float(f()) for f in loaded(V4_CLASSIFICATION).regularization_losses]
  # The Slim arg scope regularizes every conv, separable conv and FC weight, nothing else.
  weights = [n for n in checkpoint_values if n.endswith("weights")]
  assert len(losses) == len(weights) and all(loss > 0 for loss in losses)


@pytest.mark.late
def test_keras_fit_step_trains_weights_not_moving_statistics(background_checks):
  step = background_checks(FIT_TEST)
  assert step["trainable_moving"] == 0
  assert step["non_trainable"] == step["non_trainable_moving"] > 0
  changed = step["trainable_changed"]
  assert changed[0] and changed[-1], "the first conv and the new head must both train"
  assert changed.sum() > 0.9 * len(changed)
  assert step["moving_changed"].any(), "training mode must update the moving statistics"


def keras_fit_step(export_dir: str, golden_file: str) -> dict:
  """One tf_keras fit step of a trainable hub.KerasLayer under a new head, on its own load
  (it changes the trainable weights): which weights it changed. Run in a process of its own
  (start_in_background)."""
  import tf_keras
  release = V4_FEATURE_VECTOR
  layer = keras_layer(export_dir, trainable=True,
                      arguments=dict(batch_norm_momentum=FINE_TUNING_MOMENTUM))
  size = release.model.image_size
  model = tf_keras.Sequential([tf_keras.Input((size, size, 3)), layer,
                               tf_keras.layers.Dense(3)])
  model.compile(optimizer=tf_keras.optimizers.SGD(learning_rate=0.1),
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  moving = [w for w in model.non_trainable_weights if "moving_" in w.name]
  trainable_before = [w.numpy().copy() for w in model.trainable_weights]
  moving_before = [w.numpy().copy() for w in moving]
  with np.load(golden_file) as golden:
    images = golden["images"][:1]
  # One image: no golden numbers are compared here, and the step's cost is its tracing.
  model.fit(images, np.array([0]), batch_size=1, epochs=1, verbose=0)
  return {
      "trainable_moving": np.array(sum("moving_" in w.name for w in model.trainable_weights)),
      "non_trainable": np.array(len(model.non_trainable_weights)),
      "non_trainable_moving": np.array(len(moving)),
      "trainable_changed": np.array([not np.array_equal(w.numpy(), b)
                                     for w, b in zip(model.trainable_weights, trainable_before)]),
      "moving_changed": np.array([not np.array_equal(w.numpy(), b)
                                  for w, b in zip(moving, moving_before)])}


def test_version_4_has_no_serving_signature(loaded):
  assert "serving_default" not in loaded(V4_CLASSIFICATION).signatures


# nasnet_mobile version 5: serving signature and persistent tapes.

V5_RELEASE = newest(FAST_MODEL, "classification", serving_signature=True)


def test_serving_signature_gives_the_same_output(exports, loaded, golden_nasnet_mobile):
  import tensorflow as tf
  assert exports(V5_RELEASE)[0].verification["serving_max_abs_diff"] <= 1e-4
  signature = loaded(V5_RELEASE).signatures["serving_default"]
  images = tf.constant(golden_nasnet_mobile["images"])
  served = signature(**{saved_model_2.SERVING_INPUT_KEY: images})
  assert list(served) == [saved_model_2.SERVING_OUTPUT_KEY]
  outputs = served[saved_model_2.SERVING_OUTPUT_KEY].numpy()
  np.testing.assert_allclose(outputs, golden_nasnet_mobile["logits"], rtol=0, atol=1e-4)
  np.testing.assert_array_equal(outputs, loaded(V5_RELEASE)(images).numpy())


def test_saved_model_cli_runs_the_serving_signature(exports, tmp_path):
  export_dir = exports(V5_RELEASE)[0].export_dir
  cli = pathlib.Path(sys.executable).with_name("saved_model_cli")
  if not cli.exists():
    pytest.skip(f"{cli} is not installed")
  size = V5_RELEASE.model.image_size
  images = tmp_path / "images.npy"
  np.save(images, np.full((1, size, size, 3), 0.5, np.float32))
  run = subprocess.run(
      [str(cli), "run", "--dir", export_dir, "--tag_set", "serve",
       "--signature_def", "serving_default", "--outdir", str(tmp_path / "out"),
       "--inputs", f"{saved_model_2.SERVING_INPUT_KEY}={images}"],
      capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-2000:]
  output = np.load(tmp_path / "out" / f"{saved_model_2.SERVING_OUTPUT_KEY}.npy")
  assert output.shape == (1, output_size(V5_RELEASE)) and np.all(np.isfinite(output))


@pytest.mark.late
def test_gradients_under_a_persistent_tape_can_be_taken_twice(background_checks):
  """In training mode, as fine-tuning in a custom loop does (version 5's changelog)."""
  gradients = background_checks(TAPE_TEST)
  assert not gradients["missing"].any(), gradients["missing"]
  to_all = [gradients[name] for name in ("to_images", "to_first_conv", "to_classifier")]
  assert all(np.all(np.isfinite(g)) and np.any(g) for g in to_all)
  # Equal up to the float32 reduction order of multithreaded kernels.
  scale = float(np.abs(gradients["to_first_conv"]).max())
  np.testing.assert_allclose(gradients["first_conv_alone"], gradients["to_first_conv"],
                             rtol=0, atol=1e-3 * scale)


def persistent_tape_gradients(export_dir: str, golden_file: str) -> dict:
  """Two gradient computations from one persistent tape over hub.load(version 5) in training
  mode: to the first conv alone, then to the images, the first conv and the classifier.
  Run in a process of its own (start_in_background): nearly all of its time is TensorFlow
  constructing the higher-order gradient functions of the restored training call, which a
  persistent tape asks for, and that is what is tested."""
  import tensorflow as tf
  import tensorflow_hub as hub
  model = hub.load(export_dir)
  with np.load(golden_file) as golden:
    # One image: the two computations are compared with each other, not with a golden.
    images = tf.constant(golden["images"][:1])
  first_conv, classifier = model.trainable_variables[0], model.trainable_variables[-2]
  gc.disable()  # The gradient functions are some 200k graph ops: no collection passes over them.
  try:
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(images)
      loss = tf.reduce_sum(tf.square(model(images, training=True)))
    to_conv = tape.gradient(loss, first_conv)
    to_all = tape.gradient(loss, [images, first_conv, classifier])
    del tape
  finally:
    gc.enable()
  found = [to_conv, *to_all]
  names = ["first_conv_alone", "to_images", "to_first_conv", "to_classifier"]
  arrays = {name: (g.numpy() if g is not None else np.zeros(0))
            for name, g in zip(names, found)}
  arrays["missing"] = np.array([g is None for g in found])
  return arrays


# Checks that trace a restored model's gradients (a minute or more of one core each): each
# in a process of its own, beside the tests, once the background models are done
# (conftest.after_exports). Their tests are marked late.
TAPE_TEST = "test_gradients_under_a_persistent_tape_can_be_taken_twice"
FIT_TEST = "test_keras_fit_step_trains_weights_not_moving_statistics"
BACKGROUND_CHECKS = {TAPE_TEST: (persistent_tape_gradients, V5_RELEASE),
                     FIT_TEST: (keras_fit_step, V4_FEATURE_VECTOR)}


def start_in_background(background, tmp_path_factory, selected: set) -> dict:
  from exporters import export_tree
  from tests.conftest import golden_path, run_in_subprocess
  started = {}
  for name in BACKGROUND_CHECKS.keys() & selected:
    function, release = BACKGROUND_CHECKS[name]
    out_dir = tmp_path_factory.mktemp(function.__name__)

    def check(function=function, release=release, out_dir=out_dir) -> dict:
      tree = background.tree.result()
      return run_in_subprocess(
          function, out_dir, export_dir=str(export_tree.export_path(tree.export_dir, release)),
          golden_file=str(golden_path(FAST_MODEL)))
    started[name] = background.after_exports(check)
  return started


@pytest.fixture(scope="module")
def background_checks(background_exports, nasnet_mobile_tree):
  """`background_checks(test name)` -> the arrays its background check returned."""
  return lambda name: background_exports.started[__name__][name].result()


# The large models (and pnasnet_mobile): one export each from the checkpoint seed of its
# golden, reloaded once (conftest.keras_layer_run, whose outputs tests/test_goldens.py
# compares with the golden).

LARGE_RELEASES = [newest(m, "classification", serving_signature=True)
                  for m in sorted({r.model.name for r in saved_model_releases()} - {FAST_MODEL})]


@pytest.mark.slow
@pytest.mark.parametrize("release", LARGE_RELEASES, ids=release_id)
def test_large_model_exports_and_reloads(exports, keras_layer_run, release):
  result, _ = exports(release)
  assert result.verification["inference_max_abs_diff"] <= 1e-4
  outputs = keras_layer_run(release).outputs  # hub.load of the export, on three images.
  assert outputs.shape == (3, output_size(release)) and np.all(np.isfinite(outputs))
