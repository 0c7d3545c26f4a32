r"""Serves a published tree on 127.0.0.1 the way tfhub.dev does, for local checks and demos.

  python -m exporters.serve --root=published --port=8000
  # then, elsewhere:
  hub.load("http://127.0.0.1:8000/google/imagenet/nasnet_mobile/classification/4")

`GET /<handle>/<version>?tf-hub-format=compressed` returns the archive and
`GET /<handle>/<version>` the card; see exporters/publishing/serve_lib.py for
every route and what it guarantees (only files inside --root, Range, timeouts).
It binds 127.0.0.1 unless --host asks for another address.
Production serving is the bucket exporters.publish writes to.
"""
import sys

from absl import app, flags

from exporters import cli
from exporters.publishing import serve_lib

_ROOT = flags.DEFINE_string("root", "published", "The folder exporters.publish wrote (--dest).")
_PORT = flags.DEFINE_integer("port", 8000, "Port to listen on; 0 picks a free one.",
                             lower_bound=0, upper_bound=65535)
_HOST = flags.DEFINE_string("host", serve_lib.DEFAULT_HOST,
                            "Address to bind; anything but 127.0.0.1 opens the server to "
                            "other machines, so give it only on purpose.")
_VERBOSE = flags.DEFINE_bool("verbose", True, "Log each request.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    server = serve_lib.make_server(_ROOT.value, _PORT.value, _VERBOSE.value, host=_HOST.value)
  except (FileNotFoundError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"serving {server.root} at {server.url}/ (Ctrl-C stops)", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
  return 0


if __name__ == "__main__":
  cli.run(main)
