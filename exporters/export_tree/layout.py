"""The export tree on disk: where each release, card and stamp lies; safe file writes.

Per handle directory `<export_dir>/<publisher>/<collection>/<model>/<module_type>/`:

  <version>/                 the SavedModel (or TF1 Hub module), as published
  <version>.md               its card
  .<version>.stamp.json      what it was made from (exporters.export_tree.stamps)

A deployment (registry [deployments]) is laid out the same way under its
handle, e.g. `<export_dir>/<publisher>/tfjs-model/<collection>/<model>/
<module_type>/<parent version>/<variant>/` holds `<version>/` (for TF.js:
model.json and its weight shards), `<version>.md` and `.<version>.stamp.json`.

The stamp lies beside the export, not in it, because publish archives the
export directory whole. Temporary entries (`.tmp-*`, `.old-*`) exist only
while a run holds the tree's lock; a later run removes what an interrupted
one left.
"""
from __future__ import annotations

import os
import pathlib

import registry as registry_lib
# Temporary entries (safe to delete under the lock) and the one way a file is written.
from exporters.filesystem import TEMP_PREFIXES, remove_entry, write_atomically  # noqa: F401



def handle_dir(export_dir: str | os.PathLike, release: registry_lib.Release) -> pathlib.Path:
  return pathlib.Path(export_dir, *release.handle.split("/"))


def export_path(export_dir, release) -> pathlib.Path:
  return handle_dir(export_dir, release) / str(release.version.number)


def stamp_path(export_dir, release) -> pathlib.Path:
  return handle_dir(export_dir, release) / f".{release.version.number}.stamp.json"


def card_path(export_dir, release) -> pathlib.Path:
  return handle_dir(export_dir, release) / release.card_file


def deployment_dir(export_dir, deployment: registry_lib.Deployment) -> pathlib.Path:
  """The folder holding a deployment, its card and its stamp."""
  return pathlib.Path(export_dir, *deployment.handle_dir.split("/"))


def deployment_path(export_dir, deployment) -> pathlib.Path:
  return deployment_dir(export_dir, deployment) / str(deployment.version)


def deployment_stamp_path(export_dir, deployment) -> pathlib.Path:
  return deployment_dir(export_dir, deployment) / f".{deployment.version}.stamp.json"


def deployment_card_path(export_dir, deployment) -> pathlib.Path:
  return deployment_dir(export_dir, deployment) / f"{deployment.version}.md"


def remove_stale_temporaries(export_dir: pathlib.Path, reg: registry_lib.Registry) -> list[str]:
  """Deletes what an interrupted run left (`.tmp-*`, `.old-*`) in the handle directories,
  and the workers' folder (`.tmp-export_all-*`) at the tree's top."""
  removed = []
  handles = [export_dir]
  handles += [h for name in reg.publisher_names
             for h in (export_dir / name / reg.publisher.collection).glob("*/*")]
  handles += {deployment_dir(export_dir, d) for d in reg.deployments()}
  for handle in sorted(handles):
    if not handle.is_dir():
      continue
    for entry in sorted(handle.iterdir()):
      if entry.name.startswith(TEMP_PREFIXES):
        remove_entry(entry)
        removed.append(str(entry))
  return removed


def directory_size(path: pathlib.Path) -> int:
  return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
