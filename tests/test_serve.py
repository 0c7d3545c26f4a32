"""The local hub server: tfhub.dev's routes, and TF Hub's own client loading through it.

The route tests serve a published fake tree; the end-to-end tests publish the
real nasnet_mobile exports and load them with `hub.load` and `hub.KerasLayer`
from http://127.0.0.1 into a fresh TFHUB_CACHE_DIR, checking the golden logits.
"""
import contextlib
import http.client
import pathlib
import subprocess
import sys
import threading
import urllib.parse
import urllib.request

import numpy as np
import pytest

from exporters.publishing import publish_lib, serve_lib
from tests.trees import fake_tree, nasnet_mobile_releases

REPO = pathlib.Path(__file__).resolve().parents[1]
HANDLE = "google/imagenet/nasnet_mobile/classification"


@contextlib.contextmanager
def serving(root):
  server = serve_lib.make_server(str(root), port=0)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield server.url
  finally:
    server.shutdown()
    server.server_close()


def get(url):
  """(status, headers, body) without following redirects."""
  parsed = urllib.parse.urlsplit(url)
  conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
  conn.request("GET", parsed.path + (f"?{parsed.query}" if parsed.query else ""))
  response = conn.getresponse()
  body = response.read()
  conn.close()
  return response.status, dict(response.getheaders()), body


@pytest.fixture(scope="module")
def published(tmp_path_factory):
  root = tmp_path_factory.mktemp("serve_fake")
  tree = fake_tree(root / "exports", nasnet_mobile_releases(module_types=["classification"]))
  publish_lib.run(publish_lib.PublishConfig(str(tree), str(root / "published")), log=lambda _: 0)
  return root / "published"


def test_routes(published):
  with serving(published) as url:
    status, headers, body = get(f"{url}/{HANDLE}/4?tf-hub-format=compressed")
    assert status == 200 and body == (published / HANDLE / "4.tar.gz").read_bytes()
    assert headers["Content-Type"] == "application/gzip"
    assert int(headers["Content-Length"]) == len(body)
    status, headers, body = get(f"{url}/{HANDLE}/4")
    assert status == 200 and body == (published / HANDLE / "4.md").read_bytes()
    assert headers["Content-Type"].startswith("text/markdown")
    # Without a version: the newest one, as tfhub.dev does.
    status, headers, _ = get(f"{url}/{HANDLE}?tf-hub-format=compressed")
    assert status == 302 and headers["Location"] == f"/{HANDLE}/5?tf-hub-format=compressed"
    # The bucket's own paths.
    status, _, body = get(f"{url}/{HANDLE}/4.manifest.json")
    assert status == 200 and b'"sha256"' in body
    status, _, body = get(f"{url}/{HANDLE}/4.tar.gz")
    assert status == 200 and body[:2] == b"\x1f\x8b"


@pytest.mark.parametrize("path", [
    f"/{HANDLE}/2?tf-hub-format=compressed",  # nasnet_mobile has no version 2
    "/google/imagenet/nasnet_tiny/classification/4",
    "/google/imagenet/nasnet_mobile/feature_vector/4",
    f"/{HANDLE}/../../../../../../etc/passwd",
    f"/{HANDLE}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2f..%2fetc%2fpasswd",
    f"/{HANDLE}/.tmp-4.tar.gz-123",
    "/",
])
def test_unknown_and_traversal_paths_are_404(published, path):
  with serving(published) as url:
    status, _, body = get(url + path)
  assert status == 404, body


def test_uncompressed_format_is_refused(published):
  with serving(published) as url:
    status, _, body = get(f"{url}/{HANDLE}/4?tf-hub-format=uncompressed")
  assert status == 400 and b"compressed" in body


def test_hub_resolver_downloads_and_unpacks(published, tmp_path, monkeypatch):
  import tensorflow_hub as hub
  monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
  with serving(published) as url:
    path = pathlib.Path(hub.resolve(f"{url}/{HANDLE}/4"))
  assert (path / "saved_model.pb").read_bytes().startswith(b"saved model ")
  assert (path / "variables" / "variables.index").is_file()
  assert str(path).startswith(str(tmp_path / "cache"))


def test_cli_serves_and_reports_a_missing_root(published, tmp_path):
  done = subprocess.run([sys.executable, "-m", "exporters.serve", f"--root={tmp_path}/none"],
                        cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 1 and "is not a folder" in done.stderr
  proc = subprocess.Popen([sys.executable, "-m", "exporters.serve", f"--root={published}",
                           "--port=0"], cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    line = proc.stdout.readline()
    assert "serving" in line and "http://127.0.0.1:" in line
    url = line.split(" at ")[1].split("/ ")[0]
    with urllib.request.urlopen(f"{url}/{HANDLE}/4") as response:
      assert response.read() == (published / HANDLE / "4.md").read_bytes()
  finally:
    proc.terminate()
    proc.wait(timeout=30)


# ---- End to end: the real exports through TF Hub's client.

@pytest.fixture(scope="module")
def real_published(nasnet_mobile_tree, tmp_path_factory):
  dest = tmp_path_factory.mktemp("real_published")
  publish_lib.run(publish_lib.PublishConfig(str(nasnet_mobile_tree.export_dir), str(dest),
                                            module_types=("classification",)),
                  log=lambda _: 0)
  return dest


@pytest.mark.slow
def test_hub_load_and_keras_layer_give_the_golden_logits(real_published, golden_nasnet_mobile,
                                                          tmp_path, monkeypatch):
  import tensorflow as tf
  import tensorflow_hub as hub
  monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
  images = golden_nasnet_mobile["images"]
  with serving(real_published) as url:
    handle = f"{url}/{HANDLE}/4"
    model = hub.load(handle)
    logits = model(tf.constant(images)).numpy()
    np.testing.assert_allclose(logits, golden_nasnet_mobile["logits"], atol=1e-4, rtol=0)
    layer = hub.KerasLayer(handle)
    np.testing.assert_allclose(layer(tf.constant(images)).numpy(), golden_nasnet_mobile["logits"],
                               atol=1e-4, rtol=0)
  assert len(list((tmp_path / "cache").iterdir())) >= 1  # Loaded through the download cache.


@pytest.mark.slow
def test_version_3_loads_as_a_tf1_hub_module(real_published, golden_nasnet_mobile, tmp_path,
                                             monkeypatch):
  import tensorflow as tf
  import tensorflow_hub as hub
  monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
  with serving(real_published) as url:
    module = hub.load(f"{url}/{HANDLE}/3", tags=[])
  outputs = module.signatures["default"](images=tf.constant(golden_nasnet_mobile["images"]))
  np.testing.assert_allclose(outputs["default"].numpy(), golden_nasnet_mobile["logits"],
                             atol=1e-4, rtol=0)
