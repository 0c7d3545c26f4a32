"""Extracts a checkpoint's files from a released .tar.gz archive, refusing unsafe members."""
from __future__ import annotations

import dataclasses
import gzip
import pathlib
import posixpath
import re
import tarfile
import zlib

from checkpoints import catalog
from checkpoints.errors import CheckpointError, listed
from checkpoints.regular_file import open_regular

CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Limits:
  """How many bytes a model's archive may hold, from its variable list (matching.data_bytes).

  The data files together hold exactly `data_bytes` at most (every tensor's
  shape and dtype); the index and a `.meta` graph are bounded apart, each by
  `other_file_bytes`. The tar stream adds a 512-byte header per member,
  padding to 512 bytes and a 10 KiB end: TAR_OVERHEAD_BYTES is far more. gzip
  never grows data by more than 5 bytes per 16 KiB stored block plus its
  header, so the archive itself is bounded by the stream plus a thousandth.
  """
  data_bytes: int
  other_file_bytes: int

  @property
  def stream_bytes(self) -> int:
    return self.data_bytes + 2 * self.other_file_bytes + TAR_OVERHEAD_BYTES

  @property
  def archive_bytes(self) -> int:
    return self.stream_bytes + self.stream_bytes // 1000 + TAR_OVERHEAD_BYTES


TAR_OVERHEAD_BYTES = 1 << 20


def extract(archive: pathlib.Path, e: catalog.CatalogEntry, out_dir: pathlib.Path,
            limits: Limits) -> pathlib.Path:
  """Writes the archive's checkpoint files to out_dir; returns their prefix there.

  First reads the whole gzip stream, whose CRC catches corrupt or cut data
  (tarfile alone may take a damaged header for the end of the archive), and
  stops once it passes `limits.stream_bytes`, so a decompression bomb is
  refused after one buffer past the bound. Then rejects archives with
  absolute or `..` member paths, links or special files, or any file that is
  not the checkpoint's (`<checkpoint_file>.index`, `.meta`, `.data-*-of-*`),
  and writes the data files only up to `limits.data_bytes` together.
  """
  inside = e.checkpoint_file
  prefix = out_dir / posixpath.basename(inside)
  own_file = re.compile(rf"{re.escape(inside)}(\.index|\.meta|\.data-\d+-of-\d+)")
  try:
    with open_regular(archive, "archive") as raw, gzip.GzipFile(fileobj=raw) as stream:
      expanded = 0
      while chunk := stream.read(CHUNK):
        expanded += len(chunk)
        if expanded > limits.stream_bytes:
          raise CheckpointError(
              f"oversized archive: {e.archive_name} expands past {limits.stream_bytes} bytes, "
              f"more than {e.model}'s checkpoint files can hold; refused")
    with open_regular(archive, "archive") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
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
      strangers = [m.name for m in members if m.isfile() and not own_file.fullmatch(
          posixpath.normpath(m.name))]
      if strangers:
        raise CheckpointError(
            f"unexpected archive member: {e.archive_name} holds files that are not "
            f"{inside}'s ({listed(strangers)}); refused")
      data_left = limits.data_bytes
      for member, suffix in wanted:
        is_data = suffix.startswith(".data-")
        allowed = data_left if is_data else limits.other_file_bytes
        if member.size > allowed:
          raise CheckpointError(
              f"oversized archive: {inside}{suffix} in {e.archive_name} is {member.size} bytes, "
              f"more than the {allowed} that {e.model}'s variables allow; refused")
        path = f"{prefix}{suffix}"
        with tar.extractfile(member) as src:
          written = _copy_bounded(src, path, allowed, f"{inside}{suffix} in {e.archive_name}")
        if is_data:
          data_left -= written
  except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
    raise CheckpointError(
        f"corrupt archive: {e.archive_name} is not a readable .tar.gz ({err or type(err).__name__})"
    ) from None
  return prefix


def _copy_bounded(src, path: str, allowed: int, what: str) -> int:
  """Copies `src` to a new file at `path`, refusing past `allowed` bytes; returns the count.

  Counted as written, so the bound holds whatever the member's header says."""
  written = 0
  try:
    with open(path, "xb") as dst:
      while chunk := src.read(CHUNK):
        written += len(chunk)
        if written > allowed:
          raise CheckpointError(f"oversized archive: {what} passes {allowed} bytes; refused")
        dst.write(chunk)
  except OSError as err:
    raise CheckpointError(f"cannot write {path}: {err.strerror or err}") from None
  return written


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
