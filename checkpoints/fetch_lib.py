"""Fetches, verifies and installs the released TF-Slim checkpoints.

`ensure_checkpoint(model, dest)` returns the prefix `<dest>/<model>/model.ckpt`,
fetching it first when it is not there. A fetch runs these steps; each failure
raises CheckpointError with a message naming the problem:

  0. take `<dest>/.<model>.fetch.lock`, so that fetches of one model into one
     `dest` take turns (they would share the `.part` file);
  1. download the archive to `<dest>/.<archive>.part`, continuing a partial
     file with HTTP Range requests (or copy it from a local mirror folder),
     never past the pinned size or, unpinned, the bound the model's variables
     imply (archive.Limits);
  2. check its size and sha256 against the lock file when the archive is pinned;
  3. extract the checkpoint's files (safely, within archive.Limits, no other
     member) into a temporary directory inside `<dest>`;
  4. check the variables' names and shapes against the model's Slim graph, and
     read every tensor back whole: checksummed and finite (checkpoints.integrity,
     the rule export reads by too);
  5. rename the directory to `<dest>/<model>/`, pin the archive in the lock file
     with the content hash of its checkpoint (`checkpoint_sha256`) if it was not
     yet, and delete the `.part` file.

The steps live by concern: `layout` (where things are), `download` (HTTP and
mirror folders, progress), `archive` (extraction and its bounds), `matching`
(the rules a checkpoint must meet), `provenance` (the lock file, content hashes
and `checkpoint_provenance`), `regular_file` (every file the package reads is
opened through it: FIFOs, sockets and devices are refused unopened). This module runs them in order and re-exports the
names its callers use.

Nothing half-written is left under `<dest>`: a bad archive (corrupt, another
hash than the pinned one, another model's checkpoint) is deleted with the
temporary directory. The one thing kept is the `.part` file of a download that
was cut short, so that the next run resumes it instead of starting over.

The archive source is the publisher's URL (from the registry), or a mirror: an
http(s) base URL or a local folder (or file:// URL) holding the archive under
its released name; `CHECKPOINT_MIRROR` is the default mirror.
"""
from __future__ import annotations

import contextlib
import functools
import fcntl
import os
import pathlib

from checkpoints import archive, download
from checkpoints.download import Progress, ProgressBar
from checkpoints.errors import CheckpointError
from checkpoints.layout import (MIRROR_ENV, archive_source, checkpoint_prefix, entry,
                                has_checkpoint, how_to_provide)
from checkpoints.matching import (INDEX_OR_META_BYTES, archive_variables, data_bytes,
                                  expected_variables, is_optional_variable,
                                  read_variable_shapes, validate_checkpoint, variable_problems)
from checkpoints.provenance import (DEFAULT_LOCK_FILE, LOCK_ABOUT, PINNED, UNVERIFIED,
                                    checkpoint_provenance, checkpoint_sha256, file_sha256,
                                    read_lock)
from checkpoints.provenance import pin as _pin
from exporters import filesystem

__all__ = [
    "CheckpointError", "DEFAULT_LOCK_FILE", "LOCK_ABOUT", "MIRROR_ENV", "PINNED", "Progress",
    "ProgressBar", "UNVERIFIED", "archive_source", "checkpoint_prefix", "checkpoint_provenance",
    "checkpoint_sha256", "ensure_checkpoint", "entry", "expected_variables", "file_sha256",
    "has_checkpoint", "is_optional_variable", "read_lock", "read_variable_shapes",
    "validate_checkpoint", "variable_problems"]

RETRY_DELAY_S = 1.0  # Seconds before the second attempt; later ones wait longer.


def ensure_checkpoint(model: str, dest: str | os.PathLike = "checkpoints", *,
                      mirror: str | None = None,
                      lock_file: str | os.PathLike = DEFAULT_LOCK_FILE,
                      force: bool = False, validate: bool = True, retries: int = 3,
                      progress: "Progress | None" = None) -> pathlib.Path:
  """Returns `<dest>/<model>/model.ckpt`, fetching and verifying it if absent.

  A checkpoint already there (fetched before, or placed by hand) is validated
  against the graph, read back whole and returned; `force` fetches it again
  and replaces it. `validate=False` skips both checks (and then pins nothing).
  Fetches of one model into one `dest` take turns (`_destination_lock`).
  """
  dest = pathlib.Path(dest)
  prefix = checkpoint_prefix(model, dest)
  if has_checkpoint(prefix) and not force:
    return _present(prefix, model, validate)
  if prefix.parent.exists() and not prefix.parent.is_dir():
    raise CheckpointError(f"{prefix.parent} is not a folder; remove it or fetch into another "
                          f"--dest")
  created = filesystem.make_parents(prefix.parent, "the checkpoint folder", CheckpointError)
  try:
    with _destination_lock(dest, model):
      if has_checkpoint(prefix) and not force:  # Another fetch placed it while this one waited.
        return _present(prefix, model, validate)
      if prefix.parent.exists() and any(prefix.parent.iterdir()) and not force:
        raise CheckpointError(
            f"{prefix.parent} exists but holds no {prefix.name}.index; complete or remove it, "
            f"or fetch with --force to replace it")
      return _fetch(model, dest, prefix, mirror, lock_file, validate, retries, progress)
  except BaseException:  # A failure or Ctrl-C: a kept .part keeps its folder.
    filesystem.remove_created(created)  # Only what this fetch made and left empty.
    raise


def _present(prefix: pathlib.Path, model: str, validate: bool) -> pathlib.Path:
  if validate:
    validate_checkpoint(prefix, model, expected=expected_variables(model),
                        fix="fetch it again with --force to replace it")
  return prefix


@contextlib.contextmanager
def _destination_lock(dest: pathlib.Path, model: str):
  """Holds `<dest>/.<model>.fetch.lock` (flock) while one fetch uses `dest`'s `.part` file.

  The holder removes the file when done; a waiter that then holds a removed
  file's lock opens the new one instead, so two never hold it at once.
  """
  path = dest / f".{model}.fetch.lock"
  while True:
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
      raise CheckpointError(f"cannot write into {dest}: {err.strerror or err}") from None
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
      if os.stat(path).st_ino == os.fstat(fd).st_ino:
        break
    except FileNotFoundError:
      pass
    os.close(fd)
  try:
    yield
  finally:
    path.unlink(missing_ok=True)
    os.close(fd)


def _fetch(model: str, dest: pathlib.Path, prefix: pathlib.Path, mirror: str | None,
           lock_file: str | os.PathLike, validate: bool, retries: int,
           progress: "Progress | None") -> pathlib.Path:
  """Steps 1-5 of the module docstring, under the destination's lock."""
  e = entry(model)
  source = archive_source(model, mirror)
  pinned = read_lock(lock_file).get(e.archive_name)
  # Worked out (a graph construction) only once the archive is there to bound.
  limits = functools.cache(
      lambda: archive.Limits(data_bytes(archive_variables(model)), INDEX_OR_META_BYTES))
  part = dest / f".{e.archive_name}.part"
  progress = progress or Progress()
  label = f"{e.archive_name} from {source}"
  try:
    download.download(source, part, pinned["size"] if pinned else None, retries, progress,
                      label, RETRY_DELAY_S, lambda: limits().archive_bytes)
  except download.Unavailable as err:
    raise CheckpointError(
        f"could not fetch {e.archive_name} from {source}: {err}. "
        f"{how_to_provide(model, dest)}") from None

  size, sha256 = part.stat().st_size, file_sha256(part)
  if pinned and (pinned["sha256"], pinned["size"]) != (sha256, size):
    part.unlink()
    raise CheckpointError(
        f"hash mismatch: {e.archive_name} from {source} has sha256 {sha256} ({size} bytes) "
        f"but {lock_file} pins sha256 {pinned['sha256']} ({pinned['size']} bytes); the "
        f"download was deleted. If the new archive is genuine, remove its entry from the lock "
        f"file and fetch again.")

  try:
    with filesystem.replacing(prefix.parent, "the checkpoint folder",
                              CheckpointError) as staging:
      staged = archive.extract(part, e, pathlib.Path(staging), limits())
      if validate:
        validate_checkpoint(staged, model, label=f"the checkpoint in {e.archive_name}",
                            expected=expected_variables(model), archive=e.archive_name)
        content = checkpoint_sha256(staged)
  except OSError as err:  # Moving the folder into place failed; replacing() cleaned up.
    part.unlink(missing_ok=True)
    raise CheckpointError(f"cannot place {prefix.parent}: {err.strerror or err}") from None
  except CheckpointError:
    part.unlink(missing_ok=True)  # A complete but bad archive: resuming it is no use.
    raise
  # A pin without the content hash (an older lock file) gains it: the archive
  # matched its pinned hash, so the checkpoint extracted from it is the pinned one.
  if validate and (not pinned or "checkpoint_sha256" not in pinned):
    _pin(lock_file, e.archive_name, sha256, size, content)
  part.unlink(missing_ok=True)
  return prefix
