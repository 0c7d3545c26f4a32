r"""Publishes the export tree as TF Hub archives, cards and release manifests.

  python -m exporters.publish --export_dir=exports --dest=published
  python -m exporters.publish --export_dir=exports --dest=gs://my-bucket/hub

Per exported version writes `<dest>/<handle>/<version>.tar.gz` (TF Hub's
compressed format, deterministic), `<version>.md` (the card) and
`<version>.manifest.json`. A version already published with other bytes is
refused unless --force; publishing the same export again changes nothing.
The logic lives in exporters/publish_lib.py.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Keep TensorFlow's start-up noise out.

from absl import app, flags  # noqa: E402

from exporters import publish_lib  # noqa: E402
from exporters.errors import ExportError  # noqa: E402

_EXPORT_DIR = flags.DEFINE_string("export_dir", "exports", "The tree exporters.export_all wrote.")
_DEST = flags.DEFINE_string("dest", None, "Folder or tf.io.gfile URL (gs://...) to publish to.",
                            required=True)
_MODELS = flags.DEFINE_list("models", [], "Only these models (default: every export found).")
_MODULE_TYPES = flags.DEFINE_list("module_types", [], "Only these module types.")
_VERSIONS = flags.DEFINE_list("versions", [], "Only these versions.")
_FORCE = flags.DEFINE_bool("force", False,
                           "Replace published versions whose archive bytes differ.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    versions = tuple(int(v) for v in _VERSIONS.value)
  except ValueError:
    raise app.UsageError(f"--versions must be numbers, not {','.join(_VERSIONS.value)}")
  config = publish_lib.PublishConfig(
      export_dir=_EXPORT_DIR.value, dest=_DEST.value, models=tuple(_MODELS.value),
      module_types=tuple(_MODULE_TYPES.value), versions=versions, force=_FORCE.value)
  log = lambda text: print(text, flush=True)  # noqa: E731
  try:
    results = publish_lib.run(config, log=log)
  except ExportError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  log("\n" + publish_lib.format_table(results))
  return 0


if __name__ == "__main__":
  app.run(main)
