r"""Exports every published model version from the released checkpoints, with its card.

  python -m exporters.export_all                                  # everything
  python -m exporters.export_all --models=nasnet_mobile --jobs=2
  python -m exporters.export_all --mirror=/srv/ckpt-archives      # fetch from a mirror

Writes `<export_dir>/google/imagenet/<model>/<module_type>/<version>/` (verified
exports), `<version>.md` (cards) and `.<version>.stamp.json` (what each export
was made from) beside them, and, after its parent release, each deployment
(registry [deployments]) with its card and stamp: the TF.js graph models under
`<export_dir>/google/tfjs-model/imagenet/<model>/<module_type>/<version>/default/1/`,
converted in `.venv-tfjs` (`make tfjs-env`; --notfjs leaves them out), and the
TFLite models under `<export_dir>/tensorflow/lite-model/nasnet/<mobile|large>/1/
default/1/` (--nolite leaves them out). Releases whose stamp matches are skipped; missing
checkpoints are fetched first, and when they cannot be, nothing is exported.
Each model is one run (one checkpoint read, one network construction per mode
and format family, every planned release derived from it); --jobs runs models
in parallel, by default as many as the machine's usable cores and available
memory allow for the models to export (the first progress line says how
many, and why). Ends with a table of every release and where each model's
checkpoint comes from ("pinned archive sha256 ..." or "unverified local
checkpoint"), or, when everything was up to date, one line; exits 1 if any
export failed. TensorFlow's start-up logging is quiet unless --verbosity is
given. The logic lives in the exporters/export_tree package.
"""
from __future__ import annotations

import signal
import sys

from absl import app, flags

from exporters import cli
from exporters import export_tree
from exporters import release_flags
from exporters.errors import ExportError
from exporters.export_tree import plan as export_plan

_CHECKPOINT_DIR = flags.DEFINE_string(
    "checkpoint_dir", "checkpoints", "Folder holding <model>/model.ckpt.*; missing ones are "
    "fetched into it.")
_EXPORT_DIR = flags.DEFINE_string("export_dir", "exports", "Root of the export tree.")
_JOBS = flags.DEFINE_integer(
    "jobs", None, "Model runs at once, each exporting one model's releases in its own worker "
    "process (default: as many as the usable CPU cores, the models to export and "
    "--memory_budget_gb allow, counting the largest models' memory estimates; the run's first "
    "progress line says the choice).", lower_bound=1)
_MEMORY_BUDGET_GB = flags.DEFINE_float(
    "memory_budget_gb", 0.0, "Start a model run only while the running ones' estimated memory "
    "fits in this many GB (default: "
    f"{export_plan.MEMORY_BUDGET_SHARE:.0%} of the memory available at the start).",
    lower_bound=0.0)
_MIRROR = flags.DEFINE_string(
    "mirror", None, "Base URL or folder holding the released checkpoint archives, for fetching "
    "missing checkpoints (default: $CHECKPOINT_MIRROR, else the publisher).")
_LOCK_FILE = flags.DEFINE_string(
    "lock_file", None, "JSON file pinning each checkpoint archive's sha256 (default: "
    "checkpoints/checkpoints.lock.json); a checkpoint whose content it does not pin is "
    "reported as an unverified local checkpoint.")
_FORCE = flags.DEFINE_bool("force", False, "Export again even the releases that are up to date.")
_TFJS = flags.DEFINE_bool(
    "tfjs", True, "Also convert the TF.js deployments (registry [deployments]) of the planned releases, "
    "after their parents; needs the converter environment .venv-tfjs (`make tfjs-env`).")
_LITE = flags.DEFINE_bool(
    "lite", True, "Also convert the TFLite deployments (registry [deployments]) of the planned "
    "releases, after their parents, with TensorFlow's TFLite converter; LiteRT verifies them.")

_EVENTS_FILE = flags.DEFINE_string(
    "events_file", None, "Also write the run's progress to this file as JSON lines, one typed "
    "record per line (exporters/export_tree/events.py), for programs; the progress lines on "
    "stdout are for people.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  filters = release_flags.parsed()
  config = export_tree.ExportAllConfig(
      checkpoint_dir=_CHECKPOINT_DIR.value, export_dir=_EXPORT_DIR.value,
      models=filters.models, module_types=filters.module_types, versions=filters.versions,
      jobs=_JOBS.value, memory_budget_gb=_MEMORY_BUDGET_GB.value, mirror=_MIRROR.value,
      lock_file=_LOCK_FILE.value, force=_FORCE.value, tfjs=_TFJS.value, lite=_LITE.value,
      events_file=_EVENTS_FILE.value)
  # A polite kill stops like Ctrl-C: workers are stopped and their temporary dirs removed.
  signal.signal(signal.SIGTERM, export_tree.interrupt_on_signal)
  signal.signal(signal.SIGINT, export_tree.interrupt_on_signal)
  log = lambda text: print(text, flush=True)  # noqa: E731
  try:
    result = export_tree.run(config, log=log)
  except ExportError as e:
    if getattr(e, "result", None):
      log("\n" + export_tree.format_table(e.result.rows))
    print(f"error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("interrupted: the export in progress was discarded; finished exports are kept "
          "and the next run continues from them", file=sys.stderr)
    return 130
  if result.exported:
    log("\n" + export_tree.format_table(result.rows))
  else:  # Nothing done: the one line run() said, and any checkpoint nobody verified.
    for line in export_tree.provenance_lines(result.rows, only_unverified=True):
      log(line)
  return 0


if __name__ == "__main__":
  cli.run(main)
