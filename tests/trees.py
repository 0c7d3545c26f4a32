"""Export trees for the export_all, publish and serve tests.

`fake_export_model` stands in for pipeline.export_model (also inside
export_all's worker processes, by its "module:function" name) and writes a
small directory shaped like a SavedModel per release; `fake_tree` lays out a
stamped, carded export tree without TensorFlow. The real trees are
tests/conftest.py's session fixtures.
"""
from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time


import registry
from exporters import export_tree, pipeline
from exporters.export_tree import stamps

FAKE_EXPORTER = "tests.trees:fake_export_model"


def write_fake_saved_model(directory: pathlib.Path, payload: bytes) -> None:
  (directory / "variables").mkdir(parents=True, exist_ok=True)
  (directory / "saved_model.pb").write_bytes(b"saved model " + payload)
  (directory / "variables" / "variables.index").write_bytes(b"index " + payload)
  (directory / "variables" / "variables.data-00000-of-00001").write_bytes(payload * 100)


def _event(event: str, model: str) -> None:
  events = os.environ.get("FAKE_EXPORT_LOG")
  if events:
    with open(events, "a") as f:
      f.write(json.dumps({"event": event, "model": model, "t": time.time()}) + "\n")


def fake_export_model(config, log=print, on_done=None):
  """pipeline.export_model's contract, minus TensorFlow: per release a temp dir, then a rename.

  $FAKE_EXPORT_SECONDS makes each release take that long; $FAKE_EXPORT_LOG
  (a file) receives one JSON line per model start and end; $FAKE_EXPORT_FAIL
  names a `<model>/<module_type>/<version>` that fails with ENOSPC mid-write.
  """
  _event("start", config.model)
  reg = registry.default()
  outcomes = []
  for target in config.targets:
    start = time.monotonic()
    key = f"{config.model}/{target.module_type}/{target.version}"
    release = reg.release(config.model, target.module_type, target.version)
    export_dir = pathlib.Path(target.export_dir)
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp-{export_dir.name}-", dir=export_dir.parent))
    try:
      payload = pathlib.Path(f"{config.checkpoint_path}.index").read_bytes()[:64] + key.encode()
      write_fake_saved_model(tmp, payload)
      if release.version.format == "hub":  # What the TF.js converter step looks for.
        (tmp / "tfhub_module.pb").write_bytes(b"module " + payload)
      time.sleep(float(os.environ.get("FAKE_EXPORT_SECONDS", "0")))
      if os.environ.get("FAKE_EXPORT_FAIL") == key:
        raise OSError(errno.ENOSPC, "No space left on device")
      if export_dir.exists():
        shutil.rmtree(export_dir)
      os.rename(tmp, export_dir)
    except OSError as e:
      shutil.rmtree(tmp, ignore_errors=True)
      outcome = pipeline.ReleaseOutcome(release, target, time.monotonic() - start,
                                        error=pipeline.error_text(e))
    except BaseException:
      shutil.rmtree(tmp, ignore_errors=True)
      raise
    else:
      log(f"{key}: fake export written")
      outcome = pipeline.ReleaseOutcome(release, target, time.monotonic() - start,
                                        result=pipeline.ExportResult(
                                            release.handle, release.version.number,
                                            release.version.format, str(export_dir), (),
                                            {"fake": True}))
    outcomes.append(outcome)
    if on_done:
      on_done(outcome)
  _event("end", config.model)
  return outcomes


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
    folder = export_tree.export_path(export_dir, release)
    if folder.exists():
      shutil.rmtree(folder)
    write_fake_saved_model(folder, payload + release.handle_with_version.encode())
    export_tree.card_path(export_dir, release).write_text(
        f"# Module {release.handle}\n\nA card for version {release.version.number}.\n")
    stamp = stamps.Stamp(key="fake", inputs={"checkpoint_sha256": "c" * 64}, handle=release.handle,
                         version=release.version.number, export_format=release.version.format,
                         checkpoint_path="fake", code_version="0.1.0+fake", seconds=0.0,
                         peak_rss_mb=None, export={})
    export_tree.stamp_path(export_dir, release).write_bytes(stamp.to_json())
  return export_dir


def nasnet_mobile_releases(**filters):
  return list(registry.default().releases(models=["nasnet_mobile"], **filters))


FAKE_TFJS_CONVERTER = """#!{python}
# tests/trees.py's stand-in for tensorflowjs_converter: `... <parent_dir> <output_dir>`.
import json, os, pathlib, sys
parent, out = pathlib.Path(sys.argv[-2]), pathlib.Path(sys.argv[-1])
log = os.environ.get("FAKE_TFJS_LOG")
if log:
  with open(log, "a") as f:
    f.write(str(parent) + "\\n")
if os.environ.get("FAKE_TFJS_HANG"):  # A file to write this process's pid into; then hang.
  pathlib.Path(os.environ["FAKE_TFJS_HANG"]).write_text(str(os.getpid()))
  import time; time.sleep(300)
if os.environ.get("FAKE_TFJS_FAIL") and os.environ["FAKE_TFJS_FAIL"] in str(parent):
  sys.exit("ValueError: fake converter failure")
out.mkdir(parents=True)
(out / "group1-shard1of1.bin").write_bytes((parent / "saved_model.pb").read_bytes())
(out / "model.json").write_text(json.dumps({{
    "format": "graph-model", "generatedBy": "fake", "convertedBy": "fake converter",
    "modelTopology": {{}}, "weightsManifest": [{{"paths": ["group1-shard1of1.bin"],
                                                "weights": []}}]}}))
"""


def fake_tfjs_converter(folder: pathlib.Path) -> pathlib.Path:
  """An executable standing in for the TF.js converter: model.json plus one shard holding the
  parent's saved_model.pb ($FAKE_TFJS_LOG: a file that gets each parent; $FAKE_TFJS_FAIL: a
  substring of the parents it fails on; $FAKE_TFJS_HANG: a file it writes its pid into before
  it hangs)."""
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / "fake_tensorflowjs_converter"
  path.write_text(FAKE_TFJS_CONVERTER.format(python=sys.executable))
  path.chmod(0o755)
  return path
