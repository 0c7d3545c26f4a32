"""The hash lock file (checkpoints.lock.json) and what it says of a checkpoint on disk.

`checkpoint_provenance(model, prefix)` tells a checkpoint whose content is the
pinned archive's ("pinned archive sha256 ...") from any other ("unverified
local checkpoint", e.g. placed by hand).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib

from checkpoints.errors import CheckpointError
from checkpoints.layout import entry, has_checkpoint
from checkpoints.regular_file import open_regular
from exporters import filesystem

log = logging.getLogger(__name__)

DEFAULT_LOCK_FILE = pathlib.Path(__file__).with_name("checkpoints.lock.json")
LOCK_ABOUT = (
    "sha256 and size of each released checkpoint archive (by archive name), pinned by "
    "`python -m checkpoints.fetch` after the first download whose checkpoint matched the "
    "model's graph and read back whole, and checked on every later download; "
    "checkpoint_sha256 is the content hash of the checkpoint extracted from it, which tells "
    "a fetched checkpoint from one placed by hand. Commit the pins it adds.")
PINNED = "pinned archive sha256 {sha256}"
UNVERIFIED = "unverified local checkpoint"
CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
  h = hashlib.sha256()
  with open_regular(path, "archive") as f:
    while chunk := f.read(CHUNK):
      h.update(chunk)
  return h.hexdigest()



def checkpoint_sha256(prefix: str | os.PathLike) -> str:
  """A sha256 over the checkpoint's `.index` and `.data-*` files (suffix, size, bytes).

  It depends only on the variables' stored values and layout, not on where
  the files are or on any `.meta` graph beside them.
  """
  prefix = pathlib.Path(prefix)
  if not has_checkpoint(prefix):
    raise CheckpointError(f"no checkpoint at {prefix} ({prefix.name}.index is missing)")
  files = sorted(p for p in prefix.parent.iterdir()
                 if p.name == f"{prefix.name}.index" or p.name.startswith(f"{prefix.name}.data-"))
  h = hashlib.sha256()
  for path in files:
    h.update(f"{path.name[len(prefix.name):]}\0{path.stat().st_size}\0".encode())
    with open_regular(path, "checkpoint file") as f:
      while chunk := f.read(CHUNK):
        h.update(chunk)
  return h.hexdigest()


# ---- Lock file.

def read_lock(path: str | os.PathLike = DEFAULT_LOCK_FILE) -> dict[str, dict]:
  """archive name -> {"sha256", "size"[, "checkpoint_sha256"]}; empty when there is no file."""
  try:
    data = json.loads(pathlib.Path(path).read_text())
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as err:
    raise CheckpointError(f"lock file {path} is unreadable: {err}") from None
  archives = data.get("archives", {}) if isinstance(data, dict) else None
  if not isinstance(archives, dict) or not all(
      isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("size"), int)
      and isinstance(v.get("checkpoint_sha256", ""), str)
      for v in archives.values()):
    raise CheckpointError(
        f"lock file {path} is malformed: expected {{\"archives\": {{name: {{\"sha256\": ..., "
        f"\"size\": ..., \"checkpoint_sha256\": ... (optional)}}}}}}")
  return archives


def checkpoint_provenance(model: str, prefix: str | os.PathLike,
                          lock_path: str | os.PathLike = DEFAULT_LOCK_FILE) -> str:
  """Where the checkpoint at `prefix` comes from, as one phrase for stamps and tables.

  "pinned archive sha256 <hex>" when its content hash is the one the lock file
  records for `model`'s pinned archive (fetch records it when it pins, after
  the full read); "unverified local checkpoint" otherwise: placed by hand,
  changed since, pinned by an older lock file without the content hash, or
  not there at all. An unknown model raises CheckpointError.
  """
  archive_name = entry(model).archive_name
  try:
    pin = read_lock(lock_path).get(archive_name)
  except CheckpointError as err:  # No pin can be trusted from it; fetch reports it as such.
    log.warning("%s", err)
    return UNVERIFIED
  content = pin.get("checkpoint_sha256") if pin else None
  if not content or not has_checkpoint(prefix):
    return UNVERIFIED
  try:
    if checkpoint_sha256(prefix) != content:
      return UNVERIFIED
  except (OSError, CheckpointError):  # Vanished, unreadable or not a regular file: no tie.
    return UNVERIFIED
  return PINNED.format(sha256=pin["sha256"])


def pin(path: str | os.PathLike, archive_name: str, sha256: str, size: int,
         content_sha256: str | None = None):
  """Pins the archive and its checkpoint's content hash in the lock file.

  Written to a temporary name, then renamed.
  """
  path = pathlib.Path(path)
  try:
    data = json.loads(path.read_text()) if path.exists() else {"about": LOCK_ABOUT}
    pin = {"sha256": sha256, "size": size}
    if content_sha256:
      pin["checkpoint_sha256"] = content_sha256
    data.setdefault("archives", {})[archive_name] = pin
    data["archives"] = dict(sorted(data["archives"].items()))
    filesystem.write_atomically(path, (json.dumps(data, indent=2) + "\n").encode())
  except (OSError, ValueError) as err:
    log.warning("could not pin %s in %s: %s", archive_name, path, err)
    return
  log.info("pinned %s (sha256 %s) in %s", archive_name, sha256, path)
