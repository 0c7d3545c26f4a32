"""The contract every model card must meet before it is written or published.

The hub parses a card's first lines and its `<!-- key: value -->` metadata, so
a card that breaks them is rejected or mis-filed there; checking here names the
problem while the fix is still a registry or template edit. The contract, in
the card schema it is checked against (the registry's `[card_schemas]`: which
keys exist, are required or may repeat, and their allowed values):

  * line 1: `# Module <publisher>/<name>/<version>` (path segments may carry
    `&zwnj;` after each `/`, an older rendering convention);
  * line 2: a one-line description ending in a period;
  * before the first section, only blank lines and metadata lines, with every
    required key, no unknown key, no repeated key the schema does not allow to
    repeat, only allowed values, and the module-type tag (`module-type` or
    `task`) of the handle's module type;
  * the `## ` sections of its format, in order; a changelog, if any, lists
    versions in ascending order up to the card's own;
  * balanced code fences, no unrendered template syntax, a final newline.

A placeholder model page (`validate_placeholder`) and a publisher page
(`validate_publisher_page`) have their own; `validate_tree` checks what only the
whole docs tree can show: every publisher has its page, every deployment's parent
its card.

A deployment's card (`validate_deployment`) has its own, shorter contract:
line 1 `# <Word> <parent publisher>/<name>/<parent version>/<variant>/<version>`,
the one-line description, metadata with the schema's `deployment_required` keys
(`asset-path`, `parent-model`) where `parent-model` names the title's parent,
and its kind's sections and usage example (its converter module's CARD: for TF.js `#
Tfjs`, `## Origin` and `## Example use`, `tf.loadGraphModel(..., { fromTFHub:
true })`; for TFLite `# Lite`, the five sections and the Java Interpreter).
"""
from __future__ import annotations

import dataclasses
import re

import registry

# The `## ` sections of each format, in card order; optional ones may be absent.
SECTIONS = {
    registry.TF1_HUB_FORMAT: (
        ("hub.Module for TF1", False), ("Overview", True), ("Training", True),
        ("Usage", True), ("Fine-tuning", True), ("Changelog", False)),
    registry.SAVED_MODEL_2_FORMAT: (
        ("TF2 SavedModel", True), ("Overview", True), ("Training", True),
        ("Usage", True), ("Fine-tuning", True), ("Changelog", False)),
}

_TITLE = re.compile(r"# Module (?P<name>[a-z0-9_-]+(?:/(?:&zwnj;)?[a-z0-9_-]+)+)/(?P<version>[1-9][0-9]*)")
_DEPLOYMENT_TITLE = re.compile(
    r"# (?P<word>[A-Z][a-z]+) (?P<parent>[a-z0-9_-]+(?:/[a-z0-9_-]+)+/[1-9][0-9]*)"
    r"/(?P<variant>[a-z0-9_-]+)/(?P<version>[1-9][0-9]*)")
_METADATA = re.compile(r"<!-- (?P<key>[a-z-]+): (?P<value>.*?) -->")
_CHANGELOG_VERSION = re.compile(r"#### Version (?P<version>[0-9]+)")


class CardError(ValueError):
  """A card breaks the contract; the message lists every problem found."""

  def __init__(self, where: str, problems: list[str]):
    self.where = where
    self.problems = list(problems)
    super().__init__(f"{where}: card breaks the card contract:\n  - " + "\n  - ".join(problems))


def validate(text: str, handle: str | None = None,
             schema: registry.CardSchema | None = None) -> list[str]:
  """Returns the contract's problems with `text` (empty when it is a valid card).

  `handle`, if given (`google/imagenet/nasnet_mobile/classification/4`), is
  the release the card must describe; `schema` is the card schema whose
  metadata rules apply (None: the shipped registry's default schema).
  """
  schema = schema or registry.default().card_schema()
  problems = _text_problems(text)
  lines = text.split("\n")

  title = _TITLE.fullmatch(lines[0])
  title_name = None
  if not title:
    problems.append(f"line 1 must read '# Module <publisher>/<name>/<version>', got {lines[0]!r}")
  else:
    title_name = title["name"].replace("&zwnj;", "")
    title_handle = f"{title_name}/{title['version']}"
    if handle is not None and title_handle != handle:
      problems.append(f"line 1 names {title_handle!r}, but the card is for {handle!r}")

  description = lines[1] if len(lines) > 1 else ""
  if not description.strip() or description.startswith(("#", "<!--")) or not description.endswith("."):
    problems.append(f"line 2 must be a one-line description ending in '.', got {description!r}")

  metadata = _read_metadata(lines, problems)
  problems.extend(_check_metadata(metadata, title_name, schema))
  sections = [line[3:] for _, line in _outside_code(lines) if line.startswith("## ")]
  problems.extend(_check_sections(sections, metadata.get("format", [None])[0]))
  version = int(title["version"]) if title else None
  problems.extend(_check_changelog(lines, version))
  if sum(1 for line in lines if line.startswith("```")) % 2:
    problems.append("unbalanced ``` code fences")
  return problems


def _text_problems(text: str) -> list[str]:
  """What every card must be as text: newline-terminated, fully rendered."""
  problems = []
  if not text.endswith("\n"):
    problems.append("the card must end with a newline")
  for marker in ("{{", "{%", "{#"):
    if marker in text:
      problems.append(f"unrendered template syntax {marker!r} (a template bug)")
  return problems


def validate_deployment(text: str, kind: str, handle: str | None = None,
                        schema: registry.CardSchema | None = None) -> list[str]:
  """The contract's problems with the card of a deployment of `kind` (see the module
  docstring).

  `handle`, if given, is the title's (`google/imagenet/nasnet_mobile/classification/1/default/1`).
  """
  schema = schema or registry.default().card_schema()
  from exporters import formats
  card = formats.converter_for(kind).CARD
  word = card.title_word
  problems = _text_problems(text)
  lines = text.split("\n")
  title = _DEPLOYMENT_TITLE.fullmatch(lines[0])
  if not title or title["word"] != word:
    problems.append(f"line 1 must read '# {word} <publisher>/<name>/<parent version>/"
                    f"<variant>/<version>', got {lines[0]!r}")
    title = None
  elif handle is not None and lines[0] != f"# {word} {handle}":
    problems.append(f"line 1 names {lines[0][len(word) + 3:]!r}, but the card is for "
                    f"{handle!r}")
  description = lines[1] if len(lines) > 1 else ""
  if not description.strip() or description.startswith(("#", "<!--")) or not description.endswith("."):
    problems.append(f"line 2 must be a one-line description ending in '.', got {description!r}")
  metadata = _read_metadata(lines, problems)
  for key in schema.deployment_required:
    if key not in metadata:
      problems.append(f"metadata lacks required key {key!r} of {card.name} "
                      f"(card schema {schema.name})")
  problems.extend(_check_metadata(metadata, None, schema, required=()))
  parents = metadata.get("parent-model", [])
  if title and parents and parents != [title["parent"]]:
    problems.append(f"metadata parent-model {parents[0]!r} is not the title's parent "
                    f"{title['parent']!r}")
  sections = [line[3:] for _, line in _outside_code(lines) if line.startswith("## ")]
  if tuple(sections) != card.sections:
    problems.append(f"{card.name} has the sections {', '.join(card.sections)} in this order, "
                    f"got {', '.join(sections) or 'none'}")
  if not re.search(card.example, text):
    problems.append(f"the example must load the model with {card.example_text}")
  if sum(1 for line in lines if line.startswith("```")) % 2:
    problems.append("unbalanced ``` code fences")
  return problems


_PLACEHOLDER_TITLE = re.compile(r"# Placeholder (?P<handle>[a-z0-9_-]+(?:/[a-z0-9_-]+)+/[1-9][0-9]*)")
PLACEHOLDER_SECTIONS = ("Overview", "References")
_PUBLISHER_TITLE = re.compile(r"# Publisher (?P<name>[a-z0-9_-]+)")
_ICON = re.compile(r"\[!\[Icon URL\]\]\(https?://\S+\)")


def validate_placeholder(text: str, handle: str | None = None,
                         schema: registry.CardSchema | None = None) -> list[str]:
  """The contract's problems with a placeholder model page's card: line 1
  `# Placeholder <publisher>/<name>/<version>`, the one-line description, metadata
  with the schema's task key (`module-type`, `task`) and no deployment's key, the
  sections Overview and References."""
  schema = schema or registry.default().card_schema()
  problems = _text_problems(text)
  lines = text.split("\n")
  title = _PLACEHOLDER_TITLE.fullmatch(lines[0])
  if not title:
    problems.append(f"line 1 must read '# Placeholder <publisher>/<name>/<version>', got "
                    f"{lines[0]!r}")
  elif handle is not None and title["handle"] != handle:
    problems.append(f"line 1 names {title['handle']!r}, but the card is for {handle!r}")
  description = lines[1] if len(lines) > 1 else ""
  if not description.strip() or description.startswith(("#", "<!--")) or not description.endswith("."):
    problems.append(f"line 2 must be a one-line description ending in '.', got {description!r}")
  metadata = _read_metadata(lines, problems)
  task = schema.key("module-type")
  problems.extend(_check_metadata(metadata, None, schema, required=(task,)))
  for key in schema.deployment_required:
    if key in metadata and key not in schema.required:
      problems.append(f"metadata {key!r} belongs on a deployment's card, not a placeholder's")
  sections = [line[3:] for _, line in _outside_code(lines) if line.startswith("## ")]
  if tuple(sections) != PLACEHOLDER_SECTIONS:
    problems.append(f"a placeholder card has the sections {', '.join(PLACEHOLDER_SECTIONS)} "
                    f"in this order, got {', '.join(sections) or 'none'}")
  return problems


def validate_publisher_page(text: str, publisher: str | None = None) -> list[str]:
  """The contract's problems with a publisher page: line 1 `# Publisher <name>`, its
  display name on line 2, before the first section only blank lines and an optional
  `[![Icon URL]](<url>)` line, and at least one `## ` section."""
  problems = _text_problems(text)
  lines = text.split("\n")
  title = _PUBLISHER_TITLE.fullmatch(lines[0])
  if not title:
    problems.append(f"line 1 must read '# Publisher <name>', got {lines[0]!r}")
  elif publisher is not None and title["name"] != publisher:
    problems.append(f"line 1 names publisher {title['name']!r}, but the page is {publisher!r}'s")
  name = lines[1] if len(lines) > 1 else ""
  if not name.strip() or name.startswith(("#", "<!--", "[")):
    problems.append(f"line 2 must be the publisher's display name, got {name!r}")
  body = [n for n, line in enumerate(lines) if line.startswith("#")][1:2]
  for n in range(2, body[0] if body else len(lines)):
    if lines[n].strip() and not _ICON.fullmatch(lines[n]):
      problems.append(f"line {n + 1}: only an icon line '[![Icon URL]](<url>)' may come "
                      f"before the first section, got {lines[n]!r}")
  if not any(line.startswith("## ") for line in lines):
    problems.append("the page has no '## ' section")
  return problems


def validate_tree(texts: dict[str, str]) -> list[str]:
  """The rules a whole docs tree (relative path -> text) must meet beyond each card's:
  every publisher a card is filed under has its page (`<publisher>/<publisher>.md`),
  and every deployment's `parent-model` has its card in the tree
  (`<publisher>/models/<rest of the handle>/<version>.md`)."""
  problems = []
  pages = {p for p in texts if p.count("/") == 1 and p == f"{p.split('/')[0]}/{p.split('/')[0]}.md"}
  for publisher in sorted({p.split("/")[0] for p in texts} - {p.split("/")[0] for p in pages}):
    problems.append(f"{publisher}/: the publisher has no page {publisher}/{publisher}.md")
  for path, text in sorted(texts.items()):
    for line in text.split("\n"):
      match = _METADATA.fullmatch(line)
      if match and match["key"] == "parent-model":
        publisher, rest = (match["value"].split("/", 1) + [""])[:2]
        parent_card = f"{publisher}/models/{rest}.md"
        if parent_card not in texts:
          problems.append(f"{path}: its parent-model {match['value']!r} has no card "
                          f"{parent_card} in the tree")
  return problems


def check(text: str, handle: str | None = None, where: str = "card",
          schema: registry.CardSchema | None = None) -> str:
  """Returns `text` if it is a valid card; raises CardError listing every problem."""
  problems = validate(text, handle, schema)
  if problems:
    raise CardError(where, problems)
  return text


def _outside_code(lines: list[str]):
  """(line number, line) for the lines outside ``` fences."""
  in_code = False
  for n, line in enumerate(lines):
    if line.startswith("```"):
      in_code = not in_code
    elif not in_code:
      yield n, line


def _read_metadata(lines: list[str], problems: list[str]) -> dict[str, list[str]]:
  """The metadata between the description and the first section: key -> values."""
  metadata = {}
  for n in range(2, len(lines)):
    line = lines[n]
    if line.startswith("## "):
      return metadata
    if not line.strip():
      continue
    match = _METADATA.fullmatch(line)
    if not match:
      problems.append(f"line {n + 1}: only metadata lines '<!-- key: value -->' may come "
                      f"before the first section, got {line!r}")
      continue
    metadata.setdefault(match["key"], []).append(match["value"])
  problems.append("the card has no '## ' section")
  return metadata


def _check_metadata(metadata: dict[str, list[str]], title_name: str | None,
                    schema: registry.CardSchema, required=None) -> list[str]:
  problems = []
  for key in schema.required if required is None else required:
    if key not in metadata:
      problems.append(f"metadata lacks required key {key!r} (card schema {schema.name})")
  for key, values in metadata.items():
    if key not in schema.keys:
      problems.append(f"unknown metadata key {key!r} in card schema {schema.name}; known keys: "
                      f"{', '.join(schema.keys)}")
      continue
    if len(values) > 1 and key not in schema.repeatable:
      problems.append(f"metadata key {key!r} is repeated")
    allowed = schema.keys[key]
    for value in values:
      if not value.strip():
        problems.append(f"metadata {key!r} is empty")
      elif allowed and value not in allowed:
        problems.append(f"metadata {key}: {value!r} is not one of {', '.join(allowed)} "
                        f"(card schema {schema.name})")
  if title_name is not None:
    problems.extend(_check_module_type_tag(metadata, title_name.rsplit("/", 1)[-1], schema))
  return problems


def _check_module_type_tag(metadata: dict[str, list[str]], module_type: str,
                           schema: registry.CardSchema) -> list[str]:
  """A key whose value the schema gives per module type (`module-type`, `task`)
  must carry the tag of the handle's module type, when it holds allowed tags."""
  problems = []
  for key, value in schema.values.items():
    tags = value.by_module_type or {}
    present = [v for v in metadata.get(key, ()) if v in tags.values()]
    if present and tags.get(module_type) not in present:
      problems.append(f"metadata {key} {present[0]!r} does not fit the handle's module type "
                      f"{module_type!r} (expected {tags.get(module_type)!r})")
  return problems


def _check_sections(names: list[str], card_format: str | None) -> list[str]:
  if card_format not in SECTIONS:
    return []  # The metadata check already reported the format.
  expected = SECTIONS[card_format]
  known = [name for name, _ in expected]
  problems = [f"section '## {name}' is not a section of a {card_format} card; "
              f"expected: {', '.join(known)}" for name in names if name not in known]
  present = [name for name in names if name in known]
  for name, required in expected:
    if required and name not in present:
      problems.append(f"a {card_format} card needs a '## {name}' section")
    if present.count(name) > 1:
      problems.append(f"section '## {name}' appears {present.count(name)} times")
  if present != sorted(present, key=known.index):
    problems.append(f"sections are out of order: {', '.join(present)}; expected order: "
                    f"{', '.join(known)}")
  return problems


def _check_changelog(lines: list[str], version: int | None) -> list[str]:
  versions = []
  in_changelog = False
  for _, line in _outside_code(lines):
    if line.startswith("## "):
      in_changelog = line == "## Changelog"
    elif in_changelog and line.startswith("#### "):
      match = _CHANGELOG_VERSION.fullmatch(line)
      if not match:
        return [f"changelog heading {line!r} must read '#### Version <number>'"]
      versions.append(int(match["version"]))
  if not versions:
    return []
  problems = []
  if versions != sorted(set(versions)):
    problems.append(f"changelog versions {versions} are not strictly ascending")
  if version is not None and versions[-1] != version:
    problems.append(f"the changelog ends at version {versions[-1]}, not at the card's "
                    f"version {version}")
  return problems
