"""TF.js graph models converted from the TF1 Hub format exports, run in the real TF.js runtime.

The converter is the official one (`tensorflowjs_converter --input_format=tf_hub`
in `.venv-tfjs`, `make tfjs-env`); the runtime is @tensorflow/tfjs-core +
tfjs-converter with the WebAssembly backend (exporters/tfjs_runtime, `make
tfjs-runtime`; the backend export-all verifies each deployment with, about ten
times faster here than the pure-JS CPU one). The deployments are the
registry's ([deployments.tfjs]); export-all converts one per module type (version 3's:
CONVERTED_VERSION) from the session's nasnet_mobile exports and verifies each
against the Slim reference in the runtime (read from disk), publish writes
them, and the runtime loads each over HTTP on 127.0.0.1 with `{fromTFHub:
true}` from the project's own serve.
"""
import dataclasses
import hashlib
import inspect
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest

import registry
from exporters import export_tree, formats
from exporters.cards import docs_lib
from exporters.errors import ExportError
from exporters.export_tree import layout
from exporters.formats import tfjs
from exporters.publishing import publish_lib, serve_lib
from tests.conftest import REPO, require_shared

# late: most of its tests read start_in_background's conversions.
pytestmark = [pytest.mark.tfjs, pytest.mark.late]

RUNTIME = REPO / "exporters" / "tfjs_runtime"
BACKEND = "wasm"  # The fast one here: export-all's (tfjs.BACKEND).
TOLERANCE = 1e-4
# Every TF.js deployment the registry lists ([deployments.tfjs]): nasnet_mobile, both module types,
# versions 1 and 3.
ALL_DEPLOYMENTS = registry.default().deployments(kind="tfjs")
# The ones converted and run here: one per module type (the logits and the features), of
# version 3, whose parent has every signature kind (the *_with_bn_hparams ones too). A
# version 1 deployment is the converter's output for the same network's `default` signature
# (byte for byte the same files as version 3's of its module type); export-all's handling of
# each deployment is tests/test_export_all.py's, publishing them tests/test_publish.py's.
CONVERTED_VERSION = 3
DEPLOYMENTS = [d for d in ALL_DEPLOYMENTS if d.parent.version.number == CONVERTED_VERSION]
RELEASES = [d.parent for d in DEPLOYMENTS]
IDS = [f"{r.module_type}-v{r.version.number}" for r in RELEASES]
GOLDEN_KEY = {"classification": "logits", "feature_vector": "features"}


def _node() -> str:
  node = shutil.which("node")
  if node is None or shutil.which("npm") is None:
    pytest.skip("node/npm are absent: the TF.js runtime tests need Node.js 20 and npm")
  problem = tfjs.runtime_problem(str(RUNTIME))
  if problem:
    pytest.fail(problem, pytrace=False)
  return node


def _require_converter() -> None:
  if not os.path.isfile(tfjs.CONVERTER):
    pytest.fail(f"{tfjs.CONVERTER} is missing: build the converter environment with "
                f"`make tfjs-env`", pytrace=False)


@dataclasses.dataclass
class Hub:
  export_dir: pathlib.Path
  published: pathlib.Path
  url: str
  requests: list  # The paths (with query) the server was asked for, in order.
  export_output: str


def start_in_background(background, tmp_path_factory, selected: set):
  """export-all's conversions (minutes of the converter's process) and publish, once the
  background models are done (conftest.after_exports): the tests that read them are marked
  late."""
  uses_hub = {name for name, f in globals().items() if name.startswith("test_")
              and {"hub", "converted"} & set(inspect.signature(f).parameters)}
  if not uses_hub & selected:
    return None
  root = tmp_path_factory.mktemp("tfjs_hub")
  return background.after_exports(lambda: _convert_and_publish(background.tree.result(), root))


def _convert_and_publish(tree, root: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, str]:
  """export-all converts DEPLOYMENTS into a copy of the session's tree (the parents are up to
  date there: no model run), and publish writes them: (exports, published, export-all's
  output)."""
  _require_converter()
  exports = root / "exports"
  shutil.copytree(tree.export_dir, exports, copy_function=os.link)
  lines = []
  result = export_tree.run(export_tree.ExportAllConfig(
      checkpoint_dir=str(tree.checkpoint_dir), export_dir=str(exports),
      models=("nasnet_mobile",), versions=(CONVERTED_VERSION,), mirror="", in_process=True,
      heartbeat_s=0), log=lines.append)
  assert [(r.format, r.status) for r in result.rows] == (
      [("hub", "up to date")] * 2 + [("tfjs", "exported")] * len(DEPLOYMENTS))
  published = root / "published"
  publish_lib.run(publish_lib.PublishConfig(export_dir=str(exports), dest=str(published),
                                            versions=(CONVERTED_VERSION,)), log=lambda _: None)
  return exports, published, "\n".join(lines)


@pytest.fixture(scope="module")
def hub(background_exports, nasnet_mobile_tree):
  """The converted and published deployments (start_in_background), served on 127.0.0.1."""
  exports, published, output = background_exports.started[__name__].result()
  requests = []

  class Recording(serve_lib.HubRequestHandler):
    def _answer(self, send_body):
      requests.append(self.path)
      super()._answer(send_body)

  server = serve_lib.make_server(str(published))
  server.RequestHandlerClass = Recording
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield Hub(exports, published, server.url, requests, output)
  server.shutdown()
  server.server_close()


@pytest.fixture(scope="module")
def converted(hub):
  """Each deployment's graph model in the export tree: {id: formats.Converted}."""
  found = {}
  for i, d in zip(IDS, DEPLOYMENTS):
    folder = layout.deployment_path(hub.export_dir, d)
    stamp = export_tree.read_stamp(layout.deployment_stamp_path(hub.export_dir, d))
    found[i] = formats.Converted(str(folder), tuple(stamp.export["files"]),
                                 stamp.export["converted_by"], stamp.export["generated_by"],
                                 stamp.seconds)
  return found


def test_registry_lists_the_four_published_deployments():
  assert [d.handle for d in ALL_DEPLOYMENTS] == [
      f"google/tfjs-model/imagenet/nasnet_mobile/{t}/{v}/default/1"
      for t in ("classification", "feature_vector") for v in (1, 3)]


@pytest.mark.parametrize("release", RELEASES, ids=IDS)
def test_layout_is_a_graph_model_from_the_tf1_module(release, converted):
  model = converted[IDS[RELEASES.index(release)]]
  files = sorted(os.listdir(model.output_dir))
  assert files == sorted(model.files) and model.files[0] == "model.json"
  spec = json.loads(pathlib.Path(model.output_dir, "model.json").read_text())
  assert spec["format"] == "graph-model"
  assert spec["convertedBy"] == "TensorFlow.js Converter v4.17.0"
  assert spec["generatedBy"] == "2.15.1"
  # The converter's default sharding (4 MiB): every shard but the last is full.
  shards = [pathlib.Path(model.output_dir, p) for p in model.files[1:]]
  assert [s.name for s in shards] == [f"group1-shard{k}of{len(shards)}.bin"
                                      for k in range(1, len(shards) + 1)]
  assert all(s.stat().st_size == 4 * 1024 * 1024 for s in shards[:-1])
  size = release.model.image_size
  assert spec["signature"]["inputs"]["images:0"]["tensorShape"]["dim"][1:] == [
      {"size": str(size)}, {"size": str(size)}, {"size": "3"}]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=IDS)
def test_published_with_card_and_manifest(deployment, hub, converted):
  model = converted[IDS[DEPLOYMENTS.index(deployment)]]
  folder = hub.published / deployment.handle
  assert sorted(os.listdir(folder)) == sorted(model.files)
  manifest = json.loads((folder.parent / "1.manifest.json").read_text())
  assert manifest["handle"] == deployment.handle_dir and manifest["format"] == "tfjs"
  assert manifest["parent"] == deployment.parent.handle_with_version
  for name in model.files:
    data = (folder / name).read_bytes()
    assert data == pathlib.Path(model.output_dir, name).read_bytes()
    assert manifest["files"][name] == {"sha256": hashlib.sha256(data).hexdigest(),
                                       "size": len(data)}
  assert (folder.parent / "1.md").read_text() == docs_lib.render_deployment_card(deployment)
  with urllib.request.urlopen(f"{hub.url}/{deployment.handle}") as answer:  # Its card.
    assert answer.read() == (folder.parent / "1.md").read_bytes()


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=IDS)
def test_tfjs_runtime_reproduces_the_golden_outputs_from_serve(deployment, hub, converted,
                                                               golden_nasnet_mobile):
  _node()
  release = deployment.parent
  model = converted[IDS[DEPLOYMENTS.index(deployment)]]
  golden = golden_nasnet_mobile
  del hub.requests[:]
  report = tfjs.run_graph_model(f"{hub.url}/{deployment.handle}", golden["images"],
                                backend=BACKEND, from_tfhub=True, batch=1,
                                runtime_dir=str(RUNTIME))
  assert report.backend == BACKEND
  assert report.tfjs_core == report.tfjs_converter == "4.22.0"
  # What tf.loadGraphModel(handle, {fromTFHub: true}) asks the project's serve for:
  # model.json first, then each weight shard once, relative to it, with the same query.
  # The shards are fetched concurrently, so the order they arrive in varies.
  [model_json, *shards] = [f"/{deployment.handle}/{name}?tfjs-format=file"
                           for name in model.files]
  assert hub.requests[0] == model_json
  assert sorted(hub.requests[1:]) == sorted(shards)
  [got] = report.outputs.values()
  expected = golden[GOLDEN_KEY[release.module_type]]
  assert got.shape == expected.shape
  worst = float(np.max(np.abs(got - expected)))
  assert worst <= TOLERANCE, f"max abs difference {worst} > {TOLERANCE}"


def test_export_all_verified_each_deployment_in_the_runtime(hub):
  """export-all ran each converted deployment in the TF.js runtime (wasm) on the probe images
  and compared it with the Slim reference before putting it in place; the stamp says so."""
  _node()
  for deployment in DEPLOYMENTS:
    stamp = export_tree.read_stamp(layout.deployment_stamp_path(hub.export_dir, deployment))
    verification = stamp.export["verification"]
    assert verification["verified"] is True, verification
    assert (verification["backend"], verification["runtime"]) == (BACKEND, "tfjs 4.22.0")
    assert verification["images"] == 2 and verification["tolerance"] == TOLERANCE
    assert 0 <= verification["max_abs_diff"] <= TOLERANCE
    output = GOLDEN_KEY[deployment.parent.module_type]
    assert verification["reference"] == f"the Slim reference's {output} on the probe images"
    assert (f"{deployment.handle}: converted and verified (tfjs {BACKEND}, max abs diff "
            in hub.export_output)


COPYING_CONVERTER = """#!{python}
# Stands in for tensorflowjs_converter: writes a copy of an already converted graph model.
import shutil, sys
shutil.copytree({source!r}, sys.argv[-1])
"""


def _copying_converter(folder: pathlib.Path, source: pathlib.Path) -> pathlib.Path:
  folder.mkdir(parents=True)
  path = folder / "copying_converter"
  path.write_text(COPYING_CONVERTER.format(python=sys.executable, source=str(source)))
  path.chmod(0o755)
  return path


def _tree_without(hub, deployment, exports: pathlib.Path) -> pathlib.Path:
  """A copy of the session's converted tree without `deployment` (its folder and stamp)."""
  shutil.copytree(hub.export_dir, exports, copy_function=os.link)
  shutil.rmtree(layout.deployment_path(exports, deployment))
  layout.deployment_stamp_path(exports, deployment).unlink()
  return exports


def _one_deployment_config(nasnet_mobile_tree, exports, deployment, converter):
  release = deployment.parent
  return export_tree.ExportAllConfig(
      checkpoint_dir=str(nasnet_mobile_tree.checkpoint_dir), export_dir=str(exports),
      models=("nasnet_mobile",), module_types=(release.module_type,),
      versions=(release.version.number,), mirror="", in_process=True, heartbeat_s=0,
      tfjs_converter=str(converter))


def _perturb_largest_weight(model_dir: pathlib.Path, factor: float) -> str:
  """Scales the largest float32 weight of a graph model in place; returns its name."""
  spec = json.loads((model_dir / "model.json").read_text())
  [group] = spec["weightsManifest"]
  shards = [model_dir / p for p in group["paths"]]
  data = bytearray(b"".join(p.read_bytes() for p in shards))
  offset, largest = 0, None
  for weight in group["weights"]:
    assert weight["dtype"] in ("float32", "int32") and "quantization" not in weight
    size = 4 * int(np.prod(weight["shape"], dtype=np.int64))
    if weight["dtype"] == "float32" and (largest is None or size > largest[2]):
      largest = (weight["name"], offset, size)
    offset += size
  assert offset == len(data)
  name, start, size = largest
  values = np.frombuffer(bytes(data[start:start + size]), dtype="<f4") * np.float32(factor)
  data[start:start + size] = values.astype("<f4").tobytes()
  for path in shards:
    size = path.stat().st_size
    path.write_bytes(bytes(data[:size]))
    del data[:size]
  return name


def test_export_time_verification_rejects_perturbed_weights_and_leaves_nothing(
    hub, nasnet_mobile_tree, tmp_path):
  """A deployment whose weights differ from the checkpoint's (here: the converter's output
  with one weight scaled) fails its verification in one line and is not put in place."""
  _node()
  deployment = DEPLOYMENTS[0]
  perturbed = tmp_path / "perturbed"
  shutil.copytree(layout.deployment_path(hub.export_dir, deployment), perturbed)
  _perturb_largest_weight(perturbed, factor=1.5)
  exports = _tree_without(hub, deployment, tmp_path / "exports")
  lines = []
  with pytest.raises(ExportError) as e:
    export_tree.run(_one_deployment_config(
        nasnet_mobile_tree, exports, deployment,
        _copying_converter(tmp_path / "bin", perturbed)), log=lines.append)
  [row] = [r for r in e.value.result.rows if r.format == "tfjs"]
  assert row.status == "failed"
  assert row.error.startswith(f"{deployment.handle} logits (TF.js {BACKEND}): differs from "
                              f"the reference by "), row.error
  assert row.error.endswith(f"(tolerance {TOLERANCE})") and "\n" not in row.error
  assert not layout.deployment_path(exports, deployment).exists()
  assert not layout.deployment_stamp_path(exports, deployment).exists()
  assert list(exports.rglob(".tmp-*")) == [] and list(exports.rglob(".old-*")) == []


def test_verification_rejects_the_wrong_output_in_one_line(converted, tmp_path):
  """The runtime's output against a reference of another shape, and a non-finite one."""
  _node()
  model = converted[IDS[0]]  # classification: logits [2, 1001]
  images = np.zeros((2, 224, 224, 3), np.float32)
  release = DEPLOYMENTS[0].parent
  with pytest.raises(ExportError) as e:
    tfjs.verify_release_deployment(model.output_dir, release,
                                   {"logits": np.zeros((2, 1056), np.float32)}, "wrong")
  assert str(e.value) == (f"wrong logits (TF.js {BACKEND}): the artifact gives shape "
                          f"[2, 1001], the reference [2, 1056]")
  nan = tmp_path / "nan"
  shutil.copytree(model.output_dir, nan)
  _perturb_largest_weight(nan, factor=float("nan"))
  with pytest.raises(ExportError, match=r"^non-finite values in wrong logits \(TF.js wasm\): "
                                        r"NaN in the artifact's output$"):
    tfjs.verify_in_runtime(str(nan), images, np.zeros((2, 1001), np.float32), "wrong logits")


def test_a_missing_runtime_converts_without_verifying_until_it_is_there(
    hub, nasnet_mobile_tree, tmp_path, monkeypatch):
  deployment = DEPLOYMENTS[1]  # feature_vector.
  exports = _tree_without(hub, deployment, tmp_path / "exports")
  cfg = _one_deployment_config(nasnet_mobile_tree, exports, deployment, _copying_converter(
      tmp_path / "bin", layout.deployment_path(hub.export_dir, deployment)))
  absent = tmp_path / "no_runtime"
  reason = f"the TF.js runtime is not installed in {absent} (install it with `make tfjs-runtime`)"
  monkeypatch.setattr(tfjs, "RUNTIME_DIR", str(absent))
  lines = []
  result = export_tree.run(cfg, log=lines.append)
  assert [r.status for r in result.rows] == ["up to date", "exported"]
  assert any(line.startswith(f"[2/2] {deployment.handle}: converted in ")
             and line.split(" … ")[0].endswith(f", not verified: {reason}")
             for line in lines), lines
  stamp_file = layout.deployment_stamp_path(exports, deployment)
  assert export_tree.read_stamp(stamp_file).export["verification"] == {
      "verified": False, "reason": reason}
  # Still without the runtime, it is up to date: converting again would verify nothing.
  assert [r.status for r in export_tree.run(cfg, log=lambda _: None).rows] == ["up to date"] * 2
  # No node on PATH is a reason too.
  with monkeypatch.context() as m:
    m.setenv("PATH", str(tmp_path / "bin"))
    assert tfjs.runtime_problem() == "`node` is not on PATH (the TF.js runtime needs Node.js 20)"
  # The runtime is back: the next run verifies it (converting it again, the same bytes).
  monkeypatch.setattr(tfjs, "RUNTIME_DIR", str(RUNTIME))
  _node()
  lines = []
  result = export_tree.run(cfg, log=lines.append)
  assert [r.status for r in result.rows] == ["up to date", "exported"]
  assert any(f"{deployment.handle}: converted and verified (tfjs {BACKEND}, max abs diff " in line
             for line in lines), lines
  assert export_tree.read_stamp(stamp_file).export["verification"]["verified"] is True


def test_a_second_export_all_converts_nothing(hub, nasnet_mobile_tree):
  lines = []
  result = export_tree.run(export_tree.ExportAllConfig(
      checkpoint_dir=str(nasnet_mobile_tree.checkpoint_dir), export_dir=str(hub.export_dir),
      models=("nasnet_mobile",), versions=(CONVERTED_VERSION,), mirror="", in_process=True,
      heartbeat_s=0), log=lines.append)
  assert [r.status for r in result.rows] == ["up to date"] * 4
  assert lines == ["all 2 release(s) and 2 deployment(s) up to date; no export work done"]


def test_conversion_is_deterministic(converted, release_export, tmp_path):
  first_id, release = IDS[0], RELEASES[0]
  first = converted[first_id]
  again = tfjs.convert(release_export(release).export_dir, str(tmp_path / "again"))
  assert again.files == first.files
  for name in first.files:
    assert (pathlib.Path(again.output_dir, name).read_bytes() ==
            pathlib.Path(first.output_dir, name).read_bytes()), name


def test_a_missing_parent_is_one_line_and_leaves_nothing(tmp_path):
  output = tmp_path / "out" / "tfjs"
  with pytest.raises(ExportError) as e:
    tfjs.convert(str(tmp_path / "no_such_export"), str(output))
  assert "does not exist" in str(e.value) and "\n" not in str(e.value)
  assert os.listdir(tmp_path) == []


def test_a_saved_model_2_parent_is_refused(tmp_path):
  parent = tmp_path / "v4"
  parent.mkdir()
  (parent / "saved_model.pb").write_bytes(b"")
  with pytest.raises(ExportError, match="not a TF1 Hub format export .tfhub_module.pb"):
    tfjs.convert(str(parent), str(tmp_path / "tfjs"))
  assert os.listdir(tmp_path) == ["v4"]


def test_a_converter_failure_is_one_line_and_leaves_nothing(tmp_path):
  _require_converter()
  parent = tmp_path / "broken"
  parent.mkdir()
  for name in ("tfhub_module.pb", "saved_model.pb"):
    (parent / name).write_bytes(b"not a protocol buffer")
  old = tmp_path / "deployments" / "tfjs"
  old.mkdir(parents=True)
  (old / "model.json").write_text("{}")  # An earlier output: kept when the new one fails.
  with pytest.raises(ExportError) as e:
    tfjs.convert(str(parent), str(old))
  message = str(e.value)
  assert message.startswith(f"the TF.js converter failed on {str(parent)!r}: ")
  assert "\n" not in message
  assert sorted(os.listdir(tmp_path / "deployments")) == ["tfjs"]
  assert os.listdir(old) == ["model.json"]


def _tfjs_cli(tmp_path, *release_flags):
  return subprocess.run([sys.executable, "-m", "exporters.tfjs", *release_flags,
                         f"--parent_dir={tmp_path / 'missing'}",
                         f"--output_dir={tmp_path / 'out'}"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_reports_a_missing_parent_in_one_line(tmp_path):
  result = _tfjs_cli(tmp_path, "--model=nasnet_mobile", "--module_type=classification",
                     "--version=1")
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"error: parent export {str(tmp_path / 'missing')!r} does not exist; export its TF1 "
      f"Hub format release first"]
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("model,module_type,version", [
    ("nasnet_mobile", "classification", 4),  # A TF2 release: TF Hub converted TF1 modules only.
    ("pnasnet_large", "feature_vector", 3),  # A model TF Hub gave no TF.js deployment.
])
def test_cli_refuses_a_release_without_a_tfjs_deployment(tmp_path, model, module_type, version):
  result = _tfjs_cli(tmp_path, f"--model={model}", f"--module_type={module_type}",
                     f"--version={version}")
  handle = registry.default().release(model, module_type, version).handle_with_version
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: {handle} has no tfjs deployment")
  assert "Traceback" not in result.stderr
  assert os.listdir(tmp_path) == []
