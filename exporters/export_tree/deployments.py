"""export-all's last step: the TF.js deployments of the planned releases (registry [tfjs]).

A deployment is converted from its parent release's verified export by
exporters.formats.tfjs (the official converter, in `.venv-tfjs`), after every
model run, so only from a parent that is in place: exported and verified in
this run, or up to date. Its stamp key covers the parent's stamp key (so a
re-exported parent is converted again), the deployment's registry facts and
the converter step's code and environment pins (stamps.tfjs_fingerprint).
Deciding that a deployment is up to date reads its stamp and checks that its
model.json is there: no converter process is started.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Callable

import registry as registry_lib
from exporters.errors import ExportError
from exporters.export_tree import layout, stamps
from exporters.export_tree.plan import ExportAllConfig, ReleaseJob
from exporters.export_tree.progress import format_seconds

FORMAT = "tfjs"  # How the table and the stamps name a deployment's format.


@dataclasses.dataclass
class DeploymentJob:
  """One planned TF.js deployment and what its stamp says about it."""
  index: int
  total: int
  deployment: registry_lib.TfjsDeployment
  parent: ReleaseJob
  output_dir: pathlib.Path
  stamp_file: pathlib.Path
  card_file: pathlib.Path
  stamp_inputs: dict
  stamp_key: str
  up_to_date: bool
  stamp: stamps.Stamp | None = None

  @property
  def label(self) -> str:
    return f"[{self.index}/{self.total}] {self.deployment.handle}"


def plan(config: ExportAllConfig, reg: registry_lib.Registry,
         release_jobs: list[ReleaseJob]) -> list[DeploymentJob]:
  """The deployments of the planned releases; numbered after them ([i/total] of the whole run)."""
  if not config.tfjs:
    return []
  by_release = {(j.release.model.name, j.release.module_type, j.release.version.number): j
                for j in release_jobs}
  wanted = [d for d in reg.tfjs_deployments(models=config.models,
                                            module_types=config.module_types,
                                            versions=config.versions)
            if (d.parent.model.name, d.parent.module_type, d.parent.version.number) in by_release]
  total = len(release_jobs) + len(wanted)
  fingerprint = stamps.tfjs_fingerprint()
  jobs = []
  for i, deployment in enumerate(wanted, len(release_jobs) + 1):
    parent = by_release[deployment.parent.model.name, deployment.parent.module_type,
                        deployment.parent.version.number]
    inputs = {"parent_stamp_key": parent.stamp_key, "converter": fingerprint,
              "deployment": {"handle": deployment.handle,
                             "parent": deployment.parent.handle_with_version}}
    key = stamps.stamp_key(inputs)
    output_dir = layout.deployment_path(config.export_dir, deployment)
    stamp_file = layout.deployment_stamp_path(config.export_dir, deployment)
    stamp = stamps.read_stamp(stamp_file)
    up_to_date = (not config.force and parent.up_to_date and stamp is not None
                  and stamp.key == key and (output_dir / "model.json").is_file())
    jobs.append(DeploymentJob(index=i, total=total, deployment=deployment, parent=parent,
                              output_dir=output_dir, stamp_file=stamp_file,
                              card_file=layout.deployment_card_path(config.export_dir, deployment),
                              stamp_inputs=inputs, stamp_key=key, up_to_date=up_to_date,
                              stamp=stamp))
  return jobs


def check_converter(config: ExportAllConfig, jobs: list[DeploymentJob]) -> None:
  """Before any work: converting needs the converter's environment."""
  todo = [j for j in jobs if not j.up_to_date]
  if todo and not pathlib.Path(config.tfjs_converter).is_file():
    raise ExportError(
        f"the TF.js converter {config.tfjs_converter} is missing, and {len(todo)} TF.js "
        f"deployment(s) need it; build its environment with `make tfjs-env` (or pass "
        f"--notfjs to export without the TF.js deployments); nothing was exported")


@dataclasses.dataclass(frozen=True)
class Converted:
  seconds: float
  error: str = ""


def convert(job: DeploymentJob, parent_ok: bool, config: ExportAllConfig,
            log: Callable[[str], None]) -> Converted:
  """Converts one deployment from its parent's export and stamps it; never raises ExportError."""
  from exporters.formats import tfjs
  parent = job.parent
  if not parent_ok:
    return Converted(0.0, f"not converted: its parent {parent.release.handle_with_version} "
                          f"failed")
  log(f"{job.label}: converting {parent.release.handle_with_version} with the TF.js "
      f"converter …")
  start = time.monotonic()
  try:
    model = tfjs.convert(str(parent.export_dir), str(job.output_dir),
                         converter=config.tfjs_converter)
  except ExportError as e:
    return Converted(time.monotonic() - start, str(e))
  parent_stamp = stamps.read_stamp(parent.stamp_file)
  try:
    stamps.write_stamp(job.stamp_file, stamps.Stamp(
        key=job.stamp_key, inputs=job.stamp_inputs, handle=job.deployment.handle_dir,
        version=job.deployment.version, export_format=FORMAT,
        checkpoint_path=str(parent.checkpoint),
        code_version=stamps.code_version(stamps.tfjs_fingerprint()),
        seconds=round(model.seconds, 3), peak_rss_mb=None,
        export={"parent": parent.release.handle_with_version, "files": list(model.files),
                "converted_by": model.converted_by, "generated_by": model.generated_by},
        checkpoint_provenance=(parent_stamp.checkpoint_provenance if parent_stamp
                               else parent.checkpoint_provenance)))
  except OSError as e:
    return Converted(model.seconds, f"converted, but its stamp could not be written: "
                                    f"{e.strerror or e}")
  return Converted(model.seconds)


def outcome_text(converted: Converted) -> str:
  if converted.error:
    return f"FAILED after {format_seconds(converted.seconds)}: {converted.error}"
  return f"converted in {format_seconds(converted.seconds)}"
