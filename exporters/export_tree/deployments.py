"""export-all's last step: the TF.js deployments of the planned releases (registry [tfjs]).

A deployment is converted from its parent release's verified export by
exporters.formats.tfjs (the official converter, in `.venv-tfjs`), after every
model run, so only from a parent that is in place: exported and verified in
this run, or up to date. Its stamp key covers the parent's stamp key (so a
re-exported parent is converted again), the deployment's registry facts and
the converter step's code and environment pins and the TF.js runtime's lock
file and script (stamps.tfjs_fingerprint).

Each converted deployment is verified by its own client before it is moved
into place: the real TF.js runtime (exporters/tfjs_runtime, Node.js, the
WebAssembly backend) runs it on the verification probe images
(`slim_graph.probe_images`) and its output must match the Slim reference's
(`reference.SlimReference(...).expected()`: logits for a classification
module, features for a feature vector) within exporters.verification's
tolerance; one reference per model, built when the first of its deployments
is verified and closed after the last. A deployment that differs is not put
in place and its row says why. Where the runtime cannot run (no `node`, or
`make tfjs-runtime` not done), a deployment is still converted and stamped,
with `verified: false` and the reason in its stamp; a later run that finds
the runtime verifies it (converts it again: the bytes are the same).
Deciding that a deployment is up to date reads its stamp and checks that its
model.json is there: no converter or runtime process is started.
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

FORMAT = registry_lib.TFJS_FORMAT  # How the table and the stamps name a deployment's format.


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
  reference: _SharedReference | None = None  # Shared by the model's deployments to convert.

  @property
  def label(self) -> str:
    return f"[{self.index}/{self.total}] {self.deployment.handle}"


def stamp_verified(stamp: stamps.Stamp | None) -> bool:
  """Whether the stamp records a verification in the TF.js runtime."""
  return bool(stamp and isinstance(stamp.export.get("verification"), dict)
              and stamp.export["verification"].get("verified") is True)


class _SharedReference:
  """One model's Slim reference for its deployments: built on first use, closed after its
  last user (each deployment to convert uses it once, whether or not it verifies)."""

  def __init__(self, model: registry_lib.Model, num_classes: int, checkpoint: pathlib.Path,
               users: int):
    self.model, self.num_classes, self.checkpoint = model, num_classes, checkpoint
    self.users = users
    self._reference = None
    self._error = ""  # Why it could not be built or run: not tried again for the next user.

  def expected(self) -> dict:
    if self._error:
      raise ExportError(self._error)
    try:
      if self._reference is None:
        from exporters.network import reference
        self._reference = reference.SlimReference(self.model, self.num_classes,
                                                  str(self.checkpoint))
      return self._reference.expected(training=False)
    except ExportError as e:
      self._error = str(e)
      raise

  def release(self) -> None:
    self.users -= 1
    if self.users <= 0 and self._reference is not None:
      self._reference.close()
      self._reference = None


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
  from exporters.formats import tfjs
  can_verify = not tfjs.runtime_problem()
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
    # An unverified deployment is up to date until the runtime can verify it.
    up_to_date = (not config.force and parent.up_to_date and stamp is not None
                  and stamp.key == key and (output_dir / tfjs.MODEL_JSON).is_file()
                  and (stamp_verified(stamp) or not can_verify))
    jobs.append(DeploymentJob(index=i, total=total, deployment=deployment, parent=parent,
                              output_dir=output_dir, stamp_file=stamp_file,
                              card_file=layout.deployment_card_path(config.export_dir, deployment),
                              stamp_inputs=inputs, stamp_key=key, up_to_date=up_to_date,
                              stamp=stamp))
  references: dict[str, _SharedReference] = {}
  for job in jobs:
    if not job.up_to_date:
      release = job.parent.release
      shared = references.get(release.model.name)
      if shared is None:
        shared = references[release.model.name] = _SharedReference(
            release.model, release.registry.publisher.num_classes,
            job.parent.checkpoint, users=0)
      shared.users += 1
      job.reference = shared
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
  verification: dict | None = None  # The stamp's record; None when it failed.


def convert(job: DeploymentJob, parent_ok: bool, config: ExportAllConfig,
            log: Callable[[str], None]) -> Converted:
  """Converts one deployment from its parent's export, verifies it in the TF.js runtime and
  stamps it; never raises ExportError."""
  try:
    return _convert(job, parent_ok, config, log)
  finally:
    if job.reference is not None:
      job.reference.release()


def _convert(job: DeploymentJob, parent_ok: bool, config: ExportAllConfig,
             log: Callable[[str], None]) -> Converted:
  from exporters.formats import tfjs
  parent = job.parent
  if not parent_ok:
    return Converted(0.0, f"not converted: its parent {parent.release.handle_with_version} "
                          f"failed")
  problem = tfjs.runtime_problem()
  log(f"{job.label}: converting {parent.release.handle_with_version} with the TF.js "
      f"converter{'' if problem else f', verifying it in the TF.js runtime ({tfjs.BACKEND})'} …")
  start = time.monotonic()
  try:
    model = tfjs.convert(str(parent.export_dir), str(job.output_dir),
                         converter=config.tfjs_converter,
                         verify=None if problem else _verifier(job))
  except ExportError as e:
    return Converted(time.monotonic() - start, _one_line(str(e)))
  verification = model.verification or {"verified": False, "reason": problem}
  parent_stamp = stamps.read_stamp(parent.stamp_file)
  try:
    stamps.write_stamp(job.stamp_file, stamps.Stamp(
        key=job.stamp_key, inputs=job.stamp_inputs, handle=job.deployment.handle_dir,
        version=job.deployment.version, export_format=FORMAT,
        checkpoint_path=str(parent.checkpoint),
        code_version=stamps.code_version(stamps.tfjs_fingerprint()),
        seconds=round(model.seconds, 3), peak_rss_mb=None,
        export={"parent": parent.release.handle_with_version, "files": list(model.files),
                "converted_by": model.converted_by, "generated_by": model.generated_by,
                "verification": verification},
        checkpoint_provenance=(parent_stamp.checkpoint_provenance if parent_stamp
                               else parent.checkpoint_provenance)))
  except OSError as e:
    return Converted(model.seconds, f"converted, but its stamp could not be written: "
                                    f"{e.strerror or e}")
  return Converted(model.seconds, verification=verification)


def _verifier(job: DeploymentJob) -> Callable[[str], dict]:
  """verify(model_dir) for tfjs.convert: the deployment in the TF.js runtime against the
  model's Slim reference (built by the first deployment of the model that gets here)."""
  from exporters.formats import tfjs

  def verify(model_dir: str) -> dict:
    return tfjs.verify_release_deployment(model_dir, job.parent.release,
                                          job.reference.expected(), job.deployment.handle)
  return verify


def _one_line(text: str) -> str:
  return " ".join(text.split()) if "\n" in text else text


def verification_text(verification: dict | None) -> str:
  """"verified (tfjs wasm, max abs diff 2.1e-06)" or "not verified: <reason>"."""
  if not verification:
    return ""
  if verification.get("verified"):
    return (f"verified ({FORMAT} {verification.get('backend')}, max abs diff "
            f"{verification.get('max_abs_diff', float('nan')):.2g})")
  return f"not verified: {verification.get('reason') or 'unknown reason'}"


def table_text(status: str, verification: dict | None) -> str:
  """The table's "verified" cell of a deployment in place ("exported" or "up to date"), from
  its verification (Converted.verification, or its stamp's export["verification"]):
  "converted and verified (tfjs wasm, max abs diff 1.1e-06)" or "converted, not verified"
  (the reason is the progress line's and the stamp's: too long for a cell)."""
  suffix = " (up to date)" if status == "up to date" else ""
  if verification and verification.get("verified"):
    return f"converted and {verification_text(verification)}{suffix}"
  if verification:
    return f"converted, not verified{suffix}"
  return f"converted{suffix}"


def outcome_text(converted: Converted) -> str:
  if converted.error:
    return f"FAILED after {format_seconds(converted.seconds)}: {converted.error}"
  took = format_seconds(converted.seconds)
  if converted.verification and converted.verification.get("verified"):
    return f"converted and {verification_text(converted.verification)} in {took}"
  if converted.verification:
    return f"converted in {took}, {verification_text(converted.verification)}"
  return f"converted in {took}"
