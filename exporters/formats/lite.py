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
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable

from exporters import child_processes, filesystem
from exporters.errors import ExportError
from exporters.formats import Converted

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL_FILE = "model.tflite"
SAVED_MODEL_PB = "saved_model.pb"
# The converter protocol (exporters.formats.DeploymentConverter).
CONVERTER_NAME = "the TFLite converter"
CLIENT_NAME = "LiteRT"
OUTPUT_FILE = MODEL_FILE
# The converter runs in this project's environment: its TensorFlow and LiteRT are pinned
# there (a change of either is a change of constraints.txt).
FINGERPRINT_SOURCES = ("exporters/formats/lite.py", "requirements.txt", "constraints.txt")


def environment_problem(tool: str) -> str:
  """The converter is this project's TensorFlow: always here."""
  return ""


def runtime_problem() -> str:
  """"" when LiteRT's interpreter imports, else why not."""
  try:
    import ai_edge_litert.interpreter  # noqa: F401
  except ImportError as e:
    return f"LiteRT (ai-edge-litert) does not import: {e}; run `make install`"
  return ""


def _litert_version() -> str:
  import importlib.metadata
  return importlib.metadata.version("ai-edge-litert")


def convert(parent_dir: str, output_dir: str, tool: str = "",
            verify: Callable[[str], dict] | None = None, timeout_s: float = 1800) -> Converted:
  """Converts the TF2 SavedModel classification export `parent_dir` into `output_dir`.

  The converter runs in a process of its own (`python -m exporters.formats.lite`), like
  the TF.js converter: loading and tracing the release must not share TensorFlow's state
  with whatever else the calling process runs, and its memory goes when it ends.
  `verify(model_dir)` is called on the checked model before it is moved into place; an
  ExportError it raises leaves nothing behind (an old output stays as it was).
  """
  if not os.path.isfile(os.path.join(parent_dir, SAVED_MODEL_PB)):
    raise ExportError(f"parent export {parent_dir!r} is not a SavedModel ({SAVED_MODEL_PB} "
                      f"is missing); export its TF2 release first")
  start = time.monotonic()
  import tensorflow as tf
  with filesystem.replacing(output_dir, "the TFLite model", ExportError) as tmp_out:
    path = os.path.join(tmp_out, MODEL_FILE)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    child_processes.run_tool([sys.executable, "-m", "exporters.formats.lite",
                              os.path.abspath(parent_dir), path],
                             CONVERTER_NAME, f"converting {parent_dir!r}", f"on {parent_dir!r}",
                             timeout_s, cwd=REPO, env=env)
    _check_output(path)
    verification = verify(tmp_out) if verify is not None else None
  return Converted(output_dir, (MODEL_FILE,), f"TFLiteConverter (TensorFlow {tf.__version__})",
                   f"TensorFlow {tf.__version__}", time.monotonic() - start, verification)


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


def _check_output(path: str) -> None:
  """One float32 image input at batch 1, one float32 [1, N] output."""
  import numpy as np
  found = interpreter(path)
  inputs, outputs = found.get_input_details(), found.get_output_details()
  if (len(inputs) != 1 or len(outputs) != 1 or inputs[0]["dtype"] != np.float32
      or list(inputs[0]["shape"][:1]) != [1] or len(outputs[0]["shape"]) != 2):
    raise ExportError(f"the TFLite converter wrote a model with inputs "
                      f"{[(list(i['shape']), i['dtype'].__name__) for i in inputs]} and "
                      f"outputs {[list(o['shape']) for o in outputs]}, not one image batch "
                      f"of 1 and one vector of probabilities")


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


def verify_release_deployment(model_dir: str, release, expected: dict, what: str) -> dict:
  """The TFLite model in `model_dir` by LiteRT on `slim_graph.probe_images(release.model)`
  (normalized to [-1, 1] as its users do) against the Slim reference's logits on them
  (`expected`, SlimReference.expected()), in log space."""
  from exporters import verification
  from exporters.network import slim_graph
  start = time.monotonic()
  images = slim_graph.probe_images(release.model)
  found = probabilities(os.path.join(model_dir, MODEL_FILE), 2.0 * images - 1.0)
  diff = verification.compare_log_probabilities(f"{what} log-probabilities (LiteRT)", found,
                                                expected["logits"])
  return {"verified": True, "runtime": f"ai-edge-litert {_litert_version()}",
          "backend": f"LiteRT {_litert_version()}", "images": int(len(images)),
          "max_abs_diff": diff, "tolerance": verification.TOLERANCE,
          "reference": "the log-softmax of the Slim reference's logits on the probe images",
          "seconds": round(time.monotonic() - start, 3)}


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
