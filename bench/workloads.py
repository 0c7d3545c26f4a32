"""The inference workloads: each a way a user runs the same classifier.

Every workload loads once and then answers `run(inputs) -> logits (numpy)`
for a batch of [0, 1] images, converting what it returns to numpy so all
pay the same for handing the result back. `prepare` turns the numpy batch
into what the workload is fed (done once per batch size, outside timing).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np

from registry import SAVED_MODEL_2_FORMAT, TF1_HUB_FORMAT

SLIM = "slim_session"
SAVED_MODEL = "saved_model"
KERAS_LAYER = "hub_keras_layer"
HUB_V3 = "hub_v3"
KERAS_APPLICATIONS = "keras_applications"
ALL = (SLIM, SAVED_MODEL, KERAS_LAYER, HUB_V3, KERAS_APPLICATIONS)
EXPORTED = (SAVED_MODEL, KERAS_LAYER, HUB_V3)
# What each workload is, for the report.
DESCRIPTIONS = {
    SLIM: "Slim graph restored from the checkpoint, tf.compat.v1.Session (make_callable)",
    SAVED_MODEL: "version 4/5 export, tf.saved_model.load, obj(images)",
    KERAS_LAYER: "version 4/5 export, hub.KerasLayer, layer(images)",
    HUB_V3: "version 3 TF1 Hub export, hub.load(tags=[]).signatures['default']",
    KERAS_APPLICATIONS: "tf_keras.applications (weights=None) in a tf.function with a fixed "
                        "input signature",
}
# The export format each exported workload loads (registry format names).
FORMAT_OF = {SAVED_MODEL: SAVED_MODEL_2_FORMAT, KERAS_LAYER: SAVED_MODEL_2_FORMAT,
             HUB_V3: TF1_HUB_FORMAT}
# The tf_keras.applications model a user would pick instead, where there is one.
KERAS_APPLICATION_FOR_MODEL = {
    "nasnet_mobile": "NASNetMobile",
    "nasnet_large": "NASNetLarge",
}


@dataclasses.dataclass
class Workload:
  name: str
  run: Callable[[Any], np.ndarray]
  prepare: Callable[[np.ndarray], Any]
  load_seconds: float = 0.0
  close: Callable[[], None] = lambda: None


def _as_tensor(images: np.ndarray):
  import tensorflow as tf
  return tf.constant(images)


def slim_session(model, checkpoint_path: str) -> Workload:
  """The floor: the Slim graph in a Session, fetching only the logits."""
  import tensorflow.compat.v1 as tf1

  import registry
  from exporters.network import slim_graph

  graph = tf1.Graph()
  with graph.as_default():
    images = tf1.placeholder(tf1.float32, model.input_shape)
    # Inference mode: the batch-norm decay is never used, any value builds the same graph.
    logits = slim_graph.build_outputs(
        model, images, training=False, batch_norm_momentum=0.997,
        num_classes=registry.default().publisher.num_classes)["logits"]
    saver = tf1.train.Saver(tf1.global_variables())
    session = tf1.Session(graph=graph)
    saver.restore(session, checkpoint_path)
  run = session.make_callable(logits, feed_list=[images])
  return Workload(SLIM, run, prepare=lambda x: x, close=session.close)


def saved_model(export_dir: str) -> Workload:
  import tensorflow as tf
  loaded = tf.saved_model.load(export_dir)
  return Workload(SAVED_MODEL, lambda x: loaded(x).numpy(), prepare=_as_tensor)


def keras_layer(export_dir: str) -> Workload:
  import tensorflow_hub as hub
  layer = hub.KerasLayer(export_dir)
  return Workload(KERAS_LAYER, lambda x: layer(x).numpy(), prepare=_as_tensor)


def hub_v3(export_dir: str) -> Workload:
  import tensorflow_hub as hub
  loaded = hub.load(export_dir, tags=[])
  signature = loaded.signatures["default"]
  return Workload(HUB_V3, lambda x: signature(images=x)["default"].numpy(),
                  prepare=_as_tensor)


def keras_applications(model) -> Workload:
  """What users pick instead; its own [-1, 1] preprocessing is left to the caller."""
  import tensorflow as tf
  import tf_keras

  network = getattr(tf_keras.applications, KERAS_APPLICATION_FOR_MODEL[model.name])(
      weights=None, input_shape=tuple(model.input_shape[1:]))
  spec = tf.TensorSpec(model.input_shape, tf.float32)

  @tf.function(input_signature=[spec])
  def predict(images):
    return network(images, training=False)
  return Workload(KERAS_APPLICATIONS, lambda x: predict(x).numpy(), prepare=_as_tensor)


def load(name: str, model, checkpoint_path: str, exports: dict[str, str]) -> Workload:
  """Loads workload `name`; `exports` maps an export format to the export's dir."""
  start = time.monotonic()
  if name == SLIM:
    workload = slim_session(model, checkpoint_path)
  elif name == SAVED_MODEL:
    workload = saved_model(exports[FORMAT_OF[name]])
  elif name == KERAS_LAYER:
    workload = keras_layer(exports[FORMAT_OF[name]])
  elif name == HUB_V3:
    workload = hub_v3(exports[FORMAT_OF[name]])
  elif name == KERAS_APPLICATIONS:
    workload = keras_applications(model)
  else:
    raise ValueError(f"unknown workload {name!r}; known: {', '.join(ALL)}")
  workload.load_seconds = time.monotonic() - start
  return workload


def applies(name: str, model_name: str) -> bool:
  """keras.applications has NASNet-A only."""
  return name != KERAS_APPLICATIONS or model_name in KERAS_APPLICATION_FOR_MODEL


def release_filter_flags(config) -> list[str]:
  """export_all's --module_types and --versions for the measured releases (`config`: a
  BenchConfig or its dict in the results)."""
  if not isinstance(config, dict):
    config = dataclasses.asdict(config)
  flags = []
  if config.get("module_types"):
    flags.append(f"--module_types={','.join(config['module_types'])}")
  if config.get("versions"):
    flags.append(f"--versions={','.join(map(str, config['versions']))}")
  return flags
