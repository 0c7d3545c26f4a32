"""Fetches, verifies and installs the released TF-Slim checkpoints.

`ensure_checkpoint(model, dest)` returns the prefix `<dest>/<model>/model.ckpt`,
fetching it first when it is not there. A fetch runs these steps; each failure
raises CheckpointError with a message naming the problem:

  1. download the archive to `<dest>/.<archive>.part`, continuing a partial
     file with HTTP Range requests (or copy it from a local mirror folder);
  2. check its size and sha256 against the lock file when the archive is pinned;
  3. extract `model.ckpt.*` (safely) into a temporary directory inside `<dest>`;
  4. check the variables' names and shapes against the model's Slim graph, and
     read every tensor back whole: checksummed and finite (checkpoints.integrity,
     the rule export reads by too);
  5. rename the directory to `<dest>/<model>/`, pin the archive in the lock file
     with the content hash of its checkpoint (`checkpoint_sha256`) if it was not
     yet, and delete the `.part` file.

`checkpoint_provenance(model, prefix)` tells a checkpoint whose content is the
pinned archive's ("pinned archive sha256 ...") from any other ("unverified
local checkpoint", e.g. placed by hand).

Nothing half-written is left under `<dest>`: a bad archive (corrupt, another
hash than the pinned one, another model's checkpoint) is deleted with the
temporary directory. The one thing kept is the `.part` file of a download that
was cut short, so that the next run resumes it instead of starting over.

The archive source is the publisher's URL (from the registry), or a mirror: an
http(s) base URL or a local folder (or file:// URL) holding the archive under
its released name; `CHECKPOINT_MIRROR` is the default mirror.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import logging
import os
import pathlib
import posixpath
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from typing import Iterable, Mapping, Sequence

import registry
from checkpoints import catalog
from checkpoints.errors import CheckpointError
from exporters import filesystem

log = logging.getLogger(__name__)

MIRROR_ENV = "CHECKPOINT_MIRROR"
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
TIMEOUT_S = 60
RETRY_DELAY_S = 1.0
_SHOWN = 3  # How many names an error message lists before "and N more".


class _Transient(Exception):
  """A download attempt failed in a way that another attempt may fix."""


class _Unavailable(Exception):
  """The archive cannot be had from this source at all (404, missing file)."""


# ---- Where things are.

def entry(model: str) -> catalog.CatalogEntry:
  try:
    return catalog.entry(model)
  except registry.RegistryError as e:
    raise CheckpointError(str(e)) from None


def checkpoint_prefix(model: str, dest: str | os.PathLike) -> pathlib.Path:
  """Where `model`'s checkpoint lives under `dest`: `<dest>/<model>/model.ckpt`."""
  name = posixpath.basename(entry(model).checkpoint_file)
  return pathlib.Path(dest) / model / name


def has_checkpoint(prefix: str | os.PathLike) -> bool:
  return pathlib.Path(f"{prefix}.index").is_file()


def archive_source(model: str, mirror: str | None = None) -> str:
  """The URL or local path to fetch `model`'s archive from.

  `mirror` None means $CHECKPOINT_MIRROR; an empty mirror means the publisher.
  """
  e = entry(model)
  if mirror is None:
    mirror = os.environ.get(MIRROR_ENV, "")
  if not mirror:
    return e.archive_url
  if _is_http(mirror):
    return f"{mirror.rstrip('/')}/{e.archive_name}"
  if mirror.startswith("file:"):
    mirror = urllib.request.url2pathname(urllib.parse.urlparse(mirror).path)
  return str(pathlib.Path(mirror).expanduser() / e.archive_name)


def _is_http(source: str) -> bool:
  return source.startswith(("http://", "https://"))


def _how_to_provide(model: str, dest: pathlib.Path) -> str:
  e = entry(model)
  name = posixpath.basename(e.checkpoint_file)
  return (f"To provide it another way, point --mirror (or ${MIRROR_ENV}) at a base URL or "
          f"folder holding {e.archive_name}, or place {name}.index and {name}.data-* "
          f"under {dest / model}/.")


# ---- The one entry point.

def ensure_checkpoint(model: str, dest: str | os.PathLike = "checkpoints", *,
                      mirror: str | None = None,
                      lock_file: str | os.PathLike = DEFAULT_LOCK_FILE,
                      force: bool = False, validate: bool = True, retries: int = 3,
                      progress: "Progress | None" = None) -> pathlib.Path:
  """Returns `<dest>/<model>/model.ckpt`, fetching and verifying it if absent.

  A checkpoint already there (fetched before, or placed by hand) is validated
  against the graph, read back whole and returned; `force` fetches it again
  and replaces it. `validate=False` skips both checks (and then pins nothing).
  """
  e = entry(model)
  dest = pathlib.Path(dest)
  prefix = checkpoint_prefix(model, dest)
  if has_checkpoint(prefix) and not force:
    if validate:
      validate_checkpoint(prefix, model, fix="fetch it again with --force to replace it")
    return prefix
  if prefix.parent.exists() and any(prefix.parent.iterdir()) and not force:
    raise CheckpointError(
        f"{prefix.parent} exists but holds no {prefix.name}.index; complete or remove it, "
        f"or fetch with --force to replace it")

  source = archive_source(model, mirror)
  pinned = read_lock(lock_file).get(e.archive_name)
  created = filesystem.make_parents(prefix.parent, "the checkpoint folder", CheckpointError)
  try:
    part = dest / f".{e.archive_name}.part"
    progress = progress or Progress()
    label = f"{e.archive_name} from {source}"
    try:
      _download(source, part, pinned["size"] if pinned else None, retries, progress, label)
    except _Unavailable as err:
      raise CheckpointError(
          f"could not fetch {e.archive_name} from {source}: {err}. "
          f"{_how_to_provide(model, dest)}") from None

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
        staged = _extract(part, e, pathlib.Path(staging))
        if validate:
          validate_checkpoint(staged, model, label=f"the checkpoint in {e.archive_name}",
                              archive=e.archive_name)
          content = checkpoint_sha256(staged)
    except CheckpointError:
      part.unlink(missing_ok=True)  # A complete but bad archive: resuming it is no use.
      raise
    # A pin without the content hash (an older lock file) gains it: the archive
    # matched its pinned hash, so the checkpoint extracted from it is the pinned one.
    if validate and (not pinned or "checkpoint_sha256" not in pinned):
      _pin(lock_file, e.archive_name, sha256, size, content)
    part.unlink(missing_ok=True)
    return prefix
  except CheckpointError:
    filesystem.remove_created(created)  # Only what this fetch made and left empty.
    raise


# ---- Download.

def _download(source: str, part: pathlib.Path, pinned_size: int | None, retries: int,
              progress: "Progress", label: str):
  """Brings `part` to the complete archive, resuming it over HTTP when possible."""
  if not _is_http(source):
    _copy_local(pathlib.Path(source), part, progress, label)
    return
  problem = None
  for attempt in range(1, max(retries, 1) + 1):
    try:
      _download_http(source, part, pinned_size, progress, label)
      return
    except _Transient as err:
      problem = err
      if attempt < retries:
        log.warning("download of %s failed (%s); retrying", label, err)
        time.sleep(RETRY_DELAY_S * attempt)
  have = part.stat().st_size if part.exists() else 0
  if not have:
    part.unlink(missing_ok=True)
    raise _Unavailable(problem)
  raise CheckpointError(
      f"download interrupted: {label} ({problem}); the {have} bytes received are kept in "
      f"{part} and the next run resumes from there")


def _download_http(url: str, part: pathlib.Path, pinned_size: int | None,
                   progress: "Progress", label: str):
  """One attempt: continues `part` from its size; raises _Transient when cut short."""
  offset = part.stat().st_size if part.exists() else 0
  if pinned_size is not None and offset >= pinned_size:
    if offset == pinned_size:
      return  # Complete already; the hash check decides whether it is right.
    part.unlink()
    offset = 0
  headers = {"User-Agent": "nasnet-hub-toolchain checkpoint fetcher"}
  if offset:
    headers["Range"] = f"bytes={offset}-"
  try:
    response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=TIMEOUT_S)
  except urllib.error.HTTPError as err:
    err.close()
    if err.code == 416 and offset:
      if _content_range(err.headers.get("Content-Range", ""))[2] == offset:
        return  # The part was complete; the server has nothing more.
      part.unlink()
      raise _Transient(f"the server cannot resume at byte {offset}; starting over") from None
    if err.code in (408, 429) or err.code >= 500:
      raise _Transient(f"HTTP {err.code} {err.reason}") from None
    raise _Unavailable(f"HTTP {err.code} {err.reason}") from None
  except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
    raise _Transient(getattr(err, "reason", None) or err) from None

  with response:
    if offset and response.status == 206:
      start, _, total = _content_range(response.headers.get("Content-Range", ""))
      if start != offset:
        part.unlink()
        raise _Transient(f"the server resumed at byte {start}, not {offset}; starting over")
      mode = "ab"
    else:  # A full body: the first request, or a server that ignores Range.
      offset, mode = 0, "wb"
      length = response.headers.get("Content-Length")
      total = int(length) if length and length.isdigit() else None
    done = offset
    progress.start(label, done, total)
    try:
      with open(part, mode) as f:
        while True:
          try:
            chunk = response.read(CHUNK)
          except (OSError, http.client.HTTPException) as err:
            raise _Transient(f"connection lost after {done} bytes ({err})") from None
          if not chunk:
            break
          f.write(chunk)
          done += len(chunk)
          progress.update(done)
    finally:
      progress.finish()
  if total is not None and done < total:
    raise _Transient(f"connection closed after {done} of {total} bytes")
  if total is not None and done > total:
    part.unlink()
    raise _Transient(f"received {done} bytes, more than the {total} announced; starting over")


def _content_range(header: str) -> tuple[int | None, int | None, int | None]:
  """(first, last, total) of `bytes first-last/total` or `bytes */total`."""
  m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", header)
  if not m:
    return None, None, None
  return tuple(int(g) if g and g != "*" else None for g in m.groups())


def _copy_local(path: pathlib.Path, part: pathlib.Path, progress: "Progress", label: str):
  try:
    src = open(path, "rb")
  except FileNotFoundError:
    raise _Unavailable(f"{path} does not exist") from None
  except OSError as err:
    raise _Unavailable(err) from None
  with src:
    total, done = os.fstat(src.fileno()).st_size, 0
    progress.start(label, 0, total)
    try:
      with open(part, "wb") as f:
        while chunk := src.read(CHUNK):
          f.write(chunk)
          done += len(chunk)
          progress.update(done)
    except BaseException:
      part.unlink(missing_ok=True)
      raise
    finally:
      progress.finish()


def file_sha256(path: str | os.PathLike) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(CHUNK):
      h.update(chunk)
  return h.hexdigest()


# ---- Extraction.

def _extract(archive: pathlib.Path, e: catalog.CatalogEntry, out_dir: pathlib.Path) -> pathlib.Path:
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
            f"{_some(names) or 'none'})")
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


# ---- Validation against the graph.

def expected_variables(model: str) -> list[tuple[str, tuple[int, ...]]]:
  """(name, shape) of the variables `model`'s Slim graph creates (no aux head)."""
  from slim_nets import manifest
  return manifest.graph_variables(model, aux=False)


def read_variable_shapes(prefix: str | os.PathLike, archive: str | None = None
                         ) -> dict[str, list[int]]:
  """name -> shape from the checkpoint's index (the tensors are not read)."""
  from checkpoints import integrity
  return integrity.open_reader(prefix, archive).get_variable_to_shape_map()


def is_optional_variable(name: str) -> bool:
  """Released checkpoints also hold the training-only aux head and global_step."""
  return name == "global_step" or name.split("/", 1)[0].startswith("aux_")


def variable_problems(checkpoint: Mapping[str, Sequence[int]],
                      expected: Iterable[tuple[str, Sequence[int]]]) -> list[str]:
  """What keeps `checkpoint` (name -> shape) from matching the graph's variables."""
  expected = {name: tuple(shape) for name, shape in expected}
  missing = [n for n in expected if n not in checkpoint]
  reshaped = [n for n in expected if n in checkpoint and tuple(checkpoint[n]) != expected[n]]
  unexpected = sorted(n for n in checkpoint if n not in expected and not is_optional_variable(n))
  problems = []
  if missing:
    problems.append(f"{len(missing)} of the graph's {len(expected)} variables are missing "
                    f"({_some(missing)})")
  if reshaped:
    shapes = [f"{n} is {list(checkpoint[n])}, graph {list(expected[n])}" for n in reshaped]
    problems.append(f"{len(reshaped)} have other shapes ({_some(shapes)})")
  if unexpected:
    problems.append(f"{len(unexpected)} variables are not in the graph ({_some(unexpected)})")
  return problems


def validate_checkpoint(prefix: str | os.PathLike, model: str, *, label: str | None = None,
                        expected: Iterable[tuple[str, Sequence[int]]] | None = None,
                        fix: str | None = None, archive: str | None = None):
  """Raises CheckpointError unless the checkpoint is `model`'s and reads back whole.

  First the index: exactly `model`'s graph variables with their shapes. Then
  the full read (checkpoints.integrity): every tensor checksummed and finite.
  `archive` names the archive a staged checkpoint came from, for messages.
  """
  from checkpoints import integrity
  problems = variable_problems(read_variable_shapes(prefix, archive),
                               expected if expected is not None else expected_variables(model))
  if problems:
    raise CheckpointError(
        f"wrong checkpoint: {label or prefix} does not match the {model} graph "
        f"(another model's checkpoint?): {'; '.join(problems)}" + (f"; {fix}" if fix else ""))
  try:
    integrity.read_fully(prefix, keep=False, archive=archive)
  except CheckpointError as err:
    raise CheckpointError(f"{err}; {fix}" if fix else str(err)) from None


def _some(items: Sequence[str]) -> str:
  shown = ", ".join(items[:_SHOWN])
  return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


# ---- Content hash of an installed checkpoint.

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
    with open(path, "rb") as f:
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
  except OSError:  # A file vanished or is unreadable: nothing ties it to the pin.
    return UNVERIFIED
  return PINNED.format(sha256=pin["sha256"])


def _pin(path: str | os.PathLike, archive_name: str, sha256: str, size: int,
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


# ---- Progress.

class Progress:
  """Silent progress; ProgressBar draws one."""

  def start(self, label: str, done: int, total: int | None):
    pass

  def update(self, done: int):
    pass

  def finish(self):
    pass


class ProgressBar(Progress):
  """Bytes, percentage and rate on `stream`: a live bar on a terminal, else a line per 10%."""

  WIDTH = 30

  def __init__(self, stream=None):
    self.stream = stream or sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

  def start(self, label, done, total):
    self.total, self.done, self.first = total, done, done
    self.t0 = self.last_draw = time.monotonic()
    self.step = self._step(done)
    resumed = f" (resuming at {_bytes(done)})" if done else ""
    self._line(f"downloading {label}{resumed}")

  def update(self, done):
    self.done = done
    now = time.monotonic()
    if self.tty:
      if now - self.last_draw >= 0.1 or done == self.total:
        self.last_draw = now
        self.stream.write("\r" + self._status(now) + "\x1b[K")
        self.stream.flush()
    elif self._step(done) > self.step:
      self.step = self._step(done)
      self._line(self._status(now))

  def finish(self):
    if self.tty:
      self.stream.write("\r" + self._status(time.monotonic()) + "\x1b[K\n")
      self.stream.flush()

  def _step(self, done):
    """Tenths of the total, or 16 MiB steps when the total is unknown."""
    return done * 10 // self.total if self.total else done // (16 << 20)

  def _status(self, now):
    rate = (self.done - self.first) / max(now - self.t0, 1e-6)
    if not self.total:
      return f"  {_bytes(self.done)}  {_bytes(rate)}/s"
    fraction = min(self.done / self.total, 1.0)
    bar = "#" * int(fraction * self.WIDTH)
    return (f"  [{bar:<{self.WIDTH}}] {fraction:4.0%}  {_bytes(self.done)} of "
            f"{_bytes(self.total)}  {_bytes(rate)}/s")

  def _line(self, text):
    self.stream.write(text + "\n")
    self.stream.flush()


def _bytes(n: float) -> str:
  for unit in ("B", "KiB", "MiB"):
    if n < 1024:
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024
  return f"{n:.2f} GiB"
