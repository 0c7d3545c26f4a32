r"""Converts one release's TF1 Hub format export into its TF.js deployment with the official converter.

  python -m exporters.tfjs --model=nasnet_mobile --module_type=classification --version=1 \
      --parent_dir=/tmp/nasnet_mobile_c1 --output_dir=/tmp/nasnet_mobile_c1_tfjs

Only the releases the registry gives a TF.js deployment ([tfjs]) are
converted; `make export-all` does this for all of them. The converter runs in
`.venv-tfjs` (`make tfjs-env`); see exporters/formats/tfjs.py.
"""
import sys

from absl import app, flags

from exporters import cli
from exporters.errors import ExportError

_MODEL = flags.DEFINE_string("model", None, "Model name from the registry, e.g. nasnet_mobile.",
                             required=True)
_MODULE_TYPE = flags.DEFINE_enum("module_type", None, ["classification", "feature_vector"],
                                 "The parent release's module type.", required=True)
_VERSION = flags.DEFINE_integer("version", None, "The parent release's version.", required=True)
_PARENT_DIR = flags.DEFINE_string("parent_dir", None, "The release's verified TF1 Hub format "
                                  "export.", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the graph model goes (model.json "
                                  "and its weight shards); an old one is replaced.",
                                  required=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  import registry
  from exporters.formats import tfjs
  try:
    reg = registry.default()
    deployment = reg.tfjs_deployment(
        reg.release(_MODEL.value, _MODULE_TYPE.value, _VERSION.value))
    model = tfjs.convert(_PARENT_DIR.value, _OUTPUT_DIR.value)
  except (ExportError, registry.RegistryError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"{deployment.handle}: wrote {model.output_dir}: {', '.join(model.files)} "
        f"({model.converted_by}, {model.seconds:.1f} s)")
  return 0


if __name__ == "__main__":
  cli.run(main)
