"""The registry loader: what is published, lookups that fail helpfully, bad files rejected."""
import copy
import tomllib

import pytest

import registry

# Published releases per model, as the hub lists them (both module types each).
PUBLISHED_VERSIONS = {
    "nasnet_mobile": [1, 3, 4, 5],
    "nasnet_large": [1, 3, 4, 5],
    "pnasnet_large": [1, 2, 3, 4, 5],
    "pnasnet_mobile": [],
}


@pytest.fixture
def registry_data():
  """A fresh, editable copy of the parsed models.toml."""
  with open(registry.REGISTRY_FILE, "rb") as f:
    return copy.deepcopy(tomllib.load(f))


@pytest.fixture
def reg():
  return registry.default()


@pytest.mark.parametrize("model", sorted(PUBLISHED_VERSIONS))
def test_published_versions_per_model(reg, model):
  assert [v.number for v in reg.model_versions(model)] == PUBLISHED_VERSIONS[model]
  for module_type in registry.MODULE_TYPES:
    found = [r.version.number for r in reg.releases(models=[model], module_types=[module_type])]
    assert found == PUBLISHED_VERSIONS[model]


def test_releases_unfiltered_lists_every_published_triple(reg):
  expected = {(m, t, v) for m, versions in PUBLISHED_VERSIONS.items()
              for t in registry.MODULE_TYPES for v in versions}
  found = [(r.model.name, r.module_type, r.version.number) for r in reg.releases()]
  assert len(found) == len(set(found))
  assert set(found) == expected


def test_releases_filters_combine(reg):
  found = [(r.model.name, r.module_type, r.version.number)
           for r in reg.releases(models=["pnasnet_large", "nasnet_large"],
                                 module_types=["feature_vector"], versions=[2, "5"])]
  assert found == [("nasnet_large", "feature_vector", 5),
                   ("pnasnet_large", "feature_vector", 2),
                   ("pnasnet_large", "feature_vector", 5)]


def test_release_handle(reg):
  release = reg.release("nasnet_mobile", "classification", 4)
  assert release.handle == "google/imagenet/nasnet_mobile/classification"
  assert release.handle_with_version == "google/imagenet/nasnet_mobile/classification/4"
  assert release.model.checkpoint_label == "nasnet-a_mobile_04_10_2017/model.ckpt"


@pytest.mark.parametrize("lookup, bad, choices", [
    (lambda r: r.model("nasnet_medium"), "'nasnet_medium'", "nasnet_mobile, nasnet_large"),
    (lambda r: r.version(7), "7", "1, 2, 3, 4, 5"),
    (lambda r: r.version("seven"), "'seven'", "1, 2, 3, 4, 5"),
    (lambda r: r.handle("nasnet_mobile", "detection"), "'detection'",
     "classification, feature_vector"),
    (lambda r: list(r.releases(models=["resnet"])), "'resnet'", "nasnet_mobile"),
    (lambda r: list(r.releases(module_types=["segmentation"])), "'segmentation'",
     "classification, feature_vector"),
    (lambda r: list(r.releases(versions=[9])), "9", "1, 2, 3, 4, 5"),
], ids=["model", "version", "version-text", "module-type", "releases-model",
        "releases-module-type", "releases-version"])
def test_unknown_lookups_name_the_value_and_the_choices(reg, lookup, bad, choices):
  with pytest.raises(registry.RegistryError) as error:
    lookup(reg)
  assert bad in str(error.value)
  assert choices in str(error.value)


def test_unpublished_release_names_the_published_versions(reg):
  with pytest.raises(registry.RegistryError, match=r"nasnet_mobile has no published version 2; "
                                                   r"its versions: 1, 3, 4, 5"):
    reg.release("nasnet_mobile", "classification", 2)
  with pytest.raises(registry.RegistryError, match="its versions: none"):
    reg.release("pnasnet_mobile", "classification", 1)


def test_card_fields_land_in_extra_and_card_tables(reg):
  assert reg.model("nasnet_large").extra["slim_implementation"] == "nasnet_large"
  assert reg.version(5).extra["card_family"] == "tf2_v4"
  assert reg.version(2).extra["changelog"][0].startswith("Fixed broken UPDATE_OPS")
  assert reg.cards["dataset"] == "ImageNet (ILSVRC-2012-CLS)"
  assert reg.families["pnasnet"]["papers"] == ["pnasnet", "nasnet"]
  assert reg.papers["nasnet"]["url"] == "https://arxiv.org/abs/1707.07012"


def test_a_registry_without_card_tables_still_loads(registry_data):
  for table in ("cards", "papers", "families"):
    del registry_data[table]
  reg = registry.from_dict(registry_data)
  assert reg.families == {} and reg.cards == {}
  assert [r.handle_with_version for r in reg.releases(versions=[2])] == [
      "google/imagenet/pnasnet_large/classification/2",
      "google/imagenet/pnasnet_large/feature_vector/2"]


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["models"]["nasnet_mobile"].pop("image_size"),
     r"registry model 'nasnet_mobile' lacks \['image_size'\]"),
    (lambda d: d["versions"]["3"].pop("format"), r"registry version 3 lacks \['format'\]"),
    (lambda d: d["versions"]["4"].update(format="saved_model_1"), "format must be one of"),
    (lambda d: d["versions"]["5"]["models"].append("resnet"),
     r"registry version 5 names unknown models \['resnet'\]"),
    (lambda d: d["models"]["nasnet_large"].update(family="amoebanet"),
     r"family 'amoebanet', which has no \[families.amoebanet\] table; known families: nasnet, pnasnet"),
    (lambda d: d["families"]["nasnet"]["papers"].append("amoebanet"),
     r"family 'nasnet' cites unknown papers \['amoebanet'\]; known papers: nas, nasnet, pnasnet"),
], ids=["missing-model-field", "missing-version-field", "bad-format", "unknown-model",
        "unknown-family", "unknown-paper"])
def test_bad_registry_files_are_rejected(registry_data, edit, message):
  edit(registry_data)
  with pytest.raises(registry.RegistryError, match=message):
    registry.from_dict(registry_data)


def test_load_reads_an_edited_copy(tmp_path):
  text = registry.REGISTRY_FILE.read_text().replace("image_size = 224", "image_size = 225", 1)
  path = tmp_path / "models.toml"
  path.write_text(text)
  assert registry.load(path).model("nasnet_mobile").image_size == 225
  assert registry.default().model("nasnet_mobile").image_size == 224
