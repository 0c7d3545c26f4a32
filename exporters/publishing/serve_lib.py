"""Serves a published tree on 127.0.0.1 the way tfhub.dev answers TF Hub's clients.

For local checks and demos; production serving is the bucket that
exporters.publish writes. Routes, for a tree laid out by publish_lib:

  GET /<handle>/<version>?tf-hub-format=compressed   the archive (<version>.tar.gz)
  GET /<handle>/<version>                            the card (<version>.md), as Markdown
  GET /<handle>[?...]                                302 to the newest published version
  GET /<handle>/<version>.tar.gz (.md, .manifest.json)   the file, as the bucket serves it
  GET /<tfjs handle>/<file>?tfjs-format=file         a TF.js deployment's model.json or shard
                                                     (only a file its published manifest lists)
  GET /<lite handle>?lite-format=tflite              a TFLite deployment's model.tflite

`tf.loadGraphModel(handle, {fromTFHub: true})` (tfjs-converter) fetches
`<handle>/model.json?tfjs-format=file` and then each weight file relative to
it with the same query; `GET /<tfjs handle>` (its last segment a version)
answers its card, like a version's. Another `tfjs-format` value is 400. A
TFLite deployment is fetched whole, `<handle>?lite-format=tflite`, as
tfhub.dev served it; another `lite-format` value is 400. Each deployment
kind's query is its converter module's SERVE_QUERY.

tensorflow_hub's HttpCompressedFileResolver requests `<url>?tf-hub-format=compressed`
and unpacks the response as a tar stream, following redirects, so
`hub.load("http://127.0.0.1:PORT/google/imagenet/nasnet_mobile/classification/4")`
works against it. `?tf-hub-format=uncompressed` (which tfhub.dev answers with a
gs:// location) is refused with 400. Anything else, including paths with
`..` or hidden segments, is 404.

What it guarantees:
- Only files inside the root are served: every path is resolved to its real
  path (symlinks followed) and answered 404 unless that lies inside the real
  path of the root. A link inside the root to a file inside the root is served.
- It binds 127.0.0.1 unless another host is asked for.
- Each connection runs in its own thread; the listen backlog takes bursts
  (`LISTEN_BACKLOG`); a connection idle for `idle_timeout_s` (no request, or a
  client that stops reading) is dropped, and so is one whose request head
  (request line and headers) is not complete `idle_timeout_s` after the server
  began to wait for it, however slowly it trickles in.
- `?tfjs-format=file` and `?lite-format=tflite` answer only the files a
  published deployment of that kind's manifest (`<handle>.manifest.json`,
  which publish writes last) lists, never any other file under the root.
- Names that are not ASCII, in the URL or on disk, are answered like any
  other (a version is ASCII digits only; a redirect's Location is
  percent-encoded).
- A client that goes away mid-response costs one log line, not a traceback.
- `Range: bytes=...` with one range is answered 206 with Content-Range; one
  that cannot be satisfied, 416 with `Content-Range: bytes */<size>`. Several
  ranges, a malformed header, or an `If-Range` (this server sends no
  validators to match it against) are ignored, as HTTP allows: the whole file,
  200.
"""
from __future__ import annotations

import dataclasses
import http.server
import json
import os
import re
import socket
import sys
import threading
import urllib.parse

import registry
from exporters import formats
from exporters.publishing.publish_lib import ARCHIVE_SUFFIX, MANIFEST_SUFFIX

DEFAULT_HOST = "127.0.0.1"
LISTEN_BACKLOG = 256  # Python's default (5) resets connections under a burst of clients.
IDLE_TIMEOUT_S = 30.0
CHUNK = 1 << 20
_VERSION = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also takes "²".
CONTENT_TYPES = {
    ".tar.gz": "application/gzip",
    ".md": "text/markdown; charset=utf-8",
    ".json": "application/json",
}


@dataclasses.dataclass(frozen=True)
class Answer:
  status: int
  path: str | None = None  # File to send.
  location: str | None = None  # For redirects.
  message: str = ""


def _deployment_queries() -> dict[str, formats.ServeQuery]:
  """Deployment kind -> how it is asked for (its converter module's SERVE_QUERY)."""
  return {kind: formats.converter_for(kind).SERVE_QUERY for kind in registry.DEPLOYMENT_KINDS}


def _content_type(path: str) -> str:
  for suffix, content_type in CONTENT_TYPES.items():
    if path.endswith(suffix):
      return content_type
  return "application/octet-stream"


def _segments(url_path: str) -> list[str] | None:
  """The path's segments, or None when one of them may leave the root or is hidden."""
  segments = [s for s in urllib.parse.unquote(url_path).split("/") if s]
  if any(s.startswith(".") or "\\" in s or "\0" in s for s in segments):
    return None
  return segments


def _inside(root: str, path: str) -> str | None:
  """`path`'s real path when it lies inside `root` (itself a real path), else None."""
  real = os.path.realpath(path)
  return real if os.path.commonpath([root, real]) == root else None


def _file(root: str, path: str) -> str | None:
  real = _inside(root, path)
  return real if real and os.path.isfile(real) else None


def _is_version(segment: str) -> bool:
  return _VERSION.fullmatch(segment) is not None


def _versions(root: str, segments: list[str]) -> list[int]:
  folder = _inside(root, os.path.join(root, *segments))
  if not folder or not os.path.isdir(folder):
    return []
  return sorted(int(name[:-len(ARCHIVE_SUFFIX)]) for name in os.listdir(folder)
                if name.endswith(ARCHIVE_SUFFIX) and _is_version(name[:-len(ARCHIVE_SUFFIX)]))


def _deployment_file(root: str, segments: list[str], kind: str) -> str | None:
  """The real path of `<deployment>/<name>` when the published manifest of a deployment of
  `kind` lists `name` among its files; None for any other path."""
  *folder, name = segments
  if not folder:
    return None
  manifest = _file(root, os.path.join(root, *folder) + MANIFEST_SUFFIX)
  if manifest is None:
    return None
  try:
    with open(manifest, "rb") as f:
      recorded = json.loads(f.read())
    files, fmt = recorded.get("files"), recorded.get("format")
  except (OSError, ValueError, AttributeError):
    return None  # Unreadable or not a deployment manifest: nothing is a deployment file.
  if not isinstance(files, dict) or name not in files or fmt != kind:
    return None
  return _file(root, os.path.join(root, *segments))


def resolve(root: str, url: str) -> Answer:
  """What to answer for `url` (path and query) with the published tree at `root`.

  A file's answer is its real path, and only ever one inside `root`'s real path.
  """
  root = os.path.realpath(root)
  parsed = urllib.parse.urlsplit(url)
  query = urllib.parse.parse_qs(parsed.query)
  hub_format = query.get("tf-hub-format", [None])[-1]
  queries = _deployment_queries()
  asked = {kind: query[q.parameter][-1] for kind, q in queries.items() if q.parameter in query}
  segments = _segments(parsed.path)
  if not segments:
    return Answer(404, message="not found; ask for /<publisher>/<collection>/<model>/"
                               "<module_type>/<version>")
  if hub_format not in (None, "compressed"):
    return Answer(400, message=f"tf-hub-format={hub_format} is not served here; this server "
                               f"serves only tf-hub-format=compressed")
  for kind, value in asked.items():
    name, served, file_name = queries[kind].parameter, queries[kind].value, queries[kind].file
    if value != served or hub_format is not None or len(asked) > 1:
      return Answer(400, message=f"{name}={value} is not served here; this server serves "
                                 f"only {name}={served}")
    path = _deployment_file(root, segments + ([file_name] if file_name else []), kind)
    if path:
      return Answer(200, path=path)
    what = f"a published {kind} deployment" + ("" if file_name else "'s file")
    return Answer(404, message=f"{'/'.join(segments)} is not {what}")
  *handle, last = segments
  if _is_version(last) and handle:
    stem = os.path.join(root, *handle, last)
    path = _file(root, stem + (ARCHIVE_SUFFIX if hub_format == "compressed" else ".md"))
    if path:
      return Answer(200, path=path)
    return Answer(404, message=f"{'/'.join(segments)} is not published here")
  versions = _versions(root, segments)
  if versions:
    location = "/" + "/".join(urllib.parse.quote(s) for s in segments + [str(versions[-1])])
    query = urllib.parse.quote(parsed.query, safe="=&%+")  # Header values are latin-1 only.
    return Answer(302, location=location + (f"?{query}" if query else ""))
  path = _file(root, os.path.join(root, *segments))
  if hub_format is None and path:
    return Answer(200, path=path)
  return Answer(404, message=f"{'/'.join(segments)} is not published here")


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
  """The (first, last) byte a `Range` header asks for; None to ignore it; False if unsatisfiable.

  One range only (`a-b`, `a-`, `-n`); several ranges or a malformed header are
  ignored (the whole file is sent), which HTTP allows.
  """
  if header is None:
    return None
  match = _RANGE.fullmatch(header.strip())
  if not match or match.groups() == ("", ""):
    return None
  first, last = match.groups()
  if not first:  # The last n bytes.
    n = int(last)
    return (max(size - n, 0), size - 1) if n and size else False
  first = int(first)
  if last and int(last) < first:
    return None  # a-b with b < a is invalid, so ignored.
  last = min(int(last), size - 1) if last else size - 1
  return (first, last) if first < size else False


class HubRequestHandler(http.server.BaseHTTPRequestHandler):
  """Answers GET and HEAD from `server.root` through `resolve`."""

  server_version = "nasnet-hub-serve"
  protocol_version = "HTTP/1.1"  # Keep-alive and 206; every answer has a Content-Length.

  def setup(self):
    self.timeout = self.server.idle_timeout_s  # Applied to the socket by StreamRequestHandler.
    super().setup()

  def handle_one_request(self):
    # The socket timeout bounds each wait for a byte; a client that sends its
    # head a byte at a time also meets a deadline for the whole head.
    self._head_done = threading.Event()
    self._head_late = threading.Event()
    timer = threading.Timer(self.server.idle_timeout_s, self._drop_unfinished_head)
    timer.daemon = True
    timer.start()
    try:
      super().handle_one_request()
    finally:
      timer.cancel()

  def _drop_unfinished_head(self):
    if self._head_done.is_set():
      return
    self._head_late.set()
    try:
      self.connection.shutdown(socket.SHUT_RDWR)  # Ends the blocked read with EOF.
    except OSError:
      pass

  def parse_request(self):
    parsed = not self._head_late.is_set() and super().parse_request()  # Reads the headers.
    self._head_done.set()
    if self._head_late.is_set():  # Cut at the deadline: what arrived is not a whole head.
      host, port = self.client_address[:2]
      self.server.log_line(f"{host}:{port} dropped: its request head was not complete "
                           f"{self.server.idle_timeout_s:g} s after the server began to wait")
      self.close_connection = True
      return False
    return parsed

  def do_GET(self):
    self._answer(send_body=True)

  def do_HEAD(self):
    self._answer(send_body=False)

  def _answer(self, send_body: bool):
    answer = resolve(self.server.root, self.path)
    if answer.path is None:
      self._send_text(answer.status, answer.message, send_body, location=answer.location)
      return
    try:
      f = open(answer.path, "rb")
    except OSError:
      self._send_text(404, "not found", send_body)
      return
    with f:
      size = os.fstat(f.fileno()).st_size
      wanted = None if "If-Range" in self.headers else byte_range(self.headers.get("Range"),
                                                                  size)
      if wanted is False:
        self._send_text(416, f"range not satisfiable; the file has {size} bytes", send_body,
                        content_range=f"bytes */{size}")
        return
      first, last = wanted or (0, size - 1)
      self.send_response(206 if wanted else 200)
      self.send_header("Content-Type", _content_type(answer.path))
      self.send_header("Accept-Ranges", "bytes")
      if wanted:
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
      self.send_header("Content-Length", str(last - first + 1))
      self.end_headers()
      if send_body and size:
        self._send_file(f, first, last - first + 1)

  def _send_file(self, f, offset: int, count: int):
    sent = 0
    try:
      f.seek(offset)
      while sent < count:
        chunk = f.read(min(CHUNK, count - sent))
        if not chunk:  # Shortened while sent: the client must not take it as whole.
          self.close_connection = True
          self.server.log_line(f"{self.path!r}: the file got shorter while it was sent; "
                               f"closed after {sent} of {count} bytes")
          return
        self.wfile.write(chunk)
        sent += len(chunk)
    except (ConnectionError, TimeoutError) as e:
      self.close_connection = True
      self.server.log_line(f"{self.client_address[0]}:{self.client_address[1]} went away after "
                           f"{sent} of {count} bytes of {self.path!r} "  # repr: no control bytes
                           f"({type(e).__name__})")

  def _send_text(self, status: int, message: str, send_body: bool, location: str | None = None,
                 content_range: str | None = None):
    body = (message + "\n").encode()
    self.send_response(status)
    if location:
      self.send_header("Location", location)
    if content_range:
      self.send_header("Content-Range", content_range)
    self.send_header("Content-Type", "text/plain; charset=utf-8")
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    if send_body:
      self.wfile.write(body)

  def log_message(self, format, *args):
    if self.server.verbose:
      super().log_message(format, *args)


class HubServer(http.server.ThreadingHTTPServer):
  daemon_threads = True
  request_queue_size = LISTEN_BACKLOG

  def __init__(self, root: str, port: int = 0, verbose: bool = False, host: str = DEFAULT_HOST,
               idle_timeout_s: float = IDLE_TIMEOUT_S):
    self.root = os.path.realpath(root)
    self.verbose = verbose
    self.idle_timeout_s = idle_timeout_s
    if ":" in host:
      self.address_family = socket.AF_INET6
    super().__init__((host, port), HubRequestHandler)

  @property
  def url(self) -> str:
    host, port = self.server_address[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

  def log_line(self, text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()

  def handle_error(self, request, client_address):
    """A connection that fails outside a file's body (a reset while reading the request or
    sending headers) is one line too; anything else keeps its traceback."""
    error = sys.exc_info()[1]
    if isinstance(error, (ConnectionError, TimeoutError)):
      host, port = client_address[:2]
      self.log_line(f"{host}:{port} went away ({type(error).__name__})")
    else:
      super().handle_error(request, client_address)


def make_server(root: str, port: int = 0, verbose: bool = False, host: str = DEFAULT_HOST,
                idle_timeout_s: float = IDLE_TIMEOUT_S) -> HubServer:
  """A server on `host`:`port` (0: any free port; see `.url`); call serve_forever().

  `host` is 127.0.0.1 unless a caller asks for more.
  """
  if not os.path.isdir(root):
    raise FileNotFoundError(f"--root {root!r} is not a folder; publish into it first with "
                            f"`python -m exporters.publish --dest={root}`")
  return HubServer(root, port, verbose, host, idle_timeout_s)
