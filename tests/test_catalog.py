"""The checkpoint catalog is a view over the registry, never a second copy of it."""
import dataclasses
import pathlib
import tomllib

import pytest

import registry
from checkpoints import catalog

CHECKPOINTS_DIR = pathlib.Path(catalog.__file__).parent


def test_one_entry_per_registry_model_with_its_facts():
  reg = registry.default()
  entries = catalog.entries()
  assert [e.model for e in entries] == list(reg.models)
  for e in entries:
    m = reg.model(e.model)
    assert e == catalog.CatalogEntry(e.model, m.checkpoint_archive, m.checkpoint_url,
                                     m.checkpoint_file)
    assert e.archive_url.endswith("/" + e.archive_name)
    assert e.archive_name.endswith(".tar.gz")


def test_released_layout_of_nasnet_mobile():
  e = catalog.entry("nasnet_mobile")
  assert e.archive_name == "nasnet-a_mobile_04_10_2017.tar.gz"
  assert e.checkpoint_file == "model.ckpt"
  assert e.archive_url == ("https://storage.googleapis.com/download.tensorflow.org/models/"
                           "nasnet-a_mobile_04_10_2017.tar.gz")


def test_a_changed_registry_changes_the_catalog():
  with open(registry.REGISTRY_FILE, "rb") as f:
    data = tomllib.load(f)
  data["publisher"]["checkpoint_base_url"] = "https://mirror.example/ckpt/"
  data["models"]["pnasnet_mobile"]["checkpoint_archive"] = "renamed.tar.gz"
  data["models"]["pnasnet_mobile"]["checkpoint_file"] = "inner/model.ckpt"
  reg = registry.from_dict(data)
  e = catalog.entry("pnasnet_mobile", reg)
  assert (e.archive_name, e.archive_url, e.checkpoint_file) == (
      "renamed.tar.gz", "https://mirror.example/ckpt/renamed.tar.gz", "inner/model.ckpt")
  assert catalog.entry("nasnet_mobile", reg).archive_url.startswith("https://mirror.example/")


def test_unknown_model_names_the_known_ones():
  with pytest.raises(registry.RegistryError, match="unknown model 'nasnet_tiny'.*nasnet_mobile"):
    catalog.entry("nasnet_tiny")


def test_checkpoint_code_restates_no_registry_fact():
  reg = registry.default()
  facts = [m.checkpoint_archive for m in reg.models.values()]
  facts.append(reg.publisher.checkpoint_base_url)
  for source in CHECKPOINTS_DIR.glob("*.py"):
    text = source.read_text()
    assert not [f for f in facts if f in text], f"{source.name} restates registry facts"


def test_entries_are_frozen():
  with pytest.raises(dataclasses.FrozenInstanceError):
    catalog.entry("nasnet_mobile").archive_name = "x"
