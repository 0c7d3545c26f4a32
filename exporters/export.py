"""Exports one published model version from a released TF-Slim checkpoint.

  python -m exporters.export --model=nasnet_mobile --module_type=classification \
      --version=4 --checkpoint_path=checkpoints/nasnet_mobile/model.ckpt \
      --export_dir=/tmp/nasnet_mobile_classification_4

Versions 1-3 are written in the TF1 Hub format (hub.Module), 4-5 as TF2
SavedModels (hub.KerasLayer); the registry says which versions each model has.
"""
import sys

from absl import app, flags, logging

from exporters import pipeline
from exporters.errors import ExportError

_MODEL = flags.DEFINE_string("model", None, "Model name from the registry, e.g. nasnet_mobile.",
                             required=True)
_MODULE_TYPE = flags.DEFINE_enum("module_type", None, ["classification", "feature_vector"],
                                 "What the model outputs: logits or the feature vector.",
                                 required=True)
_VERSION = flags.DEFINE_integer("version", None, "Published version number (1-5).",
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
  config = pipeline.ExportConfig(
      model=_MODEL.value, module_type=_MODULE_TYPE.value, version=_VERSION.value,
      checkpoint_path=_CHECKPOINT_PATH.value, export_dir=_EXPORT_DIR.value,
      overwrite=_OVERWRITE.value)
  try:
    pipeline.export(config, log=logging.info)
  except ExportError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
