"""Stamps: what each export in the tree was made from, and whether it is still up to date.

A stamp's key is a sha256 over the checkpoint's content hash, the exporter
code version and the release's registry facts an export reads. A stamp whose
key differs, or an export directory that is gone, means the release is
exported again. A content hash, not a file time, decides: touching a
checkpoint without changing it re-exports nothing.

The stamp also records the checkpoint's provenance (checkpoints.fetch_lib.
checkpoint_provenance: "pinned archive sha256 ..." or "unverified local
checkpoint"). It is not part of the key: a checkpoint placed by hand that is
later fetched and pinned has the same bytes, so its exports would be the
same bytes too; export_all rewrites the stamps of up-to-date releases whose
recorded provenance is no longer true instead of exporting them again.

The code version covers whole packages: every Python file of the packages
an export runs (`EXPORT_CODE_PACKAGES`: the model run, the network and its
reference, the format writers, the verification rules, the compat shims, the
graph builders, the registry, and the checkpoint reading and matching rules),
plus the versions of the libraries that write the bytes. The CLIs, export_all itself, cards, publishing and serving are
other packages, so changing them re-exports nothing.
"""
from __future__ import annotations

import configparser
import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import pathlib

import registry as registry_lib
from exporters.export_tree import layout
from exporters.fingerprint import installed_versions, sources_sha256

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DISTRIBUTION = "nasnet-hub-toolchain"
STAMP_FORMAT = 3  # 3 added checkpoint_provenance; a format-2 stamp is read with it unknown.
UNKNOWN_PROVENANCE = "unknown"  # A format-2 stamp; publish_lib says the same.
EXPORT_CODE_PACKAGES = ("exporters/pipeline", "exporters/network", "exporters/formats",
                        "exporters/verification", "exporters/compat", "slim_nets", "registry",
                        "checkpoints")
EXPORT_LIBRARIES = ("tensorflow", "tensorflow-cpu", "tf-keras", "tf-slim", "tensorflow-hub")
# A deployment's converter step is not part of any release's export: its own code and
# pins (its module's FINGERPRINT_SOURCES) make the deployments' stamps
# (`converter_fingerprint`).


@dataclasses.dataclass(frozen=True)
class Stamp:
  """The record beside each export (`.<version>.stamp.json`)."""
  key: str
  inputs: dict  # What the key is a hash of (see `stamp_inputs`).
  handle: str
  version: int
  export_format: str
  checkpoint_path: str
  code_version: str
  seconds: float  # This release's own share of its model run.
  peak_rss_mb: int | None  # The model run's process, up to this release: calibrates --jobs.
  export: dict  # What the export reported (verification, phase seconds).
  # "pinned archive sha256 <hex>" or "unverified local checkpoint" (checkpoints.fetch_lib).
  checkpoint_provenance: str = UNKNOWN_PROVENANCE

  def to_json(self) -> bytes:
    data = dict(dataclasses.asdict(self), format=STAMP_FORMAT)
    return (json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n").encode()


def read_stamp(path: str | pathlib.Path) -> Stamp | None:
  """The stamp, or None when it is absent, unreadable or of another format (then: export again)."""
  try:
    data = json.loads(pathlib.Path(path).read_text())
    if not isinstance(data, dict):
      return None
    # Format 2 had no provenance: read with it unknown, export_all records it without exporting.
    if data.pop("format", None) not in (2, STAMP_FORMAT):
      return None
    if not _well_typed(data):
      return None
    return Stamp(**data)
  except (OSError, ValueError, TypeError):
    return None


# A JSON value's Python types for each annotation a Stamp field has.
_STAMP_TYPES = {"str": (str,), "dict": (dict,), "int": (int,), "float": (int, float),
                "int | None": (int, type(None))}


def _well_typed(data: dict) -> bool:
  """Every Stamp field present (but those with a default) and of its annotated type, so
  that a hand-edited stamp (`"peak_rss_mb": "lots"`) reads as no stamp, not a crash later."""
  for field in dataclasses.fields(Stamp):
    if field.name not in data:
      if field.default is dataclasses.MISSING:
        return False
      continue
    value = data[field.name]
    if isinstance(value, bool) or not isinstance(value, _STAMP_TYPES[field.type]):
      return False
  return data.keys() <= {f.name for f in dataclasses.fields(Stamp)}


def write_stamp(path: pathlib.Path, stamp: Stamp) -> None:
  layout.write_atomically(path, stamp.to_json())


def toolchain_version() -> str:
  """The project's version: setup.cfg in a checkout, else the installed metadata."""
  setup_cfg = REPO_ROOT / "setup.cfg"
  if setup_cfg.is_file():
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    if parser.has_option("metadata", "version"):
      return parser.get("metadata", "version")
  try:
    return importlib.metadata.version(DISTRIBUTION)
  except importlib.metadata.PackageNotFoundError:
    return "0+unknown"


def export_source_files() -> list[pathlib.Path]:
  """Every Python file of the packages an export runs."""
  return [path for package in EXPORT_CODE_PACKAGES
          for path in sorted((REPO_ROOT / package).rglob("*.py"))
          if "__pycache__" not in path.parts
          and path.relative_to(REPO_ROOT).as_posix() not in _converter_sources()]


def _converter_sources() -> set[str]:
  from exporters import formats
  return {name for kind in registry_lib.DEPLOYMENT_KINDS
          for name in formats.converter_for(kind).FINGERPRINT_SOURCES}


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> dict:
  """What identifies the exporter code: version, source hash and library versions.

  registry/models.toml is hashed only through the facts each stamp takes from
  it (`release_facts`), so editing a card text does not re-export.
  """
  return {"toolchain_version": toolchain_version(),
          "sources_sha256": sources_sha256(REPO_ROOT, export_source_files()),
          "libraries": installed_versions(EXPORT_LIBRARIES)}


@functools.lru_cache(maxsize=None)
def converter_fingerprint(kind: str) -> dict:
  """What identifies a deployment kind's conversion and its verification: its converter
  module's FINGERPRINT_SOURCES (the step's code, its environment's pins, its client's lock
  files and scripts); reading them needs no process."""
  from exporters import formats
  paths = [REPO_ROOT / name for name in formats.converter_for(kind).FINGERPRINT_SOURCES]
  return {"toolchain_version": toolchain_version(),
          "sources_sha256": sources_sha256(REPO_ROOT, paths)}


def code_version(fingerprint: dict) -> str:
  """`<toolchain version>+<12 hex digits of the source hash>`, as manifests state it."""
  return f"{fingerprint['toolchain_version']}+{fingerprint['sources_sha256'][:12]}"


def release_facts(release: registry_lib.Release) -> dict:
  """The registry facts an export reads (card-only `extra` fields left out)."""
  model = {f.name: getattr(release.model, f.name) for f in dataclasses.fields(release.model)
           if f.name != "extra"}
  version = {f.name: getattr(release.version, f.name) for f in dataclasses.fields(release.version)
             if f.name != "extra"}
  return {"handle": release.handle, "module_type": release.module_type,
          "num_classes": release.registry.publisher.num_classes,
          "model": model, "version": version}


def stamp_inputs(release: registry_lib.Release, checkpoint_sha256: str, exporter: str,
                 fingerprint: dict) -> dict:
  return {"release": release_facts(release), "checkpoint_sha256": checkpoint_sha256,
          "code": fingerprint, "exporter": exporter}


def stamp_key(inputs: dict) -> str:
  return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


def canonical_json(value) -> str:
  return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(value):
  """json.dumps fallback for numpy scalars and arrays in verification reports."""
  if hasattr(value, "tolist"):
    return value.tolist()
  if isinstance(value, (set, frozenset, tuple)):
    return list(value)
  return str(value)


def jsonable(value):
  """`value` as plain JSON data (numpy values converted)."""
  return json.loads(json.dumps(value, default=_jsonable))
