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
checked (model.json parses and names exactly the weight files present) and
only then renamed into place; an old output is replaced whole, and on any
failure nothing is left behind.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time

from exporters.errors import ExportError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONVERTER = os.path.join(REPO, ".venv-tfjs", "bin", "tensorflowjs_converter")
MODEL_JSON = "model.json"
# The TF1 Hub format's marker file: what the converter's tf_hub path looks for.
HUB_MODULE_PB = "tfhub_module.pb"
# The signature the published TF.js models were converted from (the converter's own default).
SIGNATURE = "default"


@dataclasses.dataclass(frozen=True)
class TfjsModel:
  """One converted graph model in place."""
  output_dir: str
  files: tuple[str, ...]  # model.json first, then the weight shards in manifest order.
  converted_by: str  # model.json's "convertedBy", e.g. "TensorFlow.js Converter v4.17.0".
  generated_by: str  # model.json's "generatedBy": the converter's TensorFlow version.
  seconds: float


def convert(parent_dir: str, output_dir: str, converter: str = CONVERTER,
            timeout_s: float = 1800) -> TfjsModel:
  """Converts the TF1 Hub format export `parent_dir` into a TF.js graph model at `output_dir`."""
  _check_parent(parent_dir)
  if not os.path.isfile(converter):
    raise ExportError(f"the TF.js converter {converter} is missing; build its environment "
                      f"with `make tfjs-env`")
  start = time.monotonic()
  created = _make_parents(output_dir)
  tmp_root = None
  try:
    tmp_root = _temporary_dir(output_dir)
    tmp_out = os.path.join(tmp_root, "model")
    _run_converter(converter, parent_dir, tmp_out, timeout_s)
    files, model = _check_output(tmp_out)
    model = _canonicalize(os.path.join(tmp_out, MODEL_JSON), model)
    _move_into_place(tmp_out, output_dir)
  finally:
    if tmp_root:
      shutil.rmtree(tmp_root, ignore_errors=True)
    if not os.path.isdir(output_dir):
      _remove_empty(created)
  return TfjsModel(output_dir, files, model.get("convertedBy", ""),
                   model.get("generatedBy", ""), time.monotonic() - start)


def _check_parent(parent_dir: str) -> None:
  if not os.path.isdir(parent_dir):
    raise ExportError(f"parent export {parent_dir!r} does not exist; export its TF1 Hub format "
                      f"release first")
  for name in (HUB_MODULE_PB, "saved_model.pb"):
    if not os.path.isfile(os.path.join(parent_dir, name)):
      raise ExportError(f"parent export {parent_dir!r} is not a TF1 Hub format export "
                        f"({name} is missing)")


def _make_parents(output_dir: str) -> list[str]:
  """Creates output_dir's missing parent folders; returns them, outermost first."""
  missing = []
  ancestor = os.path.dirname(os.path.abspath(output_dir))
  while not os.path.isdir(ancestor):
    if os.path.lexists(ancestor):
      raise ExportError(f"cannot create {output_dir!r}: {ancestor!r} is not a directory")
    missing.append(ancestor)
    ancestor = os.path.dirname(ancestor)
  missing.reverse()
  try:
    for folder in missing:
      os.mkdir(folder)
  except OSError as e:
    _remove_empty(missing)
    raise ExportError(f"cannot create {output_dir!r}: {e.strerror or e}") from None
  return missing


def _remove_empty(created: list[str]) -> None:
  """Removes the parent folders a failed conversion created, deepest first, if still empty."""
  for folder in reversed(created):
    try:
      os.rmdir(folder)
    except OSError:
      pass  # Something else is in it now.


def _temporary_dir(output_dir: str) -> str:
  parent = os.path.dirname(os.path.abspath(output_dir))
  try:
    tmp_root = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(output_dir)}-", dir=parent)
  except OSError as e:
    raise ExportError(f"cannot write into {parent!r}: {e.strerror or e}") from None
  return tmp_root


def _run_converter(converter: str, parent_dir: str, out_dir: str, timeout_s: float) -> None:
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  env["CUDA_VISIBLE_DEVICES"] = ""  # The converter runs on the CPU wherever it runs.
  command = [converter, "--input_format=tf_hub", f"--signature_name={SIGNATURE}",
             os.path.abspath(parent_dir), out_dir]
  try:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
  except subprocess.TimeoutExpired:
    raise ExportError(f"the TF.js converter did not finish converting {parent_dir!r} within "
                      f"{timeout_s:.0f} s") from None
  if result.returncode != 0:
    raise ExportError(f"the TF.js converter failed on {parent_dir!r}: "
                      f"{_last_line(result.stderr) or f'exit status {result.returncode}'}")


def _last_line(text: str) -> str:
  """The converter's own error: the last non-empty line of its stderr (a traceback's last)."""
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return lines[-1] if lines else ""


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


def _move_into_place(tmp_out: str, output_dir: str) -> None:
  # mkdtemp-made parents are private; the model is published, so it is readable by all.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp_out, 0o777 & ~umask)
  old = None
  if os.path.lexists(output_dir):
    old = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(os.path.abspath(output_dir)))
    os.rename(output_dir, os.path.join(old, "model"))
  os.rename(tmp_out, output_dir)
  if old:
    shutil.rmtree(old, ignore_errors=True)
