"""The reference cache: the Slim reference's values of a checkpoint, kept between processes.

Each process below is a fresh Python (conftest.run_in_subprocess) with its own cache
folder, so the first one builds the reference and stores it, and the next one must
answer from the files alone, with the values the real reference computes.
"""
import os
import shutil

import numpy as np
import pytest

import registry
from tests.conftest import run_in_subprocess

MODEL = registry.default().model("nasnet_mobile")
NUM_CLASSES = registry.default().publisher.num_classes


def reference_values(checkpoint: str, cache_home: str) -> dict:
  """Every part a verifier asks for, from CachedReference, and whether the real reference
  was built."""
  os.environ["XDG_CACHE_HOME"] = cache_home
  from exporters.network.reference_cache import CachedReference
  reference = CachedReference(MODEL, NUM_CLASSES, checkpoint)
  try:
    found = {}
    for mode in ("inference", "training"):
      for name, value in reference.expected(training=mode == "training").items():
        found[f"{mode}/{name}"] = value
    for scope, value in reference.batch_means().items():
      found[f"batch_mean/{scope}"] = value
    for name, value in reference.regularization_losses().items():
      found[f"loss/{name}"] = np.float64(value)
    found["variables"] = np.array([f"{n}:{list(s)}" for n, s in reference.variables])
    found["built"] = np.array(reference.built)
  finally:
    reference.close()
  return found


def _differences(a: dict, b: dict) -> list[str]:
  """The parts that differ between two processes' values (none: the same bytes)."""
  keys = set(a) - {"built"}
  if keys != set(b) - {"built"}:
    return sorted(keys ^ (set(b) - {"built"}))
  return sorted(k for k in keys if not np.array_equal(a[k], b[k]))


@pytest.fixture(scope="module")
def checkpoint(ckpt_factory) -> str:
  return str(ckpt_factory("nasnet_mobile"))


def test_a_second_process_reads_what_the_first_stored(checkpoint, tmp_path):
  home = str(tmp_path / "cache")
  first = run_in_subprocess(reference_values, tmp_path / "first", checkpoint=checkpoint,
                            cache_home=home)
  second = run_in_subprocess(reference_values, tmp_path / "second", checkpoint=checkpoint,
                             cache_home=home)
  assert bool(first["built"]) and not bool(second["built"])
  # The second process answers with the first one's values exactly.
  assert _differences(second, first) == []
  assert len([k for k in first if k.startswith("batch_mean/")]) > 50
  assert len([k for k in first if k.startswith("loss/")]) > 100
  # A part that is not what was stored is computed again, the same.
  [folder] = (tmp_path / "cache" / "nasnet-hub-toolchain" / "references").iterdir()
  (folder / "inference.npz").write_bytes(b"not an npz")
  third = run_in_subprocess(reference_values, tmp_path / "third", checkpoint=checkpoint,
                            cache_home=home)
  # Only that part is computed again (the reference is built for it), and it is the same;
  # the other parts still come from the files.
  assert bool(third["built"]) and _differences(third, first) == []


def test_the_key_covers_the_checkpoint_bytes_and_the_model(checkpoint, tmp_path):
  from exporters.network.reference_cache import cache_key
  import dataclasses
  copy = tmp_path / "copy"
  shutil.copytree(os.path.dirname(checkpoint), copy)
  prefix = str(copy / os.path.basename(checkpoint))
  assert cache_key(MODEL, NUM_CLASSES, prefix) == cache_key(MODEL, NUM_CLASSES, checkpoint)
  [data] = [p for p in copy.iterdir() if ".data-" in p.name]
  raw = bytearray(data.read_bytes())
  raw[len(raw) // 2] ^= 1
  data.write_bytes(bytes(raw))
  assert cache_key(MODEL, NUM_CLASSES, prefix) != cache_key(MODEL, NUM_CLASSES, checkpoint)
  other = dataclasses.replace(MODEL, weight_decay=MODEL.weight_decay * 2)
  assert cache_key(other, NUM_CLASSES, checkpoint) != cache_key(MODEL, NUM_CLASSES, checkpoint)
  assert cache_key(MODEL, NUM_CLASSES + 1, checkpoint) != cache_key(MODEL, NUM_CLASSES,
                                                                     checkpoint)


@pytest.mark.slow
def test_the_verify_cli_answers_from_the_cache_and_a_wrong_cache_fails_it(nasnet_mobile_tree,
                                                                         tmp_path):
  """`python -m exporters.verify` takes the reference's values from the cache: with the
  logits stored there moved by 1e-3, an untouched release fails, naming them."""
  import subprocess
  import sys
  from exporters import export_tree
  from tests.conftest import REPO
  release = registry.default().release("nasnet_mobile", "classification", 5)
  prefix = str(nasnet_mobile_tree.checkpoint_dir / "nasnet_mobile" / "model.ckpt")
  home = tmp_path / "cache"
  run_in_subprocess(reference_values, tmp_path / "fill", checkpoint=prefix, cache_home=str(home))
  [folder] = (home / "nasnet-hub-toolchain" / "references").iterdir()
  with np.load(folder / "inference.npz") as arrays:
    stored = {name: arrays[name] for name in arrays.files}
  stored["logits"] = stored["logits"] + 1e-3
  np.savez(folder / "inference.npz", **stored)
  result = subprocess.run(
      [sys.executable, "-m", "exporters.verify", "--model=nasnet_mobile",
       "--module_type=classification", "--version=5", f"--checkpoint_path={prefix}",
       f"--export_dir={export_tree.export_path(nasnet_mobile_tree.export_dir, release)}"],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, XDG_CACHE_HOME=str(home)))
  assert result.returncode == 1, result.stdout
  [line] = result.stderr.strip().splitlines()
  assert line.startswith(f"error: {release.handle_with_version}: verification failed: ")
  assert line.endswith("inference output: differs from the reference by 0.001 (tolerance "
                       "0.0001)"), line
