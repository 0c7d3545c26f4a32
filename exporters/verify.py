"""Verifies one release on disk against a checkpoint, as a model run does before it writes one.

  python -m exporters.verify --model=nasnet_mobile --module_type=classification --version=3 \
      --checkpoint_path=checkpoints/nasnet_mobile/model.ckpt \
      --export_dir=exports/google/imagenet/nasnet_mobile/classification/3

Exit status 0 with one summary line when the release reproduces the Slim
reference constructed from the checkpoint (exporters.verification's rules:
variables bitwise, every output within the tolerance, the training step's
moving averages and regularization losses); 1 with one `error:` line naming
what differs. The release may come from anywhere, e.g. a hub download.
"""
import os
import signal
import sys

from absl import app, flags

from exporters import cli
from exporters.errors import ExportError

_MODEL = flags.DEFINE_string("model", None, "Model name from the registry, e.g. nasnet_mobile.",
                             required=True)
_MODULE_TYPE = flags.DEFINE_string("module_type", None, "The release's module type, e.g. "
                                   "classification.", required=True)
_VERSION = flags.DEFINE_integer("version", None, "The release's version.", required=True)
_CHECKPOINT_PATH = flags.DEFINE_string(
    "checkpoint_path", None, "Checkpoint prefix, e.g. checkpoints/nasnet_mobile/model.ckpt.",
    required=True)
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "The release's directory.", required=True)


def _interrupted(signum, frame):
  # Verification writes nothing, so stopping at once is safe; a KeyboardInterrupt raised
  # inside TensorFlow's C++ would surface as another error with a traceback.
  print("interrupted: nothing was verified", file=sys.stderr, flush=True)
  os._exit(130)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  signal.signal(signal.SIGINT, _interrupted)
  from exporters.pipeline import verify_release  # Imports TensorFlow: after cli.run's set-up.
  config = verify_release.VerifyConfig(model=_MODEL.value, module_type=_MODULE_TYPE.value,
                                       version=_VERSION.value, checkpoint_path=_CHECKPOINT_PATH.value,
                                       export_dir=_EXPORT_DIR.value)
  try:
    result = verify_release.verify_release(config)
  except ExportError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(result.summary)
  return 0


if __name__ == "__main__":
  cli.run(main)
