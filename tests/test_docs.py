"""Model cards: generated from the registry, byte-identical to the published ones."""
import copy
import errno
import hashlib
import os
import re
import subprocess
import sys
import tomllib

import pytest

import registry
from tests.conftest import REPO, SHARED, require_shared
from exporters.cards import card_validator
from exporters.cards import docs_lib
from exporters.errors import ExportError

REFERENCE_DOCS = SHARED / "reference-docs"
RELEASES = list(registry.default().releases())
DEPLOYMENTS = registry.default().deployments()
# The docs tree's pages besides the release and deployment cards: the placeholder models'
# cards and every publisher's page.
PAGES = ([str(docs_lib.placeholder_card_path(p)) for p in registry.default().placeholders.values()]
         + [str(docs_lib.publisher_page_path(p)) for p in registry.default().page_publishers])
TFJS_DEPLOYMENTS = registry.default().deployments(kind="tfjs")
# The models and versions ../shared/reference-docs holds every published card of.
REFERENCE_MODELS = ("nasnet_mobile", "pnasnet_large")
REFERENCE_VERSIONS = (1, 2, 3, 4)


def _reference_paths():
  """Every reference card's relative path; one skipping parameter when ../shared is absent."""
  if not REFERENCE_DOCS.is_dir():
    return [pytest.param(None, marks=pytest.mark.skip(
        reason=f"reference data {REFERENCE_DOCS} is absent (../shared is only beside the "
               f"project in CI and developer checkouts)"))]
  return sorted(p.relative_to(REFERENCE_DOCS).as_posix() for p in REFERENCE_DOCS.rglob("*.md"))


def _registry_data():
  with open(registry.REGISTRY_FILE, "rb") as f:
    return copy.deepcopy(tomllib.load(f))


@pytest.fixture(scope="module")
def cards():
  """Relative path -> text of every card, as `make docs` generates them."""
  return docs_lib.render_cards(docs_lib.DocsConfig(output_dir=REPO / "docs"))


@pytest.mark.parametrize("relative_path", _reference_paths())
def test_reference_doc_is_reproduced_byte_for_byte(cards, relative_path):
  expected = (REFERENCE_DOCS / relative_path).read_bytes()
  assert relative_path in cards, f"{relative_path} is published, but the registry has no release for it"
  assert cards[relative_path].encode("utf-8") == expected


def test_reference_docs_cover_every_release_they_should(cards):
  """reference-docs holds every published card of its models and versions, no more."""
  require_shared("reference-docs")
  expected = {str(docs_lib.card_path(r)) for r in registry.default().releases(
      models=REFERENCE_MODELS, versions=REFERENCE_VERSIONS)}
  assert set(_reference_paths()) == expected
  assert len(expected) == 14


def test_seed_000_with_zwnj_title_style():
  seed = require_shared("seeds", "000_900e6704dde24566.txt").read_bytes()
  release = registry.default().release("nasnet_mobile", "classification", 4)
  card = docs_lib.render_card(release, title_style="zwnj")
  assert card.encode("utf-8") == seed
  assert card.splitlines()[0] == "# Module google/&zwnj;imagenet/&zwnj;nasnet_mobile/&zwnj;classification/4"


def test_zwnj_title_style_changes_only_the_title():
  release = registry.default().release("pnasnet_large", "feature_vector", 2)
  plain = docs_lib.render_card(release).split("\n")
  zwnj = docs_lib.render_card(release, title_style="zwnj").split("\n")
  assert plain[1:] == zwnj[1:]
  assert zwnj[0].replace("&zwnj;", "") == plain[0]


def _markdown_to_text(markdown: str) -> str:
  """The text a reader sees: no markup, code kept, whitespace collapsed."""
  lines = []
  for line in markdown.splitlines():
    if line.startswith(("```", "<!--")):
      continue
    line = re.sub(r"^#+ ", "", line)  # Headings.
    line = re.sub(r"^\s*\* ", "", line)  # List bullets.
    lines.append(line)
  text = "\n".join(lines)
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # Links keep their text.
  text = text.replace("`", "")
  text = re.sub(r"\*([^*\n]+)\*", r"\1", text)  # Emphasis.
  return " ".join(text.split())


def test_seed_004_sentences_all_appear_in_the_generated_card(cards):
  """004 is the rendered web page of nasnet_mobile/classification/1 (an older edition)."""
  page = require_shared("seeds", "004_e3b3f6aa8ed7f32b.txt").read_text()
  # The page adds a "Module URL:" line and leaves the tfhub.dev URLs blank (the
  # site filled them in by script), so neither is text of the card.
  page = page.replace("Module URL:", "")
  card = cards["google/models/imagenet/nasnet_mobile/classification/1.md"]
  card_text = re.sub(r"https://tfhub\.dev/[^\s\"')]*", "", _markdown_to_text(card))
  sentences = [" ".join(s.split()) for line in page.splitlines()
               for s in re.split(r"(?<=[.!?])\s+(?=[A-Z.])", line) if s.strip()]
  assert len(sentences) > 25
  missing = [s for s in sentences if s not in card_text]
  assert not missing, f"sentences of seed 004 not in the generated card: {missing}"


@pytest.mark.parametrize("release", RELEASES, ids=[r.handle_with_version for r in RELEASES])
def test_every_card_passes_the_validator(cards, release):
  text = cards[str(docs_lib.card_path(release))]
  assert card_validator.validate(text, release.handle_with_version) == []


def test_one_card_per_published_release(cards):
  assert sorted(cards) == sorted([str(docs_lib.card_path(r)) for r in RELEASES]
                                 + [str(docs_lib.deployment_card_path(d)) for d in DEPLOYMENTS]
                                 + PAGES)


def test_committed_docs_match_a_fresh_generation():
  result = docs_lib.run(docs_lib.DocsConfig(output_dir=REPO / "docs", check=True))
  assert result.up_to_date, (
      f"docs/ is stale (changed: {list(result.changed)}, removed: {list(result.removed)}); "
      f"run `make docs` and commit docs/")


def _render_all(data) -> dict:
  return docs_lib.render_cards(docs_lib.DocsConfig(output_dir=REPO / "docs"),
                               registry.from_dict(data))


def _set(path, value):
  def edit(data):
    *parents, key = path
    table = data
    for name in parents:
      table = table[name]
    table[key] = value
  return edit


# (registry edit, text the edit must put in every affected card, which cards it affects)
FIELD_EDITS = {
    "image_size": (_set(["models", "nasnet_mobile", "image_size"], 225), "225 x 225",
                   lambda path: "/nasnet_mobile/" in path or "/nasnet/mobile/1/" in path),
    "feature_size": (_set(["models", "pnasnet_large", "feature_size"], 4321), "= 4321",
                     lambda path: "/pnasnet_large/feature_vector/" in path),
    "num_cells": (_set(["models", "nasnet_large", "num_cells"], 19), "uses 19 Normal Cells",
                  lambda path: "/nasnet_large/" in path),
    "checkpoint_archive": (_set(["models", "pnasnet_large", "checkpoint_archive"], "p5_2021.tar.gz"),
                           "`p5_2021/model.ckpt`", lambda path: "/pnasnet_large/" in path),
    "display_name": (_set(["models", "nasnet_large", "display_name"], "NASNet-A (huge)"),
                     "NASNet-A (huge)", lambda path: "/nasnet_large/" in path),
    "batch_norm_momentum": (_set(["versions", "4", "batch_norm_momentum"], 0.95), "defaults to 0.95",
                            lambda path: path.endswith("/4.md")),
    "training_source": (_set(["families", "pnasnet", "training_source", "name"], "PNASNet's models"),
                        "[PNASNet's models]", lambda path: "/pnasnet_" in path),
    "paper": (_set(["papers", "nasnet", "year"], 2018), "), 2018.",
              lambda path: "/lite/" not in path and path.count("/") > 1),
    "changelog": (_set(["versions", "2", "changelog"], ["Fixed UPDATE_OPS."]), "  * Fixed UPDATE_OPS.",
                  lambda path: "/pnasnet_large/" in path and not path.endswith("/1.md")),
    "num_classes": (_set(["publisher", "num_classes"], 1002), "= 1002",
                    lambda path: "/classification/" in path or "/lite/" in path),
}


@pytest.mark.parametrize("field", sorted(FIELD_EDITS))
def test_a_registry_field_changes_exactly_the_cards_that_mention_it(cards, field):
  edit, new_text, affected = FIELD_EDITS[field]
  data = _registry_data()
  edit(data)
  edited = _render_all(data)
  assert sorted(edited) == sorted(cards)
  changed = {path for path in cards if edited[path] != cards[path]}
  # A TF.js card states none of these fields (only its parent's handle).
  assert changed == {path for path in cards if affected(path) and "/tfjs/" not in path}
  for path in changed:
    assert new_text in edited[path], f"{path} lacks {new_text!r}"


def test_version_2_changelog_appears_only_in_pnasnet_large_cards(cards):
  for path, text in cards.items():
    has_v2 = "#### Version 2" in text
    if path.startswith("google/"):
      assert has_v2 == ("/pnasnet_large/" in path and not path.endswith("/1.md")), path
      assert ("UPDATE_OPS" in text) == has_v2, path
    else:  # pnasnet_mobile's own version 2.
      assert has_v2 == path.endswith("/2.md") and "UPDATE_OPS" not in text, path


def test_version_5_cards_describe_the_serving_signature(cards):
  for release in registry.default().releases(versions=[5]):
    text = cards[str(docs_lib.card_path(release))]
    assert "<!-- format: saved_model_2 -->" in text
    assert text.endswith("#### Version 5\n\n  * Add 'serving_default' SignatureDef\n"
                         "  * Fix bug if using models with `tf.GradientTape(persistent=True)`\n")


def test_nasnet_large_cards_state_its_registry_facts(cards):
  text = cards["google/models/imagenet/nasnet_large/classification/1.md"]
  assert "that uses 18 Normal Cells, starting with\n168 convolutional filters" in text
  assert "It has an input size of 331x331 pixels." in text
  assert "`nasnet-a_large_04_10_2017/model.ckpt`" in text
  assert "[NASNet's pre-trained models]" in text
  assert "`num_features` = 4032" in cards["google/models/imagenet/nasnet_large/feature_vector/3.md"]


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["families"]["nasnet"].pop("plural"), "needs a value the registry does not give: .* has no attribute 'plural'"),
    (lambda d: d["versions"]["3"].pop("asset_path"), "version 3 lacks card field 'asset_path'"),
    (lambda d: d["versions"]["4"].update(card_family="tf3_v9"),
     "card_family 'tf3_v9' has no template tf3_v9_classification.md.j2"),
    (lambda d: d["versions"]["1"]["card_metadata"].append("license"),
     r"card_metadata names unknown keys \['license'\]"),
    (lambda d: d["families"]["pnasnet"].update(cells_text="{num_layers} cells"),
     "cells_text names {num_layers}, which model 'pnasnet_large' lacks"),
    (lambda d: d["versions"]["1"]["card_quirks"]["pnasnet_large"].update(labels_file=False),
     r"card_quirks.pnasnet_large sets unknown fields \['labels_file'\]"),
    (lambda d: d["versions"]["1"]["card_quirks"].update(pnasnet_mobile={}),
     r"card_quirks for \['pnasnet_mobile'\], which do not have this version"),
], ids=["template-field", "version-field", "card-family", "metadata-key", "cells-text",
        "quirk-field", "quirk-model"])
def test_a_missing_or_wrong_registry_field_fails_loudly(edit, message):
  data = _registry_data()
  edit(data)
  with pytest.raises(registry.RegistryError, match=message):
    _render_all(data)


def test_an_invalid_card_stops_the_run_before_anything_is_written(tmp_path):
  data = _registry_data()
  data["versions"]["5"]["asset_path"] = "external"
  config = docs_lib.DocsConfig(output_dir=tmp_path)
  with pytest.raises(card_validator.CardError) as error:
    docs_lib.run(config, registry.from_dict(data))
  assert "google/models/imagenet/nasnet_mobile/classification/5.md: metadata asset-path: " \
         "'external' is not one of legacy, internal" in str(error.value)
  assert list(tmp_path.iterdir()) == []


def test_run_writes_checks_and_prunes(tmp_path):
  config = docs_lib.DocsConfig(output_dir=tmp_path)
  first = docs_lib.run(config)
  assert len(first.changed) == len(RELEASES) + len(DEPLOYMENTS) + len(PAGES)
  assert not first.removed
  assert docs_lib.run(config).up_to_date
  card = tmp_path / "google/models/imagenet/nasnet_large/feature_vector/5.md"
  card.write_text("edited\n")
  stale = tmp_path / "google/models/imagenet/pnasnet_mobile/classification/1.md"
  stale.parent.mkdir(parents=True)
  stale.write_text("# Module google/imagenet/pnasnet_mobile/classification/1\n")
  stale_tfjs = tmp_path / "google/models/imagenet/nasnet_large/classification/1/default/tfjs/1.md"
  stale_tfjs.parent.mkdir(parents=True)
  stale_tfjs.write_text("# Tfjs google/imagenet/nasnet_large/classification/1/default/1\n")
  unrelated = tmp_path / "google/models/imagenet/README.md"
  unrelated.write_text("kept\n")

  checked = docs_lib.run(docs_lib.DocsConfig(output_dir=tmp_path, check=True))
  assert checked.changed == ("google/models/imagenet/nasnet_large/feature_vector/5.md",)
  assert checked.removed == ("google/models/imagenet/nasnet_large/classification/1/default/tfjs/1.md",
                             "google/models/imagenet/pnasnet_mobile/classification/1.md")
  assert card.read_text() == "edited\n" and stale.exists()

  filtered = docs_lib.run(docs_lib.DocsConfig(output_dir=tmp_path, models=("nasnet_large",)))
  assert filtered.changed == checked.changed and filtered.removed == ()
  assert stale.exists()
  assert docs_lib.run(config).removed == checked.removed
  assert not stale.exists() and not stale_tfjs.exists() and unrelated.exists()
  assert docs_lib.run(config).up_to_date
  assert not list(tmp_path.rglob("*.tmp"))


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "exporters.docs", *args], cwd=REPO,
                        capture_output=True, text=True)


def test_cli_check_exits_non_zero_until_generated(tmp_path):
  stale = _cli(f"--output_dir={tmp_path}", "--check")
  assert stale.returncode == 1, stale.stderr
  assert "out of date" in stale.stderr
  written = _cli(f"--output_dir={tmp_path}", "--models=nasnet_mobile", "--module_types=classification",
                 "--versions=4", "--title_style=zwnj")
  assert written.returncode == 0, written.stderr
  card = tmp_path / "google/models/imagenet/nasnet_mobile/classification/4.md"
  # The one card, and the page of the publisher it is filed under.
  assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.md")) == [
      "google/google.md", card.relative_to(tmp_path).as_posix()]
  assert card.read_text().startswith("# Module google/&zwnj;imagenet/")


def test_cli_reports_unknown_filter_values(tmp_path):
  result = _cli(f"--output_dir={tmp_path}", "--models=nasnet_tiny")
  assert result.returncode == 2
  assert "unknown model 'nasnet_tiny'; known models: nasnet_mobile" in result.stderr


# --- Filesystem faults: one line, and the tree as it was. ---

def _tree(root):
  return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_cli_output_dir_under_a_file_is_one_line(tmp_path):
  (tmp_path / "afile").write_text("mine\n")
  result = _cli(f"--output_dir={tmp_path}/afile/docs")
  assert result.returncode == 1 and result.stdout == ""
  assert result.stderr == (
      f"error: cannot create the card '{tmp_path}/afile/docs/google/models/imagenet/"
      f"nasnet_mobile/classification/1.md': '{tmp_path}/afile' is not a directory\n")
  assert _tree(tmp_path) == ["afile"]


def test_cli_card_path_that_is_a_folder_is_one_line(tmp_path):
  card = tmp_path / "google/models/imagenet/nasnet_mobile/classification/1.md"
  card.mkdir(parents=True)
  result = _cli(f"--output_dir={tmp_path}")
  assert (result.returncode, result.stderr) == (1, f"error: cannot read '{card}': Is a directory\n")


@pytest.mark.parametrize("fault", ["ENOSPC", "EROFS"])
def test_full_or_read_only_disk_leaves_the_tree_as_it_was(tmp_path, monkeypatch, fault):
  """A full disk after some cards were staged, or a read-only mount (simulated: as root a
  chmod stops nothing): one ExportError, no staged file and no folder this run made."""
  out = tmp_path / "docs"
  kept = out / "google/models/imagenet/nasnet_large/feature_vector/5.md"
  kept.parent.mkdir(parents=True)
  kept.write_text("edited\n")
  before = _tree(tmp_path)
  code = getattr(errno, fault)
  if fault == "ENOSPC":
    real_write, calls = docs_lib.filesystem.write_temporary, []

    def write_until_full(path, data):
      calls.append(path)
      if len(calls) == 5:
        raise OSError(code, os.strerror(code))
      return real_write(path, data)
    monkeypatch.setattr(docs_lib.filesystem, "write_temporary", write_until_full)
  else:
    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):
      if str(path).startswith(str(out)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        raise OSError(code, os.strerror(code), str(path))
      return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, "open", read_only_open)
  with pytest.raises(ExportError, match=f"cannot write the docs tree '{out}': "
                     f"{os.strerror(code)} .*; nothing was changed"):
    docs_lib.run(docs_lib.DocsConfig(output_dir=out))
  monkeypatch.undo()
  assert _tree(tmp_path) == before and kept.read_text() == "edited\n"


# --- The validator on its own: each broken contract is named. ---

VALID_CARD_RELEASE = ("pnasnet_large", "classification", 3)


def _valid_card():
  return docs_lib.render_card(registry.default().release(*VALID_CARD_RELEASE))


@pytest.mark.parametrize("breakage, problem", [
    (lambda t: t.replace("# Module ", "# Model ", 1), "line 1 must read '# Module"),
    (lambda t: t.replace("classification/3\n", "classification/3\n\n", 1), "line 2 must be a one-line"),
    (lambda t: t.replace("<!-- format: hub -->\n", ""), "metadata lacks required key 'format'"),
    (lambda t: t.replace("<!-- format: hub -->", "<!-- format: tflite -->"),
     "metadata format: 'tflite' is not one of hub, saved_model_2"),
    (lambda t: t.replace("<!-- fine-tunable: true -->", "<!-- fine-tunable: true -->\n<!-- license: MIT -->"),
     "unknown metadata key 'license'"),
    (lambda t: t.replace("<!-- format: hub -->", "<!-- format: hub -->\n<!-- format: hub -->"),
     "metadata key 'format' is repeated"),
    (lambda t: t.replace("image-classification -->", "image-feature-vector -->"),
     "does not fit the handle's module type 'classification'"),
    (lambda t: t.replace("<!-- dataset:", "Some prose.\n<!-- dataset:"), "only metadata lines"),
    (lambda t: t.replace("## Training", "## Training data"), "section '## Training data' is not"),
    (lambda t: t.replace("## Fine-tuning", "## Notes"), "needs a '## Fine-tuning' section"),
    (lambda t: t.replace("## Overview", "## TMP").replace("## Usage", "## Overview").replace("## TMP", "## Usage"),
     "sections are out of order"),
    (lambda t: t.replace("## hub.Module for TF1", "## TF2 SavedModel"),
     "section '## TF2 SavedModel' is not a section of a hub card"),
    (lambda t: t.replace("#### Version 3", "#### Version 2"), "changelog versions [1, 2, 2]"),
    (lambda t: t.replace("#### Version 3", "#### Version 4"), "ends at version 4, not at the card's version 3"),
    (lambda t: t.rstrip("\n"), "must end with a newline"),
    (lambda t: t + "{{ model.name }}\n", "unrendered template syntax"),
    (lambda t: t.replace("```python\nmodule", "```python\n```\nmodule", 1), "unbalanced ``` code fences"),
])
def test_validator_names_each_broken_rule(breakage, problem):
  text = _valid_card()
  assert card_validator.validate(text) == []
  broken = breakage(text)
  problems = card_validator.validate(broken)
  assert any(problem in p for p in problems), problems
  with pytest.raises(card_validator.CardError, match=re.escape(problem)):
    card_validator.check(broken, where="card.md")


def test_validator_checks_the_card_is_for_its_release():
  problems = card_validator.validate(_valid_card(), "google/imagenet/pnasnet_large/classification/4")
  assert problems == ["line 1 names 'google/imagenet/pnasnet_large/classification/3', "
                      "but the card is for 'google/imagenet/pnasnet_large/classification/4'"]


@pytest.mark.parametrize("relative_path", _reference_paths())
def test_validator_accepts_every_published_card(relative_path):
  parts = relative_path.removesuffix(".md").split("/")
  handle = "/".join([parts[0], *parts[2:]])  # google/models/imagenet/... -> google/imagenet/...
  assert card_validator.validate((REFERENCE_DOCS / relative_path).read_text(), handle) == []


# --- Card schemas: the same cards in the hub's 2021-04 and 2021-06 metadata. ---

HUB_HASHES = REPO / "tests" / "data" / "tfhub_dev_cards.sha256"
CARD_SCHEMAS = ("2021-04", "2021-06")


def _hub_hashes(schema: str) -> dict[str, str]:
  """Path -> sha256 of the card tfhub.dev published in `schema` (see the file's header)."""
  hashes = {}
  for line in HUB_HASHES.read_text().splitlines():
    if line and not line.startswith("#"):
      digest, name, path = line.split(" ")
      if name == schema:
        hashes[path] = digest
  return hashes


@pytest.fixture(scope="module")
def cards_by_schema():
  return {schema: docs_lib.render_cards(docs_lib.DocsConfig(output_dir=REPO / "docs",
                                                            card_schema=schema))
          for schema in CARD_SCHEMAS}


@pytest.mark.parametrize("schema", CARD_SCHEMAS)
def test_every_card_hashes_to_the_one_tfhub_dev_published_in_its_schema(cards_by_schema, schema):
  expected = _hub_hashes(schema)
  assert len(expected) == 38
  generated = {path: hashlib.sha256(text.encode("utf-8")).hexdigest()
               for path, text in cards_by_schema[schema].items() if path in expected}
  assert sorted(generated) == sorted(expected), "a card tfhub.dev published was not generated"
  wrong = [path for path in expected if generated[path] != expected[path]]
  assert not wrong, f"cards that differ from tfhub.dev's in card schema {schema}: {wrong}"


def test_the_default_schema_is_2021_04_and_what_docs_holds(cards, cards_by_schema):
  assert registry.default().card_schema().name == "2021-04"
  assert cards == cards_by_schema["2021-04"]
  for path, text in cards.items():
    assert (REPO / "docs" / path).read_bytes() == text.encode("utf-8"), path


METADATA_CHANGES = {  # 2021-04 line -> 2021-06 line, in place.
    "<!-- dataset: ImageNet (ILSVRC-2012-CLS) -->": "<!-- dataset: imagenet-ilsvrc-2012-cls -->",
    "<!-- module-type: image-classification -->": "<!-- task: image-classification -->",
    "<!-- module-type: image-feature-vector -->": "<!-- task: image-feature-vector -->",
    "<!-- network-architecture: NASNet-A (mobile) -->": "<!-- network-architecture: nasnet-a-mobile -->",
    "<!-- network-architecture: NASNet-A (large) -->": "<!-- network-architecture: nasnet-a-large -->",
    "<!-- network-architecture: PNASNet-5 (large) -->": "<!-- network-architecture: pnasnet-5-large -->",
}


def test_2021_06_cards_differ_from_2021_04_only_in_three_metadata_lines(cards_by_schema):
  old, new = cards_by_schema["2021-04"], cards_by_schema["2021-06"]
  assert sorted(old) == sorted(new)
  for path in old:
    old_lines, new_lines = old[path].split("\n"), new[path].split("\n")
    if "/tfjs/" in path or path.count("/") == 1:  # TF.js cards, publisher pages.
      assert old[path] == new[path], path
      continue
    if path.startswith("tensorflow/models/nasnet/") and path.count("/") == 4:  # Placeholders.
      assert [(a, b) for a, b in zip(old_lines, new_lines) if a != b] == [
          ("<!-- module-type: image-classification -->", "<!-- task: image-classification -->")]
      continue
    if "/lite/" in path:  # Only the model list link (2022-05-09), in the final state.
      changed = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
      assert [b for _, b in changed] == [
          "-   A [model list](https://www.tensorflow.org/lite/guide/hosted_models) together",
          "    with the performance stats is available."], path
      continue
    if "/pnasnet_mobile/" in path:  # 2021-06 has no id for it: the line is left out.
      old_lines.remove("<!-- network-architecture: PNASNet-5 (mobile) -->")
      assert not any("network-architecture" in line for line in new_lines), path
      assert len([a for a, b in zip(old_lines, new_lines) if a != b]) == 2, path
      continue
    assert len(old_lines) == len(new_lines), path
    changed = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
    assert all(METADATA_CHANGES.get(a) == b for a, b in changed), (path, changed)
    # pnasnet_large's version 1 cards have only the module-type line of the three.
    assert len(changed) == (1 if path.startswith("google/models/imagenet/pnasnet_large/")
                            and path.endswith("/1.md") else 3), (path, changed)


def _schema(name):
  return registry.default().card_schema(name)


def _card_in(schema, release=("nasnet_mobile", "feature_vector", 5)):
  return docs_lib.render_card(registry.default().release(*release), card_schema=schema)


@pytest.mark.parametrize("breakage, problem", [
    (lambda t: t.replace("dataset: imagenet-ilsvrc-2012-cls", "dataset: ImageNet (ILSVRC-2012-CLS)"),
     "metadata dataset: 'ImageNet (ILSVRC-2012-CLS)' is not one of imagenet-ilsvrc-2012-cls "
     "(card schema 2021-06)"),
    (lambda t: t.replace("network-architecture: nasnet-a-mobile", "network-architecture: NASNet-A (mobile)"),
     "metadata network-architecture: 'NASNet-A (mobile)' is not one of nasnet-a-large, "
     "nasnet-a-mobile, pnasnet-5-large"),
    (lambda t: t.replace("<!-- task: image-feature-vector -->\n", ""),
     "metadata lacks required key 'task' (card schema 2021-06)"),
    (lambda t: t.replace("<!-- task: image-feature-vector -->", "<!-- module-type: image-feature-vector -->"),
     "unknown metadata key 'module-type' in card schema 2021-06"),
    (lambda t: t.replace("task: image-feature-vector", "task: image-classification"),
     "metadata task 'image-classification' does not fit the handle's module type 'feature_vector'"),
    (lambda t: t.replace("task: image-feature-vector", "task: image-segmentation"),
     "metadata task: 'image-segmentation' is not one of image-classification, image-feature-vector"),
    (lambda t: t.replace("<!-- format: saved_model_2 -->", "<!-- format: saved_model_2 -->\n"
                         "<!-- format: saved_model_2 -->"), "metadata key 'format' is repeated"),
], ids=["dataset-name", "architecture-name", "no-task", "module-type", "wrong-task", "unknown-task",
        "repeated-format"])
def test_2021_06_validator_names_each_broken_rule(breakage, problem):
  schema = _schema("2021-06")
  text = _card_in("2021-06")
  assert card_validator.validate(text, schema=schema) == []
  broken = breakage(text)
  assert broken != text
  problems = card_validator.validate(broken, schema=schema)
  assert any(problem in p for p in problems), problems
  with pytest.raises(card_validator.CardError, match=re.escape(problem)):
    card_validator.check(broken, where="card.md", schema=schema)


def test_2021_06_allows_repeated_tag_keys_as_the_hub_does():
  text = _card_in("2021-06").replace(
      "<!-- task: image-feature-vector -->",
      "<!-- task: image-feature-vector -->\n<!-- task: image-classification -->")
  assert card_validator.validate(text, "google/imagenet/nasnet_mobile/feature_vector/5",
                                 _schema("2021-06")) == []
  assert "metadata key 'module-type' is repeated" in card_validator.validate(
      text.replace("task:", "module-type:"), schema=_schema("2021-04"))


def test_each_schema_rejects_the_others_cards():
  """A 2021-04 card is not a valid 2021-06 card, and the other way round."""
  old_problems = card_validator.validate(_card_in("2021-04"), schema=_schema("2021-06"))
  assert "metadata lacks required key 'task' (card schema 2021-06)" in old_problems
  assert any(p.startswith("unknown metadata key 'module-type'") for p in old_problems)
  new_problems = card_validator.validate(_card_in("2021-06"), schema=_schema("2021-04"))
  assert "metadata lacks required key 'module-type' (card schema 2021-04)" in new_problems
  assert any(p.startswith("unknown metadata key 'task'") for p in new_problems)
  # Display names are fine in 2021-04, as they were on the hub then.
  assert card_validator.validate(_card_in("2021-04"), schema=_schema("2021-04")) == []


def test_a_model_without_an_id_in_the_schema_fails_loudly():
  data = _registry_data()
  del data["card_schemas"]["2021-06"]["values"]["network-architecture"]["by_model"]["nasnet_large"]
  reg = registry.from_dict(data)
  assert docs_lib.render_cards(docs_lib.DocsConfig(output_dir=REPO / "docs"), reg)  # 2021-04 unaffected.
  with pytest.raises(registry.RegistryError,
                     match="nasnet_large/classification/1: card schema 2021-06 gives no "
                           "'network-architecture' value for model 'nasnet_large'"):
    docs_lib.render_cards(docs_lib.DocsConfig(output_dir=REPO / "docs", card_schema="2021-06"), reg)


def test_cli_writes_either_schema_and_rejects_an_unknown_one(tmp_path):
  expected = _hub_hashes("2021-06")
  written = _cli(f"--output_dir={tmp_path}", "--card_schema=2021-06")
  assert written.returncode == 0, written.stderr
  num_cards = len(RELEASES) + len(DEPLOYMENTS) + len(PAGES)
  assert f"{num_cards} cards validated (card schema 2021-06)" in written.stdout
  for path, digest in expected.items():
    assert hashlib.sha256((tmp_path / path).read_bytes()).hexdigest() == digest, path
  stale = _cli(f"--output_dir={tmp_path}", "--check")  # Against the default, 2021-04.
  assert stale.returncode == 1
  assert len([line for line in stale.stdout.splitlines()
              if line.startswith("would write")]) == len(RELEASES) + len(
                  LITE_CARD_PATHS) + len(registry.default().placeholders)  # TF.js cards
  # and publisher pages: the same in both schemas.
  unknown = _cli(f"--output_dir={tmp_path / 'other'}", "--card_schema=2021-05")
  assert unknown.returncode == 2
  assert unknown.stderr.strip().splitlines() == [
      "error: unknown card schema '2021-05'; known card schemas: 2021-04, 2021-06"]
  assert not (tmp_path / "other").exists()


# --- pnasnet_mobile: released as a TF-Slim checkpoint, never published by TF Hub. ---

PNASNET_MOBILE = [r for r in registry.default().releases(models=["pnasnet_mobile"])]
UNPUBLISHED_SENTENCE = "was exported from the released TF-Slim checkpoint; it was not published by TF Hub."


@pytest.mark.parametrize("schema", CARD_SCHEMAS)
def test_pnasnet_mobile_cards_state_its_facts_under_their_own_publisher(cards_by_schema, schema):
  publisher = registry.default().publishers["unpublished"]["name"]
  hub_url = registry.default().publishers["unpublished"]["hub_url"]
  assert publisher != "google"
  for release in PNASNET_MOBILE:
    path = str(docs_lib.card_path(release))
    assert path == (f"{publisher}/models/imagenet/pnasnet_mobile/{release.module_type}/"
                    f"{release.version.number}.md")
    text = cards_by_schema[schema][path]
    noun = "module" if release.version.format == "hub" else "model"
    assert text.splitlines()[0] == f"# Module {release.handle_with_version}"
    assert text.count(UNPUBLISHED_SENTENCE) == 1 and f"This {noun} {UNPUBLISHED_SENTENCE}" in text
    for fact in ("uses 9 cells (plus 2 for the \"ImageNet stem\")",
                 "starting with 54 convolutional filters (after the stem)",
                 "It has an input size of 224x224 pixels.", "224 x 224 pixels",
                 "implementation `pnasnet_mobile` of PNASNet-5",
                 "`pnasnet-5_mobile_2017_12_13/model.ckpt`"):
      assert fact in text, (path, fact)
    if release.module_type == "feature_vector" and release.version.format == "saved_model_2":
      assert "`num_features` = 1080" in text
    assert f"{hub_url}{release.handle_with_version}" in text
    assert "google/imagenet" not in text and "tfhub.dev/" not in text, path
    assert card_validator.validate(text, release.handle_with_version, _schema(schema)) == []
    architecture = [line for line in text.splitlines() if "network-architecture" in line]
    assert architecture == (["<!-- network-architecture: PNASNet-5 (mobile) -->"]
                            if schema == "2021-04" else []), path
  # TF Hub's own cards say nothing of the kind.
  assert not [p for p, t in cards_by_schema[schema].items()
              if p.startswith("google/") and "not published by TF Hub" in t]


def test_pnasnet_mobile_cards_follow_the_published_versions_they_name(cards):
  """Version 1 reads like google's version 3 (bn_hparams signatures), version 2 like version 5."""
  reg = registry.default()
  for module_type in registry.MODULE_TYPES:
    for number, followed in ((1, 3), (2, 5)):
      own = cards[str(docs_lib.card_path(reg.release("pnasnet_mobile", module_type, number)))]
      published = cards[str(docs_lib.card_path(reg.release("pnasnet_large", module_type, followed)))]
      own_metadata = [line.split(":")[0] for line in own.splitlines() if line.startswith("<!--")]
      published_metadata = [line.split(":")[0] for line in published.splitlines()
                            if line.startswith("<!--")]
      assert own_metadata == published_metadata
      sections = lambda text: [line for line in text.splitlines()
                               if line.startswith("## ") and line != "## Changelog"]
      assert sections(own) == sections(published)
      assert ("_with_bn_hparams" in own) == (number == 1)


def test_the_unpublished_publisher_is_one_registry_edit():
  """Its name and URL, and the name of its publisher page's table."""
  data = _registry_data()
  data["publishers"]["unpublished"].update(name="acme-ml", hub_url="https://models.example/")
  with pytest.raises(registry.RegistryError, match=r"^registry has no \[publisher_pages.acme-ml\], "
                                                   r"and cards are filed under 'acme-ml'"):
    _render_all(data)
  data["publisher_pages"]["acme-ml"] = data["publisher_pages"].pop("local")
  cards = _render_all(data)
  assert cards["acme-ml/acme-ml.md"].startswith("# Publisher acme-ml\n")
  assert "local/local.md" not in cards
  own = [p for p in cards if "/pnasnet_mobile/" in p]
  assert len(own) == 4 and all(p.startswith("acme-ml/models/imagenet/") for p in own)
  text = cards["acme-ml/models/imagenet/pnasnet_mobile/feature_vector/2.md"]
  assert text.startswith("# Module acme-ml/imagenet/pnasnet_mobile/feature_vector/2\n")
  assert 'hub.KerasLayer("https://models.example/acme-ml/imagenet/pnasnet_mobile/feature_vector/2"' in text


# --- TF.js deployments ([deployments.tfjs] in the registry): their own short cards. ---

TFJS_CARD_PATHS = [
    f"google/models/imagenet/nasnet_mobile/{t}/{v}/default/tfjs/1.md"
    for t in ("classification", "feature_vector") for v in (1, 3)]


@pytest.mark.parametrize("schema", CARD_SCHEMAS)
def test_the_four_tfjs_cards_hash_to_the_published_ones(cards_by_schema, schema):
  expected = {p: h for p, h in _hub_hashes(schema).items() if "/tfjs/" in p}
  assert sorted(expected) == sorted(TFJS_CARD_PATHS)
  assert sorted(str(docs_lib.deployment_card_path(d)) for d in TFJS_DEPLOYMENTS) == sorted(expected)
  for path, digest in expected.items():
    text = cards_by_schema[schema][path]
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == digest, path
    deployment = TFJS_DEPLOYMENTS[[str(docs_lib.deployment_card_path(d))
                                   for d in TFJS_DEPLOYMENTS].index(path)]
    assert card_validator.validate_deployment(text, "tfjs", deployment.card_handle, _schema(schema)) == []
    assert text.splitlines()[0] == f"# Tfjs {deployment.card_handle}"
    assert f'"https://tfhub.dev/{deployment.handle}"' in text


def _tfjs_card():
  return docs_lib.render_deployment_card(TFJS_DEPLOYMENTS[0])


@pytest.mark.parametrize("breakage, problem", [
    (lambda t: t.replace("# Tfjs ", "# Module "), "line 1 must read '# Tfjs "),
    (lambda t: t.replace("<!-- parent-model: google/imagenet/nasnet_mobile/classification/1 -->\n",
                         ""), "metadata lacks required key 'parent-model' of a TF.js card"),
    (lambda t: t.replace("parent-model: google/imagenet/nasnet_mobile/classification/1",
                         "parent-model: google/imagenet/nasnet_mobile/classification/3"),
     "metadata parent-model 'google/imagenet/nasnet_mobile/classification/3' is not the "
     "title's parent"),
    (lambda t: t.replace("asset-path: legacy", "asset-path: elsewhere"),
     "metadata asset-path: 'elsewhere' is not one of legacy, internal"),
    (lambda t: t.replace("## Origin", "## Overview"), "a TF.js card has the sections Origin, "
     "Example use in this order, got Overview, Example use"),
    (lambda t: t.replace(", { fromTFHub: true }", ""), "the example must load the model with"),
    (lambda t: t.rstrip("\n"), "the card must end with a newline"),
])
def test_tfjs_validator_names_each_broken_rule(breakage, problem):
  assert card_validator.validate_deployment(_tfjs_card(), "tfjs") == []
  problems = card_validator.validate_deployment(breakage(_tfjs_card()), "tfjs")
  assert any(p.startswith(problem) for p in problems), problems


def test_tfjs_validator_checks_the_card_is_for_its_deployment():
  problems = card_validator.validate_deployment(_tfjs_card(), "tfjs",
                                                TFJS_DEPLOYMENTS[1].card_handle)
  assert problems == [f"line 1 names {TFJS_DEPLOYMENTS[0].card_handle!r}, but the card is for "
                      f"{TFJS_DEPLOYMENTS[1].card_handle!r}"]


def test_tfjs_cards_follow_the_registry():
  """The [deployments.tfjs] table decides which releases have a deployment, and its card's facts."""
  data = _registry_data()
  data["deployments"]["tfjs"]["parent_versions"] = [3]
  data["deployments"]["tfjs"]["asset_path"] = "internal"
  cards = _render_all(data)
  tfjs = sorted(p for p in cards if "/tfjs/" in p)
  assert tfjs == [p for p in sorted(TFJS_CARD_PATHS) if "/3/" in p]
  assert all("<!-- asset-path: internal -->" in cards[p] for p in tfjs)
  data["deployments"]["tfjs"]["parent_versions"] = [4]
  with pytest.raises(registry.RegistryError, match=r"parent version 4 is not a published "
                     r"version of format 'hub' \(what the tfjs converter reads\)"):
    registry.from_dict(data)


# --- TFLite deployments ([deployments.lite]): the Java Interpreter cards. ---

LITE_CARD_PATHS = [f"tensorflow/models/nasnet/{size}/1/{variant}/lite/1.md"
                   for size in ("mobile", "large") for variant in ("default", "metadata")]


@pytest.mark.parametrize("schema", CARD_SCHEMAS)
def test_the_four_lite_cards_hash_to_the_published_ones(cards_by_schema, schema):
  """Byte for byte in both states, which differ in the model list link (2022-05-09); the
  metadata variant's card in its description's note."""
  expected = {p: h for p, h in _hub_hashes(schema).items() if "/lite/" in p}
  assert sorted(expected) == sorted(LITE_CARD_PATHS)
  lite = registry.default().deployments(kind="lite")
  assert sorted(str(docs_lib.deployment_card_path(d)) for d in lite) == sorted(expected)
  for deployment in lite:
    path = str(docs_lib.deployment_card_path(deployment))
    text = cards_by_schema[schema][path]
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == expected[path], path
    assert card_validator.validate_deployment(text, "lite", deployment.card_handle,
                                              _schema(schema)) == []
    assert text.splitlines()[0] == f"# Lite {deployment.card_handle}"
    size = deployment.parent.model.image_size
    assert f"final int IMAGE_SIZE_X = {size};" in text
    assert ("This model contains both TFLite model metadata and the label file." in text) == (
        deployment.variant == "metadata")


@pytest.mark.parametrize("breakage, problem", [
    (lambda t: t.replace("# Lite ", "# Tfjs "), "line 1 must read '# Lite "),
    (lambda t: t.replace("## Inputs", "## Input"), "a TFLite card has the sections Description, "
     "Resources, Inputs, Outputs, Usage in this order, got Description, Resources, Input,"),
    (lambda t: t.replace("tflite = new Interpreter(tfliteModel);", "tflite = load();"),
     "the example must load the model with tflite = new Interpreter(tfliteModel);"),
    (lambda t: t.replace("parent-model: tensorflow/nasnet/mobile/1", "parent-model: "
                         "tensorflow/nasnet/large/1"),
     "metadata parent-model 'tensorflow/nasnet/large/1' is not the title's parent"),
])
def test_lite_validator_names_each_broken_rule(breakage, problem):
  [mobile] = [d for d in registry.default().deployments(models=["nasnet_mobile"], kind="lite")
              if d.variant == "default"]
  card = docs_lib.render_deployment_card(mobile)
  assert card_validator.validate_deployment(card, "lite") == []
  problems = card_validator.validate_deployment(breakage(card), "lite")
  assert any(p.startswith(problem) for p in problems), problems


# --- Placeholder model pages and publisher pages: the rest of a docs tree the hub accepts. ---

PLACEHOLDER_CARD_PATHS = ["tensorflow/models/nasnet/mobile/1.md",
                          "tensorflow/models/nasnet/large/1.md"]
PUBLISHER_PAGE_PATHS = ["google/google.md", "tensorflow/tensorflow.md"]


@pytest.mark.parametrize("schema", CARD_SCHEMAS)
def test_the_placeholder_cards_and_publisher_pages_hash_to_the_published_ones(cards_by_schema,
                                                                             schema):
  expected = {p: h for p, h in _hub_hashes(schema).items()
              if p in PLACEHOLDER_CARD_PATHS + PUBLISHER_PAGE_PATHS}
  assert sorted(expected) == sorted(PLACEHOLDER_CARD_PATHS + PUBLISHER_PAGE_PATHS)
  for path, digest in expected.items():
    text = cards_by_schema[schema][path]
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == digest, path
  for placeholder in registry.default().placeholders.values():
    text = cards_by_schema[schema][str(docs_lib.placeholder_card_path(placeholder))]
    assert card_validator.validate_placeholder(text, placeholder.handle_with_version,
                                               _schema(schema)) == []
    task = "module-type" if schema == "2021-04" else "task"
    assert f"<!-- {task}: image-classification -->" in text.splitlines()


def test_the_unpublished_publisher_has_a_page_of_its_own(cards):
  name = registry.default().publishers["unpublished"]["name"]
  text = cards[f"{name}/{name}.md"]
  assert card_validator.validate_publisher_page(text, name) == []
  assert text.startswith(f"# Publisher {name}\nLocal\n\n## Releases TF Hub never published\n")
  assert "Icon URL" not in text


@pytest.mark.parametrize("breakage, problem", [
    (lambda t: t.replace("# Placeholder ", "# Module "), "line 1 must read '# Placeholder "),
    (lambda t: t.replace("-->", "-->\n<!-- parent-model: tensorflow/nasnet/large/1 -->", 1),
     "metadata 'parent-model' belongs on a deployment's card"),
    (lambda t: t.replace("<!-- module-type: image-classification -->\n", ""),
     "metadata lacks required key 'module-type'"),
    (lambda t: t.replace("## References", "## Papers"),
     "a placeholder card has the sections Overview, References in this order, got Overview, Papers"),
    (lambda t: t.replace("Image classification model based on NASNet-A.", ""),
     "line 2 must be a one-line description"),
])
def test_placeholder_validator_names_each_broken_rule(breakage, problem):
  placeholder = registry.default().placeholders["nasnet_mobile"]
  card = docs_lib.render_placeholder_card(placeholder, registry.default())
  assert card_validator.validate_placeholder(card, "tensorflow/nasnet/mobile/1") == []
  problems = card_validator.validate_placeholder(breakage(card), "tensorflow/nasnet/mobile/1")
  assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize("breakage, problem", [
    (lambda t: t.replace("# Publisher google", "# Publisher tensorflow"),
     "line 1 names publisher 'tensorflow', but the page is 'google''s"),
    (lambda t: t.replace("\nGoogle\n", "\n\n"), "line 2 must be the publisher's display name"),
    (lambda t: t.replace("[![Icon URL]]", "[Icon]"), "line 4: only an icon line"),
    (lambda t: t.replace("## [ai.google]", "[ai.google]"), "the page has no '## ' section"),
])
def test_publisher_page_validator_names_each_broken_rule(breakage, problem):
  page = docs_lib.render_publisher_page("google", registry.default())
  assert card_validator.validate_publisher_page(page, "google") == []
  problems = card_validator.validate_publisher_page(breakage(page), "google")
  assert any(p.startswith(problem) for p in problems), problems


def test_the_tree_rules_need_every_publisher_page_and_every_deployment_parent(cards):
  """The generated tree passes; without a publisher's page, or a deployment parent's card,
  the tree check names what is missing (tfhub.dev's validator refuses both)."""
  assert card_validator.validate_tree(cards) == []
  without_page = {p: t for p, t in cards.items() if p != "local/local.md"}
  assert card_validator.validate_tree(without_page) == [
      "local/: the publisher has no page local/local.md"]
  without_parent = {p: t for p, t in cards.items()
                    if p != "tensorflow/models/nasnet/large/1.md"}
  assert card_validator.validate_tree(without_parent) == [
      f"tensorflow/models/nasnet/large/1/{variant}/lite/1.md: its parent-model "
      f"'tensorflow/nasnet/large/1' has no card tensorflow/models/nasnet/large/1.md in the tree"
      for variant in ("default", "metadata")]
  tfjs = "google/models/imagenet/nasnet_mobile/classification/1.md"
  assert card_validator.validate_tree({p: t for p, t in cards.items() if p != tfjs}) == [
      "google/models/imagenet/nasnet_mobile/classification/1/default/tfjs/1.md: its "
      "parent-model 'google/imagenet/nasnet_mobile/classification/1' has no card "
      f"{tfjs} in the tree"]


def test_a_publisher_without_a_page_stops_make_docs_naming_it(tmp_path):
  data = _registry_data()
  del data["publisher_pages"]["tensorflow"]
  with pytest.raises(registry.RegistryError, match=r"no \[publisher_pages.tensorflow\]"):
    docs_lib.run(docs_lib.DocsConfig(output_dir=tmp_path), registry.from_dict(data))
  assert list(tmp_path.iterdir()) == []
