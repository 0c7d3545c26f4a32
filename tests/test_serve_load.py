"""The local hub server under load: 1,000 requests from 100 concurrent clients on 127.0.0.1.

Cards and archives mixed, every tenth request a client that reads the start of
an archive and drops the connection. Every other request must get 200 and its
whole body (archives checked by sha256), the server must log no traceback, and
it must still answer afterwards. Bounded: the clients are given `DEADLINE_S`.
"""
import hashlib
import http.client
import os
import socket
import struct
import threading
import time

from exporters.publishing import serve_lib

HANDLE = "google/imagenet/nasnet_mobile/classification"
CLIENTS = 100
REQUESTS_PER_CLIENT = 10
ARCHIVE_BYTES = 3 << 20
DEADLINE_S = 120  # It takes seconds; this only keeps a hung server from hanging the suite.


def _get(port, path):
  """(status, body) over a fresh connection, as TF Hub's resolver makes them."""
  conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
  try:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()
  finally:
    conn.close()


def _drop_mid_archive(port, path):
  """Reads the first 64 KiB of `path`, then resets the connection."""
  sock = socket.socket()
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # Keeps the server mid-body.
  sock.settimeout(30)
  sock.connect(("127.0.0.1", port))
  try:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    received = b""
    while len(received) < 65536:
      chunk = sock.recv(65536)
      if not chunk:
        raise ConnectionError(f"closed after {len(received)} bytes")
      received += chunk
    status_line = received.split(b"\r\n", 1)[0]
    if status_line.split()[1:2] != [b"200"]:
      raise AssertionError(f"dropped archive: {status_line!r}")
  finally:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_thousand_requests_from_a_hundred_clients(tmp_path, capfd):
  root = tmp_path / "published"
  folder = root / HANDLE
  folder.mkdir(parents=True)
  archive = os.urandom(ARCHIVE_BYTES)
  (folder / "4.tar.gz").write_bytes(archive)
  card = b"# Module google/imagenet/nasnet_mobile/classification\n\nVersion 4.\n" * 20
  (folder / "4.md").write_bytes(card)
  archive_sha256 = hashlib.sha256(archive).hexdigest()

  server = serve_lib.make_server(str(root), port=0)
  server_thread = threading.Thread(target=server.serve_forever, daemon=True)
  server_thread.start()
  port = server.server_address[1]
  start = threading.Barrier(CLIENTS)  # All at once: a burst on the listen backlog.
  failures, counts, lock = [], {"card": 0, "archive": 0, "dropped": 0}, threading.Lock()

  def client(n):
    start.wait()
    for i in range(REQUESTS_PER_CLIENT):
      kind = ("dropped" if (n + i) % 10 == 0 else "archive" if (n + i) % 10 in (1, 2, 3)
              else "card")
      try:
        if kind == "dropped":
          _drop_mid_archive(port, f"/{HANDLE}/4?tf-hub-format=compressed")
        elif kind == "archive":
          status, body = _get(port, f"/{HANDLE}/4?tf-hub-format=compressed")
          if status != 200 or hashlib.sha256(body).hexdigest() != archive_sha256:
            raise AssertionError(f"archive: {status}, {len(body)} bytes")
        else:
          status, body = _get(port, f"/{HANDLE}/4")
          if status != 200 or body != card:
            raise AssertionError(f"card: {status}, {len(body)} bytes")
      except Exception as e:  # noqa: BLE001 - every failure is counted, none stops the load.
        with lock:
          failures.append(f"client {n} request {i} ({kind}): {type(e).__name__}: {e}")
      else:
        with lock:
          counts[kind] += 1

  capfd.readouterr()
  began = time.monotonic()
  clients = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
  try:
    for thread in clients:
      thread.start()
    for thread in clients:
      thread.join(timeout=max(0.0, DEADLINE_S - (time.monotonic() - began)))
    elapsed = time.monotonic() - began
    assert not any(thread.is_alive() for thread in clients), f"clients still busy after {elapsed}s"
    assert failures == [], f"{len(failures)} failed, e.g. {failures[:5]}"
    assert counts == {"card": 600, "archive": 300, "dropped": 100}
    # Afterwards it still answers.
    assert _get(port, f"/{HANDLE}/4") == (200, card)
  finally:
    server.shutdown()
    server.server_close()
  err = capfd.readouterr().err
  assert "Traceback" not in err, err[:2000]
  went_away = [line for line in err.splitlines() if "went away" in line]
  assert err.splitlines() == went_away, err[:2000]  # Nothing else is logged.
  assert 0 < len(went_away) <= counts["dropped"]
  print(f"1000 requests from {CLIENTS} clients in {elapsed:.1f} s")
