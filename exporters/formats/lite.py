"""TFLite models of TF2 SavedModel classification releases, by TensorFlow's own converter.

TF Hub published float TFLite models of NASNet-A (`tensorflow/lite-model/nasnet/
<mobile|large>/1/default/1`): input float32 [1, size, size, 3] normalized as
(pixel - 127.5) / 127.5, so in [-1, 1]; output [1, 1001] probabilities. This
module converts a verified TF2 SavedModel classification release the same way,
with `tf.lite.TFLiteConverter` of this project's TensorFlow: the release takes
[0, 1] images and returns logits, so the converted function feeds it
(x + 1) / 2 and applies a softmax; batch 1, builtin operators only. The
output folder holds one file, `model.tflite`.

Converting the same export twice gives the same bytes (tests/test_lite.py
checks it). The output is written into a temporary directory beside the output,
checked (LiteRT loads it: one float32 input of the release's shape at batch 1,
one [1, num_classes] output), given to the caller's `verify` (export-all: LiteRT
against the verification reference, `verify_release_deployment`) and only then
renamed into place; an old output is replaced whole, and on any failure nothing
is left behind.

The client is LiteRT (`ai-edge-litert`, pinned in requirements.txt): its
interpreter runs each probe image and the log of its probabilities must match
the Slim reference's log-softmax of the logits (exporters.verification.
compare_log_probabilities: probabilities from random checkpoints are nearly
flat, so they are compared in log space).

The `metadata` variant (`tensorflow/lite-model/nasnet/<mobile|large>/1/metadata/1`)
is the same model carrying TFLite model metadata, written by the official
metadata writer (tflite-support's image-classifier writer, in `.venv-metadata`:
lite_metadata_tool.py): normalization mean 127.5 / std 127.5, an RGB image
input, and `labels.txt` packed into the file and associated with the output as
its axis labels: "background" (TF-Slim's class 0), then ImageNet's 1000 class
names in synset order, the checkpoints' order, as tensorflow-datasets' wheel
ships them (LABELS_SOURCE; its count must be the model's classes). The metadata
is read back and checked before verification, and a metadata model is verified
twice: by LiteRT as above, and by MediaPipe Tasks' ImageClassifier (which takes
its normalization and label names from the metadata and refuses a float model
without them), whose scores on uint8 images must match LiteRT's on the same
images normalized by hand, with every class named by its label.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Callable

from exporters import child_processes, filesystem
from exporters.errors import ExportError
from exporters.formats import Converted, DeploymentCard, ServeQuery

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL_FILE = "model.tflite"
SAVED_MODEL_PB = "saved_model.pb"
# The converter protocol (exporters.formats.DeploymentConverter).
CARD = DeploymentCard("Lite", "a TFLite card",
                      ("Description", "Resources", "Inputs", "Outputs", "Usage"),
                      r"tflite = new Interpreter\(tfliteModel\);",
                      "tflite = new Interpreter(tfliteModel);")
SERVE_QUERY = ServeQuery("lite-format", "tflite", MODEL_FILE)  # The model, whole.
CONVERTER_NAME = "the TFLite converter"
CLIENT_NAME = "LiteRT"
OUTPUT_FILE = MODEL_FILE
VARIANTS = ("default", "metadata")
METADATA_VARIANT = "metadata"
# The converter runs in this project's environment: its TensorFlow, LiteRT and MediaPipe
# are pinned there (a change of either is a change of constraints.txt); the metadata
# writer in its own (requirements-metadata*.txt).
FINGERPRINT_SOURCES = ("exporters/formats/lite.py", "exporters/formats/lite_metadata_tool.py",
                       "requirements.txt", "constraints.txt", "requirements-metadata.txt",
                       "requirements-metadata-nodeps.txt", "constraints-metadata.txt")

# How users feed a pixel p in [0, 255]: (p - mean) / std, so [-1, 1] (the card's
# IMAGE_MEAN / IMAGE_STD, the metadata's normalization).
NORMALIZATION_MEAN = 127.5
NORMALIZATION_STD = 127.5
METADATA_PYTHON = os.path.join(REPO, ".venv-metadata", "bin", "python")
METADATA_TOOL = os.path.join(REPO, "exporters", "formats", "lite_metadata_tool.py")
LABELS_FILE = "labels.txt"  # Its name inside the model, as the metadata names it.
CARD_FACTS = {"image_mean": repr(NORMALIZATION_MEAN), "image_std": repr(NORMALIZATION_STD)}


@dataclasses.dataclass(frozen=True)
class LabelsSource:
  """Where the labels come from: `background`, then the names of the list `name` that
  `file` (in the installed `package`, of the metadata environment) assigns."""
  package: str
  file: str
  name: str
  background: str


# ImageNet's 1000 class names in synset order, as tensorflow-datasets 4.9.10 ships them
# (its SI-Score label module); TF-Slim's 1001-class checkpoints put "background" first.
LABELS_SOURCE = LabelsSource("tensorflow_datasets", "datasets/siscore/labels.py",
                             "IMAGENET_LABELS_LIST", "background")


def environment_problem(tool: str, variants=()) -> str:
  """The converter is this project's TensorFlow: always here; the metadata variant needs
  the metadata writer's environment."""
  if METADATA_VARIANT not in variants:
    return ""
  if not os.path.isfile(METADATA_PYTHON):
    return (f"the TFLite metadata writer's environment {os.path.dirname(os.path.dirname(METADATA_PYTHON))} "
            f"is missing; build it with `make metadata-env`")
  import ctypes.util
  if ctypes.util.find_library("usb-1.0") is None:  # The writer's native module links it.
    return ("the TFLite metadata writer needs Debian's libusb-1.0-0, which is not installed; "
            "`make metadata-env` installs it")
  return ""


def runtime_problem() -> str:
  """"" when LiteRT's interpreter and MediaPipe's ImageClassifier import, else why not."""
  try:
    import ai_edge_litert.interpreter  # noqa: F401
  except ImportError as e:
    return f"LiteRT (ai-edge-litert) does not import: {e}; run `make install`"
  try:
    from mediapipe.tasks.python import vision  # noqa: F401
  except ImportError as e:
    return f"MediaPipe Tasks (mediapipe) does not import: {e}; run `make install`"
  return ""


def convert(parent_dir: str, output_dir: str, tool: str = "",
            verify: Callable[[str], dict] | None = None, variant: str = "default",
            timeout_s: float = 1800, labels_source: LabelsSource = LABELS_SOURCE) -> Converted:
  """Converts the TF2 SavedModel classification export `parent_dir` into `output_dir`
  (the `metadata` variant: with its metadata and labels, from `labels_source`).

  The converter runs in a process of its own (`python -m exporters.formats.lite`), like
  the TF.js converter: loading and tracing the release must not share TensorFlow's state
  with whatever else the calling process runs, and its memory goes when it ends.
  `verify(model_dir)` is called on the checked model before it is moved into place; an
  ExportError it raises leaves nothing behind (an old output stays as it was).
  """
  if variant not in VARIANTS:
    raise ExportError(f"the TFLite converter makes the variants {', '.join(VARIANTS)}, not "
                      f"{variant!r}")
  if not os.path.isfile(os.path.join(parent_dir, SAVED_MODEL_PB)):
    raise ExportError(f"parent export {parent_dir!r} is not a SavedModel ({SAVED_MODEL_PB} "
                      f"is missing); export its TF2 release first")
  problem = environment_problem(tool, [variant])
  if problem:
    raise ExportError(problem)
  start = time.monotonic()
  import tensorflow as tf
  with filesystem.replacing(output_dir, "the TFLite model", ExportError) as tmp_out, \
      tempfile.TemporaryDirectory(prefix="lite-work-") as work:
    path = os.path.join(tmp_out, MODEL_FILE)
    plain = os.path.join(work, MODEL_FILE) if variant == METADATA_VARIANT else path
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    child_processes.run_tool([sys.executable, "-m", "exporters.formats.lite",
                              os.path.abspath(parent_dir), plain],
                             CONVERTER_NAME, f"converting {parent_dir!r}", f"on {parent_dir!r}",
                             timeout_s, cwd=REPO, env=env)
    num_classes = _check_output(plain)
    converted_by = f"TFLiteConverter (TensorFlow {tf.__version__})"
    if variant == METADATA_VARIANT:
      labels = write_labels(os.path.join(work, LABELS_FILE), num_classes, labels_source)
      converted_by += f", {add_metadata(plain, labels, path)}"
    verification = verify(tmp_out) if verify is not None else None
  return Converted(output_dir, (MODEL_FILE,), converted_by, f"TensorFlow {tf.__version__}",
                   time.monotonic() - start, verification)


def _metadata_tool(command: list[str], doing: str, timeout_s: float = 300) -> str:
  """Runs lite_metadata_tool.py in the metadata environment; its stdout."""
  problem = environment_problem("", [METADATA_VARIANT])
  if problem:
    raise ExportError(problem)
  # TZ: the packed labels' zip time is a fixed local time; UTC makes it one instant.
  return child_processes.run_tool([METADATA_PYTHON, METADATA_TOOL, *command],
                                  "the TFLite metadata writer", doing, doing, timeout_s,
                                  env=dict(os.environ, TZ="UTC"))


def write_labels(path: str, num_classes: int, source: LabelsSource = LABELS_SOURCE) -> str:
  """Writes the labels file (`source.background`, then the source's names) at `path`;
  ExportError unless it has `num_classes` lines."""
  _metadata_tool(["labels", source.package, source.file, source.name, source.background,
                  str(num_classes), path], "writing the labels")
  return path


def add_metadata(plain_model: str, labels_file: str, out_model: str) -> str:
  """`plain_model` with image-classifier metadata and `labels_file` packed, at `out_model`;
  read back and checked (normalization, RGB, the labels associated with the output).
  Returns the writer and its version."""
  writer = _metadata_tool(["write", plain_model, labels_file, repr(NORMALIZATION_MEAN),
                  repr(NORMALIZATION_STD), out_model], f"on {plain_model!r}")
  with open(labels_file, encoding="utf-8") as f:
    want = f.read().splitlines()
  found = read_metadata(out_model)
  if (found["normalization"] != {"mean": [NORMALIZATION_MEAN], "std": [NORMALIZATION_STD]}
      or found["color_space"] != "RGB" or found["label_files"] != [LABELS_FILE]
      or found["labels"] != want):
    raise ExportError(f"the metadata read back from {out_model!r} is not what was written: "
                      f"normalization {found['normalization']}, color space "
                      f"{found['color_space']}, label files {found['label_files']} with "
                      f"{len(found['labels'])} lines (wrote {len(want)})")
  return writer.strip()


def read_metadata(model: str) -> dict:
  """The metadata of `model` as the official reader reads it: its normalization, color
  space, packed files, the output's label files and the labels' lines."""
  return json.loads(_metadata_tool(["read", model], f"reading the metadata of {model!r}"))


def tflite_bytes(parent_dir: str) -> bytes:
  """The TFLite flatbuffer of the release in `parent_dir`: [-1, 1] in, probabilities out."""
  import tensorflow as tf
  import tensorflow_hub as hub
  try:
    release = hub.load(parent_dir)
    size = _image_size(release)

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32)])
    def probabilities(images):
      # The release scales [0, 1] images to the network's [-1, 1] itself.
      return tf.nn.softmax(release((images + 1.0) / 2.0))

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [probabilities.get_concrete_function()], release)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()
  except ExportError:
    raise
  except Exception as e:  # The converter's own errors are many types; one line names it.
    first = (str(e).strip().splitlines() or [""])[0]
    raise ExportError(f"{type(e).__name__}: {first}") from None


def _image_size(release) -> int:
  """The square image size the release's serving signature takes."""
  spec = release.signatures["serving_default"].structured_input_signature[1]
  [shape] = [s.shape for s in spec.values()]
  if len(shape) != 4 or shape[1] != shape[2] or shape[1] is None:
    raise ExportError(f"the release's serving signature takes {shape}, not square images")
  return int(shape[1])


def interpreter(model_path: str):
  """LiteRT's interpreter over `model_path`, tensors allocated."""
  from ai_edge_litert.interpreter import Interpreter
  try:
    found = Interpreter(model_path=model_path)
    found.allocate_tensors()
  except (ValueError, RuntimeError) as e:
    raise ExportError(f"LiteRT cannot load {model_path!r}: {str(e).strip()}") from None
  return found


def _check_output(path: str) -> int:
  """One float32 image input at batch 1, one float32 [1, N] output; returns N."""
  import numpy as np
  found = interpreter(path)
  inputs, outputs = found.get_input_details(), found.get_output_details()
  if (len(inputs) != 1 or len(outputs) != 1 or inputs[0]["dtype"] != np.float32
      or list(inputs[0]["shape"][:1]) != [1] or len(outputs[0]["shape"]) != 2):
    raise ExportError(f"the TFLite converter wrote a model with inputs "
                      f"{[(list(i['shape']), i['dtype'].__name__) for i in inputs]} and "
                      f"outputs {[list(o['shape']) for o in outputs]}, not one image batch "
                      f"of 1 and one vector of probabilities")
  return int(outputs[0]["shape"][1])


def probabilities(model_path: str, images) -> "np.ndarray":
  """LiteRT's outputs for `images` ([n, size, size, 3] in [-1, 1]), one image at a time."""
  import numpy as np
  found = interpreter(model_path)
  [given], [output] = found.get_input_details(), found.get_output_details()
  rows = []
  for image in np.asarray(images, np.float32):
    found.set_tensor(given["index"], image[None])
    found.invoke()
    rows.append(found.get_tensor(output["index"])[0].copy())
  return np.stack(rows)


def classify_with_mediapipe(model_path: str, images) -> tuple["np.ndarray", list[str]]:
  """MediaPipe Tasks' ImageClassifier on `images` (uint8 RGB [n, h, w, 3]; it stretches
  another size to the model's): every class's score per image, and the category names
  (from the metadata's labels) in class order."""
  import mediapipe as mp
  import numpy as np
  from mediapipe.tasks.python import BaseOptions, vision
  options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model_path),
                                          max_results=-1)
  try:
    classifier = vision.ImageClassifier.create_from_options(options)
  except (RuntimeError, ValueError, OSError) as e:
    raise ExportError(f"MediaPipe's ImageClassifier cannot load {model_path!r}: "
                      f"{' '.join(str(e).split())}") from None
  rows, names = [], None
  with classifier:
    for image in np.asarray(images, np.uint8):
      [head] = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                            data=np.ascontiguousarray(image))).classifications
      scores = np.zeros(len(head.categories), np.float32)
      found = [""] * len(head.categories)
      for category in head.categories:
        scores[category.index] = category.score
        found[category.index] = category.category_name or ""
      rows.append(scores)
      names = names or found
  return np.stack(rows), names


def normalized(pixels) -> "np.ndarray":
  """uint8 pixels as the model takes them: (p - mean) / std, in [-1, 1]."""
  import numpy as np
  return (np.asarray(pixels, np.float32) - NORMALIZATION_MEAN) / NORMALIZATION_STD


def verify_release_deployment(model_dir: str, release, expected: dict, what: str,
                              variant: str = "default") -> dict:
  """The TFLite model in `model_dir` by LiteRT on `slim_graph.probe_images(release.model)`
  (normalized to [-1, 1] as its users do) against the Slim reference's logits on them
  (`expected`, SlimReference.expected()), in log space. A metadata model also by
  MediaPipe's ImageClassifier on the probe images as uint8 pixels, against LiteRT on
  the same pixels normalized by hand, every class named by the metadata's labels."""
  import numpy as np
  from exporters import verification
  from exporters.network import slim_graph
  start = time.monotonic()
  model = os.path.join(model_dir, MODEL_FILE)
  images = slim_graph.probe_images(release.model)
  found = probabilities(model, normalized(images * 255.0))
  diff = verification.compare_log_probabilities(f"{what} log-probabilities (LiteRT)", found,
                                                expected["logits"])
  result = {"verified": True, "runtime": f"ai-edge-litert {_version('ai-edge-litert')}",
            "backend": f"LiteRT {_version('ai-edge-litert')}", "images": int(len(images)),
            "max_abs_diff": diff, "tolerance": verification.TOLERANCE,
            "reference": "the log-softmax of the Slim reference's logits on the probe images"}
  if variant == METADATA_VARIANT:
    pixels = np.round(images * 255.0).astype(np.uint8)
    scores, names = classify_with_mediapipe(model, pixels)
    by_hand = probabilities(model, normalized(pixels))
    mediapipe_diff = verification.compare_log_probabilities(
        f"{what} log-probabilities (MediaPipe against LiteRT)", scores, np.log(by_hand))
    labels = read_metadata(model)["labels"]
    if names != labels:
      wrong = next(i for i, (a, b) in enumerate(zip(names + [""] * len(labels), labels))
                   if a != b)
      raise ExportError(f"{what}: MediaPipe names {len(names)} classes, class {wrong} "
                        f"{(names + [None] * len(labels))[wrong]!r}, not the metadata's "
                        f"{len(labels)} labels ({labels[wrong]!r})")
    result["mediapipe"] = {"runtime": f"mediapipe {_version('mediapipe')}",
                           "max_abs_diff": mediapipe_diff, "categories": len(names),
                           "reference": "LiteRT on the same uint8 images normalized by hand"}
  result["seconds"] = round(time.monotonic() - start, 3)
  return result


def _version(package: str) -> str:
  import importlib.metadata
  return importlib.metadata.version(package)


def _main(argv: list[str]) -> int:
  """`python -m exporters.formats.lite PARENT_DIR OUT_FILE`: the converter's process; its
  error is its stderr's last line."""
  parent_dir, out_file = argv
  try:
    data = tflite_bytes(parent_dir)
  except ExportError as e:
    print(e, file=sys.stderr)
    return 1
  with open(out_file, "wb") as f:
    f.write(data)
  return 0


if __name__ == "__main__":
  sys.exit(_main(sys.argv[1:]))
