"""export-all's last step: the deployments of the planned releases (registry [deployments]).

The one seam every deployment kind goes through. A deployment is converted
from its parent release's verified export by its kind's converter
(exporters.formats.converter_for: the TF.js converter in `.venv-tfjs`, ...),
after every model run, so only from a parent that is in place: exported and
verified in this run, or up to date. Its stamp key covers the parent's stamp
key (so a re-exported parent is converted again), the deployment's registry
facts and the converter's FINGERPRINT_SOURCES (the step's code, environment
pins, its client's lock files: stamps.converter_fingerprint).

Each converted deployment is verified by its own client before it is moved
into place (the TF.js runtime in Node.js, ...): the client runs it on the
verification probe images (`slim_graph.probe_images`) and its output must
match the Slim reference's (`reference.SlimReference(...).expected()`) within
exporters.verification's tolerance; one reference per model, built when the
first of its deployments is verified and closed after the last. A deployment
that differs is not put in place and its row says why. Where the client
cannot run here (for TF.js: no `node`, or `make tfjs-runtime` not done), a
deployment is still converted and stamped, with `verified: false` and the
reason in its stamp; a later run that finds the client verifies it (converts
it again: the bytes are the same). Deciding that a deployment is up to date
reads its stamp and checks that its output file is there: no converter or
client process is started.
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



@dataclasses.dataclass
class DeploymentJob:
  """One planned deployment and what its stamp says about it."""
  index: int
  total: int
  deployment: registry_lib.Deployment
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
  """Whether the stamp records a verification by the deployment's client."""
  return bool(stamp and isinstance(stamp.export.get("verification"), dict)
              and stamp.export["verification"].get("verified") is True)


class _SharedReference:
  """One model's Slim reference outputs for its deployments: computed on first use, in a
  process of its own (reference_cache.expected_in_child_process: TF-Slim's arg scopes are one
  global stack, so building its graph beside other graph building in this process, as a
  test session does, could give it another's arguments), dropped after its last user (each
  deployment to convert uses it once, whether or not it verifies)."""

  def __init__(self, model: registry_lib.Model, num_classes: int, checkpoint: pathlib.Path,
               users: int):
    self.model, self.num_classes, self.checkpoint = model, num_classes, checkpoint
    self.users = users
    self._expected = None
    self._error = ""  # Why it could not be computed: not tried again for the next user.

  def expected(self) -> dict:
    if self._error:
      raise ExportError(self._error)
    try:
      if self._expected is None:
        from exporters.network import reference_cache
        self._expected = reference_cache.expected_in_child_process(
            self.model, self.num_classes, str(self.checkpoint))
      return self._expected
    except ExportError as e:
      self._error = str(e)
      raise

  def release(self) -> None:
    self.users -= 1
    if self.users <= 0:
      self._expected = None


def plan(config: ExportAllConfig, reg: registry_lib.Registry,
         release_jobs: list[ReleaseJob]) -> list[DeploymentJob]:
  """The deployments of the planned releases; numbered after them ([i/total] of the whole run)."""
  by_release = {(j.release.model.name, j.release.module_type, j.release.version.number): j
                for j in release_jobs}
  from exporters import formats
  wanted = [d for d in reg.deployments(models=config.models, module_types=config.module_types,
                                       versions=config.versions)
            if config.converts(d.kind) and (d.parent.model.name, d.parent.module_type, d.parent.version.number) in by_release]
  total = len(release_jobs) + len(wanted)
  jobs = []
  for i, deployment in enumerate(wanted, len(release_jobs) + 1):
    converter = formats.converter_for(deployment.kind)
    can_verify = not converter.runtime_problem()
    parent = by_release[deployment.parent.model.name, deployment.parent.module_type,
                        deployment.parent.version.number]
    inputs = {"parent_stamp_key": parent.stamp_key,
              "converter": stamps.converter_fingerprint(deployment.kind),
              "deployment": {"handle": deployment.handle,
                             "parent": deployment.parent.handle_with_version}}
    key = stamps.stamp_key(inputs)
    output_dir = layout.deployment_path(config.export_dir, deployment)
    stamp_file = layout.deployment_stamp_path(config.export_dir, deployment)
    stamp = stamps.read_stamp(stamp_file)
    # An unverified deployment is up to date until the runtime can verify it.
    up_to_date = (not config.force and parent.up_to_date and stamp is not None
                  and stamp.key == key and (output_dir / converter.OUTPUT_FILE).is_file()
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


def converter_tool(config: ExportAllConfig, kind: str) -> str:
  """The converter `kind`'s deployments are converted with, as configured."""
  return {"tfjs": config.tfjs_converter}.get(kind, "")


def check_converter(config: ExportAllConfig, jobs: list[DeploymentJob]) -> None:
  """Before any work: converting needs each kind's converter environment."""
  from exporters import formats
  todo = [j for j in jobs if not j.up_to_date]
  for kind in dict.fromkeys(j.deployment.kind for j in todo):
    variants = {j.deployment.variant for j in todo if j.deployment.kind == kind}
    problem = formats.converter_for(kind).environment_problem(converter_tool(config, kind),
                                                              variants)
    if problem:
      count = sum(j.deployment.kind == kind for j in todo)
      raise ExportError(f"{problem}; {count} {kind} deployment(s) need it (or pass "
                        f"--no{kind} to export without them); nothing was exported")


@dataclasses.dataclass(frozen=True)
class Outcome:
  """How one deployment's conversion went."""
  seconds: float
  error: str = ""
  verification: dict | None = None  # The stamp's record; None when it failed.


def convert(job: DeploymentJob, parent_ok: bool, config: ExportAllConfig,
            log: Callable[[str], None]) -> Outcome:
  """Converts one deployment from its parent's export, verifies it with its client and
  stamps it; never raises ExportError."""
  try:
    return _convert(job, parent_ok, config, log)
  finally:
    if job.reference is not None:
      job.reference.release()


def _convert(job: DeploymentJob, parent_ok: bool, config: ExportAllConfig,
             log: Callable[[str], None]) -> Outcome:
  from exporters import formats
  converter = formats.converter_for(job.deployment.kind)
  parent = job.parent
  if not parent_ok:
    return Outcome(0.0, f"not converted: its parent {parent.release.handle_with_version} "
                        f"failed")
  problem = converter.runtime_problem()
  log(f"{job.label}: converting {parent.release.handle_with_version} with "
      f"{converter.CONVERTER_NAME}"
      f"{'' if problem else f', verifying it with {converter.CLIENT_NAME}'} …")
  start = time.monotonic()
  try:
    model = converter.convert(str(parent.export_dir), str(job.output_dir),
                              converter_tool(config, job.deployment.kind),
                              verify=None if problem else _verifier(job, converter),
                              variant=job.deployment.variant)
  except ExportError as e:
    return Outcome(time.monotonic() - start, _one_line(str(e)))
  verification = model.verification or {"verified": False, "reason": problem}
  parent_stamp = stamps.read_stamp(parent.stamp_file)
  try:
    stamps.write_stamp(job.stamp_file, stamps.Stamp(
        key=job.stamp_key, inputs=job.stamp_inputs, handle=job.deployment.handle_dir,
        version=job.deployment.version, export_format=job.deployment.kind,
        checkpoint_path=str(parent.checkpoint),
        code_version=stamps.code_version(stamps.converter_fingerprint(job.deployment.kind)),
        seconds=round(model.seconds, 3), peak_rss_mb=None,
        export={"parent": parent.release.handle_with_version, "files": list(model.files),
                "converted_by": model.converted_by, "generated_by": model.generated_by,
                "verification": verification},
        checkpoint_provenance=(parent_stamp.checkpoint_provenance if parent_stamp
                               else parent.checkpoint_provenance)))
  except OSError as e:
    return Outcome(model.seconds, f"converted, but its stamp could not be written: "
                                  f"{e.strerror or e}")
  return Outcome(model.seconds, verification=verification)


def _verifier(job: DeploymentJob, converter) -> Callable[[str], dict]:
  """verify(model_dir) for the converter: the deployment by its client against the model's
  Slim reference (built by the first deployment of the model that gets here)."""
  def verify(model_dir: str) -> dict:
    return converter.verify_release_deployment(model_dir, job.parent.release,
                                               job.reference.expected(),
                                               job.deployment.handle,
                                               variant=job.deployment.variant)
  return verify


def _one_line(text: str) -> str:
  return " ".join(text.split()) if "\n" in text else text


def verification_text(kind: str, verification: dict | None) -> str:
  """"verified (tfjs wasm, max abs diff 2.1e-06)" (the kind and its client's backend) or
  "not verified: <reason>"."""
  if not verification:
    return ""
  if verification.get("verified"):
    return (f"verified ({kind} {verification.get('backend')}, max abs diff "
            f"{verification.get('max_abs_diff', float('nan')):.2g})")
  return f"not verified: {verification.get('reason') or 'unknown reason'}"


def table_text(kind: str, status: str, verification: dict | None) -> str:
  """The table's "verified" cell of a deployment in place ("exported" or "up to date"), from
  its verification (Outcome.verification, or its stamp's export["verification"]):
  "converted and verified (tfjs wasm, max abs diff 1.1e-06)" or "converted, not verified"
  (the reason is the progress line's and the stamp's: too long for a cell)."""
  suffix = " (up to date)" if status == "up to date" else ""
  if verification and verification.get("verified"):
    return f"converted and {verification_text(kind, verification)}{suffix}"
  if verification:
    return f"converted, not verified{suffix}"
  return f"converted{suffix}"


def outcome_text(kind: str, converted: Outcome) -> str:
  if converted.error:
    return f"FAILED after {format_seconds(converted.seconds)}: {converted.error}"
  took = format_seconds(converted.seconds)
  if converted.verification and converted.verification.get("verified"):
    return f"converted and {verification_text(kind, converted.verification)} in {took}"
  if converted.verification:
    return f"converted in {took}, {verification_text(kind, converted.verification)}"
  return f"converted in {took}"
