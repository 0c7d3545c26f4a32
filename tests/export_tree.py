"""Export trees for the export_all, publish and serve tests.

`fake_export` stands in for export_lib.export (also inside export_all's
worker processes, by its "module:function" name) and writes a small
directory shaped like a SavedModel; `fake_tree` lays out a stamped, carded
export tree without TensorFlow. `nasnet_mobile_tree` (session-scoped, import
it into a test module to use it) runs the real `export_all` once for every
published nasnet_mobile version, for the end-to-end tests of all three files.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import pathlib
import shutil
import tempfile
import time

import pytest

import registry
from exporters import export_all_lib
from tests.conftest import make_checkpoint

FAKE_EXPORTER = "tests.export_tree:fake_export"


@dataclasses.dataclass
class FakeResult:
  handle: str
  version: int
  format: str
  export_dir: str
  unused_variables: tuple = ()
  verification: dict = dataclasses.field(default_factory=lambda: {"fake": True})
  seconds: dict = dataclasses.field(default_factory=dict)


def write_fake_saved_model(directory: pathlib.Path, payload: bytes) -> None:
  (directory / "variables").mkdir(parents=True, exist_ok=True)
  (directory / "saved_model.pb").write_bytes(b"saved model " + payload)
  (directory / "variables" / "variables.index").write_bytes(b"index " + payload)
  (directory / "variables" / "variables.data-00000-of-00001").write_bytes(payload * 100)


def fake_export(config, log=print):
  """export_lib.export's contract, minus TensorFlow: temp dir, then rename into place.

  $FAKE_EXPORT_SECONDS makes it take that long; $FAKE_EXPORT_LOG (a file)
  receives one JSON line per start and end; $FAKE_EXPORT_FAIL names a
  `<model>/<module_type>/<version>` that fails with ENOSPC mid-write.
  """
  events = os.environ.get("FAKE_EXPORT_LOG")
  key = f"{config.model}/{config.module_type}/{config.version}"
  if events:
    with open(events, "a") as f:
      f.write(json.dumps({"event": "start", "key": key, "t": time.time()}) + "\n")
  release = registry.default().release(config.model, config.module_type, config.version)
  export_dir = pathlib.Path(config.export_dir)
  export_dir.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp-{export_dir.name}-", dir=export_dir.parent))
  try:
    payload = pathlib.Path(f"{config.checkpoint_path}.index").read_bytes()[:64] + key.encode()
    write_fake_saved_model(tmp, payload)
    time.sleep(float(os.environ.get("FAKE_EXPORT_SECONDS", "0")))
    if os.environ.get("FAKE_EXPORT_FAIL") == key:
      raise OSError(errno.ENOSPC, "No space left on device")
    if export_dir.exists():
      shutil.rmtree(export_dir)
    os.rename(tmp, export_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if events:
    with open(events, "a") as f:
      f.write(json.dumps({"event": "end", "key": key, "t": time.time()}) + "\n")
  log(f"{key}: fake export written")
  return FakeResult(release.handle, release.version.number, release.version.format,
                    str(export_dir))


def fake_checkpoint_dir(root: pathlib.Path, models=("nasnet_mobile",), content=b"v1") -> pathlib.Path:
  """A checkpoint dir whose files only have to exist and hash (for the fake exporter)."""
  for model in models:
    folder = root / model
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.ckpt.index").write_bytes(b"index " + content)
    (folder / "model.ckpt.data-00000-of-00001").write_bytes(b"data " + content)
  return root


def fake_tree(export_dir: pathlib.Path, releases, payload: bytes = b"weights") -> pathlib.Path:
  """An export tree as export_all leaves it (export, card, stamp), without exporting anything."""
  for release in releases:
    folder = export_all_lib.export_path(export_dir, release)
    if folder.exists():
      shutil.rmtree(folder)
    write_fake_saved_model(folder, payload + release.handle_with_version.encode())
    export_all_lib.card_path(export_dir, release).write_text(
        f"# Module {release.handle}\n\nA card for version {release.version.number}.\n")
    stamp = {"format": export_all_lib.STAMP_FORMAT, "key": "fake",
             "inputs": {"checkpoint_sha256": "c" * 64}, "code_version": "0.1.0+fake",
             "handle": release.handle, "version": release.version.number}
    export_all_lib.stamp_path(export_dir, release).write_text(json.dumps(stamp))
  return export_dir


def nasnet_mobile_releases(**filters):
  return list(registry.default().releases(models=["nasnet_mobile"], **filters))


@dataclasses.dataclass
class RealTree:
  checkpoint_dir: pathlib.Path
  export_dir: pathlib.Path
  result: export_all_lib.ExportAllResult
  output: str


_REAL_TREES: dict[str, RealTree] = {}


@pytest.fixture(scope="session")
def nasnet_mobile_tree(tmp_path_factory) -> RealTree:
  """One real `export_all --models=nasnet_mobile --jobs=2` (every published version).

  Each test module that imports this fixture gets its own session-scoped
  definition of it, so the tree itself is kept here, made once per session.
  """
  if "nasnet_mobile" in _REAL_TREES:
    return _REAL_TREES["nasnet_mobile"]
  root = tmp_path_factory.mktemp("nasnet_mobile_tree")
  checkpoint_dir = root / "checkpoints"
  make_checkpoint("nasnet_mobile", checkpoint_dir / "nasnet_mobile", seed=0)
  lines = []
  config = export_all_lib.ExportAllConfig(checkpoint_dir=str(checkpoint_dir),
                                          export_dir=str(root / "exports"),
                                          models=("nasnet_mobile",), mirror="", jobs=2)
  result = export_all_lib.run(config, log=lines.append)
  _REAL_TREES["nasnet_mobile"] = RealTree(checkpoint_dir, root / "exports", result,
                                          "\n".join(lines))
  return _REAL_TREES["nasnet_mobile"]
