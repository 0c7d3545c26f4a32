"""The variables a model's training graph creates (the aux head included), kept on disk.

Building the graph to list them costs 5-11 s, and every fetch needs the list
(for the archive's size bounds and the matching rules), so the list is kept
in the user's cache folder between runs: `$XDG_CACHE_HOME` (or `~/.cache`)
`/nasnet-hub-toolchain/graph-variables/<model>-<key>.json`. The key hashes
everything the list depends on (the graph builders' sources, the registry
facts they are given, the versions of the libraries that build the graph),
so a changed builder or fact builds the graph again. A cache file that cannot
be read, or holds anything but a variable list, is treated as absent; one
that cannot be written is skipped: the cache only saves time.
"""
from __future__ import annotations

import functools
import hashlib
import json
import pathlib

from checkpoints.errors import CheckpointError
from checkpoints.regular_file import open_regular
from exporters import filesystem
from exporters.fingerprint import cache_root, installed_versions, sources_sha256

SLIM_NETS_DIR = pathlib.Path(__file__).resolve().parents[1] / "slim_nets"
GRAPH_LIBRARIES = ("tensorflow", "tf-slim", "tf-keras")
CACHE_FILE_BYTES = 1 << 20  # A variable list is ~100 KB; anything larger is not one.

Variables = tuple[tuple[str, tuple[int, ...]], ...]


def cache_dir() -> pathlib.Path:
  return cache_root() / "graph-variables"


def cache_key(model: str) -> str:
  """What the aux graph's variable list depends on, hashed (no TensorFlow import)."""
  import registry
  reg = registry.default()
  entry = reg.model(model)
  sources = sorted(SLIM_NETS_DIR.rglob("*.py"))
  facts = {"model": model, "input_shape": list(entry.input_shape),
           "weight_decay": entry.weight_decay, "num_classes": reg.publisher.num_classes,
           "graph_sources_sha256": sources_sha256(SLIM_NETS_DIR, sources),
           "libraries": installed_versions(GRAPH_LIBRARIES)}
  return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]


def cache_path(model: str) -> pathlib.Path:
  return cache_dir() / f"{model}-{cache_key(model)}.json"


@functools.lru_cache(maxsize=None)
def aux_graph_variables(model: str) -> Variables:
  """(name, shape) of every variable `model`'s training graph with the aux head creates."""
  path = cache_path(model)
  cached = _read(path)
  if cached is not None:
    return cached
  from slim_nets import manifest
  variables = manifest.graph_variables(model, aux=True)
  try:
    filesystem.write_atomically(
        path, json.dumps([[name, list(shape)] for name, shape in variables]).encode())
  except OSError:
    pass  # A read-only or full cache folder: the next run builds the graph again.
  return variables


def _read(path: pathlib.Path) -> Variables | None:
  try:
    with open_regular(path, "graph variable cache") as f:
      data = json.loads(f.read(CACHE_FILE_BYTES + 1))
  except (CheckpointError, OSError, ValueError, RecursionError):
    return None
  if not (isinstance(data, list) and data and all(_is_variable(item) for item in data)):
    return None
  return tuple((name, tuple(shape)) for name, shape in data)


def _is_variable(item) -> bool:
  return (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
          and isinstance(item[1], list)
          and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in item[1]))
