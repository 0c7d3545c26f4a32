r"""Converts one release's TF1 Hub format export into its TF.js deployment with the official converter.

  python -m exporters.tfjs --model=nasnet_mobile --module_type=classification --version=1 \
      --parent_dir=/tmp/nasnet_mobile_c1 --output_dir=/tmp/nasnet_mobile_c1_tfjs \
      --checkpoint_path=checkpoints/nasnet_mobile/model.ckpt

Only the releases the registry gives a TF.js deployment ([deployments.tfjs]) are
converted; `make export-all` does this for all of them. The converter runs in
`.venv-tfjs` (`make tfjs-env`); see exporters/formats/tfjs.py. With
--checkpoint_path the graph model is verified before it is put in place, as
export-all does: the real TF.js runtime (exporters/tfjs_runtime, `make
tfjs-runtime`) runs it on the probe images and its output must match the Slim
reference's from that checkpoint; without it, it is converted and not verified.
"""
import sys

from absl import app, flags

import registry
from exporters import cli
from exporters.errors import ExportError

_MODEL = flags.DEFINE_string("model", None, "Model name from the registry, e.g. nasnet_mobile.",
                             required=True)
_MODULE_TYPE = flags.DEFINE_enum("module_type", None, list(registry.MODULE_TYPES),
                                 "The parent release's module type.", required=True)
_VERSION = flags.DEFINE_integer("version", None, "The parent release's version.", required=True)
_PARENT_DIR = flags.DEFINE_string("parent_dir", None, "The release's verified TF1 Hub format "
                                  "export.", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the graph model goes (model.json "
                                  "and its weight shards); an old one is replaced.",
                                  required=True)
_CHECKPOINT_PATH = flags.DEFINE_string(
    "checkpoint_path", None, "The model's checkpoint prefix, e.g. "
    "checkpoints/nasnet_mobile/model.ckpt: verify the graph model in the TF.js runtime against "
    "the Slim reference before it is put in place (needs `make tfjs-runtime`).")
_BACKEND = flags.DEFINE_enum("backend", "wasm", ["wasm", "cpu"],
                             "The TF.js backend that verifies it.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  import registry
  from exporters.formats import tfjs
  references = []  # The Slim reference, once verify built it.
  try:
    reg = registry.default()
    release = reg.release(_MODEL.value, _MODULE_TYPE.value, _VERSION.value)
    deployment = reg.deployment(release, kind="tfjs")
    verify = None
    if _CHECKPOINT_PATH.value:
      problem = tfjs.runtime_problem()
      if problem:
        raise ExportError(f"cannot verify: {problem}")
      verify = _verifier(release, deployment, _CHECKPOINT_PATH.value, _BACKEND.value,
                         references)
    model = tfjs.convert(_PARENT_DIR.value, _OUTPUT_DIR.value, verify=verify)
  except (ExportError, registry.RegistryError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  finally:
    for reference in references:
      reference.close()
  if model.verification:
    checked = (f"verified in TF.js {model.verification['backend']}, max abs diff "
               f"{model.verification['max_abs_diff']:.2g}")
  else:
    checked = "not verified: no --checkpoint_path"
  print(f"{deployment.handle}: wrote {model.output_dir}: {', '.join(model.files)} "
        f"({model.converted_by}, {checked}, {model.seconds:.1f} s)")
  return 0


def _verifier(release, deployment, checkpoint_path: str, backend: str, references: list):
  """verify(model_dir) comparing the TF.js output with the Slim reference's, which it builds
  (into `references`) when the converted model is there to verify."""
  from exporters.formats import tfjs
  from exporters.network import reference as reference_lib

  def verify(model_dir: str) -> dict:
    if not references:
      references.append(reference_lib.SlimReference(
          release.model, release.registry.publisher.num_classes, checkpoint_path))
    return tfjs.verify_release_deployment(model_dir, release, references[0].expected(),
                                          deployment.handle, backend=backend)
  return verify


if __name__ == "__main__":
  cli.run(main)
