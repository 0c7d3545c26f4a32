"""TF.js graph models of TF1 Hub format exports, made by the official converter.

TF Hub published a TF.js graph model for each nasnet_mobile TF1 Hub format
release it converted (`google/tfjs-model/imagenet/nasnet_mobile/<type>/<v>/default/1`,
converted from the TF1 Hub modules). This module converts a verified TF1 Hub
format export the same way: it runs the `tensorflowjs` package's
`tensorflowjs_converter --input_format=tf_hub` as a subprocess; the graph-model
format is never written here.

The converter's environment is `.venv-tfjs` (`make tfjs-env`), not this
project's TensorFlow 2.21 and not `.venv-compat`:
- the tf_hub input path loads a TF1 Hub module with `hub.Module`, which exists
  only up to tensorflow-hub 0.15 (TensorFlow <= 2.15). tensorflowjs 4.17.0 is
  the last release that accepts hub 0.15 (4.18+ require >= 0.16.1), so the
  environment is TensorFlow 2.15.1 + tensorflow-hub 0.15.0, the compat pair;
- but tensorflowjs 4.17.0 pins `packaging~=23.1` (the compat environment has
  26.3) and imports jax (jax2tf) and tensorflow-decision-forests at import
  time, so adding it to `.venv-compat` would change that environment's pins.
  `.venv-tfjs` holds the compat pair plus exactly what the converter's import
  and tf_hub path need (requirements-tfjs.txt); tensorflowjs and
  tensorflow-decision-forests are installed with --no-deps, which leaves out
  flax (imported only by its JAX conversion) and their looser TensorFlow pins.

Converting the same export twice gives the same bytes (tests/test_tfjs.py
checks it) after one canonicalization: the converter serializes the graph with
protobuf's MessageToDict, which lists a protobuf map field (a node's `attr`, a
function's `ret`, ...) in the map's iteration order, and that order changes
from one process to the next (same nodes, weights and shard bytes; only the
order of a node's attribute keys in model.json differs). `canonical_model_json`
re-serializes model.json with those maps' keys sorted and everything else as
the converter wrote it (its json.dump settings, its key order). The output is
written into a temporary directory beside the output,
checked (model.json parses and names exactly the weight files present),
given to the caller's `verify` (export-all runs it in the real TF.js runtime
against the verification reference: `verify_in_runtime`) and only then
renamed into place; an old output is replaced whole, and on any failure
nothing is left behind.

The TF.js runtime is the pinned npm tree in exporters/tfjs_runtime (`make
tfjs-runtime`: tfjs-core, tfjs-converter and the WebAssembly and pure-JS CPU
backends, 4.22.0) run by Node.js (`run_graph_model.js`, which reads the model
from disk with fs). The export-time check uses the WebAssembly backend
(`BACKEND`): its binaries ship inside @tensorflow/tfjs-backend-wasm, so nothing
is downloaded; in Node it runs single-threaded with SIMD, about ten times
faster than the pure-JS CPU backend on nasnet_mobile (README: TF.js
deployments). `runtime_problem` says, without starting a process, why the
runtime cannot run here (no `node`, or not installed).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from typing import Callable

from exporters import child_processes, filesystem
from exporters.errors import ExportError
from exporters.formats import Converted, DeploymentCard, ServeQuery

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONVERTER = os.path.join(REPO, ".venv-tfjs", "bin", "tensorflowjs_converter")
MODEL_JSON = "model.json"
# The TF1 Hub format's marker file: what the converter's tf_hub path looks for.
HUB_MODULE_PB = "tfhub_module.pb"
# The signature the published TF.js models were converted from (the converter's own default).
SIGNATURE = "default"
# The real TF.js runtime (`make tfjs-runtime`) and the backend export-time verification uses.
RUNTIME_DIR = os.path.join(REPO, "exporters", "tfjs_runtime")
RUN_SCRIPT = "run_graph_model.js"
BACKENDS = ("wasm", "cpu")
BACKEND = "wasm"
RUNTIME_PACKAGES = ("@tensorflow/tfjs-core", "@tensorflow/tfjs-converter",
                    "@tensorflow/tfjs-backend-cpu", "@tensorflow/tfjs-backend-wasm")


# The converter protocol (exporters.formats.DeploymentConverter).
CARD = DeploymentCard("Tfjs", "a TF.js card", ("Origin", "Example use"),
                      r'tf\.loadGraphModel\("[^"]+", \{ fromTFHub: true \}\)',
                      'tf.loadGraphModel("<url>", { fromTFHub: true })')
# tf.loadGraphModel(..., {fromTFHub: true}) asks for each file by name.
SERVE_QUERY = ServeQuery("tfjs-format", "file", None)
CARD_FACTS: dict[str, str] = {}
CONVERTER_NAME = "the TF.js converter"
CLIENT_NAME = f"the TF.js runtime ({BACKEND})"
OUTPUT_FILE = MODEL_JSON
# The converter step's code and environment pins, and the TF.js runtime each deployment is
# verified in at export time (its pinned npm tree and the script that runs a model): a
# change converts and verifies every deployment again. (The verification rules,
# exporters/verification, are release code: a change to them re-exports the parents,
# which makes their deployments stale too.)
FINGERPRINT_SOURCES = ("exporters/formats/tfjs.py", "requirements-tfjs.txt",
                       "requirements-tfjs-nodeps.txt", "constraints-tfjs.txt",
                       "exporters/tfjs_runtime/package-lock.json",
                       "exporters/tfjs_runtime/run_graph_model.js")


VARIANTS = ("default",)


def environment_problem(converter: str, variants=()) -> str:
  """"" when the converter `converter` is there, else how to build it."""
  if os.path.isfile(converter):
    return ""
  return (f"the TF.js converter {converter} is missing; build its environment with "
          f"`make tfjs-env`")


def convert(parent_dir: str, output_dir: str, converter: str = CONVERTER,
            timeout_s: float = 1800,
            verify: Callable[[str], dict] | None = None,
            variant: str = "default") -> Converted:
  """Converts the TF1 Hub format export `parent_dir` into a TF.js graph model at `output_dir`
  (TF.js deployments have one variant, VARIANTS).

  `verify(model_dir)` is called on the checked model before it is moved into place; an
  ExportError it raises leaves nothing behind (an old output stays as it was).
  """
  _check_parent(parent_dir)
  problem = environment_problem(converter)
  if problem:
    raise ExportError(problem)
  start = time.monotonic()
  with filesystem.replacing(output_dir, "the TF.js model", ExportError) as tmp_out:
    # The converter makes its output folder itself (it refuses one that exists).
    converted = os.path.join(tmp_out, "converted")
    _run_converter(converter, parent_dir, converted, timeout_s)
    for name in os.listdir(converted):
      os.rename(os.path.join(converted, name), os.path.join(tmp_out, name))
    os.rmdir(converted)
    files, model = _check_output(tmp_out)
    model = _canonicalize(os.path.join(tmp_out, MODEL_JSON), model)
    verification = verify(tmp_out) if verify is not None else None
  return Converted(output_dir, files, model.get("convertedBy", ""),
                   model.get("generatedBy", ""), time.monotonic() - start, verification)


def _check_parent(parent_dir: str) -> None:
  if not os.path.isdir(parent_dir):
    raise ExportError(f"parent export {parent_dir!r} does not exist; export its TF1 Hub format "
                      f"release first")
  for name in (HUB_MODULE_PB, "saved_model.pb"):
    if not os.path.isfile(os.path.join(parent_dir, name)):
      raise ExportError(f"parent export {parent_dir!r} is not a TF1 Hub format export "
                        f"({name} is missing)")


def _run_converter(converter: str, parent_dir: str, out_dir: str, timeout_s: float) -> None:
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  env["CUDA_VISIBLE_DEVICES"] = ""  # The converter runs on the CPU wherever it runs.
  command = [converter, "--input_format=tf_hub", f"--signature_name={SIGNATURE}",
             os.path.abspath(parent_dir), out_dir]
  child_processes.run_tool(command, "the TF.js converter", f"converting {parent_dir!r}",
                           f"on {parent_dir!r}", timeout_s, env=env)


def _check_output(out_dir: str) -> tuple[tuple[str, ...], dict]:
  """model.json parses and its weights manifest names exactly the other files present."""
  try:
    with open(os.path.join(out_dir, MODEL_JSON), encoding="utf-8") as f:
      model = json.load(f)
    shards = [path for group in model["weightsManifest"] for path in group["paths"]]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ExportError(f"the TF.js converter wrote no usable {MODEL_JSON}: {e}") from None
  present = sorted(os.listdir(out_dir))
  if sorted([MODEL_JSON, *shards]) != present:
    raise ExportError(f"the TF.js converter's output {present} does not match its "
                      f"{MODEL_JSON}'s weight files {shards}")
  return (MODEL_JSON, *shards), model


# The protobuf map fields of GraphDef and FunctionDef, as MessageToDict names them.
PROTO_MAP_FIELDS = frozenset({"attr", "argAttr", "ret", "controlRet", "resourceArgUniqueId"})


def canonical_model_json(model: dict) -> dict:
  """model.json with the keys of every protobuf map in modelTopology sorted, nothing else moved."""
  def walk(value, is_map=False):
    if isinstance(value, dict):
      items = sorted(value.items()) if is_map else value.items()
      return {k: walk(v, is_map=k in PROTO_MAP_FIELDS and not is_map) for k, v in items}
    if isinstance(value, list):
      return [walk(v) for v in value]
    return value
  return {k: walk(v) if k == "modelTopology" else v for k, v in model.items()}


def _canonicalize(path: str, model: dict) -> dict:
  model = canonical_model_json(model)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(model, f)  # The converter's own json.dump settings.
  return model


# ---- The real TF.js runtime (exporters/tfjs_runtime).

def runtime_problem(runtime_dir: str | None = None) -> str:
  """"" when the TF.js runtime can run here, else why not, in one line; starts no process."""
  runtime_dir = runtime_dir or RUNTIME_DIR
  if shutil.which("node") is None:
    return "`node` is not on PATH (the TF.js runtime needs Node.js 20)"
  missing = [p for p in RUNTIME_PACKAGES
             if not os.path.isfile(os.path.join(runtime_dir, "node_modules", p, "package.json"))]
  if missing or not os.path.isfile(os.path.join(runtime_dir, RUN_SCRIPT)):
    return (f"the TF.js runtime is not installed in {runtime_dir} (install it with "
            f"`make tfjs-runtime`)")
  return ""


@dataclasses.dataclass(frozen=True)
class RuntimeReport:
  """What the TF.js runtime computed (run_graph_model.js's report)."""
  backend: str
  tfjs_core: str
  tfjs_converter: str
  output_nodes: tuple[str, ...]
  outputs: dict  # Output node -> float32 array.
  requests: tuple[str, ...]  # What the runtime asked a server for (served modes).
  load_seconds: float
  run_seconds: float


def run_graph_model(model: str, images, backend: str = BACKEND, from_tfhub: bool = True,
                    batch: int | None = None, runtime_dir: str | None = None,
                    timeout_s: float = 1800, label: str | None = None) -> RuntimeReport:
  """Runs the graph model `model` (a folder, read from disk; or an http URL, loaded with
  `{fromTFHub: from_tfhub}`) on `images` in the TF.js runtime with `backend`; errors name it
  `label` (default: `model`)."""
  import numpy as np
  runtime_dir = runtime_dir or RUNTIME_DIR
  label = label or repr(model)
  if backend not in BACKENDS:
    raise ExportError(f"unknown TF.js backend {backend!r}; one of {', '.join(BACKENDS)}")
  problem = runtime_problem(runtime_dir)
  if problem:
    raise ExportError(f"cannot run the TF.js runtime: {problem}")
  images = np.ascontiguousarray(images, dtype="<f4")
  with tempfile.TemporaryDirectory(prefix="tfjs-run-") as work:
    images_path = os.path.join(work, "images.f32")
    with open(images_path, "wb") as f:
      f.write(images.tobytes())
    spec = {"backend": backend, "batch": batch or images.shape[0],
            "inputs": {"path": images_path, "shape": list(images.shape)}}
    if model.startswith(("http://", "https://")):
      spec.update(model_url=model, from_tfhub=from_tfhub)
    else:
      spec.update(model_dir=os.path.abspath(model))
    spec_path, out_path = os.path.join(work, "spec.json"), os.path.join(work, "out.json")
    with open(spec_path, "w", encoding="utf-8") as f:
      json.dump(spec, f)
    command = [shutil.which("node") or "node", RUN_SCRIPT, spec_path, out_path]
    child_processes.run_tool(command, f"the TF.js runtime ({backend})", f"running {label}",
                             f"on {label}", timeout_s, cwd=runtime_dir)
    try:
      with open(out_path, encoding="utf-8") as f:
        report = json.load(f)
      outputs = {name: _decode(entry) for name, entry in report["outputs"].items()}
      return RuntimeReport(report["backend"], report["tfjs_core"], report["tfjs_converter"],
                           tuple(report["output_nodes"]), outputs, tuple(report["requests"]),
                           float(report["load_seconds"]), float(report["run_seconds"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise ExportError(f"the TF.js runtime ({backend}) wrote no usable report for "
                        f"{label}: {e}") from None


def _decode(entry: dict):
  """An output of run_graph_model.js's report as an array: its bytes, dtype and shape."""
  import base64
  import numpy as np
  dtype = {"float32": "<f4", "int32": "<i4"}[entry["dtype"]]
  return np.frombuffer(base64.b64decode(entry["base64"]), dtype=dtype).reshape(entry["shape"])


def verify_in_runtime(model_dir: str, images, expected, what: str, backend: str = BACKEND,
                      runtime_dir: str | None = None) -> dict:
  """Runs the graph model in `model_dir` on `images` in the TF.js runtime and compares its one
  output with `expected` (exporters.verification.compare); raises ExportError (one line)
  when it cannot run or differs. Returns what the stamp records."""
  from exporters import verification
  start = time.monotonic()
  report = run_graph_model(model_dir, images, backend=backend, runtime_dir=runtime_dir,
                           label=what)
  if report.backend != backend:
    raise verification.VerificationError(f"{what}: the TF.js runtime ran on the "
                                         f"{report.backend} backend, not {backend}")
  if len(report.outputs) != 1:
    raise verification.VerificationError(
        f"{what}: the graph model has {len(report.outputs)} outputs "
        f"({', '.join(report.outputs)}), not one")
  [(node, actual)] = report.outputs.items()
  diff = verification.compare(f"{what} (TF.js {backend})", actual, expected)
  return {"verified": True, "runtime": f"tfjs {report.tfjs_core}", "backend": report.backend,
          "output_node": node, "images": int(len(images)), "max_abs_diff": diff,
          "tolerance": verification.TOLERANCE,
          "seconds": round(time.monotonic() - start, 3)}


def verify_release_deployment(model_dir: str, release, expected: dict, what: str,
                              variant: str = "default", backend: str = BACKEND,
                              runtime_dir: str | None = None) -> dict:
  """The TF.js deployment of `release` in `model_dir` against the verification reference:
  its output on `slim_graph.probe_images(release.model)` against `expected[output]`, the
  Slim reference's outputs on them (`SlimReference.expected()`), `output` being the one
  the release's module type returns (exporters.verification.OUTPUT_OF_MODULE_TYPE)."""
  from exporters import verification
  from exporters.network import slim_graph
  output = verification.OUTPUT_OF_MODULE_TYPE[release.module_type]
  result = verify_in_runtime(model_dir, slim_graph.probe_images(release.model),
                             expected[output], f"{what} {output}", backend=backend,
                             runtime_dir=runtime_dir)
  return dict(result, reference=f"the Slim reference's {output} on the probe images")
