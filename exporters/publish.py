r"""Publishes the export tree as TF Hub archives, cards and release manifests.

  python -m exporters.publish --export_dir=exports --dest=published
  python -m exporters.publish --export_dir=exports --dest=gs://my-bucket/hub

Per exported version writes `<dest>/<handle>/<version>.tar.gz` (TF Hub's
compressed format, deterministic), `<version>.md` (the card) and
`<version>.manifest.json`. A version already published with other bytes is
refused unless --force; publishing the same export again changes nothing. The
published archive is hashed on every run: one whose bytes differ from its
manifest is reported as corrupt, and --force rewrites it.
The logic lives in exporters/publishing/publish_lib.py.
"""
from __future__ import annotations

import sys

from absl import app, flags

from exporters import cli
from exporters.publishing import publish_lib
from exporters import release_flags
from exporters.errors import ExportError

_EXPORT_DIR = flags.DEFINE_string("export_dir", "exports", "The tree exporters.export_all wrote.")
_DEST = flags.DEFINE_string("dest", None, "Folder or tf.io.gfile URL (gs://...) to publish to.",
                            required=True)
_FORCE = flags.DEFINE_bool("force", False,
                           "Replace published versions whose archive bytes differ.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  filters = release_flags.parsed()
  config = publish_lib.PublishConfig(
      export_dir=_EXPORT_DIR.value, dest=_DEST.value, models=filters.models,
      module_types=filters.module_types, versions=filters.versions, force=_FORCE.value)
  log = lambda text: print(text, flush=True)  # noqa: E731
  try:
    results = publish_lib.run(config, log=log)
  except ExportError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  log("\n" + publish_lib.format_table(results))
  return 0


if __name__ == "__main__":
  cli.run(main)
