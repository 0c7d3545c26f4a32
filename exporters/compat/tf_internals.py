"""TensorFlow internals the exporters use (see tests/test_compat_internals.py).

- `save_context.save_context`: `tf.saved_model.save` traces again, inside
  its save context, every function it saves, because TensorFlow keys its
  trace cache by the variable policy of the context it traces in. The TF2
  writer traces the network inside the same context, so that each of the
  model's releases reuses the traces instead of constructing the network
  again (tests/test_compat_internals.py checks that it is the save context).
- `fingerprinting_utils.write_fingerprint`: `tf.saved_model.save` writes
  `fingerprint.pb` from the saved_model.pb it wrote; after the exporters make
  saved_model.pb canonical (exporters.formats.canonical) its fingerprint must
  be computed again, by TensorFlow's own code, not a copy of it.
- `TENSORFLOW_LOG_LINE`: the form of TensorFlow's C++ log lines, which the
  command lines filter from what a user sees (exporters.cli, export_all's
  worker output).
"""
from __future__ import annotations

import contextlib
import os
import re
import uuid

# TensorFlow's C++ log lines ("I0000 00:00:17.. port.cc:153] ...") and absl's preamble.
TENSORFLOW_LOG_LINE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\S+\s+\d+ \S+:\d+\] |WARNING: All log messages before absl)")

FINGERPRINT_FILENAME = "fingerprint.pb"


@contextlib.contextmanager
def saving_context():
  """Traces made in here are the ones `tf.saved_model.save(obj, path)` looks up."""
  import tensorflow as tf
  from tensorflow.python.saved_model import save_context

  with save_context.save_context(tf.saved_model.SaveOptions()):
    yield


def write_fingerprint(export_dir: str) -> None:
  """(Re)writes `fingerprint.pb` for the SavedModel in `export_dir`, with a stable uuid.

  TensorFlow puts a random uuid into the fingerprint; published versions are
  compared by their bytes, so the uuid is derived from the fingerprint's own
  content hashes instead.
  """
  from tensorflow.core.protobuf import fingerprint_pb2
  from tensorflow.python.saved_model import fingerprinting_utils

  fingerprinting_utils.write_fingerprint(export_dir)
  path = os.path.join(export_dir, FINGERPRINT_FILENAME)
  fingerprint = fingerprint_pb2.FingerprintDef()
  with open(path, "rb") as f:
    fingerprint.ParseFromString(f.read())
  fingerprint.uuid = str(uuid.uuid5(uuid.NAMESPACE_OID, (
      f"{fingerprint.saved_model_checksum}/{fingerprint.graph_def_program_hash}/"
      f"{fingerprint.signature_def_hash}/{fingerprint.saved_object_graph_hash}/"
      f"{fingerprint.checkpoint_hash}")))
  with open(path, "wb") as f:
    f.write(fingerprint.SerializeToString(deterministic=True))
