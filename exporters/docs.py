"""Generates the model cards (Markdown docs) of every published release.

  python -m exporters.docs --output_dir=docs           # (re)write docs/
  python -m exporters.docs --output_dir=docs --check   # exit 1 if docs/ is stale
  python -m exporters.docs --output_dir=/tmp/d --models=nasnet_large --versions=5
  python -m exporters.docs --output_dir=/tmp/d --card_schema=2021-06   # the hub's current schema

Writes `<output_dir>/google/models/imagenet/<model>/<module type>/<version>.md`
from registry/models.toml and exporters/cards/templates/; every card is validated
before anything is written. The logic lives in exporters/cards/docs_lib.py.
"""
from __future__ import annotations

import pathlib
import sys

from absl import app
from absl import flags

import registry
from exporters.cards import card_validator
from exporters.cards import docs_lib
from exporters import cli
from exporters import release_flags
from exporters.errors import ExportError

_OUTPUT_DIR = flags.DEFINE_string("output_dir", "docs", "Root of the generated docs tree.")
_TITLE_STYLE = flags.DEFINE_enum(
    "title_style", "plain", docs_lib.TITLE_STYLES,
    "plain: '# Module google/imagenet/...'; zwnj: '&zwnj;' after each '/' of the handle "
    "(an older rendering convention).")
_CARD_SCHEMA = flags.DEFINE_string(
    "card_schema", None,
    "The card metadata schema, a [card_schemas] name in registry/models.toml: 2021-04 (display "
    "names, module-type; the published cards until May 2021) or 2021-06 (the hub's tag ids, "
    "task). Default: the registry's [cards] default_schema.")
_CHECK = flags.DEFINE_bool(
    "check", False, "Write nothing; exit 1 if the tree on disk differs from a fresh generation.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  filters = release_flags.parsed()
  try:  # Flag values the registry does not know are usage errors.
    reg = registry.default()
    reg.card_schema(_CARD_SCHEMA.value)
    list(reg.releases(filters.models, filters.module_types, filters.versions))
  except registry.RegistryError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  config = docs_lib.DocsConfig(
      output_dir=pathlib.Path(_OUTPUT_DIR.value), title_style=_TITLE_STYLE.value,
      models=filters.models, module_types=filters.module_types,
      versions=filters.versions, check=_CHECK.value, card_schema=_CARD_SCHEMA.value)
  try:
    result = docs_lib.run(config)
  except (registry.RegistryError, card_validator.CardError, ExportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  verb = ("would write", "would remove") if config.check else ("wrote", "removed")
  for path in result.changed:
    print(f"{verb[0]} {config.output_dir / path}")
  for path in result.removed:
    print(f"{verb[1]} {config.output_dir / path}")
  print(f"{len(result.cards)} cards validated (card schema {result.card_schema}); "
        f"{len(result.changed)} changed, "
        f"{len(result.removed)} removed under {config.output_dir}")
  if config.check and not result.up_to_date:
    print(f"error: {config.output_dir} is out of date; run `make docs`", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  cli.run(main)
