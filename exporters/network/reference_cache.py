"""The Slim reference's values, kept on disk between processes.

Constructing the reference (the Slim graph in both modes, restored, run on
the probe images) costs about 19 s for nasnet_mobile, and every `python -m
exporters.verify` run and every deployment's verification needs the same
values of the same checkpoint. `CachedReference` answers what the verifiers
ask of a SlimReference (its variables, outputs per mode, batch means,
regularization losses) from `$XDG_CACHE_HOME/nasnet-hub-toolchain/references/
<model>-<key>/`, one file per part, and builds the real reference only for a
part it does not find, which it then stores.

The key hashes everything the values depend on: the checkpoint's bytes (index
and data files), the model's registry facts and the number of classes, the
sources of the reference's construction (exporters/network, slim_nets) and
the versions of the libraries that run it. So a changed checkpoint, builder
or library computes the reference again. A part that cannot be read, or is
not what was stored, is computed again; one that cannot be written is skipped:
the cache only saves time. Values are stored only after the reference's own
checks (finite outputs and losses) passed.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import io
import json
import os
import pathlib

import numpy as np

from exporters import filesystem
from exporters.fingerprint import cache_root, installed_versions, sources_sha256
from registry import Model

REPO = pathlib.Path(__file__).resolve().parents[2]
SOURCE_DIRS = (REPO / "exporters" / "network", REPO / "slim_nets")
LIBRARIES = ("tensorflow", "tf-slim", "tf-keras", "numpy")
_PART_BYTES = 1 << 30  # More than any part of the largest model's values.


def cache_dir() -> pathlib.Path:
  return cache_root() / "references"


def _checkpoint_sha256(checkpoint_path: str) -> str:
  h = hashlib.sha256()
  for path in sorted(glob.glob(glob.escape(checkpoint_path) + ".data-*")) + [
      checkpoint_path + ".index"]:
    h.update(os.path.basename(path).encode() + b"\0")
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 22), b""):
        h.update(block)
    h.update(b"\0")
  return h.hexdigest()


def cache_key(model: Model, num_classes: int, checkpoint_path: str) -> str:
  """What the reference's values depend on, hashed; OSError when the checkpoint's files
  cannot be read."""
  sources = sorted(p for d in SOURCE_DIRS for p in d.rglob("*.py"))
  facts = {"model": {k: v for k, v in dataclasses.asdict(model).items()},
           "num_classes": num_classes, "checkpoint_sha256": _checkpoint_sha256(checkpoint_path),
           "sources_sha256": sources_sha256(REPO, sources),
           "libraries": installed_versions(LIBRARIES)}
  return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class CachedReference:
  """A SlimReference's values from the cache; the real one is built on the first miss."""

  def __init__(self, model: Model, num_classes: int, checkpoint_path: str):
    self.model, self.checkpoint_path = model, checkpoint_path
    self._num_classes = num_classes
    try:
      self.folder = cache_dir() / f"{model.name}-{cache_key(model, num_classes, checkpoint_path)}"
    except OSError:
      self.folder = None  # The checkpoint is unreadable: the reference says why.
    self._live = None
    self._parts = {}
    self.built = False  # Whether the real reference was constructed (a miss).

  def _reference(self):
    if self._live is None:
      from exporters.network.reference import SlimReference
      self._live = SlimReference(self.model, self._num_classes, self.checkpoint_path)
      self.built = True
    return self._live

  def _part(self, name: str, compute):
    """Part `name` (a dict of arrays) from memory, the cache, or `compute(reference)`."""
    if name not in self._parts:
      found = self._read(name)
      if found is None:
        found = compute(self._reference())
        self._write(name, found)
      self._parts[name] = found
    return self._parts[name]

  def _read(self, name: str) -> dict | None:
    if self.folder is None:
      return None
    try:
      with open(self.folder / f"{name}.npz", "rb") as f:
        data = f.read(_PART_BYTES + 1)
      if len(data) > _PART_BYTES:
        return None
      with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, EOFError):  # Absent, unreadable, or not an npz.
      return None

  def _write(self, name: str, values: dict) -> None:
    if self.folder is None:
      return
    buffer = io.BytesIO()
    np.savez(buffer, **values)
    try:
      filesystem.write_atomically(self.folder / f"{name}.npz", buffer.getvalue())
    except OSError:
      pass  # A read-only or full cache folder: the next run computes it again.

  @property
  def variables(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
    part = self._part("variables", lambda r: {
        "names": np.array([n for n, _ in r.variables]),
        "shapes": np.array(json.dumps([list(s) for _, s in r.variables]))})
    shapes = json.loads(str(part["shapes"]))
    return tuple((str(n), tuple(s)) for n, s in zip(part["names"], shapes))

  def stored_expected(self, training: bool = False) -> dict[str, np.ndarray] | None:
    """The outputs of a mode if the cache has them, else None; never builds the reference."""
    return self._parts.get("training" if training else "inference") or self._read(
        "training" if training else "inference")

  def expected(self, training: bool = False) -> dict[str, np.ndarray]:
    return self._part("training" if training else "inference",
                      lambda r: r.expected(training=training))

  def batch_means(self) -> dict[str, np.ndarray]:
    return self._part("batch_means", lambda r: r.batch_means())

  def regularization_losses(self) -> dict[str, float]:
    part = self._part("regularization_losses", lambda r: {
        k: np.float64(v) for k, v in r.regularization_losses().items()})
    return {k: float(v) for k, v in part.items()}

  def close(self):
    if self._live is not None:
      self._live.close()
      self._live = None


# ---- The inference-mode outputs in a process of its own.

def expected_in_child_process(model: Model, num_classes: int, checkpoint_path: str,
                              timeout_s: float = 1800) -> dict[str, np.ndarray]:
  """`SlimReference(model, num_classes, checkpoint_path).expected()`: from the reference
  cache, else computed by `python -m exporters.network.reference_cache` (which stores it
  there) so that no graph is built in this
  process; its error is one ExportError line."""
  import os
  import sys
  import tempfile
  from exporters import child_processes
  stored = CachedReference(model, num_classes, checkpoint_path).stored_expected()
  if stored is not None:
    return stored
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  with tempfile.TemporaryDirectory(prefix="slim-reference-") as work:
    out = os.path.join(work, "expected.npz")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    child_processes.run_tool(
        [sys.executable, "-m", "exporters.network.reference_cache", model.name, str(num_classes),
         os.path.abspath(checkpoint_path), out],
        "the Slim reference", f"computing its outputs on {checkpoint_path!r}",
        f"on {checkpoint_path!r}",
        timeout_s, cwd=repo, env=env)
    with np.load(out) as arrays:
      return {name: arrays[name] for name in arrays.files}


def _main(argv: list[str]) -> int:
  """`python -m exporters.network.reference_cache MODEL NUM_CLASSES CHECKPOINT OUT_NPZ`."""
  import sys
  import registry
  from exporters.errors import ExportError
  name, num_classes, checkpoint_path, out = argv
  reference = None
  try:
    reference = CachedReference(registry.default().model(name), int(num_classes),
                                checkpoint_path)
    np.savez(out, **reference.expected(training=False))
  except ExportError as e:
    print(e, file=sys.stderr)
    return 1
  finally:
    if reference is not None:
      reference.close()
  return 0


if __name__ == "__main__":
  import sys
  sys.exit(_main(sys.argv[1:]))
