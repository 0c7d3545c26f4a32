"""Publishes an export tree in the form a model hub serves, immutably and repeatably.

For each exported (model, module type, version) it writes, under `dest` (a
folder, or any path tf.io.gfile writes, such as gs://bucket/prefix), the
layout of TF Hub's module bucket:

  <dest>/<handle>/<version>.tar.gz          the export in TF Hub's compressed format
  <dest>/<handle>/<version>.md              its card
  <dest>/<handle>/<version>.manifest.json   handle, version, format, sha256, size,
                                            source checkpoint, its hash and provenance,
                                            toolchain version

`<handle>` is `google/imagenet/<model>/<module_type>`, so the archive's path is
the versioned handle plus `.tar.gz`, as tfhub.dev's bucket names them.

The archive is deterministic: entries sorted, `saved_model.pb` at its root,
mtime 0, owner 0/0 without names, modes 0644/0755, and a gzip header without
file name or time. The same export gives the same bytes, so publishing again
is a no-op. A published version is immutable: an archive of other bytes under
an existing version is refused unless `force`.

Whether a version is unchanged is decided from the bytes at the destination:
the published archive is hashed every time (a manifest is a claim, not proof).
An archive whose sha256 differs from its manifest's is reported as corrupt,
with both hashes, and is rewritten only with `force`.

A TF.js deployment (registry [deployments.tfjs]) is published as the files its loader
fetches, under its handle, with its card and manifest beside, as for a version:

  <dest>/<deployment handle>/model.json, group1-shard*of*.bin
  <dest>/<deployment handle>.md, <deployment handle>.manifest.json

(`<deployment handle>` = `google/tfjs-model/imagenet/<model>/<module_type>/
<parent version>/default/1`). Its manifest lists each file's sha256 and size;
the same rules hold per file: the destination's bytes are hashed, a file
that differs from its manifest is corrupt, other bytes are refused unless
`force`.

Every file is written to a temporary name beside its target and renamed
there; the manifest comes last, and a failure removes what this run had put
in place for that version, so a reader never sees part of a version.
"""
from __future__ import annotations

import dataclasses
import errno
import gzip
import hashlib
import io
import json
import os
import posixpath
import stat
import tarfile
import uuid
from typing import Callable

import registry as registry_lib
from exporters import export_tree, formats
from exporters.errors import ExportError
from exporters.export_tree import stamps

MANIFEST_FORMAT = 1
# A version's files beside each other: <version>.tar.gz, <version>.md, <version>.manifest.json
# (a deployment's manifest lies beside its folder); exporters.publishing.serve_lib reads them.
ARCHIVE_SUFFIX = ".tar.gz"
MANIFEST_SUFFIX = ".manifest.json"
COMPRESS_LEVEL = 6
CHUNK = 1 << 20
ARCHIVE_MTIME = 0


@dataclasses.dataclass(frozen=True)
class PublishConfig:
  export_dir: str
  dest: str
  models: tuple[str, ...] = ()
  module_types: tuple[str, ...] = ()
  versions: tuple[int, ...] = ()
  force: bool = False  # Replace a published version whose archive differs or is corrupt.


@dataclasses.dataclass
class Published:
  handle: str  # With the version: google/imagenet/<model>/<module_type>/<version>.
  archive: str  # Its path under dest.
  sha256: str
  size: int
  # "published", "unchanged", "card updated", "manifest updated", "replaced" or "repaired".
  status: str
  checkpoint_provenance: str  # As the manifest states it.


# ---- Destination layout.

def _join(*parts: str) -> str:
  """Joins like os.path.join for local paths and like posixpath for URLs (gs://...)."""
  if "://" in parts[0]:
    return posixpath.join(parts[0].rstrip("/"), *parts[1:])
  return os.path.join(*parts)


def archive_path(dest: str, release: registry_lib.Release) -> str:
  return _join(dest, *release.handle.split("/"), f"{release.version.number}{ARCHIVE_SUFFIX}")


def card_path(dest: str, release: registry_lib.Release) -> str:
  return _join(dest, *release.handle.split("/"), release.card_file)


def manifest_path(dest: str, release: registry_lib.Release) -> str:
  return _join(dest, *release.handle.split("/"),
               f"{release.version.number}{MANIFEST_SUFFIX}")


# ---- The archive.

class _HashingWriter(io.RawIOBase):
  """Passes bytes to `sink` while counting them and hashing them."""

  def __init__(self, sink):
    self.sink = sink
    self.sha256 = hashlib.sha256()
    self.size = 0

  def writable(self):
    return True

  def write(self, data):
    self.sink.write(data)
    self.sha256.update(data)
    self.size += len(data)
    return len(data)


def archive_members(export_dir: str) -> list[tuple[str, str]]:
  """(name in the archive, local path) of every entry, sorted; refuses links and special files."""
  members = []
  for parent, dirs, files in os.walk(export_dir):
    for name in dirs + files:
      path = os.path.join(parent, name)
      mode = os.lstat(path).st_mode
      if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise ExportError(f"{path} is a link or special file; an export holds only files "
                          f"and directories")
      members.append((os.path.relpath(path, export_dir).replace(os.sep, "/"), path))
  members.sort()
  if ("saved_model.pb", os.path.join(export_dir, "saved_model.pb")) not in members:
    raise ExportError(f"{export_dir} holds no saved_model.pb; it is not an export")
  return members


def write_archive(export_dir: str, fileobj) -> tuple[str, int]:
  """Writes the deterministic tar.gz of `export_dir` to `fileobj`; returns (sha256, size)."""
  sink = _HashingWriter(fileobj)
  with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=COMPRESS_LEVEL,
                     mtime=ARCHIVE_MTIME) as gz:
    with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
      for name, path in archive_members(export_dir):
        info = tarfile.TarInfo(name)
        info.mtime = ARCHIVE_MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if os.path.isdir(path):
          info.type, info.mode = tarfile.DIRTYPE, 0o755
          tar.addfile(info)
        else:
          info.type, info.mode = tarfile.REGTYPE, 0o644
          info.size = os.path.getsize(path)
          with open(path, "rb") as f:
            tar.addfile(info, f)
  return sink.sha256.hexdigest(), sink.size


# ---- What gets published.

@dataclasses.dataclass
class _Export:
  release: registry_lib.Release
  export_dir: str
  card: str
  stamp: export_tree.Stamp


def find_exports(config: PublishConfig, reg: registry_lib.Registry) -> list[_Export]:
  """The stamped exports to publish; with --models, each selected release must be exported."""
  try:
    releases = list(reg.releases(models=config.models, module_types=config.module_types,
                                 versions=config.versions))
  except registry_lib.RegistryError as e:
    raise ExportError(str(e)) from None
  if not os.path.isdir(config.export_dir):
    raise ExportError(f"--export_dir {config.export_dir!r} does not exist; run "
                      f"`python -m exporters.export_all --export_dir={config.export_dir}` first")
  required = bool(config.models)  # Else: whatever of the selection is exported.
  found, missing = [], []
  for release in releases:
    export_dir = str(export_tree.export_path(config.export_dir, release))
    stamp = export_tree.read_stamp(export_tree.stamp_path(config.export_dir, release))
    card = export_tree.card_path(config.export_dir, release)
    exported = os.path.isfile(os.path.join(export_dir, "saved_model.pb"))
    # The manifest states the checkpoint's sha256 from the stamp: a (hand-edited) stamp
    # without it cannot be published.
    recorded = stamp is not None and isinstance(stamp.inputs.get("checkpoint_sha256"), str)
    if exported and recorded and card.is_file():
      found.append(_Export(release, export_dir, str(card), stamp))
    elif exported or required:
      why = ("no export" if not exported else "no stamp (made outside export_all?)"
             if not stamp else "a stamp without the checkpoint's sha256 (edited by hand?)"
             if not recorded else "no card")
      missing.append(f"{release.handle_with_version} ({why})")
  if missing:
    raise ExportError(
        f"cannot publish {len(missing)} release(s) from {config.export_dir}: "
        f"{', '.join(missing)}; run `python -m exporters.export_all` for them first")
  if not found:
    raise ExportError(f"{config.export_dir} holds no exports; run "
                      f"`python -m exporters.export_all --export_dir={config.export_dir}` first")
  return found


def checkpoint_provenance(stamp: export_tree.Stamp) -> str:
  """What the stamp says about the checkpoint's origin, word for word, or that it is unknown.

  Publishing states only what the export recorded ("pinned archive sha256 ..."
  or "unverified local checkpoint"); a stamp that records nothing (one made
  before export_all recorded it) is published as unknown, never as either
  answer. It is not refused: the manifest then claims nothing, and each version's
  log line says which it is.
  """
  return stamp.checkpoint_provenance or stamps.UNKNOWN_PROVENANCE


def manifest(export: _Export, sha256: str, size: int) -> dict:
  release, stamp = export.release, export.stamp
  model = release.model
  return {
      "manifest_format": MANIFEST_FORMAT,
      "handle": release.handle,
      "version": release.version.number,
      "format": release.version.format,
      "archive": f"{release.version.number}{ARCHIVE_SUFFIX}",
      "sha256": sha256,
      "size": size,
      "card": f"{release.version.number}.md",
      "source_checkpoint": {
          "name": model.checkpoint_label,
          "url": model.checkpoint_url,
          "sha256": stamp.inputs["checkpoint_sha256"],
          "sha256_of": "the .index and .data-* files (checkpoints.fetch_lib.checkpoint_sha256)",
      },
      "checkpoint_provenance": checkpoint_provenance(stamp),
      "toolchain_version": stamp.code_version,
  }


def _manifest_bytes(data: dict) -> bytes:
  return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


# ---- Writing through tf.io.gfile.

def _gfile():
  import tensorflow as tf
  return tf.io.gfile


def _storage_errors() -> tuple[type[BaseException], ...]:
  import tensorflow as tf
  return (OSError, tf.errors.OpError)


def _temp_name(path: str) -> str:
  head, tail = posixpath.split(path) if "://" in path else os.path.split(path)
  return _join(head, f".tmp-{tail}-{uuid.uuid4().hex[:12]}")


def _read_bytes(path: str) -> bytes | None:
  gfile = _gfile()
  if not gfile.exists(path):
    return None
  with gfile.GFile(path, "rb") as f:
    return f.read()


def _file_sha256(path: str) -> str:
  h = hashlib.sha256()
  with _gfile().GFile(path, "rb") as f:
    while chunk := f.read(CHUNK):
      h.update(chunk)
  return h.hexdigest()


def _write_temp(path: str, data: bytes, temps: list[str]) -> str:
  tmp = _temp_name(path)
  temps.append(tmp)
  with _gfile().GFile(tmp, "wb") as f:
    f.write(data)
  return tmp


def _remove_quietly(paths: list[str]) -> None:
  gfile = _gfile()
  for path in paths:
    try:
      if gfile.exists(path):
        gfile.remove(path)
    except _storage_errors():
      pass


def _storage_message(e: BaseException) -> str:
  if isinstance(e, OSError) and e.errno == errno.ENOSPC:
    return f"no space left on the device ({e})"
  return getattr(e, "message", None) or str(e) or type(e).__name__


# ---- Publishing one version.

def publish_one(export: _Export, dest: str, force: bool,
                log: Callable[[str], None]) -> Published:
  """Publishes one version; a new version appears whole or not at all.

  Replacing a version (`force`) renames the new archive, card and manifest over
  the old ones in that order; should that be cut short, publishing again
  completes it (the archive's bytes decide, not its manifest). A published
  archive whose bytes do not match its manifest is corrupt: refused without
  `force`, rewritten with it.
  """
  release = export.release
  label = release.handle_with_version
  archive, card, manifest_file = (archive_path(dest, release), card_path(dest, release),
                                  manifest_path(dest, release))
  gfile = _gfile()
  temps, renamed, placed, status = [], [], [], None
  try:
    gfile.makedirs(_dirname(archive))
    _remove_quietly(_stale_temporaries(archive, card, manifest_file))
    tmp_archive = _temp_name(archive)
    temps.append(tmp_archive)
    with gfile.GFile(tmp_archive, "wb") as f:
      sha256, size = write_archive(export.export_dir, f)
    old_sha256 = _file_sha256(archive) if gfile.exists(archive) else None
    claimed = _manifest_sha256(manifest_file) if old_sha256 is not None else None
    if claimed is not None and claimed != old_sha256:
      if not force:
        raise ExportError(
            f"{label} is corrupt at {archive}: its manifest says sha256 {claimed}, the file's "
            f"sha256 is {old_sha256}; publish again with --force to rewrite it")
      # Repaired: the new bytes are what the manifest claimed, or what the file holds (then
      # the manifest was the damaged part); anything else replaces the version.
      status = "repaired" if sha256 in (claimed, old_sha256) else "replaced"
    elif old_sha256 is not None and old_sha256 != sha256 and not force:
      raise ExportError(
          f"{label} is already published at {archive} with other bytes (sha256 {old_sha256}, "
          f"new {sha256}); a published version is immutable. Publish the change as a new "
          f"version, or pass --force to replace it")
    else:
      status = ("published" if old_sha256 is None else "unchanged" if old_sha256 == sha256
                else "replaced")
    staged = []  # (temporary, target), renamed in this order: the manifest comes last.
    if status in ("published", "replaced", "repaired"):
      staged.append((tmp_archive, archive))
    status = _stage_card_and_manifest(
        export.card, card, _manifest_bytes(manifest(export, sha256, size)), manifest_file,
        status, staged, temps)
    _rename_in_order(staged, renamed, placed)
  except BaseException as e:
    _fail(e, label, dest, status, placed, [t for t in temps if t not in renamed],
          _dirname(archive))
  _remove_quietly([t for t in temps if t not in renamed])  # Those left unused (unchanged).
  provenance = checkpoint_provenance(export.stamp)
  log(f"{label}: {status} ({size} bytes, sha256 {sha256}; checkpoint: {provenance})")
  return Published(handle=label, archive=archive, sha256=sha256, size=size, status=status,
                   checkpoint_provenance=provenance)


def _rename_in_order(staged: list[tuple[str, str]], renamed: list[str], placed: list[str]
                     ) -> None:
  """Renames each (temporary, target) over its target, in order (the manifest comes last)."""
  gfile = _gfile()
  for tmp, path in staged:
    gfile.rename(tmp, path, overwrite=True)
    renamed.append(tmp)
    placed.append(path)


def _fail(e: BaseException, label: str, dest: str, status: str | None, placed: list[str],
          temporaries: list[str], folder: str) -> None:
  """Called in `except` of a version's publish (release or deployment); always raises.
  Its temporaries are removed; a new version is taken back whole (what this run placed,
  and the folders left empty up to `dest`); a storage error becomes one line saying what
  is left; anything else is raised again."""
  _remove_quietly(temporaries)  # First: a folder holding one is not empty.
  new_version = status in (None, "published")
  if new_version:
    _remove_quietly(placed)
    _prune_empty_dirs(folder, dest)
  if isinstance(e, _storage_errors()):
    outcome = "nothing of it was left there" if new_version else "publish again to complete it"
    raise ExportError(
        f"cannot publish {label} to {dest}: {_storage_message(e)}; {outcome}") from None
  raise e


def _stage_card_and_manifest(card_source: str, card: str, manifest_bytes: bytes,
                             manifest_file: str, status: str, staged: list, temps: list[str]) -> str:
  """Stages the card and then the manifest where their bytes changed; returns the status."""
  with open(card_source, "rb") as f:
    card_bytes = f.read()
  if _read_bytes(card) != card_bytes:
    staged.append((_write_temp(card, card_bytes, temps), card))
    status = "card updated" if status == "unchanged" else status
  if _read_bytes(manifest_file) != manifest_bytes:
    staged.append((_write_temp(manifest_file, manifest_bytes, temps), manifest_file))
    status = "manifest updated" if status == "unchanged" else status
  return status


def _stale_temporaries(*paths: str) -> list[str]:
  """Temporary files a killed publish of these files left beside them."""
  found = []
  for path in paths:
    found += _gfile().glob(_temp_name(path).rsplit("-", 1)[0] + "-*")
  return found


def _dirname(path: str) -> str:
  return posixpath.dirname(path) if "://" in path else os.path.dirname(path)


def _prune_empty_dirs(path: str, stop: str) -> None:
  """Removes the empty local folders from `path` up to, not including, `stop`."""
  if "://" in path:
    return  # Object stores have no empty folders to leave behind.
  path, stop = os.path.abspath(path), os.path.abspath(stop)
  while path.startswith(stop + os.sep):
    try:
      os.rmdir(path)
    except OSError:
      return
    path = os.path.dirname(path)


def _manifest_sha256(manifest_file: str) -> str | None:
  """The sha256 the published manifest claims, or None without a readable one.

  A missing or unreadable manifest claims nothing (a publish cut short before
  it was written): the archive's own bytes are then compared with the new ones.
  """
  data = _read_bytes(manifest_file)
  try:
    recorded = json.loads(data) if data else {}
  except ValueError:
    return None
  sha256 = recorded.get("sha256") if isinstance(recorded, dict) else None
  return sha256 if isinstance(sha256, str) else None


# ---- Deployments (registry [deployments]).

@dataclasses.dataclass
class _Deployment:
  deployment: registry_lib.Deployment
  model_dir: str
  card: str
  stamp: export_tree.Stamp


def find_deployments(config: PublishConfig, reg: registry_lib.Registry) -> list[_Deployment]:
  """The converted, stamped deployments of the selected releases in the export tree."""
  from exporters.export_tree import layout
  found = []
  for d in reg.deployments(models=config.models, module_types=config.module_types,
                           versions=config.versions):
    model_dir = layout.deployment_path(config.export_dir, d)
    stamp = export_tree.read_stamp(layout.deployment_stamp_path(config.export_dir, d))
    card = layout.deployment_card_path(config.export_dir, d)
    output_file = formats.converter_for(d.kind).OUTPUT_FILE
    if (model_dir / output_file).is_file() and stamp and card.is_file():
      found.append(_Deployment(d, str(model_dir), str(card), stamp))
  return found


def deployment_files(model_dir: str, output_file: str) -> list[str]:
  """`output_file` (the converter's OUTPUT_FILE: model.json, ...), then the other files in
  name order; refuses anything but plain files."""
  names = sorted(os.listdir(model_dir))
  for name in names:
    if not stat.S_ISREG(os.lstat(os.path.join(model_dir, name)).st_mode):
      raise ExportError(f"{os.path.join(model_dir, name)} is not a plain file; a deployment "
                        f"holds only its converter's files")
  return [output_file, *[n for n in names if n != output_file]]


def deployment_manifest(dep: _Deployment, files: dict[str, dict]) -> dict:
  d, stamp = dep.deployment, dep.stamp
  return {
      "manifest_format": MANIFEST_FORMAT,
      "handle": d.handle_dir,
      "version": d.version,
      "format": d.kind,
      "parent": d.parent.handle_with_version,
      "files": files,
      "card": f"{d.version}.md",
      "checkpoint_provenance": checkpoint_provenance(stamp),
      "toolchain_version": stamp.code_version,
  }


def publish_deployment(dep: _Deployment, dest: str, force: bool,
                       log: Callable[[str], None]) -> Published:
  """Publishes one deployment's files, card and manifest (manifest last)."""
  d = dep.deployment
  label = d.handle
  folder = _join(dest, *d.handle.split("/"))
  card = folder + ".md"  # `<handle_dir>/<version>.md`, beside the files, as for a version.
  manifest_file = folder + MANIFEST_SUFFIX
  gfile = _gfile()
  temps, renamed, placed, status = [], [], [], None
  try:
    names = deployment_files(dep.model_dir, formats.converter_for(d.kind).OUTPUT_FILE)
    new = {}
    for name in names:
      with open(os.path.join(dep.model_dir, name), "rb") as f:
        data = f.read()
      new[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    gfile.makedirs(folder)
    claimed = _manifest_files(manifest_file)
    old = {name: _file_sha256(_join(folder, name)) for name in gfile.listdir(folder)
           if not name.startswith(".")}
    corrupt = [n for n, digest in old.items() if n in claimed and claimed[n] != digest]
    missing = [n for n in claimed if n not in old]
    if (corrupt or missing) and not force:
      raise ExportError(
          f"{label} is corrupt at {folder}: " + "; ".join(
              [f"{n} has sha256 {old[n]}, its manifest says {claimed[n]}" for n in corrupt]
              + [f"{n} is missing" for n in missing])
          + "; publish again with --force to rewrite it")
    differs = sorted(set(old) ^ set(new) | {n for n in old if n in new
                                            and old[n] != new[n]["sha256"]})
    if not old:
      status = "published"
    elif corrupt or missing:
      status = "repaired"
    elif differs and not force:
      raise ExportError(
          f"{label} is already published at {folder} with other files ({', '.join(differs)}); "
          f"a published version is immutable. Publish the change as a new version, or pass "
          f"--force to replace it")
    else:
      status = "replaced" if differs else "unchanged"
    staged = []
    for name in names:
      if old.get(name) != new[name]["sha256"]:
        with open(os.path.join(dep.model_dir, name), "rb") as f:
          staged.append((_write_temp(_join(folder, name), f.read(), temps), _join(folder, name)))
    status = _stage_card_and_manifest(
        dep.card, card, _manifest_bytes(deployment_manifest(dep, new)), manifest_file,
        status, staged, temps)
    _rename_in_order(staged, renamed, placed)
    for name in old:
      if name not in new:  # A replaced version keeps no file of the old one.
        gfile.remove(_join(folder, name))
  except BaseException as e:
    _fail(e, label, dest, status, placed, [t for t in temps if t not in renamed], folder)
  _remove_quietly([t for t in temps if t not in renamed])  # Those left unused (unchanged).
  size = sum(f["size"] for f in new.values())
  digest = hashlib.sha256(_manifest_bytes(new)).hexdigest()  # Over the per-file sha256s.
  provenance = checkpoint_provenance(dep.stamp)
  log(f"{label}: {status} ({len(new)} files, {size} bytes; checkpoint: {provenance})")
  return Published(handle=label, archive=folder, sha256=digest, size=size, status=status,
                   checkpoint_provenance=provenance)


def _manifest_files(manifest_file: str) -> dict[str, str]:
  """name -> sha256 a published deployment manifest claims; {} without a readable one."""
  data = _read_bytes(manifest_file)
  try:
    recorded = json.loads(data) if data else {}
    return {n: f["sha256"] for n, f in recorded.get("files", {}).items()}
  except (ValueError, AttributeError, TypeError, KeyError):
    return {}


def run(config: PublishConfig, log: Callable[[str], None] = print,
        reg: registry_lib.Registry | None = None) -> list[Published]:
  """Publishes every selected export; raises ExportError naming the versions that failed."""
  reg = reg or registry_lib.default()
  exports = find_exports(config, reg)
  deployments = find_deployments(config, reg)
  made_dest = _check_dest(config.dest)
  results, problems = [], []
  for export in [*exports, *deployments]:
    try:
      if isinstance(export, _Deployment):
        results.append(publish_deployment(export, config.dest, config.force, log))
      else:
        results.append(publish_one(export, config.dest, config.force, log))
    except ExportError as e:
      problems.append(str(e))  # Said once, in the error below, not also in the log.
  if problems:
    if made_dest and not results:
      _remove_if_empty(config.dest)  # Nothing published: leave no folder of ours either.
    raise ExportError(f"{len(problems)} of {len(exports) + len(deployments)} version(s) not "
                      f"published: "
                      + "; ".join(problems))
  return results


def _remove_if_empty(folder: str) -> None:
  try:
    gfile = _gfile()
    if gfile.isdir(folder) and not gfile.listdir(folder):
      gfile.rmtree(folder)
  except _storage_errors():
    pass  # Left as it was; the error being raised says what failed.


def _check_dest(dest: str) -> bool:
  """Fails early, with the reason, when `dest` cannot be a folder; says whether it made it."""
  try:
    gfile = _gfile()
    made = not gfile.exists(dest)
    gfile.makedirs(dest)
    if not gfile.isdir(dest):
      raise ExportError(f"--dest {dest!r} is not a folder")
  except _storage_errors() as e:
    raise ExportError(f"cannot write to --dest {dest!r}: {_storage_message(e)}") from None
  return made


def format_table(results: list[Published]) -> str:
  header = ("handle", "status", "size", "sha256")
  lines = [header] + [(r.handle, r.status, str(r.size), r.sha256) for r in results]
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)
