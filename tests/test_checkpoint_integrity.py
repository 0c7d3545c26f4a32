"""A damaged checkpoint is refused with one line naming the file, the tensor and the problem.

Each damage a disk or a transfer can do to a checkpoint of the released layout
(../shared/checkpoints/make_ckpt.py's nasnet_mobile) goes through the real
`python -m exporters.export` CLI: exit code 1, one `error:` line that says what
and where, no traceback, and nothing left under the destination. The full read
(checkpoints.integrity) runs before any graph is constructed, so each case
costs a process start and one read. The damaged index and the verification's
refusal of non-finite reference values are checked in-process.
"""
from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from checkpoints import fetch_lib, integrity
from exporters.errors import ExportError
from exporters.network import reference
from tests.conftest import REPO

MODEL = "nasnet_mobile"
DATA = "model.ckpt.data-00000-of-00001"


def copy_checkpoint(prefix: pathlib.Path, out_dir: pathlib.Path) -> pathlib.Path:
  out_dir.mkdir(parents=True)
  for path in prefix.parent.glob(prefix.name + ".*"):
    shutil.copy(path, out_dir)
  return out_dir / prefix.name


def truncate_to_half(prefix: pathlib.Path):
  data = prefix.parent / DATA
  with open(data, "r+b") as f:
    f.truncate(data.stat().st_size // 2)


def overwrite_8_bytes_in_the_middle(prefix: pathlib.Path):
  data = prefix.parent / DATA
  with open(data, "r+b") as f:
    f.seek(data.stat().st_size // 2)
    f.write(b"ABCDEFGH")


def delete_data_file(prefix: pathlib.Path):
  (prefix.parent / DATA).unlink()


def nan_in_conv0_weights(prefix: pathlib.Path):
  """Rewrites the checkpoint with TensorFlow (valid checksums), one weight NaN, one Inf."""
  import tensorflow as tf
  reader = tf.train.load_checkpoint(str(prefix))
  names = sorted(reader.get_variable_to_shape_map())
  values = {n: reader.get_tensor(n) for n in names}
  weights = values["conv0/weights"].copy()
  weights.flat[0], weights.flat[1] = np.nan, np.inf
  values["conv0/weights"] = weights
  for path in prefix.parent.glob(prefix.name + ".*"):
    path.unlink()
  tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=[values[n] for n in names])


def run_export(checkpoint: pathlib.Path, export_dir: pathlib.Path) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, "-m", "exporters.export", f"--model={MODEL}",
       "--module_type=classification", "--version=4", f"--checkpoint_path={checkpoint}",
       f"--export_dir={export_dir}"],
      cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("damage, expected", [
    (truncate_to_half, r"truncated: {data} ends before the bytes of tensor \S+ \(Read less bytes"),
    (overwrite_8_bytes_in_the_middle,
     r"checksum mismatch: tensor \S+ in {data} is not the bytes the index vouches for"),
    (delete_data_file, r"missing data file: {data} \(holding tensor \S+\) does not exist"),
    (nan_in_conv0_weights,
     r"NaN and Inf in conv0/weights \(2 of 864 values not finite\) of checkpoint {prefix}"),
], ids=["truncated", "overwritten", "data_deleted", "nan"])
def test_damaged_checkpoint_is_refused_by_export(ckpt_factory, tmp_path, damage, expected):
  prefix = copy_checkpoint(ckpt_factory(MODEL), tmp_path / "ckpt")
  damage(prefix)
  exports = tmp_path / "exports"
  exports.mkdir()
  result = run_export(prefix, exports / "out")

  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, result.stderr[-3000:]
  pattern = expected.format(data=re.escape(str(prefix.parent / DATA)),
                            prefix=re.escape(str(prefix)))
  assert re.fullmatch(f"error: {pattern}.*", errors[0]), errors[0]
  assert list(exports.iterdir()) == [], "a failed export left files behind"


@pytest.mark.parametrize("damage, reason", [
    (lambda index: index.write_bytes(index.read_bytes()[:len(index.read_bytes()) // 2]),
     "not an sstable (bad magic number)"),
    (lambda index: index.write_bytes(_overwrite(index.read_bytes(), len(index.read_bytes()) // 2)),
     "block checksum mismatch"),
], ids=["truncated", "overwritten"])
def test_damaged_index_file(ckpt_factory, tmp_path, damage, reason):
  prefix = copy_checkpoint(ckpt_factory(MODEL), tmp_path / "ckpt")
  damage(prefix.parent / "model.ckpt.index")
  with pytest.raises(fetch_lib.CheckpointError) as err:
    integrity.read_fully(prefix)
  assert str(err.value) == (f"damaged index file: {prefix}.index cannot be read ({reason})")


def _overwrite(data: bytes, at: int) -> bytes:
  return data[:at] + b"ABCDEFGH" + data[at + 8:]


def test_an_intact_checkpoint_reads_whole(ckpt_factory):
  contents = integrity.read_fully(ckpt_factory(MODEL))
  assert set(contents.values) == set(contents.shapes)
  assert contents.shapes["conv0/weights"] == (3, 3, 3, 32)
  assert all(np.isfinite(v).all() for v in contents.values.values() if v.dtype.kind == "f")


def test_non_finite_is_named_by_kind():
  assert integrity.non_finite(np.ones(3, np.float32)) == ""
  assert integrity.non_finite(np.array([1.0, np.nan])) == "NaN"
  assert integrity.non_finite(np.float32(-np.inf)) == "Inf"
  assert integrity.non_finite([np.nan, np.inf]) == "NaN and Inf"
  assert integrity.non_finite(np.array([7], np.int64)) == ""  # global_step


# ---- Verification: a non-finite reference is refused before any comparison with it.

def test_non_finite_reference_outputs_are_refused_by_name():
  logits = np.zeros((3, 1001), np.float32)
  logits[1, 5] = np.nan
  features = np.zeros((3, 1056), np.float32)
  features[0, :2] = np.inf
  reference.check_finite_outputs({"logits": np.zeros(3), "features": np.zeros(3)}, "inference")
  with pytest.raises(ExportError) as err:
    reference.check_finite_outputs({"logits": logits, "features": features}, "training")
  assert str(err.value).startswith(
      "non-finite reference output in training mode: NaN in logits (1 of 3003 values); "
      "Inf in features (2 of 3168 values)")


def test_infinite_regularization_loss_is_refused_by_name():
  losses = {"conv0/weights": np.float32(0.25), "cell_0/comb_iter_0/left/weights": np.float32(1.0)}
  reference.check_finite_losses(losses)
  losses["conv0/weights"] = np.float32(np.inf)
  with pytest.raises(ExportError, match=r"^non-finite regularization loss in the Slim reference: "
                                        r"Inf for conv0/weights$"):
    reference.check_finite_losses(losses)
  losses.update({f"cell_{i}/weights": np.float32(np.nan) for i in range(4)})
  with pytest.raises(ExportError, match=r": NaN for cell_0/weights, NaN for cell_1/weights, "
                                        r"NaN for cell_2/weights and 2 more$"):
    reference.check_finite_losses(losses)


def test_export_verification_names_non_finite_values_before_comparing():
  """A NaN in what the client loaded is reported as a NaN, not as a difference."""
  import tensorflow  # noqa: F401  (the writers import it at module level)
  from exporters import verification
  from exporters.formats import hub_module
  import registry

  release = registry.default().release("nasnet_mobile", "classification", 3)
  stored = {"conv0/weights": np.array([1.0, np.nan], np.float32)}
  with pytest.raises(ExportError, match=r"verification failed: variables: non-finite values "
                                        r"in the variables: NaN in conv0/weights"):
    hub_module._check_values(release, "variables", stored, stored)
  with pytest.raises(ExportError, match=r"non-finite values in inference output: "
                                        r"Inf in the artifact's output"):
    verification.compare("inference output", np.array([1.0, np.inf]), np.array([1.0, 2.0]))
  # Finite values still go on to the comparison.
  assert verification.compare("x", np.array([1.0]), np.array([1.0])) == 0.0
