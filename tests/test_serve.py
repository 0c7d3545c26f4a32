"""The local hub server: tfhub.dev's routes, and TF Hub's own client loading through it.

The route tests serve a published fake tree; the hostile-client tests (links
out of the root, Range, disconnects, idle connections) serve small trees of
their own (the load test is tests/test_serve_load.py); the end-to-end tests
publish the real nasnet_mobile exports and load them with `hub.load` and `hub.KerasLayer`
from http://127.0.0.1 into a fresh TFHUB_CACHE_DIR, checking the golden logits.
"""
import contextlib
import http.client
import os
import pathlib
import socket
import struct
import subprocess
import sys
import threading
import time
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


# ---- Hostile and unlucky clients: links out of the root, ranges, disconnects, idle connections.

SECRET = b"secret outside the root\n"


@pytest.fixture
def linked_root(tmp_path):
  """A root holding a file, links that stay inside it and links that lead out of it."""
  outside = tmp_path / "outside"
  outside.mkdir()
  (outside / "secret.txt").write_bytes(SECRET)
  (outside / "4.md").write_bytes(SECRET)
  (outside / "4.tar.gz").write_bytes(SECRET)
  root = tmp_path / "root"
  folder = root / HANDLE
  folder.mkdir(parents=True)
  (folder / "4.md").write_bytes(b"# card 4\n")
  (folder / "4.tar.gz").write_bytes(bytes(range(256)) * 40)
  (root / "escape").symlink_to(outside)  # A folder outside.
  (folder / "5.md").symlink_to(outside / "secret.txt")  # A file outside.
  (root / "google/imagenet/alias").symlink_to(folder.parent)  # A folder inside.
  (folder / "6.md").symlink_to(folder / "4.md")  # A file inside.
  return root


@pytest.mark.parametrize("path", [
    "/escape/secret.txt",
    "/escape/4",
    "/escape/4?tf-hub-format=compressed",
    "/escape",  # Would redirect to the newest version outside.
    f"/{HANDLE}/5",
    f"/{HANDLE}/5.md",
])
def test_links_out_of_the_root_are_404(linked_root, path):
  with serving(linked_root) as url:
    status, _, body = get(url + path)
  assert status == 404 and SECRET not in body


def test_links_that_stay_inside_the_root_are_served(linked_root, tmp_path):
  card = (linked_root / HANDLE / "4.md").read_bytes()
  with serving(linked_root) as url:
    assert get(f"{url}/{HANDLE}/6")[::2] == (200, card)
    assert get(f"{url}/google/imagenet/alias/classification/4")[::2] == (200, card)
  # A root given through a link is its real path: what lies inside it is inside.
  (tmp_path / "root_link").symlink_to(linked_root)
  with serving(tmp_path / "root_link") as url:
    assert get(f"{url}/{HANDLE}/4")[::2] == (200, card)
    assert get(f"{url}/escape/secret.txt")[0] == 404


def request(url, path, headers=None, method="GET"):
  parsed = urllib.parse.urlsplit(url)
  conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
  conn.request(method, path, headers=headers or {})
  response = conn.getresponse()
  body = response.read()
  conn.close()
  return response.status, response, body


@pytest.mark.parametrize("header, expected", [
    ("bytes=0-99", (0, 99)),
    ("bytes=10000-", (10000, 10239)),
    ("bytes=-40", (10200, 10239)),
    ("bytes=10200-99999", (10200, 10239)),  # Clipped to the end.
])
def test_a_single_range_is_answered_206(linked_root, header, expected):
  data = (linked_root / HANDLE / "4.tar.gz").read_bytes()
  first, last = expected
  with serving(linked_root) as url:
    status, response, body = request(url, f"/{HANDLE}/4?tf-hub-format=compressed",
                                     {"Range": header})
  assert status == 206
  assert response.getheader("Content-Range") == f"bytes {first}-{last}/{len(data)}"
  assert int(response.getheader("Content-Length")) == last - first + 1
  assert body == data[first:last + 1]


@pytest.mark.parametrize("header", ["bytes=10240-", "bytes=99999-100000", "bytes=-0"])
def test_an_unsatisfiable_range_is_416(linked_root, header):
  with serving(linked_root) as url:
    status, response, body = request(url, f"/{HANDLE}/4.tar.gz", {"Range": header})
  assert status == 416 and response.getheader("Content-Range") == "bytes */10240"
  assert len(body) == int(response.getheader("Content-Length"))


@pytest.mark.parametrize("headers", [
    {"Range": "bytes=0-9,20-29"},  # Several ranges: ignored, as HTTP allows.
    {"Range": "bytes=9-2"},  # Invalid: ignored.
    {"Range": "pages=1-2"},  # Another unit: ignored.
    {"Range": "bytes=0-9", "If-Range": '"some-etag"'},  # No validator of ours can match it.
])
def test_ranges_it_does_not_answer_give_the_whole_file(linked_root, headers):
  data = (linked_root / HANDLE / "4.tar.gz").read_bytes()
  with serving(linked_root) as url:
    status, response, body = request(url, f"/{HANDLE}/4.tar.gz", headers)
    assert status == 200 and body == data and response.getheader("Accept-Ranges") == "bytes"
    status, response, body = request(url, f"/{HANDLE}/4.tar.gz", {"Range": "bytes=0-9"}, "HEAD")
  assert status == 206 and body == b"" and response.getheader("Content-Length") == "10"


def _wait_for(capfd, needle, seconds=10.0):
  """stderr written so far, once it holds `needle` (or `seconds` passed)."""
  err, deadline = "", time.monotonic() + seconds
  while needle not in err and time.monotonic() < deadline:
    time.sleep(0.05)
    err += capfd.readouterr().err
  time.sleep(0.2)  # Anything the server writes right after (a traceback) is caught too.
  return err + capfd.readouterr().err


def _disconnect_mid_download(url, path, keep=65536):
  """Asks for `path`, reads `keep` bytes of it, then drops the connection (RST)."""
  parsed = urllib.parse.urlsplit(url)
  sock = socket.socket()
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # The server cannot run ahead.
  sock.settimeout(10)
  sock.connect((parsed.hostname, parsed.port))
  sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
  received = 0
  while received < keep:
    received += len(sock.recv(65536))
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
  sock.close()


def test_a_client_that_goes_away_mid_archive_is_one_log_line(tmp_path, capfd):
  root = tmp_path / "root"
  (root / HANDLE).mkdir(parents=True)
  (root / HANDLE / "4.tar.gz").write_bytes(os.urandom(16 << 20))
  capfd.readouterr()
  with serving(root) as url:
    _disconnect_mid_download(url, f"/{HANDLE}/4?tf-hub-format=compressed")
    err = _wait_for(capfd, "went away")
    assert get(f"{url}/{HANDLE}/4.tar.gz")[0] == 200  # Still answering.
  err += capfd.readouterr().err
  assert "Traceback" not in err
  lines = err.splitlines()
  assert len(lines) == 1, err
  assert "went away after" in lines[0] and f"of {16 << 20} bytes" in lines[0]
  assert f"/{HANDLE}/4?tf-hub-format=compressed" in lines[0]


def test_idle_connections_are_dropped(published):
  server = serve_lib.make_server(str(published), port=0, idle_timeout_s=0.5)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    for sent in (b"", b"GET /google/imagenet"):  # Nothing, and half a request line.
      sock = socket.create_connection(server.server_address[:2], timeout=10)
      sock.sendall(sent)
      start = time.monotonic()
      assert sock.recv(1024) == b""  # Closed by the server...
      assert time.monotonic() - start < 5  # ...after its idle timeout, not ours.
      sock.close()
    assert get(f"{server.url}/{HANDLE}/4")[0] == 200
  finally:
    server.shutdown()
    server.server_close()


def test_binds_127_0_0_1_by_default_and_takes_bursts(published):
  server = serve_lib.make_server(str(published), port=0)
  try:
    assert server.server_address[0] == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")
    assert server.request_queue_size >= 128
  finally:
    server.server_close()


def test_tfjs_format_file_answers_only_a_published_deployments_files(tmp_path):
  import json
  handle = "google/tfjs-model/imagenet/nasnet_mobile/classification/3/default/1"
  folder = tmp_path / "root" / handle
  folder.mkdir(parents=True)
  (folder / "model.json").write_text("{}")
  (folder / "group1-shard1of1.bin").write_bytes(b"w")
  (folder / "notes.txt").write_text("a stray file, not the deployment's")
  (folder.parent / "1.md").write_text("# Tfjs card\n")
  listed = ["model.json", "group1-shard1of1.bin", "group1-shard2of2.bin"]
  (folder.parent / "1.manifest.json").write_text(json.dumps({"format": "tfjs",
                                                            "files": {n: {} for n in listed}}))
  (tmp_path / "secret.bin").write_bytes(b"s")
  os.symlink(tmp_path / "secret.bin", folder / "group1-shard2of2.bin")
  release = tmp_path / "root" / HANDLE
  release.mkdir(parents=True)
  (release / "4.tar.gz").write_bytes(b"archive")
  (release / "4.manifest.json").write_text(json.dumps({"sha256": "0" * 64}))
  root = str(tmp_path / "root")
  for name in ("model.json", "group1-shard1of1.bin"):
    answer = serve_lib.resolve(root, f"/{handle}/{name}?tfjs-format=file")
    assert (answer.status, answer.path) == (200, str((folder / name).resolve()))
  assert serve_lib.resolve(root, f"/{handle}").path == str((folder.parent / "1.md").resolve())
  for path in (f"/{handle}/group1-shard2of2.bin",  # Listed, but a link out of the root.
               f"/{handle}/missing.bin", f"/{handle}/notes.txt",  # Not listed.
               f"/{handle[:-2]}/1.md", f"/{handle[:-2]}/1.manifest.json",  # Beside it.
               f"/{HANDLE}/4.tar.gz", f"/{HANDLE}/4.manifest.json"):  # A release's files.
    assert serve_lib.resolve(root, f"{path}?tfjs-format=file").status == 404, path
  assert serve_lib.resolve(root, f"/{handle}/model.json?tfjs-format=zip").status == 400
  (folder.parent / "1.manifest.json").write_text("not json")  # A damaged manifest lists nothing.
  assert serve_lib.resolve(root, f"/{handle}/model.json?tfjs-format=file").status == 404


def test_names_that_are_not_ascii_are_answered(tmp_path, capfd):
  root = tmp_path / "root"
  (root / HANDLE).mkdir(parents=True)
  (root / HANDLE / "4.tar.gz").write_bytes(b"archive")
  (root / HANDLE / "\u00b2.tar.gz").write_bytes(b"stray")  # "²".isdigit() is True.
  (root / "caf\u00e9" / "m").mkdir(parents=True)
  (root / "caf\u00e9" / "m" / "1.tar.gz").write_bytes(b"archive")
  capfd.readouterr()
  with serving(root) as url:
    status, headers, _ = get(f"{url}/{HANDLE}?tf-hub-format=compressed")
    assert status == 302 and headers["Location"] == f"/{HANDLE}/4?tf-hub-format=compressed"
    assert get(f"{url}/{HANDLE}/%C2%B2?tf-hub-format=compressed")[0] == 404
    status, headers, _ = get(f"{url}/caf%C3%A9/m?q=%C3%A9")
    assert status == 302 and headers["Location"] == "/caf%C3%A9/m/1?q=%C3%A9"
    assert get(f"{url}/caf%C3%A9/m/1?tf-hub-format=compressed")[2] == b"archive"
  assert "Traceback" not in capfd.readouterr().err


def test_a_request_head_trickled_in_a_byte_at_a_time_is_dropped(published, capfd):
  """Every byte arrives well within the idle timeout, but the head never ends."""
  server = serve_lib.make_server(str(published), port=0, idle_timeout_s=1.0)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  capfd.readouterr()
  try:
    sock = socket.create_connection(server.server_address[:2], timeout=10)
    head = f"GET /{HANDLE}/4 HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode() + b"a" * 1000
    start, closed = time.monotonic(), False
    for byte in head:
      try:
        sock.sendall(bytes([byte]))
      except OSError:  # Reset by the server.
        closed = True
        break
      sock.settimeout(0.2)
      try:
        if sock.recv(1024) == b"":
          closed = True
          break
      except TimeoutError:
        pass
    elapsed = time.monotonic() - start
    sock.close()
    assert closed and elapsed < 5, elapsed
    assert get(f"{server.url}/{HANDLE}/4")[0] == 200  # Others are still answered.
  finally:
    server.shutdown()
    server.server_close()
  err = capfd.readouterr().err
  assert "Traceback" not in err and err.count("dropped: its request head") == 1, err
