"""Bad input to `python -m exporters.export`: a clear message, a non-zero exit, nothing written.

Each case runs the real CLI in a subprocess. The cheap ones (bad flags,
unknown names, a missing checkpoint, a taken --export_dir) fail before any
graph is built; the checkpoint mismatches fail while reading the checkpoint.
"""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from exporters import pipeline
from exporters.errors import ExportError
from tests.conftest import REPO

MODEL = "nasnet_mobile"


def run_export(*flags: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "exporters.export", *flags], cwd=REPO,
                        capture_output=True, text=True, timeout=600)


def export_flags(export_dir, checkpoint_path="unused/model.ckpt", model=MODEL,
                 module_type="classification", version="4") -> list[str]:
  return [f"--model={model}", f"--module_type={module_type}", f"--version={version}",
          f"--checkpoint_path={checkpoint_path}", f"--export_dir={export_dir}"]


def assert_failed_writing_nothing(result, export_dir: pathlib.Path, *message_parts: str):
  assert result.returncode != 0, result.stdout + result.stderr
  for part in message_parts:
    assert part in result.stderr, f"{part!r} not in:\n{result.stderr[-3000:]}"
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert not export_dir.exists()
  assert list(export_dir.parent.iterdir()) == [], "a failed export left files behind"


@pytest.fixture
def export_dir(tmp_path) -> pathlib.Path:
  """A destination in an otherwise empty directory (so leftovers show)."""
  parent = tmp_path / "exports"
  parent.mkdir()
  return parent / "out"


def test_helpfull_documents_every_flag():
  result = run_export("--helpfull")  # absl exits 1 after printing help.
  for flag in ("model", "module_type", "version", "checkpoint_path", "export_dir", "overwrite"):
    assert re.search(rf"^  --(\[no\])?{flag}: \S", result.stdout, re.MULTILINE), flag


@pytest.mark.parametrize("flags, message_parts", [
    (dict(model="resnet_50"), ["unknown model 'resnet_50'", "nasnet_mobile"]),
    (dict(version="7"), ["unknown version 7", "published versions"]),
    (dict(version="2"), ["nasnet_mobile has no published version 2", "1, 3, 4, 5"]),
    (dict(module_type="segmentation"), ["module_type", "classification", "feature_vector"]),
], ids=["unknown-model", "unknown-version", "unpublished-version", "unknown-module-type"])
def test_unknown_names_fail_before_any_graph(export_dir, flags, message_parts):
  result = run_export(*export_flags(export_dir, **flags))
  assert_failed_writing_nothing(result, export_dir, *message_parts)


def test_missing_checkpoint(export_dir, tmp_path):
  missing = tmp_path / "nowhere" / "model.ckpt"
  result = run_export(*export_flags(export_dir, checkpoint_path=missing))
  assert_failed_writing_nothing(result, export_dir, f"checkpoint '{missing}' not found")


def test_existing_non_empty_export_dir_needs_overwrite(export_dir):
  export_dir.mkdir()
  (export_dir / "keep.txt").write_text("an earlier export")
  result = run_export(*export_flags(export_dir))
  assert result.returncode != 0
  assert "exists and is not empty" in result.stderr and "--overwrite" in result.stderr
  assert sorted(p.name for p in export_dir.parent.iterdir()) == ["out"]
  assert [p.name for p in export_dir.iterdir()] == ["keep.txt"]
  assert (export_dir / "keep.txt").read_text() == "an earlier export"


def test_another_models_checkpoint(export_dir, ckpt_factory):
  other = ckpt_factory("pnasnet_mobile")
  result = run_export(*export_flags(export_dir, checkpoint_path=other))
  assert_failed_writing_nothing(result, export_dir, "does not match the nasnet_mobile graph",
                                "variables are missing", "variables are not in the graph")


def _write_with_one_tensor_reshaped(source, target: pathlib.Path, name: str):
  """Copies a checkpoint, giving tensor `name` half its last dimension."""
  import tensorflow as tf
  reader = tf.train.load_checkpoint(str(source))
  names = sorted(reader.get_variable_to_shape_map())
  tensors = []
  for n in names:
    value = reader.get_tensor(n)
    tensors.append(value[..., : value.shape[-1] // 2] if n == name else value)
  target.parent.mkdir(parents=True, exist_ok=True)
  tf.raw_ops.SaveV2(prefix=str(target), tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=tensors)
  return target


def test_checkpoint_with_one_tensor_of_the_wrong_shape(export_dir, ckpt_factory, tmp_path):
  broken = _write_with_one_tensor_reshaped(ckpt_factory(MODEL), tmp_path / "broken" / "model.ckpt",
                                           "cell_3/1x1/weights")
  result = run_export(*export_flags(export_dir, checkpoint_path=broken))
  assert_failed_writing_nothing(result, export_dir, "1 have other shapes",
                                "cell_3/1x1/weights is [1, 1, 264, 22], graph [1, 1, 264, 44]")


def test_failed_verification_leaves_no_export_dir(export_dir, ckpt_factory, monkeypatch):
  """A written export that does not verify is deleted; --export_dir stays absent."""
  from exporters import formats
  written = []

  class UnverifiableWriter:
    def __init__(self, releases, checkpoint, log):
      pass

    def write(self, release, tmp_dir, log):
      (pathlib.Path(tmp_dir) / "saved_model.pb").write_bytes(b"not verified")
      written.append(tmp_dir)

    def verify(self, release, tmp_dir, reference, log):
      raise ExportError("inference output: the export differs from the Slim graph by 1")

    def close(self):
      pass

  monkeypatch.setattr(formats, "writer_for", lambda fmt: UnverifiableWriter)
  config = pipeline.ExportConfig(MODEL, "classification", 4, str(ckpt_factory(MODEL)),
                                   str(export_dir))
  with pytest.raises(ExportError, match="differs from the Slim graph"):
    pipeline.export(config, log=lambda message: None)
  assert written and not pathlib.Path(written[0]).exists()
  assert not export_dir.exists()
  assert list(export_dir.parent.iterdir()) == []


# ---- Bad destinations, and a quiet stderr: one `error:` line, nothing else.

def assert_one_error_line(result, *message_parts: str) -> str:
  """Exit 1 and stderr is exactly one `error:` line (no TensorFlow start-up lines)."""
  assert result.returncode == 1, result.stdout + result.stderr
  lines = result.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
  for part in message_parts:
    assert part in lines[0], f"{part!r} not in {lines[0]!r}"
  return lines[0]


def test_export_dir_under_a_regular_file(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("not a folder")
  result = run_export(*export_flags(a_file / "sub" / "out"))
  assert_one_error_line(result, f"'{a_file}' is not a directory")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
  assert a_file.read_text() == "not a folder"


@pytest.mark.skipif(not pathlib.Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("export_dir, message", [
    ("/proc/no_such_dir/out", "cannot create '/proc/no_such_dir' (for --export_dir)"),
    ("/proc/out", "cannot write into '/proc' (parent of --export_dir)"),
], ids=["missing-parent-in-proc", "parent-is-proc"])
def test_export_dir_under_proc(export_dir, message):
  result = run_export(*export_flags(export_dir))
  assert_one_error_line(result, message)
  assert not pathlib.Path(export_dir).exists()


def test_failed_export_removes_the_folders_it_created(tmp_path):
  """The parents of --export_dir it made are removed (only those) when the export fails."""
  (tmp_path / "kept").mkdir()
  export_dir = tmp_path / "kept" / "new" / "deeper" / "out"
  missing = tmp_path / "nowhere" / "model.ckpt"
  result = run_export(*export_flags(export_dir, checkpoint_path=missing))
  assert_one_error_line(result, f"checkpoint '{missing}' not found")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
  assert list((tmp_path / "kept").iterdir()) == []


def test_verbosity_brings_tensorflow_logging_back(tmp_path):
  from exporters import cli
  # A damaged index is found by TensorFlow's reader, so TensorFlow starts (and logs) first.
  prefix = tmp_path / "ckpt" / "model.ckpt"
  prefix.parent.mkdir()
  pathlib.Path(f"{prefix}.index").write_bytes(b"not an index")
  pathlib.Path(f"{prefix}.data-00000-of-00001").write_bytes(b"")
  result = run_export("--verbosity=1", *export_flags(tmp_path / "out", checkpoint_path=prefix))
  assert result.returncode == 1
  lines = result.stderr.splitlines()
  assert lines[-1].startswith("error: damaged index file"), result.stderr[-3000:]
  assert any(cli.TENSORFLOW_LOG_LINE.match(line) for line in lines[:-1]), result.stderr[-3000:]
  assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flags, message", [
    (["--module_type=logits"], "error: flag --module_type=logits: value should be one of "
                               "<classification|feature_vector>"),
    ([], "error: flag --module_type=None: Flag --module_type must have a value other than None."),
], ids=["bad_enum", "missing_flags"])
def test_a_bad_flag_is_a_one_line_usage_error(tmp_path, flags, message):
  result = run_export(f"--model={MODEL}", *flags)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message), result.stderr
  assert list(tmp_path.iterdir()) == []
