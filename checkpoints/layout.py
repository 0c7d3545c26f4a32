"""Where a model's checkpoint and archive are: registry entry, prefix under a folder, source.

The archive source is the publisher's URL (from the registry), or a mirror: an
http(s) base URL or a local folder (or file:// URL) holding the archive under
its released name; `CHECKPOINT_MIRROR` is the default mirror.
"""
from __future__ import annotations

import os
import pathlib
import posixpath
import urllib.parse
import urllib.request

import registry
from checkpoints import catalog
from checkpoints.errors import CheckpointError

MIRROR_ENV = "CHECKPOINT_MIRROR"


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
  if is_http(mirror):
    return f"{mirror.rstrip('/')}/{e.archive_name}"
  if mirror.startswith("file:"):
    mirror = urllib.request.url2pathname(urllib.parse.urlparse(mirror).path)
  return str(pathlib.Path(mirror).expanduser() / e.archive_name)


def is_http(source: str) -> bool:
  return source.startswith(("http://", "https://"))


def how_to_provide(model: str, dest: pathlib.Path) -> str:
  e = entry(model)
  name = posixpath.basename(e.checkpoint_file)
  return (f"To provide it another way, point --mirror (or ${MIRROR_ENV}) at a base URL or "
          f"folder holding {e.archive_name}, or place {name}.index and {name}.data-* "
          f"under {dest / model}/.")
