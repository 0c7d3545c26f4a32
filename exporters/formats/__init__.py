"""Format writers and deployment converters.

A format writer says how a model's releases of one format are constructed, written and
verified; a deployment converter (one module per registry.DEPLOYMENT_KINDS kind) how a
deployment is converted from its parent release's export and checked by its client.

A writer is constructed once per model for all of that model's releases in
its format (`FormatConstructions`): it builds the network once per mode and
derives every release (module type, version) from those constructions. The
model run (exporters.pipeline) then asks it to write each release into a
temporary directory and to verify it, after reloading it with its client,
against the Slim reference.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Protocol

from registry import DEPLOYMENT_KINDS, SAVED_MODEL_2_FORMAT, TF1_HUB_FORMAT, Release

Log = Callable[[str], None]


class FormatConstructions(Protocol):
  """One model's network, constructed for one format; every release derived from it."""

  format: str

  def write(self, release: Release, export_dir: str, log: Log) -> None:
    """Writes `release` into the empty directory `export_dir`."""

  def verify(self, release: Release, export_dir: str, reference, log: Log) -> dict:
    """Loads `export_dir` with its client, checks it against `reference`; returns a report."""

  def close(self) -> None:
    """Frees the constructions (sessions, variables) before the next family is built."""


class FormatWriter(Protocol):
  def __call__(self, releases: list[Release], checkpoint, log: Log) -> FormatConstructions:
    """Constructs the network for `releases` (one model, this format) from the checkpoint."""


def writer_for(fmt: str) -> FormatWriter:
  """The registry's format name -> its writer."""
  if fmt == TF1_HUB_FORMAT:
    from exporters.formats.hub_module import HubModuleConstructions
    return HubModuleConstructions
  if fmt == SAVED_MODEL_2_FORMAT:
    from exporters.formats.saved_model_2 import SavedModel2Constructions
    return SavedModel2Constructions
  raise ValueError(f"no writer for format {fmt!r}")


def verifier_for(fmt: str) -> Callable[..., dict]:
  """The registry's format name -> its verify(release, export_dir, checkpoint, reference, log)."""
  if fmt == TF1_HUB_FORMAT:
    from exporters.formats.hub_module import verify
    return verify
  if fmt == SAVED_MODEL_2_FORMAT:
    from exporters.formats.saved_model_2 import verify
    return verify
  raise ValueError(f"no verifier for format {fmt!r}")


# ---- Deployment converters (exporters.export_tree.deployments drives them).

@dataclasses.dataclass(frozen=True)
class Converted:
  """One converted deployment in place."""
  output_dir: str
  files: tuple[str, ...]  # Its files, in the order its loader names them.
  converted_by: str  # The converter and its version, as the output or the tool states it.
  generated_by: str  # What the converter ran on (e.g. its TensorFlow version).
  seconds: float  # Converting and verifying.
  verification: dict | None = None  # What `verify` returned (None: no verify given).


@dataclasses.dataclass(frozen=True)
class DeploymentCard:
  """What a deployment kind's card must hold beyond the rules every deployment card shares
  (exporters.cards.card_validator.validate_deployment checks them)."""
  title_word: str  # Line 1: `# <title_word> <parent>/<variant>/<version>`.
  name: str  # How problems name the card ("a TF.js card").
  sections: tuple[str, ...]  # Its `## ` sections, in order.
  example: str  # A regular expression the card's usage example matches ...
  example_text: str  # ... and how a problem describes it.


@dataclasses.dataclass(frozen=True)
class ServeQuery:
  """How a hub serves a deployment kind: `GET <handle>[/<file>]?<parameter>=<value>`."""
  parameter: str  # "tfjs-format"
  value: str  # The one value served: "file".
  file: str | None  # The file it answers with; None: the one the path's last segment names.


class DeploymentConverter(Protocol):
  """A converter module: exporters/formats/<kind>.py."""

  CARD: DeploymentCard  # Its card's contract.
  CARD_FACTS: dict[str, str]  # What its card states that the converter decides (`converter.*`).
  SERVE_QUERY: ServeQuery  # How `serve` answers for it.
  CONVERTER_NAME: str  # "the TF.js converter", in progress lines and errors.
  VARIANTS: tuple[str, ...]  # The registry variants it makes ("default", "metadata").
  CLIENT_NAME: str  # Who verifies it: "the TF.js runtime (wasm)".
  OUTPUT_FILE: str  # The file whose presence says a converted output is in place.
  # The converter step's own code and pins (with its client's): its stamps' fingerprint.
  FINGERPRINT_SOURCES: tuple[str, ...]

  def environment_problem(self, tool: str, variants=()) -> str:
    """"" when `tool` (the converter, as configured) can make `variants`, else how to
    build it."""

  def runtime_problem(self) -> str:
    """"" when its client can verify here, else why not (then it is stamped unverified)."""

  def convert(self, parent_dir: str, output_dir: str, tool: str,
              verify: Callable[[str], dict] | None, variant: str) -> Converted:
    """Converts the parent's export into `output_dir` as `variant` (replaced whole; nothing
    left on a failure); `verify(tmp_dir)` runs before the rename."""

  def verify_release_deployment(self, model_dir: str, release: Release, expected: dict,
                                what: str, variant: str) -> dict:
    """The converted model in `model_dir` by its client against the Slim reference's
    outputs on the probe images; raises ExportError naming the difference."""


_CONVERTER_MODULES = {"tfjs": "exporters.formats.tfjs", "lite": "exporters.formats.lite"}
assert _CONVERTER_MODULES.keys() == DEPLOYMENT_KINDS.keys()


def converter_for(kind: str) -> DeploymentConverter:
  """A registry deployment kind -> its converter module."""
  if kind not in _CONVERTER_MODULES:
    raise ValueError(f"no converter for deployment kind {kind!r}")
  return importlib.import_module(_CONVERTER_MODULES[kind])
