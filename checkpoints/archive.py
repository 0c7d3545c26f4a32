"""Extracts a checkpoint's files from a released .tar.gz archive, refusing unsafe members."""
from __future__ import annotations

import gzip
import pathlib
import posixpath
import re
import shutil
import tarfile
import zlib

from checkpoints import catalog
from checkpoints.errors import CheckpointError, listed

CHUNK = 1 << 20


def extract(archive: pathlib.Path, e: catalog.CatalogEntry, out_dir: pathlib.Path) -> pathlib.Path:
  """Writes the archive's `<checkpoint_file>.*` files to out_dir; returns their prefix there.

  First reads the whole gzip stream, whose CRC catches corrupt or cut data
  (tarfile alone may take a damaged header for the end of the archive); then
  rejects archives with absolute or `..` member paths, links or special files.
  """
  inside = e.checkpoint_file
  prefix = out_dir / posixpath.basename(inside)
  try:
    with gzip.open(archive) as stream:
      while stream.read(CHUNK):
        pass
    with tarfile.open(archive, "r:gz") as tar:
      members = tar.getmembers()
      wanted = []
      for member in members:
        name = _safe_member_name(member, e.archive_name)
        if member.isfile() and name.startswith(inside + "."):
          wanted.append((member, name[len(inside):]))
      if not any(suffix == ".index" for _, suffix in wanted):
        names = [m.name for m in members]
        raise CheckpointError(
            f"{e.archive_name} holds no {inside}.index (its files: "
            f"{listed(names) or 'none'})")
      for member, suffix in wanted:
        with tar.extractfile(member) as src, open(f"{prefix}{suffix}", "wb") as dst:
          shutil.copyfileobj(src, dst, CHUNK)
  except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
    raise CheckpointError(
        f"corrupt archive: {e.archive_name} is not a readable .tar.gz ({err or type(err).__name__})"
    ) from None
  return prefix


def _safe_member_name(member: tarfile.TarInfo, archive_name: str) -> str:
  """The member's normalized relative path; raises for anything extraction must refuse."""
  name = member.name
  parts = name.split("/")
  if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
    raise CheckpointError(f"unsafe archive: {archive_name} has a member outside it: {name!r}")
  if not (member.isfile() or member.isdir()):
    raise CheckpointError(
        f"unsafe archive: {archive_name} has a link or special file: {name!r}")
  return posixpath.normpath(name)
