"""TensorFlow internals the exporters use (see tests/test_compat_internals.py).

- `fingerprinting_utils.write_fingerprint`: `tf.saved_model.save` writes
  `fingerprint.pb` from the saved_model.pb it wrote; after the exporters make
  saved_model.pb canonical (exporters.formats.canonical) its fingerprint must
  be computed again, by TensorFlow's own code, not a copy of it.
"""
from __future__ import annotations

import os
import uuid

FINGERPRINT_FILENAME = "fingerprint.pb"


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
