"""Fetches a released TF-Slim checkpoint and checks it against the model's graph.

  python -m checkpoints.fetch --model=nasnet_mobile --dest=checkpoints/
  python -m checkpoints.fetch --model=nasnet_mobile --mirror=/srv/ckpt-archives

Prints the checkpoint prefix (`<dest>/<model>/model.ckpt`) on success; on
failure prints one `error: ...` line and exits with status 1. The work is done
by checkpoints.fetch_lib (see there for the steps and what is kept on failure).
"""
import sys

from absl import app, flags

from checkpoints import fetch_lib
from checkpoints.errors import CheckpointError
from exporters import cli

_MODEL = flags.DEFINE_string("model", None, "Registry model to fetch, e.g. nasnet_mobile.",
                             required=True)
_DEST = flags.DEFINE_string("dest", "checkpoints",
                            "Folder that receives <model>/model.ckpt.* (and the .part download).")
_MIRROR = flags.DEFINE_string(
    "mirror", None,
    f"Base http(s) URL, local folder or file:// URL holding the archives under their released "
    f"names, instead of the publisher's host. Default: ${fetch_lib.MIRROR_ENV}; an empty value "
    f"means the publisher.")
_LOCK_FILE = flags.DEFINE_string("lock_file", str(fetch_lib.DEFAULT_LOCK_FILE),
                                 "JSON file pinning each archive's sha256 and size.")
_FORCE = flags.DEFINE_bool("force", False, "Fetch again even if the checkpoint is present.")
_RETRIES = flags.DEFINE_integer("retries", 3, "Download attempts (each resumes the last).",
                                lower_bound=1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    prefix = fetch_lib.ensure_checkpoint(
        _MODEL.value, _DEST.value, mirror=_MIRROR.value, lock_file=_LOCK_FILE.value,
        force=_FORCE.value, retries=_RETRIES.value, progress=fetch_lib.ProgressBar(sys.stderr))
  except CheckpointError as err:
    print(f"error: {err}", file=sys.stderr)
    return 1
  print(prefix)
  return 0


if __name__ == "__main__":
  cli.run(main)
