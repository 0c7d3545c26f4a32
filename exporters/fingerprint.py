"""What a cache key or a code version is made of: source files and library versions.

A leaf (no project imports), so the checkpoint package, the export tree's
stamps and the benchmark hash the same way.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pathlib
from typing import Iterable


def cache_root() -> pathlib.Path:
  """The toolchain's folder in the user's cache: `$XDG_CACHE_HOME` (or `~/.cache`)
  `/nasnet-hub-toolchain`; each cache keeps a folder of its own in it."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "nasnet-hub-toolchain"


def installed_versions(names: Iterable[str]) -> dict[str, str]:
  """The installed version of each distribution in `names`; one not installed is left out."""
  versions = {}
  for name in names:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return versions


def sources_sha256(root: pathlib.Path, paths: Iterable[pathlib.Path]) -> str:
  """sha256 over each file's path relative to `root` and its bytes, in the order given.

  Each name and each content is followed by a NUL, so moving bytes between a
  name and its content, or between two files, changes the hash.
  """
  h = hashlib.sha256()
  for path in paths:
    h.update(pathlib.Path(path).relative_to(root).as_posix().encode() + b"\0")
    h.update(pathlib.Path(path).read_bytes() + b"\0")
  return h.hexdigest()
