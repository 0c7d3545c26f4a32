"""Loads TF1 Hub format exports with the real hub.Module and reports what it sees.

Runs in the compat environment (.venv-compat: TensorFlow 2.15, tensorflow-hub
0.15), the last one that has hub.Module; it imports nothing from the project.
Usage: check_hub_module.py SPEC.json, where SPEC is

  {"exports": [{"path": ..., "golden": "<npz>",
    "outputs": {signature: "logits"|"features"},
    "bn_hparams": [signature, ...],
    "train_cases": [{"signature": ..., "momentum": float or null, "expected_momentum": float}]}]}

(each export compared with its own golden arrays: images, logits, features,
train_conv0_batch_mean and, where training mode is deterministic,
train_features), and prints one JSON object: per export, the tag sets, the
image size and signatures hub.Module reports, the largest difference of each
signature's output from the golden arrays; for the train graph (one trainable
module, one application per train case) the regularization losses, and per
case its update ops, how far the first batch norm's moving mean is from where
it should have moved, the batch mean that move implies and how far it is from
the golden one, and how far the training-mode features are from the golden
(null where the golden has none: path dropout makes them random). The
expectations are in tests/test_compat_hub_module.py.
"""
import json
import sys

import numpy as np
import tensorflow as tf
import tensorflow_hub as hub

tf1 = tf.compat.v1
FIRST_MOVING_MEAN = "conv0_bn/moving_mean"


def max_abs_diff(got, expected):
  got, expected = np.asarray(got), np.asarray(expected)
  if got.shape != expected.shape:
    raise ValueError(f"output shape {list(got.shape)}, golden {list(expected.shape)}")
  return float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))


def module_inputs(images, signature, bn_hparams, momentum):
  if signature in bn_hparams:
    return dict(images=images, batch_norm_momentum=momentum)
  return images  # hub.Module feeds a lone tensor to the signature's only input.


def check_inference(spec, golden):
  """hub.Module(path): size, signatures and every signature's output."""
  report = {}
  with tf.Graph().as_default():
    module = hub.Module(spec["path"])
    report["image_size"] = hub.get_expected_image_size(module)
    report["signatures"] = sorted(module.get_signature_names())
    images = tf1.placeholder(tf.float32, [None] + report["image_size"] + [3])
    # Momentum 0.5 must not matter: inference mode uses the moving averages.
    outputs = {name: module(module_inputs(images, name, spec["bn_hparams"], 0.5),
                            signature=name)
               for name in spec["outputs"]}
    with tf1.Session() as session:
      session.run([tf1.global_variables_initializer(), tf1.tables_initializer()])
      got = session.run(outputs, {images: golden["images"]})
  report["max_abs_diff"] = {name: max_abs_diff(got[name], golden[output])
                            for name, output in spec["outputs"].items()}
  return report


def check_train(spec, golden):
  """hub.Module(path, tags={"train"}, trainable=True): fine-tuning collections and updates.

  Each train case applies one signature to the golden images and runs the
  update ops that application added; the first batch norm's moving mean must
  move by the case's expected momentum toward the golden batch mean.
  """
  report = {}
  with tf.Graph().as_default():
    module = hub.Module(spec["path"], tags={"train"}, trainable=True)
    report["image_size"] = hub.get_expected_image_size(module)
    report["signatures"] = sorted(module.get_signature_names())
    regularization_losses = tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES)
    report["regularization_losses"] = len(regularization_losses)
    images = tf1.placeholder(tf.float32, [None] + report["image_size"] + [3])
    applications = []
    for case in spec["train_cases"]:
      before = len(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS))
      features = module(module_inputs(images, case["signature"], spec["bn_hparams"],
                                      case["momentum"]), signature=case["signature"])
      applications.append((case, features, tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)[before:]))
    moving_mean = module.variable_map[FIRST_MOVING_MEAN]
    cases = []
    with tf1.Session() as session:
      session.run([tf1.global_variables_initializer(), tf1.tables_initializer()])
      report["regularization_loss_total"] = float(session.run(tf.add_n(regularization_losses)))
      for case, features, update_ops in applications:
        old = session.run(moving_mean).astype(np.float64)
        train_features, _ = session.run([features, update_ops], {images: golden["images"]})
        new = session.run(moving_mean).astype(np.float64)
        m = case["expected_momentum"]
        expected_new = m * old + (1.0 - m) * golden["train_conv0_batch_mean"]
        # The batch mean the move implies, with the momentum as the float32 the graph has.
        m32 = float(np.float32(m))
        implied_batch_mean = (new - m32 * old) / (1.0 - m32)
        result = dict(
            case, update_ops=len(update_ops),
            moving_mean_max_abs_err=float(np.max(np.abs(new - expected_new))),
            moving_mean_moved=float(np.max(np.abs(new - old))),
            batch_mean_max_abs_diff=max_abs_diff(implied_batch_mean,
                                                 golden["train_conv0_batch_mean"]),
            train_features_shape=list(train_features.shape),
            train_features_finite=bool(np.all(np.isfinite(train_features))),
            train_features_max_abs_diff=None)
        if "train_features" in golden:  # Absent where path dropout makes them random.
          result["train_features_max_abs_diff"] = max_abs_diff(train_features,
                                                               golden["train_features"])
        cases.append(result)
  report["cases"] = cases
  return report


def main(spec_path):
  with open(spec_path) as f:
    spec = json.load(f)
  goldens = {}
  reports = []
  for export in spec["exports"]:
    golden_file = export["golden"]
    if golden_file not in goldens:
      with np.load(golden_file) as arrays:
        goldens[golden_file] = {name: arrays[name] for name in arrays.files}
    golden = goldens[golden_file]
    report = {"path": export["path"], "golden": golden_file, "tags": sorted(
        sorted(tags) for tags in hub.load_module_spec(export["path"]).get_tags())}
    report["inference"] = check_inference(export, golden)
    report["train"] = check_train(export, golden)
    reports.append(report)
  json.dump({"tensorflow": tf.__version__, "tensorflow_hub": hub.__version__,
             "exports": reports}, sys.stdout)
  sys.stdout.write("\n")


if __name__ == "__main__":
  main(sys.argv[1])
