"""The contract every model card must meet before it is written or published.

The hub parses a card's first lines and its `<!-- key: value -->` metadata, so
a card that breaks them is rejected or mis-filed there; checking here names the
problem while the fix is still a registry or template edit. The contract:

  * line 1: `# Module <publisher>/<name>/<version>` (path segments may carry
    `&zwnj;` after each `/`, an older rendering convention);
  * line 2: a one-line description ending in a period;
  * before the first section, only blank lines and metadata lines, with every
    required key, no unknown or repeated key, and only allowed values;
  * the `## ` sections of its format, in order; a changelog, if any, lists
    versions in ascending order up to the card's own;
  * balanced code fences, no unrendered template syntax, a final newline.
"""
from __future__ import annotations

import re

# The hub's metadata vocabulary: allowed values per key (None: any non-empty text).
METADATA_VALUES = {
    "asset-path": ("legacy", "internal"),
    "dataset": None,
    "fine-tunable": ("true", "false"),
    "format": ("hub", "saved_model_2"),
    "module-type": ("image-classification", "image-feature-vector"),
    "network-architecture": None,
}
REQUIRED_METADATA = ("asset-path", "fine-tunable", "format", "module-type")
# The module-type tag of each handle module type (the last name segment).
MODULE_TYPE_TAGS = {
    "classification": "image-classification",
    "feature_vector": "image-feature-vector",
}
# The `## ` sections of each format, in card order; optional ones may be absent.
SECTIONS = {
    "hub": (("hub.Module for TF1", False), ("Overview", True), ("Training", True),
            ("Usage", True), ("Fine-tuning", True), ("Changelog", False)),
    "saved_model_2": (("TF2 SavedModel", True), ("Overview", True), ("Training", True),
                      ("Usage", True), ("Fine-tuning", True), ("Changelog", False)),
}

_TITLE = re.compile(r"# Module (?P<name>[a-z0-9_-]+(?:/(?:&zwnj;)?[a-z0-9_-]+)+)/(?P<version>[1-9][0-9]*)")
_METADATA = re.compile(r"<!-- (?P<key>[a-z-]+): (?P<value>.*?) -->")
_CHANGELOG_VERSION = re.compile(r"#### Version (?P<version>[0-9]+)")


class CardError(ValueError):
  """A card breaks the contract; the message lists every problem found."""

  def __init__(self, where: str, problems: list[str]):
    self.where = where
    self.problems = list(problems)
    super().__init__(f"{where}: card breaks the card contract:\n  - " + "\n  - ".join(problems))


def validate(text: str, handle: str | None = None) -> list[str]:
  """Returns the contract's problems with `text` (empty when it is a valid card).

  `handle`, if given (`google/imagenet/nasnet_mobile/classification/4`), is
  the release the card must describe.
  """
  problems = []
  lines = text.split("\n")
  if not text.endswith("\n"):
    problems.append("the card must end with a newline")
  for marker in ("{{", "{%", "{#"):
    if marker in text:
      problems.append(f"unrendered template syntax {marker!r} (a template bug)")

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
  problems.extend(_check_metadata(metadata, title_name))
  sections = [line[3:] for _, line in _outside_code(lines) if line.startswith("## ")]
  problems.extend(_check_sections(sections, metadata.get("format")))
  version = int(title["version"]) if title else None
  problems.extend(_check_changelog(lines, version))
  if sum(1 for line in lines if line.startswith("```")) % 2:
    problems.append("unbalanced ``` code fences")
  return problems


def check(text: str, handle: str | None = None, where: str = "card") -> str:
  """Returns `text` if it is a valid card; raises CardError listing every problem."""
  problems = validate(text, handle)
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


def _read_metadata(lines: list[str], problems: list[str]) -> dict:
  """The metadata between the description and the first section."""
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
    key, value = match["key"], match["value"]
    if key in metadata:
      problems.append(f"line {n + 1}: metadata key {key!r} is repeated")
    metadata[key] = value
  problems.append("the card has no '## ' section")
  return metadata


def _check_metadata(metadata: dict, title_name: str | None) -> list[str]:
  problems = []
  for key in REQUIRED_METADATA:
    if key not in metadata:
      problems.append(f"metadata lacks required key {key!r}")
  for key, value in metadata.items():
    if key not in METADATA_VALUES:
      problems.append(f"unknown metadata key {key!r}; known keys: {', '.join(METADATA_VALUES)}")
      continue
    allowed = METADATA_VALUES[key]
    if not value.strip():
      problems.append(f"metadata {key!r} is empty")
    elif allowed is not None and value not in allowed:
      problems.append(f"metadata {key}: {value!r} is not one of {', '.join(allowed)}")
  tag = metadata.get("module-type")
  if title_name is not None and tag in MODULE_TYPE_TAGS.values():
    module_type = title_name.rsplit("/", 1)[-1]
    if MODULE_TYPE_TAGS.get(module_type) != tag:
      problems.append(f"metadata module-type {tag!r} does not fit the handle's module type "
                      f"{module_type!r} (expected {MODULE_TYPE_TAGS.get(module_type)!r})")
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
