"""Fetch against hostile input and a failing filesystem (issue 20).

Each case must end in one CheckpointError line naming the problem, write at
most the bound it states plus one buffer, and leave nothing under the
destination: a decompression bomb, an endless mirror, an archive with files
that are not the checkpoint's, FIFOs where files are expected, two fetches at
once, and a destination that is a file, read-only or full.
"""
import errno
import http.server
import io
import os
import pathlib
import stat
import tarfile
import threading
import zlib

import pytest

from checkpoints import download, fetch_lib, integrity
from tests.test_fetch import (ENTRY, MODEL, archives, error_line, fetch, in_process, leftovers,
                              server, serving, tar_gz)

__all__ = ["archives", "in_process", "server"]  # Fixtures, used by name.

SMALL_META = 1 << 20  # The index/meta allowance in these tests, so that bombs stay small.


@pytest.fixture
def small_bounds(in_process, monkeypatch):
  monkeypatch.setattr(fetch_lib, "INDEX_OR_META_BYTES", SMALL_META)


def limits():
  variables = fetch_lib.archive_variables(MODEL)
  return fetch_lib.archive.Limits(fetch_lib.data_bytes(variables), SMALL_META)


def counting_writes(monkeypatch) -> list[int]:
  """Records the bytes download writes to the part file."""
  written, real = [], download._write

  def write(f, chunk, part):
    written.append(len(chunk))
    real(f, chunk, part)
  monkeypatch.setattr(download, "_write", write)
  return written


def gzip_bomb(expanded: int) -> bytes:
  """A gzip stream of `expanded` zero bytes, made a buffer at a time (about 1/1000 the size)."""
  packer = zlib.compressobj(9, zlib.DEFLATED, 31)
  out, zeros = io.BytesIO(), bytes(1 << 20)
  for _ in range(expanded // len(zeros) + 1):
    out.write(packer.compress(zeros))
  out.write(packer.flush())
  return out.getvalue()


def run_with_timeout(fn, timeout_s=20):
  """fn()'s exception (or None); fails if it still runs after timeout_s (a FIFO open hangs)."""
  outcome = []

  def target():
    try:
      fn()
      outcome.append(None)
    except Exception as err:  # The test inspects it.
      outcome.append(err)
  thread = threading.Thread(target=target, daemon=True)
  thread.start()
  thread.join(timeout_s)
  assert not thread.is_alive(), f"still running after {timeout_s} s"
  return outcome[0]


# ---- Bounds.

def test_decompression_bomb_stops_at_the_stream_bound(small_bounds, server, tmp_path):
  bound = limits().stream_bytes
  bomb = gzip_bomb(bound + (4 << 20))
  assert len(bomb) < limits().archive_bytes  # Small on the wire: only expanding tells.
  server.serve(bomb)
  with pytest.raises(fetch_lib.CheckpointError,
                     match=f"oversized archive: .* expands past {bound} bytes"):
    fetch_lib.ensure_checkpoint(MODEL, tmp_path / "ckpt", mirror=server.url,
                                lock_file=tmp_path / "lock.json")
  assert leftovers(tmp_path / "ckpt") == []


def test_a_data_member_larger_than_the_variables_is_refused(small_bounds, server, tmp_path):
  data_bytes = limits().data_bytes
  server.serve(tar_gz({"model.ckpt.index": b"x",
                       "model.ckpt.data-00000-of-00001": bytes(data_bytes + 1)}))
  with pytest.raises(fetch_lib.CheckpointError,
                     match=f"is {data_bytes + 1} bytes, more than the {data_bytes}"):
    fetch_lib.ensure_checkpoint(MODEL, tmp_path / "ckpt", mirror=server.url,
                                lock_file=tmp_path / "lock.json")
  assert leftovers(tmp_path / "ckpt") == []


class _Endless(http.server.BaseHTTPRequestHandler):
  """Answers 200 with no length and sends zeros until the client hangs up."""

  def do_GET(self):
    self.send_response(200)
    self.end_headers()
    zeros = bytes(1 << 16)
    try:
      while True:
        self.wfile.write(zeros)
        self.server.sent += len(zeros)
    except OSError:
      pass

  def log_message(self, *args):
    pass


@pytest.fixture
def endless():
  srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
  srv.daemon_threads, srv.sent = True, 0
  with serving(srv):
    yield srv


@pytest.mark.parametrize("pinned", [False, True], ids=["bound", "pinned_size"])
def test_endless_mirror_stops_at_its_bound(small_bounds, endless, monkeypatch, tmp_path,
                                           pinned):
  lock = tmp_path / "lock.json"
  bound = limits().archive_bytes
  if pinned:
    bound = 5 << 20
    lock.write_text(f'{{"archives": {{"{ENTRY.archive_name}": '
                    f'{{"sha256": "{"0" * 64}", "size": {bound}}}}}}}')
  written = counting_writes(monkeypatch)
  url = f"http://127.0.0.1:{endless.server_address[1]}/"
  with pytest.raises(fetch_lib.CheckpointError,
                     match=f"oversized download: .* more than {bound} bytes"):
    fetch_lib.ensure_checkpoint(MODEL, tmp_path / "ckpt", mirror=url, lock_file=lock)
  assert sum(written) <= bound < sum(written) + download.CHUNK
  assert leftovers(tmp_path / "ckpt") == []


def _fetch_process(dest, port: int, lock_file):
  """`python -m checkpoints.fetch` from http://127.0.0.1:<port>/, running."""
  import subprocess
  import sys
  from tests.conftest import REPO
  return subprocess.Popen(
      [sys.executable, "-m", "checkpoints.fetch", f"--model={MODEL}", f"--dest={dest}",
       f"--mirror=http://127.0.0.1:{port}/", f"--lock_file={lock_file}"],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_is_one_line_and_exit_status_130(endless, tmp_path):
  """SIGINT while the CLI downloads (after its graph build): one line, no traceback."""
  import signal
  import time
  dest = tmp_path / "ckpt"
  proc = _fetch_process(dest, endless.server_address[1], tmp_path / "lock.json")
  try:
    deadline = time.monotonic() + 300
    while endless.sent == 0 and proc.poll() is None and time.monotonic() < deadline:
      time.sleep(0.2)
    assert endless.sent > 0, "the download never started"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
  finally:
    proc.kill()
  assert proc.returncode == 130, stderr
  assert "Traceback" not in stderr
  assert stderr.splitlines()[-1].split("\r")[-1] == "interrupted: checkpoints.fetch stopped"


def test_ctrl_c_before_the_mirror_answers_leaves_no_folder(tmp_path):
  """SIGINT while the mirror has not sent a byte: nothing to resume, so the folders the
  fetch made are gone again."""
  import signal
  import socket
  import time
  silent = socket.socket()  # Accepts, never answers.
  silent.bind(("127.0.0.1", 0))
  silent.listen(1)
  dest = tmp_path / "made" / "ckpt"
  proc = _fetch_process(dest, silent.getsockname()[1], tmp_path / "lock.json")
  try:
    silent.settimeout(300)
    connection, _ = silent.accept()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    connection.close()
  finally:
    proc.kill()
    silent.close()
  assert proc.returncode == 130, stderr
  assert stderr.splitlines()[-1] == "interrupted: checkpoints.fetch stopped"
  assert list(tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))


def test_archive_member_that_is_not_a_checkpoint_file_is_one_error_line(server, tmp_path):
  server.serve(tar_gz({"model.ckpt.index": b"x", "model.ckpt.extra/notes.txt": b"hi"}))
  dest = tmp_path / "ckpt"
  result = fetch(dest, f"--mirror={server.url}", f"--lock_file={tmp_path / 'lock.json'}")
  assert "unexpected archive member" in error_line(result)
  assert "model.ckpt.extra/notes.txt" in error_line(result)
  assert "Traceback" not in result.stderr
  assert leftovers(dest) == []


# ---- Special files.

def test_fifo_as_the_mirror_archive_is_refused_unopened(in_process, tmp_path):
  folder = tmp_path / "mirror"
  folder.mkdir()
  os.mkfifo(folder / ENTRY.archive_name)
  err = run_with_timeout(lambda: fetch_lib.ensure_checkpoint(
      MODEL, tmp_path / "ckpt", mirror=str(folder), lock_file=tmp_path / "lock.json"))
  assert isinstance(err, fetch_lib.CheckpointError)
  assert "is a FIFO, not a regular file" in str(err)
  assert leftovers(tmp_path / "ckpt") == []


def test_fifo_as_the_checkpoint_data_file_is_refused_unopened(archives, tmp_path):
  placed = tmp_path / "placed"
  placed.mkdir()
  for path in archives.prefix.parent.glob("model.ckpt.index"):
    (placed / path.name).write_bytes(path.read_bytes())
  os.mkfifo(placed / "model.ckpt.data-00000-of-00001")
  err = run_with_timeout(lambda: integrity.read_fully(placed / "model.ckpt", keep=False))
  assert isinstance(err, fetch_lib.CheckpointError)
  assert "model.ckpt.data-00000-of-00001 is a FIFO, not a regular file" in str(err)
  err = run_with_timeout(lambda: fetch_lib.checkpoint_sha256(placed / "model.ckpt"))
  assert "is a FIFO" in str(err)


# ---- Concurrency.

def test_two_fetches_into_one_destination_take_turns(in_process, server, archives, tmp_path):
  server.serve(archives.good)
  dest, outcomes = tmp_path / "ckpt", []

  def one():
    outcomes.append(run_with_timeout(lambda: fetch_lib.ensure_checkpoint(
        MODEL, dest, mirror=server.url, lock_file=tmp_path / "lock.json"), 120))
  threads = [threading.Thread(target=one) for _ in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert outcomes == [None, None]
  assert leftovers(dest) == [MODEL]
  assert len(server.requests) == 1  # The second found the first's checkpoint in place.


# ---- The filesystem.

def test_dest_that_is_a_file_is_one_line(in_process, tmp_path):
  dest = tmp_path / "ckpt"
  dest.write_bytes(b"mine")
  with pytest.raises(fetch_lib.CheckpointError, match="is not a directory"):
    fetch_lib.ensure_checkpoint(MODEL, dest, mirror="http://127.0.0.1:9/",
                                lock_file=tmp_path / "lock.json")
  assert dest.read_bytes() == b"mine"


def test_model_folder_that_is_a_file_is_one_line(in_process, tmp_path):
  dest = tmp_path / "ckpt"
  dest.mkdir()
  (dest / MODEL).write_bytes(b"mine")
  with pytest.raises(fetch_lib.CheckpointError, match=f"{dest / MODEL} is not a folder"):
    fetch_lib.ensure_checkpoint(MODEL, dest, mirror="http://127.0.0.1:9/",
                                lock_file=tmp_path / "lock.json")
  assert leftovers(dest) == [MODEL]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_read_only_destination_is_one_line(in_process, tmp_path):
  dest = tmp_path / "ckpt"
  dest.mkdir()
  dest.chmod(stat.S_IRUSR | stat.S_IXUSR)
  try:
    with pytest.raises(fetch_lib.CheckpointError, match=f"{dest}.*Permission denied"):
      fetch_lib.ensure_checkpoint(MODEL, dest, mirror="http://127.0.0.1:9/",
                                  lock_file=tmp_path / "lock.json")
  finally:
    dest.chmod(0o755)
  assert leftovers(dest) == []


def test_full_destination_is_one_line_and_leaves_nothing(in_process, server, archives,
                                                         monkeypatch, tmp_path):
  server.serve(archives.good)
  room = [len(archives.good) // 2]  # The disk fills halfway through the download.

  class FullDisk(io.FileIO):
    def write(self, data):
      if len(data) > room[0]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
      room[0] -= len(data)
      return super().write(data)
  monkeypatch.setattr(download, "open", lambda path, mode, buffering: FullDisk(path, mode[0]),
                      raising=False)
  with pytest.raises(fetch_lib.CheckpointError, match="cannot write .*No space left on device"):
    fetch_lib.ensure_checkpoint(MODEL, tmp_path / "ckpt", mirror=server.url,
                                lock_file=tmp_path / "lock.json")
  assert leftovers(tmp_path / "ckpt") == []


def test_read_only_filesystem_is_one_line(in_process, monkeypatch, tmp_path):
  """As root a chmod does not stop writes; a read-only mount (EROFS) is simulated instead."""
  dest = tmp_path / "ckpt"
  dest.mkdir()
  real_open = os.open

  def read_only_open(path, flags, *args, **kwargs):
    if str(path).startswith(str(dest)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
    return real_open(path, flags, *args, **kwargs)
  monkeypatch.setattr(os, "open", read_only_open)
  with pytest.raises(fetch_lib.CheckpointError, match=f"{dest}.*Read-only file system"):
    fetch_lib.ensure_checkpoint(MODEL, dest, mirror="http://127.0.0.1:9/",
                                lock_file=tmp_path / "lock.json")
  monkeypatch.undo()
  assert leftovers(dest) == []
