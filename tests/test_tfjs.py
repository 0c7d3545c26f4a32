"""TF.js graph models converted from the TF1 Hub format exports, run in the real TF.js runtime.

The converter is the official one (`tensorflowjs_converter --input_format=tf_hub`
in `.venv-tfjs`, `make tfjs-env`); the runtime is @tensorflow/tfjs-core +
tfjs-converter with the pure-JS CPU backend (tests/tfjs_runtime, `make
tfjs-runtime`), loading the model over HTTP on 127.0.0.1 with
`{fromTFHub: true}`. The deployments are the registry's ([tfjs]); export-all
converts them from the session's nasnet_mobile exports, publish writes them and
the project's own serve answers the runtime's requests.
"""
import dataclasses
import hashlib
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
from exporters import export_tree
from exporters.cards import docs_lib
from exporters.errors import ExportError
from exporters.export_tree import layout
from exporters.formats import tfjs
from exporters.publishing import publish_lib, serve_lib
from tests.conftest import REPO, require_shared

pytestmark = pytest.mark.tfjs

RUNTIME = REPO / "tests" / "tfjs_runtime"
RUN_SCRIPT = RUNTIME / "run_graph_model.js"
TOLERANCE = 1e-4
# Every TF.js deployment the registry lists ([tfjs]): nasnet_mobile, both module types,
# versions 1 and 3.
DEPLOYMENTS = registry.default().tfjs_deployments()
CONVERTED = [(d.parent.module_type, d.parent.version.number) for d in DEPLOYMENTS]
RELEASES = [d.parent for d in DEPLOYMENTS]
IDS = [f"{r.module_type}-v{r.version.number}" for r in RELEASES]
GOLDEN_KEY = {"classification": "logits", "feature_vector": "features"}


def _node() -> str:
  node = shutil.which("node")
  if node is None or shutil.which("npm") is None:
    pytest.skip("node/npm are absent: the TF.js runtime tests need Node.js 20 and npm")
  if not (RUNTIME / "node_modules" / "@tensorflow" / "tfjs-converter").is_dir():
    pytest.fail(f"{RUNTIME}/node_modules is missing: install the TF.js runtime with "
                f"`make tfjs-runtime`", pytrace=False)
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


@pytest.fixture(scope="module")
def hub(nasnet_mobile_tree, tmp_path_factory):
  """export-all converts the four deployments into a copy of the session's tree (the parents
  are up to date there: no model run), publish writes them, serve answers on 127.0.0.1."""
  _require_converter()
  root = tmp_path_factory.mktemp("tfjs_hub")
  exports = root / "exports"
  shutil.copytree(nasnet_mobile_tree.export_dir, exports, copy_function=os.link)
  lines = []
  result = export_tree.run(export_tree.ExportAllConfig(
      checkpoint_dir=str(nasnet_mobile_tree.checkpoint_dir), export_dir=str(exports),
      models=("nasnet_mobile",), versions=(1, 3), mirror="", in_process=True, heartbeat_s=0),
      log=lines.append)
  assert [r.status for r in result.rows] == ["up to date"] * 4 + ["exported"] * 4
  published = root / "published"
  publish_lib.run(publish_lib.PublishConfig(export_dir=str(exports), dest=str(published),
                                            versions=(1, 3)), log=lambda _: None)
  requests = []

  class Recording(serve_lib.HubRequestHandler):
    def _answer(self, send_body):
      requests.append(self.path)
      super()._answer(send_body)

  server = serve_lib.make_server(str(published))
  server.RequestHandlerClass = Recording
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield Hub(exports, published, server.url, requests, "\n".join(lines))
  server.shutdown()
  server.server_close()


@pytest.fixture(scope="module")
def converted(hub):
  """Each deployment's graph model in the export tree: {id: TfjsModel-like}."""
  found = {}
  for i, d in zip(IDS, DEPLOYMENTS):
    folder = layout.deployment_path(hub.export_dir, d)
    stamp = export_tree.read_stamp(layout.deployment_stamp_path(hub.export_dir, d))
    found[i] = tfjs.TfjsModel(str(folder), tuple(stamp.export["files"]),
                              stamp.export["converted_by"], stamp.export["generated_by"],
                              stamp.seconds)
  return found


def run_in_tfjs(node, model_url, images, tmp_path) -> dict:
  """Loads model_url with fromTFHub in the TF.js runtime, runs `images`; the report."""
  images_path = tmp_path / "images.f32"
  images_path.write_bytes(np.ascontiguousarray(images, dtype="<f4").tobytes())
  spec = tmp_path / "spec.json"
  spec.write_text(json.dumps({"model_url": model_url, "from_tfhub": True, "batch": 1,
                              "inputs": {"path": str(images_path),
                                         "shape": list(images.shape)}}))
  out = tmp_path / "out.json"
  result = subprocess.run([node, str(RUN_SCRIPT), str(spec), str(out)], cwd=RUNTIME,
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-4000:]
  return json.loads(out.read_text())


def test_registry_lists_the_four_published_deployments():
  assert [d.handle for d in DEPLOYMENTS] == [
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
                                                               golden_nasnet_mobile, tmp_path):
  node = _node()
  release = deployment.parent
  model = converted[IDS[DEPLOYMENTS.index(deployment)]]
  golden = golden_nasnet_mobile
  del hub.requests[:]
  report = run_in_tfjs(node, f"{hub.url}/{deployment.handle}", golden["images"], tmp_path)
  assert report["backend"] == "cpu"
  assert report["tfjs_core"] == report["tfjs_converter"] == "4.22.0"
  # What tf.loadGraphModel(handle, {fromTFHub: true}) asks the project's serve for:
  # model.json first, then each weight shard once, relative to it, with the same query.
  # The shards are fetched concurrently, so the order they arrive in varies.
  [model_json, *shards] = [f"/{deployment.handle}/{name}?tfjs-format=file"
                           for name in model.files]
  assert hub.requests[0] == model_json
  assert sorted(hub.requests[1:]) == sorted(shards)
  [output] = report["outputs"].values()
  expected = golden[GOLDEN_KEY[release.module_type]]
  assert output["shape"] == list(expected.shape)
  got = np.array(output["data"], dtype=np.float32).reshape(expected.shape)
  worst = float(np.max(np.abs(got - expected)))
  assert worst <= TOLERANCE, f"max abs difference {worst} > {TOLERANCE}"


def test_a_second_export_all_converts_nothing(hub, nasnet_mobile_tree):
  lines = []
  result = export_tree.run(export_tree.ExportAllConfig(
      checkpoint_dir=str(nasnet_mobile_tree.checkpoint_dir), export_dir=str(hub.export_dir),
      models=("nasnet_mobile",), versions=(1, 3), mirror="", in_process=True, heartbeat_s=0),
      log=lines.append)
  assert [r.status for r in result.rows] == ["up to date"] * 8
  assert lines == ["all 4 release(s) and 4 TF.js deployment(s) up to date; no export work done"]


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
  assert len(lines) == 1 and lines[0].startswith(f"error: {handle} has no TF.js deployment")
  assert "Traceback" not in result.stderr
  assert os.listdir(tmp_path) == []
