"""Publishing: deterministic TF Hub archives, manifests, immutability, and nothing partial.

Most tests publish small fake export trees (tests/export_tree.py); the last
ones publish the real nasnet_mobile exports that export_all wrote.
"""
import dataclasses
import errno
import gzip
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest
import tensorflow as tf

from exporters import export_tree
from exporters.publishing import publish_lib
from exporters.errors import ExportError
from exporters.export_tree.stamps import UNKNOWN_PROVENANCE
from tests.trees import fake_tree, nasnet_mobile_releases

REPO = pathlib.Path(__file__).resolve().parents[1]
HANDLE4 = "google/imagenet/nasnet_mobile/classification/4"


@pytest.fixture
def tree(tmp_path):
  return fake_tree(tmp_path / "exports", nasnet_mobile_releases(versions=[3, 4]))


def publish(export_dir, dest, **kw):
  lines = []
  results = publish_lib.run(publish_lib.PublishConfig(str(export_dir), str(dest), **kw),
                            log=lines.append)
  return {r.handle: r for r in results}


def files_under(root: pathlib.Path) -> dict[str, bytes]:
  return {p.relative_to(root).as_posix(): p.read_bytes()
          for p in sorted(root.rglob("*")) if p.is_file()}


def test_publishes_archive_card_and_manifest(tree, tmp_path):
  dest = tmp_path / "published"
  results = publish(tree, dest)
  assert sorted(results) == sorted(r.handle_with_version for r in
                                   nasnet_mobile_releases(versions=[3, 4]))
  assert {r.status for r in results.values()} == {"published"}
  folder = dest / "google/imagenet/nasnet_mobile/classification"
  assert sorted(p.name for p in folder.iterdir()) == [
      "3.manifest.json", "3.md", "3.tar.gz", "4.manifest.json", "4.md", "4.tar.gz"]
  archive = (folder / "4.tar.gz").read_bytes()
  manifest = json.loads((folder / "4.manifest.json").read_text())
  assert manifest["handle"] == "google/imagenet/nasnet_mobile/classification"
  assert manifest["version"] == 4 and manifest["format"] == "saved_model_2"
  assert manifest["sha256"] == hashlib.sha256(archive).hexdigest() == results[HANDLE4].sha256
  assert manifest["size"] == len(archive)
  assert manifest["source_checkpoint"]["sha256"] == "c" * 64
  assert manifest["source_checkpoint"]["name"] == "nasnet-a_mobile_04_10_2017/model.ckpt"
  assert manifest["toolchain_version"] == "0.1.0+fake"
  card = tree / "google/imagenet/nasnet_mobile/classification/4.md"
  assert (folder / "4.md").read_bytes() == card.read_bytes()


def test_archive_is_tf_hub_compressed_format_and_deterministic(tree, tmp_path):
  dest = tmp_path / "published"
  publish(tree, dest)
  data = (dest / f"{HANDLE4}.tar.gz").read_bytes()
  # gzip header: no file name flag, mtime 0.
  assert data[:2] == b"\x1f\x8b" and data[3] & 0x08 == 0 and data[4:8] == b"\0\0\0\0"
  with tarfile.open(fileobj=gzip.GzipFile(fileobj=io.BytesIO(data))) as tar:
    members = tar.getmembers()
  names = [m.name for m in members]
  assert names == sorted(names)
  assert "saved_model.pb" in names and "variables/variables.index" in names
  assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == ""
             for m in members)
  assert {m.mode for m in members if m.isdir()} == {0o755}
  assert {m.mode for m in members if m.isfile()} == {0o644}
  # The same export with other file times and modes gives the same bytes.
  export = tree / HANDLE4
  for path in export.rglob("*"):
    os.utime(path, (12345, 12345))
    os.chmod(path, 0o700)
  dest2 = tmp_path / "published2"
  publish(tree, dest2)
  assert (dest2 / f"{HANDLE4}.tar.gz").read_bytes() == data
  assert files_under(dest2) == files_under(dest)


def test_publishing_again_is_a_no_op(tree, tmp_path):
  dest = tmp_path / "published"
  first = publish(tree, dest)
  before = files_under(dest)
  again = publish(tree, dest)
  assert {r.status for r in again.values()} == {"unchanged"}
  assert {h: r.sha256 for h, r in again.items()} == {h: r.sha256 for h, r in first.items()}
  assert files_under(dest) == before


def test_changed_bytes_are_refused_unless_forced(tree, tmp_path):
  dest = tmp_path / "published"
  first = publish(tree, dest)
  before = files_under(dest)
  (tree / HANDLE4 / "saved_model.pb").write_bytes(b"another export")
  with pytest.raises(ExportError, match=r"classification/4 is already published .* immutable"):
    publish(tree, dest)
  assert files_under(dest) == before
  replaced = publish(tree, dest, force=True)
  assert replaced[HANDLE4].status == "replaced"
  assert replaced[HANDLE4].sha256 != first[HANDLE4].sha256
  manifest = json.loads((dest / f"{HANDLE4}.manifest.json").read_text())
  assert manifest["sha256"] == replaced[HANDLE4].sha256


def _corrupt(path: pathlib.Path) -> None:
  """Overwrites 8 bytes in the middle of the file, keeping its size."""
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
  path.write_bytes(bytes(data))


def _publish_cli(tree, dest, *flags):
  return subprocess.run([sys.executable, "-m", "exporters.publish", f"--export_dir={tree}",
                         f"--dest={dest}", *flags], cwd=REPO, capture_output=True, text=True)


def test_a_corrupted_archive_is_reported_and_force_repairs_it(tree, tmp_path):
  """Same size, other bytes: the file is hashed, so it is corrupt, not "unchanged"."""
  dest = tmp_path / "published"
  first = publish(tree, dest)
  archive = dest / f"{HANDLE4}.tar.gz"
  good = archive.read_bytes()
  claimed = first[HANDLE4].sha256
  _corrupt(archive)
  actual = hashlib.sha256(archive.read_bytes()).hexdigest()
  assert actual != claimed and archive.stat().st_size == len(good)
  before = files_under(dest)

  done = _publish_cli(tree, dest)
  assert done.returncode == 1, done.stdout + done.stderr
  assert "Traceback" not in done.stderr
  lines = [line for line in (done.stdout + done.stderr).splitlines() if "corrupt" in line]
  assert len(lines) == 1 and lines[0].startswith("error: "), done.stdout + done.stderr
  assert HANDLE4 in lines[0] and claimed in lines[0] and actual in lines[0]
  assert "--force" in lines[0]
  assert files_under(dest) == before  # Refused: nothing rewritten, nothing added.
  assert {r.status for r in publish(tree, dest, versions=(3,)).values()} == {"unchanged"}

  done = _publish_cli(tree, dest, "--force")
  assert done.returncode == 0, done.stderr
  assert f"{HANDLE4}: repaired" in done.stdout
  manifest = json.loads((dest / f"{HANDLE4}.manifest.json").read_text())
  assert hashlib.sha256(archive.read_bytes()).hexdigest() == manifest["sha256"] == claimed
  subprocess.run(["gzip", "-t", str(archive)], check=True)
  publish(tree, tmp_path / "fresh")
  assert files_under(dest) == files_under(tmp_path / "fresh")
  assert {r.status for r in publish(tree, dest).values()} == {"unchanged"}


def test_a_lying_manifest_is_reported_as_corrupt(tree, tmp_path):
  """A good archive under a manifest that claims other bytes: the bytes decide, and disagree."""
  dest = tmp_path / "published"
  first = publish(tree, dest)
  manifest_file = dest / f"{HANDLE4}.manifest.json"
  manifest = json.loads(manifest_file.read_text())
  manifest["sha256"] = "0" * 64
  manifest_file.write_text(json.dumps(manifest))
  with pytest.raises(ExportError, match=f"classification/4 is corrupt.*manifest says sha256 "
                                        f"{'0' * 64}, the file's sha256 is {first[HANDLE4].sha256}"):
    publish(tree, dest)
  assert publish(tree, dest, force=True)[HANDLE4].status == "repaired"
  assert json.loads(manifest_file.read_text())["sha256"] == first[HANDLE4].sha256


def test_a_corrupted_archive_at_a_tf_io_gfile_url_is_found_and_repaired(tree):
  dest = "ram://published_corrupt/hub"
  first = publish(tree, dest)
  archive = f"{dest}/{HANDLE4}.tar.gz"
  with tf.io.gfile.GFile(archive, "rb") as f:
    data = bytearray(f.read())
  data[len(data) // 2] ^= 0xFF
  with tf.io.gfile.GFile(archive, "wb") as f:
    f.write(bytes(data))
  with pytest.raises(ExportError, match="classification/4 is corrupt"):
    publish(tree, dest)
  assert publish(tree, dest, force=True)[HANDLE4].status == "repaired"
  with tf.io.gfile.GFile(archive, "rb") as f:
    assert hashlib.sha256(f.read()).hexdigest() == first[HANDLE4].sha256


def test_manifests_state_the_checkpoint_provenance_of_the_stamp(tree, tmp_path):
  """What the stamp says, word for word; a stamp from before provenance was recorded: unknown."""
  said = {3: "unverified local checkpoint", 4: "pinned archive sha256 " + "a" * 64}
  for release in nasnet_mobile_releases(versions=[3, 4]):
    path = export_tree.stamp_path(tree, release)
    stamp = export_tree.read_stamp(path)
    if release.module_type == "classification":
      stamp = dataclasses.replace(stamp, checkpoint_provenance=said[release.version.number])
      path.write_bytes(stamp.to_json())
    else:  # As export_all wrote it before it recorded provenance (stamp format 2).
      data = json.loads(stamp.to_json())
      del data["checkpoint_provenance"]
      data["format"] = 2
      path.write_text(json.dumps(data))
  assert UNKNOWN_PROVENANCE.startswith("unknown")  # Neither of the two claims.
  dest = tmp_path / "published"
  results = publish(tree, dest)
  for module_type in ("classification", "feature_vector"):
    for version in (3, 4):
      handle = f"google/imagenet/nasnet_mobile/{module_type}/{version}"
      manifest = json.loads((dest / f"{handle}.manifest.json").read_text())
      expected = said[version] if module_type == "classification" else UNKNOWN_PROVENANCE
      assert manifest["checkpoint_provenance"] == expected, handle
      assert results[handle].checkpoint_provenance == expected


def test_a_changed_card_is_updated_without_touching_the_archive(tree, tmp_path):
  dest = tmp_path / "published"
  publish(tree, dest)
  archive = (dest / f"{HANDLE4}.tar.gz").read_bytes()
  (tree / f"{HANDLE4}.md").write_text("# A corrected card\n")
  results = publish(tree, dest)
  assert results[HANDLE4].status == "card updated"
  assert (dest / f"{HANDLE4}.md").read_text() == "# A corrected card\n"
  assert (dest / f"{HANDLE4}.tar.gz").read_bytes() == archive


def test_publishes_to_a_tf_io_gfile_url(tree, tmp_path):
  """A URL destination (here TensorFlow's in-memory ram://, like gs:// for CI) gets the same bytes."""
  local = publish(tree, tmp_path / "published")
  remote = publish(tree, "ram://published_test/hub")
  assert {h: r.sha256 for h, r in remote.items()} == {h: r.sha256 for h, r in local.items()}
  for name in ("4.tar.gz", "4.md", "4.manifest.json"):
    with tf.io.gfile.GFile(f"ram://published_test/hub/{HANDLE4.rsplit('/', 1)[0]}/{name}",
                           "rb") as f:
      assert f.read() == (tmp_path / "published" / HANDLE4.rsplit("/", 1)[0] / name).read_bytes()
  assert {r.status for r in publish(tree, "ram://published_test/hub").values()} == {"unchanged"}
  (tree / HANDLE4 / "saved_model.pb").write_bytes(b"another export")
  with pytest.raises(ExportError, match="immutable"):
    publish(tree, "ram://published_test/hub")


def test_unwritable_dest_fails_and_writes_nothing(tree, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  with pytest.raises(ExportError, match="cannot write to --dest"):
    publish(tree, blocker / "published")
  assert blocker.read_text() == "not a folder"


class _FullDiskGFile:
  """tf.io.gfile.GFile whose writes to archives fail with ENOSPC after some bytes."""

  real = tf.io.gfile.GFile
  budget = 10

  def __init__(self, path, mode="r"):
    self.f = self.real(path, mode)
    self.path = path
    self.written = 0

  def write(self, data):
    self.written += len(data)
    if ".tar.gz" in self.path and self.written > self.budget:
      raise OSError(errno.ENOSPC, "No space left on device")
    return self.f.write(data)

  def __getattr__(self, name):
    return getattr(self.f, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.f.close()


def test_full_disk_leaves_nothing_and_the_next_run_recovers(tree, tmp_path, monkeypatch):
  dest = tmp_path / "published"
  monkeypatch.setattr(tf.io.gfile, "GFile", _FullDiskGFile)
  with pytest.raises(ExportError, match="no space left on the device"):
    publish(tree, dest)
  # No file, no empty handle folder, and not the --dest folder publish made (issue 20).
  assert not dest.exists()
  monkeypatch.undo()
  results = publish(tree, dest)
  assert {r.status for r in results.values()} == {"published"}


def test_failure_while_placing_a_version_takes_it_back(tree, tmp_path, monkeypatch):
  """The manifest's rename fails after the archive and card are in place."""
  dest = tmp_path / "published"
  real_rename = tf.io.gfile.rename

  def rename(src, dst, overwrite=False):
    if dst.endswith(".manifest.json"):
      raise tf.errors.ResourceExhaustedError(None, None, "disk quota exceeded")
    return real_rename(src, dst, overwrite)

  monkeypatch.setattr(tf.io.gfile, "rename", rename)
  with pytest.raises(ExportError, match="disk quota exceeded.*nothing of it was left"):
    publish(tree, dest, versions=(4,))
  assert [p for p in dest.rglob("*") if p.is_file()] == []
  monkeypatch.undo()
  assert publish(tree, dest, versions=(4,))[HANDLE4].status == "published"


def test_temporaries_of_a_killed_publish_are_removed(tree, tmp_path):
  dest = tmp_path / "published"
  folder = dest / "google/imagenet/nasnet_mobile/classification"
  folder.mkdir(parents=True)
  (folder / ".tmp-4.tar.gz-0123456789ab").write_bytes(b"half an archive")
  (folder / ".tmp-4.manifest.json-0123456789ab").write_bytes(b"{")
  publish(tree, dest)
  assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def test_bad_input_is_reported(tree, tmp_path):
  with pytest.raises(ExportError, match="unknown model 'nasnet_tiny'"):
    publish(tree, tmp_path / "p", models=("nasnet_tiny",))
  with pytest.raises(ExportError, match="does not exist"):
    publish(tmp_path / "nowhere", tmp_path / "p")
  with pytest.raises(ExportError, match=r"nasnet_large/classification/4 \(no export\)"):
    publish(tree, tmp_path / "p", models=("nasnet_large",), versions=(4,))
  stamp_file = tree / "google/imagenet/nasnet_mobile/classification/.4.stamp.json"
  stamp = json.loads(stamp_file.read_text())
  del stamp["inputs"]["checkpoint_sha256"]  # Edited by hand (issue 20: was a KeyError).
  stamp_file.write_text(json.dumps(stamp))
  with pytest.raises(ExportError, match=r"classification/4 \(a stamp without the "
                                        r"checkpoint's sha256 \(edited by hand\?\)\)"):
    publish(tree, tmp_path / "p")
  stamp_file.unlink()
  with pytest.raises(ExportError, match=r"classification/4 \(no stamp"):
    publish(tree, tmp_path / "p")
  assert not (tmp_path / "p").exists()


def test_cli(tree, tmp_path):
  dest = tmp_path / "published"
  cmd = [sys.executable, "-m", "exporters.publish", f"--export_dir={tree}", f"--dest={dest}"]
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  assert HANDLE4 in done.stdout and "published" in done.stdout
  (tree / HANDLE4 / "saved_model.pb").write_bytes(b"another export")
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 1
  assert "immutable" in done.stderr and "--force" in done.stderr
  # Said once: one `error:` line, not also a FAILED line in the log.
  assert (done.stdout + done.stderr).count("immutable") == 1
  assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_publishing_real_exports_twice_gives_identical_bytes(nasnet_mobile_tree, tmp_path):
  first = publish(nasnet_mobile_tree.export_dir, tmp_path / "a")
  second = publish(nasnet_mobile_tree.export_dir, tmp_path / "b")
  # The 8 releases and nasnet_mobile's two TFLite deployments (tests/test_lite.py serves them).
  assert len(first) == 10
  assert {h: r.sha256 for h, r in first.items()} == {h: r.sha256 for h, r in second.items()}
  assert files_under(tmp_path / "a") == files_under(tmp_path / "b")
  for handle, r in first.items():
    if handle.startswith("tensorflow/lite-model/"):
      continue
    with tarfile.open(tmp_path / "a" / f"{handle}.tar.gz") as tar:
      names = tar.getnames()
    assert "saved_model.pb" in names, handle
    manifest = json.loads((tmp_path / "a" / f"{handle}.manifest.json").read_text())
    assert manifest["sha256"] == r.sha256
    assert manifest["source_checkpoint"]["sha256"] == json.loads(
        (nasnet_mobile_tree.export_dir / handle.rsplit("/", 1)[0]
         / f".{handle.rsplit('/', 1)[1]}.stamp.json").read_text())["inputs"]["checkpoint_sha256"]


def _make_n(*args):
  done = subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True,
                        check=True)
  return [line for line in done.stdout.splitlines() if "exporters." in line]


def test_ci_workflow_runs_what_make_publish_local_runs():
  """publish-local (tested above) and CI's `make publish` differ only in the destination."""
  local = _make_n("publish-local")
  assert [line.split()[2] for line in local] == ["exporters.export_all", "exporters.publish"]
  assert "--dest=published" in local[1]
  ci = _make_n("publish", "PUBLISH_DEST=gs://bucket")
  assert ci == [line.replace("--dest=published", "--dest=gs://bucket") for line in local]
  workflow = (REPO / ".github/workflows/publish.yml").read_text()
  runs = [line.split("run:", 1)[1].strip() for line in workflow.splitlines()
          if line.strip().startswith("- run:")]
  assert [r.split()[:2] for r in runs] == [["make", "test"], ["make", "export-all"],
                                           ["make", "publish"]]
  assert "PUBLISH_DEST=gs://${{ secrets.HUB_BUCKET }}" in runs[2]


# ---- TF.js deployments: their files under the handle, card and manifest beside.

def test_tfjs_deployments_publish_per_file_with_the_archives_rules(tmp_path, monkeypatch):
  """A tree made by export-all with the fake exporter and tests/trees.py's fake converter."""
  from tests.trees import FAKE_EXPORTER, fake_checkpoint_dir, fake_tfjs_converter
  from exporters.formats import tfjs
  import registry
  # The fake converter's files are no graph model: the run states them not verified.
  monkeypatch.setattr(tfjs, "RUNTIME_DIR", str(tmp_path / "no_tfjs_runtime"))
  checkpoints = fake_checkpoint_dir(tmp_path / "checkpoints")
  exports = tmp_path / "exports"
  export_tree.run(export_tree.ExportAllConfig(
      checkpoint_dir=str(checkpoints), export_dir=str(exports), models=("nasnet_mobile",),
      module_types=("classification",), versions=(3,), mirror=str(tmp_path / "none"),
      exporter=FAKE_EXPORTER, heartbeat_s=0, in_process=True,
      tfjs_converter=str(fake_tfjs_converter(tmp_path / "bin"))), log=lambda _: None)
  [deployment] = registry.default().deployments(
      models=["nasnet_mobile"], module_types=["classification"], versions=[3], kind="tfjs")
  dest = tmp_path / "published"
  cfg = publish_lib.PublishConfig(export_dir=str(exports), dest=str(dest))
  results = publish_lib.run(cfg, log=lambda _: None)
  assert [(r.handle, r.status) for r in results] == [
      ("google/imagenet/nasnet_mobile/classification/3", "published"),
      (deployment.handle, "published")]
  folder = dest / deployment.handle
  assert sorted(os.listdir(folder)) == ["group1-shard1of1.bin", "model.json"]
  assert sorted(os.listdir(folder.parent)) == ["1", "1.manifest.json", "1.md"]
  manifest = json.loads((folder.parent / "1.manifest.json").read_text())
  for name in ("model.json", "group1-shard1of1.bin"):
    data = (folder / name).read_bytes()
    assert manifest["files"][name] == {"sha256": hashlib.sha256(data).hexdigest(),
                                       "size": len(data)}
  assert [r.status for r in publish_lib.run(cfg, log=lambda _: None)] == ["unchanged"] * 2
  shard = folder / "group1-shard1of1.bin"
  shard.write_bytes(b"damaged")
  with pytest.raises(ExportError, match=r"google/tfjs-model/.*/default/1 is corrupt at .*: "
                     r"group1-shard1of1.bin has sha256 [0-9a-f]{64}, its manifest says"):
    publish_lib.run(cfg, log=lambda _: None)
  results = publish_lib.run(dataclasses.replace(cfg, force=True), log=lambda _: None)
  assert [r.status for r in results] == ["unchanged", "repaired"]
  assert shard.read_bytes() == (exports / deployment.handle / shard.name).read_bytes()
  # Other bytes under a published deployment are refused: it is immutable.
  (exports / deployment.handle / "model.json").write_text("{}")
  with pytest.raises(ExportError, match="already published .* with other files \\(model.json\\)"):
    publish_lib.run(cfg, log=lambda _: None)
  assert not [p for p in dest.rglob(".tmp-*")]
