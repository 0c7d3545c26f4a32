"""Exports one published model version from a released TF-Slim checkpoint.

  python -m exporters.export --model=nasnet_mobile --module_type=classification \
      --version=4 --checkpoint_path=checkpoints/nasnet_mobile/model.ckpt \
      --export_dir=/tmp/nasnet_mobile_classification_4

The registry says which versions each model has and, per version, its format:
the TF1 Hub format (hub.Module; google's versions 1-3) or a TF2 SavedModel
(hub.KerasLayer; google's 4-5). pnasnet_mobile, which TF Hub never published,
has its own versions 1 (TF1 Hub format) and 2 (TF2) under another publisher.
"""
import sys

from absl import flags

import registry
from exporters import cli
from exporters.errors import ExportError

_MODEL = flags.DEFINE_string("model", None, "Model name from the registry, e.g. nasnet_mobile.",
                             required=True)
_MODULE_TYPE = flags.DEFINE_enum("module_type", None, list(registry.MODULE_TYPES),
                                 "What the model outputs: logits or the feature vector.",
                                 required=True)
_VERSION = flags.DEFINE_integer("version", None, "Published version number (the registry's versions of the model).",
                                required=True)
_CHECKPOINT_PATH = flags.DEFINE_string(
    "checkpoint_path", None, "Checkpoint prefix, e.g. checkpoints/nasnet_mobile/model.ckpt.",
    required=True)
_EXPORT_DIR = flags.DEFINE_string("export_dir", None,
                                  "Directory to create; written only once verified.",
                                  required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty --export_dir.")


def main(argv):
  del argv
  from exporters import pipeline  # Imports TensorFlow: after cli.run has set its logging up.
  config = pipeline.ExportConfig(
      model=_MODEL.value, module_type=_MODULE_TYPE.value, version=_VERSION.value,
      checkpoint_path=_CHECKPOINT_PATH.value, export_dir=_EXPORT_DIR.value,
      overwrite=_OVERWRITE.value)
  try:
    pipeline.export(config, log=lambda text: print(text, flush=True))
  except ExportError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  cli.run(main)
