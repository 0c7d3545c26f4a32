"""A worker process of export_all: one model run (`python -m exporters.export_tree.worker SPEC`).

It reports each release as soon as it is done, one JSON line in its results
file, which the parent (exporters.export_tree.workers) reads while it runs.
"""
from __future__ import annotations

import dataclasses
import json
import signal
import sys

from exporters.export_tree.workers import load_exporter, report


def _worker_main(argv: list[str]) -> int:
  """Runs one model in this process; `python -m exporters.export_tree.worker SPEC_JSON`.

  SIGTERM kills it outright and Ctrl-C is left to the parent: an exception
  raised from a signal handler can land in a finalizer, which swallows it, so
  the parent (holding the lock) removes a stopped worker's temporary dirs.
  """
  signal.signal(signal.SIGTERM, signal.SIG_DFL)
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  # As quiet as export_all itself (TensorFlow's start-up lines, the legacy layers'
  # deprecation warnings), unless that was run with --verbosity.
  from exporters import child_processes, cli
  cli.quiet_from_environment()
  spec = json.loads(argv[0])
  child_processes.die_with_parent(spec["parent_pid"])
  from exporters import pipeline
  targets = tuple(pipeline.ReleaseTarget(t, int(v), d) for t, v, d in spec["targets"])
  config = pipeline.ModelExportConfig(spec["model"], spec["checkpoint"], targets, overwrite=True)
  index = {target: i for i, target in enumerate(targets)}
  results = open(spec["results_file"], "a")

  def on_done(outcome):
    release_report = report(outcome)
    results.write(json.dumps({"index": index[outcome.target], **dataclasses.asdict(release_report)})
                  + "\n")
    results.flush()

  try:
    load_exporter(spec["exporter"])(config, log=lambda m: print(m, flush=True), on_done=on_done)
  except Exception as e:  # Reported for the releases not done; the parent reads it.
    print("model error: " + pipeline.error_text(e).replace("\n", " "), flush=True)
  results.close()
  return 0


if __name__ == "__main__":
  sys.exit(_worker_main(sys.argv[1:]))
