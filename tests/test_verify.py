"""The one verifier, shown to fail: real exports made wrong the way a writer bug would.

Each mutant is a copy of a real, verified nasnet_mobile release from the
session's export tree (conftest.nasnet_mobile_tree) with one thing changed in
its files; verification must reject it with a line naming what differs,
while the untouched release passes. Each case goes through `python -m
exporters.verify` (the CLI runs go one after another in the background while
the other tests run); the TF2 momentum rule and a directory the CLI cannot
load are checked too.
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

import registry
from exporters import formats, verification
from exporters.errors import ExportError
from exporters.formats import hub_module
from exporters.network import checkpoint_reader
from exporters.network.reference import SlimReference
from tests.conftest import REPO, run_command

REGISTRY = registry.default()
# A TF1 release with every signature kind (the *_with_bn_hparams ones) and a TF2 one.
TF1_RELEASE = REGISTRY.release("nasnet_mobile", "classification", 3)
TF2_RELEASE = REGISTRY.release("nasnet_mobile", "classification", 5)
OTHER_MOMENTUM = REGISTRY.release("nasnet_mobile", "classification", 1).version.batch_norm_momentum


@pytest.fixture(scope="module")
def checked(nasnet_mobile_tree, release_export):
  """`checked(release, export_dir)` -> report, or raises ExportError; one reference for all."""
  prefix = str(nasnet_mobile_tree.checkpoint_dir / "nasnet_mobile" / "model.ckpt")
  reference = SlimReference(TF1_RELEASE.model, REGISTRY.publisher.num_classes, prefix)
  checkpoint = checkpoint_reader.select("nasnet_mobile", checkpoint_reader.read_all(prefix),
                                        reference.variables)

  def check(release, export_dir):
    return formats.verifier_for(release.version.format)(release, export_dir, checkpoint,
                                                        reference, lambda _: None)
  yield check
  reference.close()


# ---- Mutations of the written files.

def _rewrite_variables(export_dir, change):
  """Rewrites variables/variables with `change(values)` applied, through TensorFlow's writer."""
  prefix = os.path.join(export_dir, "variables", "variables")
  reader = tf.train.load_checkpoint(prefix)
  values = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
  change(values)
  for name in os.listdir(os.path.dirname(prefix)):
    os.remove(os.path.join(os.path.dirname(prefix), name))
  names = sorted(values)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=[tf.constant(values[n]) for n in names])


def perturb_one_variable(name_filter):
  def change(values):
    name = sorted(n for n in values if name_filter(n))[0]
    values[name] = (values[name] * np.float32(1.0 + 1e-3)).astype(values[name].dtype)
  return change


def _edit_saved_model(export_dir, edit):
  path = os.path.join(export_dir, "saved_model.pb")
  saved_model = saved_model_pb2.SavedModel()
  with open(path, "rb") as f:
    saved_model.ParseFromString(f.read())
  for meta_graph in saved_model.meta_graphs:
    edit(meta_graph, frozenset(meta_graph.meta_info_def.tags))
  with open(path, "wb") as f:
    f.write(saved_model.SerializeToString())


def _nodes(meta_graph):
  return {node.name: node for node in meta_graph.graph_def.node}


def leave_out_input_scaling(meta_graph, tags):
  """The network reads the [0, 1] images as if they were [-1, 1] (no 2*x-1)."""
  nodes = _nodes(meta_graph)
  images = hub_module.IMAGES_INPUT
  scaled = next(n for n in nodes.values() if n.op == "Mul" and images in n.input)
  shifted = next(n for n in nodes.values() if n.op == "Sub" and scaled.name in n.input)
  for node in nodes.values():
    node.input[:] = [images if i == shifted.name else i for i in node.input]


def drop_classifier_bias(meta_graph, tags):
  """The classifier's BiasAdd becomes an Identity of its matmul."""
  bias_add = next(n for n in meta_graph.graph_def.node
                  if n.op == "BiasAdd" and "/FC/" in n.name)
  bias_add.op = "Identity"
  del bias_add.input[1:]
  for attr in list(bias_add.attr):
    if attr != "T":
      del bias_add.attr[attr]


def swap_logits_and_features(meta_graph, tags):
  signatures = meta_graph.signature_def
  logits = signatures["image_classification"].outputs["default"].name
  features = signatures["image_feature_vector"].outputs["default"].name
  signatures["image_classification"].outputs["default"].name = features
  signatures["image_feature_vector"].outputs["default"].name = logits
  signatures["image_classification"].outputs["default"].tensor_shape.dim[1].size = -1
  signatures["image_feature_vector"].outputs["default"].tensor_shape.dim[1].size = -1


def momentum_default_of_another_version(meta_graph, tags):
  node = _nodes(meta_graph)[hub_module.MOMENTUM_DEFAULT]
  node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(OTHER_MOMENTUM, tf.float32))


def drop_one_regularization_loss(meta_graph, tags):
  losses = meta_graph.collection_def[tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES]
  if losses.node_list.value:
    del losses.node_list.value[0]


TF1_MUTANTS = {
    "variable_perturbed": (
        lambda d: _rewrite_variables(d, perturb_one_variable(lambda n: n.endswith("/weights"))),
        r"variables/variables: 1 variable\(s\) differ from the checkpoint: \S+/weights"),
    "input_scaling_left_out": (
        lambda d: _edit_saved_model(d, leave_out_input_scaling),
        r"signature 'default': differs from the reference by"),
    "classifier_bias_dropped": (
        lambda d: _edit_saved_model(d, drop_classifier_bias),
        r"signature 'default': differs from the reference by"),
    "logits_and_features_swapped": (
        lambda d: _edit_saved_model(d, swap_logits_and_features),
        r"signature 'image_classification': the artifact gives shape \[2, 1056\], the "
        r"reference \[2, 1001\]"),
    "momentum_default_of_version_1": (
        lambda d: _edit_saved_model(d, momentum_default_of_another_version),
        r"does not move the moving means by the version's batch-norm momentum 0\.99 "),
    "regularization_loss_missing": (
        lambda d: _edit_saved_model(d, drop_one_regularization_loss),
        r"REGULARIZATION_LOSSES: 356 regularization losses, the reference has 357"),
}

TF2_MUTANTS = {
    "variable_perturbed": (
        lambda d: _rewrite_variables(d, perturb_one_variable(
            lambda n: n.startswith("variables/") and n.endswith("VARIABLE_VALUE"))),
        r"the exported variables: 1 variable\(s\) differ from the checkpoint: \S+"),
}


def test_the_tf2_momentum_default_is_what_verification_checks(checked, release_export, tmp_path,
                                                              monkeypatch):
  """A TF2 release whose default momentum is another version's fails the training-step check:
  the verifier is told the version's momentum is version 1's."""
  import dataclasses
  wrong = dataclasses.replace(TF2_RELEASE, version=dataclasses.replace(
      TF2_RELEASE.version, batch_norm_momentum=OTHER_MOMENTUM))
  with pytest.raises(verification.VerificationError,
                     match=rf"batch-norm momentum {OTHER_MOMENTUM} "):
    checked(wrong, release_export(TF2_RELEASE).export_dir)


def _cli_command(release, export_dir, checkpoint_prefix) -> list[str]:
  return [sys.executable, "-m", "exporters.verify", f"--model={release.model.name}",
          f"--module_type={release.module_type}", f"--version={release.version.number}",
          f"--checkpoint_path={checkpoint_prefix}", f"--export_dir={export_dir}"]


def _cli(release, export_dir, checkpoint_prefix):
  return subprocess.run(_cli_command(release, export_dir, checkpoint_prefix), cwd=REPO,
                        capture_output=True, text=True, timeout=600)


# `python -m exporters.verify` on each untouched release and on each mutant of its files.
CLI_CASES = {
    "tf1-untouched": (TF1_RELEASE, None), "tf2-untouched": (TF2_RELEASE, None),
    **{f"tf1-{m}": (TF1_RELEASE, m) for m in sorted(TF1_MUTANTS)},
    **{f"tf2-{m}": (TF2_RELEASE, m) for m in sorted(TF2_MUTANTS)},
}


def start_in_background(background, tmp_path_factory, selected: set):
  """Every case's CLI run, once nasnet_mobile's tree is made: the mutants are made, then
  the runs go one after another beside the other tests (conftest.background_exports calls
  this at the session's start); the case tests (marked late) read them."""
  if "test_cli_exit_status_and_one_line" not in selected:
    return None
  root = tmp_path_factory.mktemp("verify_cli")

  def run_cases() -> dict:
    from exporters import export_tree
    tree = background.tree.result()
    prefix = tree.checkpoint_dir / "nasnet_mobile" / "model.ckpt"
    commands = {}
    for case, (release, mutant) in CLI_CASES.items():
      export_dir = str(export_tree.export_path(tree.export_dir, release))
      if mutant:
        mutants = TF1_MUTANTS if release.version.format == "hub" else TF2_MUTANTS
        shutil.copytree(export_dir, root / case)
        export_dir = str(root / case)
        mutants[mutant][0](export_dir)
      commands[case] = _cli_command(release, export_dir, prefix)
    return {case: run_command(argv, 600) for case, argv in commands.items()}
  return background.task(run_cases)


@pytest.fixture(scope="session")
def cli_runs(background_exports):
  return background_exports.started[__name__]


@pytest.mark.late
@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_exit_status_and_one_line(case, cli_runs, nasnet_mobile_tree):
  """An untouched release passes (exit 0, one summary line); each mutant is rejected (exit
  1, one `error:` line naming the difference)."""
  release, mutant = CLI_CASES[case]
  result = cli_runs.result()[case]
  if mutant is None:
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{release.handle_with_version}: verified: every output "
                                    f"within "), result.stdout
    assert result.stdout.count("\n") == 1 and not result.stderr.strip()
  else:
    mutants = TF1_MUTANTS if release.version.format == "hub" else TF2_MUTANTS
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {release.handle_with_version}: verification failed: "), result.stderr
    assert re.search(mutants[mutant][1], lines[0]), lines[0]


def test_cli_refuses_what_it_cannot_read_in_one_line(nasnet_mobile_tree, tmp_path):
  prefix = nasnet_mobile_tree.checkpoint_dir / "nasnet_mobile" / "model.ckpt"
  (tmp_path / "empty").mkdir()
  result = _cli(TF2_RELEASE, tmp_path / "empty", prefix)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      f"error: {TF2_RELEASE.handle_with_version}: verification failed: the client cannot "
      f"load "), result.stderr
  # An absent directory is refused before any work, by the same verify_release the CLI runs
  # (how the CLI prints an ExportError is shown above), so in-process.
  from exporters.pipeline import verify_release as release_lib
  with pytest.raises(ExportError, match=r"^--export_dir '.*absent' is not a directory$"):
    release_lib.verify_release(release_lib.VerifyConfig(
        model="nasnet_mobile", module_type=TF2_RELEASE.module_type,
        version=TF2_RELEASE.version.number, checkpoint_path=str(prefix),
        export_dir=str(tmp_path / "absent")))
