"""Serves a published tree on 127.0.0.1 the way tfhub.dev answers TF Hub's clients.

For local checks and demos; production serving is the bucket that
exporters.publish writes. Routes, for a tree laid out by publish_lib:

  GET /<handle>/<version>?tf-hub-format=compressed   the archive (<version>.tar.gz)
  GET /<handle>/<version>                            the card (<version>.md), as Markdown
  GET /<handle>[?...]                                302 to the newest published version
  GET /<handle>/<version>.tar.gz (.md, .manifest.json)   the file, as the bucket serves it

tensorflow_hub's HttpCompressedFileResolver requests `<url>?tf-hub-format=compressed`
and unpacks the response as a tar stream, following redirects, so
`hub.load("http://127.0.0.1:PORT/google/imagenet/nasnet_mobile/classification/4")`
works against it. `?tf-hub-format=uncompressed` (which tfhub.dev answers with a
gs:// location) is refused with 400. Anything else, including paths with
`..` or hidden segments, is 404.
"""
from __future__ import annotations

import dataclasses
import http.server
import os
import shutil
import urllib.parse

ARCHIVE_SUFFIX = ".tar.gz"
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


def _versions(root: str, segments: list[str]) -> list[int]:
  folder = os.path.join(root, *segments)
  if not os.path.isdir(folder):
    return []
  return sorted(int(name[:-len(ARCHIVE_SUFFIX)]) for name in os.listdir(folder)
                if name.endswith(ARCHIVE_SUFFIX) and name[:-len(ARCHIVE_SUFFIX)].isdigit())


def resolve(root: str, url: str) -> Answer:
  """What to answer for `url` (path and query) with the published tree at `root`."""
  parsed = urllib.parse.urlsplit(url)
  query = urllib.parse.parse_qs(parsed.query)
  hub_format = query.get("tf-hub-format", [None])[-1]
  segments = _segments(parsed.path)
  if not segments:
    return Answer(404, message="not found; ask for /<publisher>/<collection>/<model>/"
                               "<module_type>/<version>")
  if hub_format not in (None, "compressed"):
    return Answer(400, message=f"tf-hub-format={hub_format} is not served here; this server "
                               f"serves only tf-hub-format=compressed")
  *handle, last = segments
  if last.isdigit() and handle:
    stem = os.path.join(root, *handle, last)
    path = stem + (ARCHIVE_SUFFIX if hub_format == "compressed" else ".md")
    if os.path.isfile(path):
      return Answer(200, path=path)
    return Answer(404, message=f"{'/'.join(segments)} is not published here")
  versions = _versions(root, segments)
  if versions:
    location = "/" + "/".join(segments + [str(versions[-1])])
    return Answer(302, location=location + (f"?{parsed.query}" if parsed.query else ""))
  path = os.path.join(root, *segments)
  if hub_format is None and os.path.isfile(path):
    return Answer(200, path=path)
  return Answer(404, message=f"{'/'.join(segments)} is not published here")


class HubRequestHandler(http.server.BaseHTTPRequestHandler):
  """Answers GET and HEAD from `server.root` through `resolve`."""

  server_version = "nasnet-hub-serve"

  def do_GET(self):
    self._answer(send_body=True)

  def do_HEAD(self):
    self._answer(send_body=False)

  def _answer(self, send_body: bool):
    answer = resolve(self.server.root, self.path)
    if answer.path is None:
      body = (answer.message + "\n").encode()
      self.send_response(answer.status)
      if answer.location:
        self.send_header("Location", answer.location)
      self.send_header("Content-Type", "text/plain; charset=utf-8")
      self.send_header("Content-Length", str(len(body)))
      self.end_headers()
      if send_body:
        self.wfile.write(body)
      return
    try:
      f = open(answer.path, "rb")
    except OSError:
      self.send_error(404)
      return
    with f:
      self.send_response(200)
      self.send_header("Content-Type", _content_type(answer.path))
      self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
      self.end_headers()
      if send_body:
        shutil.copyfileobj(f, self.wfile)

  def log_message(self, format, *args):
    if self.server.verbose:
      super().log_message(format, *args)


class HubServer(http.server.ThreadingHTTPServer):
  daemon_threads = True

  def __init__(self, root: str, port: int = 0, verbose: bool = False):
    self.root = os.path.abspath(root)
    self.verbose = verbose
    super().__init__(("127.0.0.1", port), HubRequestHandler)

  @property
  def url(self) -> str:
    host, port = self.server_address[:2]
    return f"http://{host}:{port}"


def make_server(root: str, port: int = 0, verbose: bool = False) -> HubServer:
  """A server on 127.0.0.1:`port` (0: any free port; see `.url`); call serve_forever()."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f"--root {root!r} is not a folder; publish into it first with "
                            f"`python -m exporters.publish --dest={root}`")
  return HubServer(root, port, verbose)
