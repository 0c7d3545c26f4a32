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
LITERT = "tflite_litert"
ALL = (SLIM, SAVED_MODEL, KERAS_LAYER, HUB_V3, KERAS_APPLICATIONS, LITERT)
# The workloads of the hub's releases (the TFLite model, a deployment, is timed beside them
# but not held to the releases' targets).
EXPORTED = (SAVED_MODEL, KERAS_LAYER, HUB_V3)
# What each workload is, for the report.
DESCRIPTIONS = {
    SLIM: "Slim graph restored from the checkpoint, tf.compat.v1.Session (make_callable)",
    SAVED_MODEL: "version 4/5 export, tf.saved_model.load, obj(images)",
    KERAS_LAYER: "version 4/5 export, hub.KerasLayer, layer(images)",
    HUB_V3: "version 3 TF1 Hub export, hub.load(tags=[]).signatures['default']",
    KERAS_APPLICATIONS: "tf_keras.applications (weights=None) in a tf.function with a fixed "
                        "input signature",
    LITERT: "the TFLite deployment (converted from the version 5 export at load), LiteRT's "
            "interpreter, batch 1 only",
}
# The export format each exported workload loads (registry format names).
FORMAT_OF = {SAVED_MODEL: SAVED_MODEL_2_FORMAT, KERAS_LAYER: SAVED_MODEL_2_FORMAT,
             HUB_V3: TF1_HUB_FORMAT, LITERT: SAVED_MODEL_2_FORMAT}
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
  batch_size: int | None = None  # The one batch size it takes; None: any.
  log_probabilities: bool = False  # run() gives log-probabilities, not logits.


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


def tflite_litert(export_dir: str) -> Workload:
  """The TFLite deployment of the export, converted into a temporary folder at load (its
  converter process is part of the load time), run by LiteRT at batch 1."""
  import shutil
  import tempfile

  from exporters.formats import lite
  folder = tempfile.mkdtemp(prefix="bench-lite-")
  lite.convert(export_dir, f"{folder}/model")
  interpreter = lite.interpreter(f"{folder}/model/{lite.MODEL_FILE}")
  [given], [output] = interpreter.get_input_details(), interpreter.get_output_details()

  def run(images):
    interpreter.set_tensor(given["index"], images)
    interpreter.invoke()
    return np.log(interpreter.get_tensor(output["index"]))
  # The deployment takes [-1, 1] pixels, as its users normalize them.
  return Workload(LITERT, run, prepare=lambda x: (2.0 * x - 1.0).astype(np.float32),
                  close=lambda: shutil.rmtree(folder, ignore_errors=True), batch_size=1,
                  log_probabilities=True)


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
  elif name == LITERT:
    workload = tflite_litert(exports[FORMAT_OF[name]])
  else:
    raise ValueError(f"unknown workload {name!r}; known: {', '.join(ALL)}")
  workload.load_seconds = time.monotonic() - start
  return workload


def applies(name: str, model_name: str) -> bool:
  """keras.applications has NASNet-A only, and so has the hub's TFLite deployments."""
  if name == LITERT:
    import registry
    return any(d.parent.model.name == model_name
               for d in registry.default().deployments(kind="lite"))
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
