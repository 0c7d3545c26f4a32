"""The registry loader: what is published, lookups that fail helpfully, bad files rejected."""
import copy
import re
import tomllib

import pytest

import registry

# Published releases per model (both module types each): as the hub lists them,
# and pnasnet_mobile's, numbered from 1 under the publisher of releases TF Hub never made.
PUBLISHED_VERSIONS = {
    "nasnet_mobile": [1, 3, 4, 5],
    "nasnet_large": [1, 3, 4, 5],
    "pnasnet_large": [1, 2, 3, 4, 5],
    "pnasnet_mobile": [1, 2],
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
  with pytest.raises(registry.RegistryError, match=r"pnasnet_mobile has no published version 3; "
                                                   r"its versions: 1, 2"):
    reg.release("pnasnet_mobile", "classification", 3)


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
      "google/imagenet/pnasnet_large/feature_vector/2",
      "local/imagenet/pnasnet_mobile/classification/2",
      "local/imagenet/pnasnet_mobile/feature_vector/2"]


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


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["publisher"].update(num_classes="many"),
     r"registry \[publisher\]: num_classes must be a positive whole number, not 'many'"),
    (lambda d: d["publisher"].update(num_classes=True),
     r"num_classes must be a positive whole number, not True"),
    (lambda d: d.pop("publisher"), r"registry lacks its \[publisher\] table"),
    (lambda d: d["publisher"].pop("collection"), r"registry \[publisher\] lacks \['collection'\]"),
    (lambda d: d["models"]["nasnet_large"].update(num_cells="twelve"),
     r"registry model 'nasnet_large': num_cells must be a positive whole number, not 'twelve'"),
    (lambda d: d["models"]["nasnet_large"].update(image_size=-331),
     r"image_size must be a positive whole number, not -331"),
    (lambda d: d["models"]["pnasnet_large"].update(display_name=""),
     r"registry model 'pnasnet_large': display_name must be a text, not ''"),
    (lambda d: d["models"].update(nasnet_mobile="small"),
     r"registry model 'nasnet_mobile' must be a table, not 'small'"),
    (lambda d: d["versions"]["5"].update(models="nasnet_mobile"),
     r"registry version 5: models must be a list of texts, not 'nasnet_mobile'"),
    (lambda d: d["versions"]["4"].update(batch_norm_momentum="0.99"),
     r"registry version 4: batch_norm_momentum must be a number, not '0.99'"),
    (lambda d: d["versions"]["4"].update(batch_norm_momentum=99.7),
     r"batch_norm_momentum must be between 0 and 1, not 99.7"),
    (lambda d: d["versions"]["5"].update(serving_signature="yes"),
     r"registry version 5: serving_signature must be true or false, not 'yes'"),
    (lambda d: d["versions"].update(five=d["versions"]["5"]),
     r"registry \[versions\] are numbered 1, 2, ...; not \['five'\]"),
    (lambda d: d["unpublished_versions"]["1"].update(models="pnasnet_mobile"),
     r"registry unpublished version 1: models must be a list of texts, not 'pnasnet_mobile'"),
    (lambda d: d["deployments"]["tfjs"].update(models="nasnet_mobile"),
     r"registry \[deployments.tfjs\]: models must be a list of texts, not 'nasnet_mobile'"),
    (lambda d: d["deployments"]["lite"].update(variants="metadata"),
     r"registry \[deployments.lite\]: handle_segment must be a handle segment and variants a "
     r"list of distinct handle segments"),
    (lambda d: d["deployments"]["lite"].update(variants=["default", "default"]),
     r"variants a list of distinct handle segments"),
    (lambda d: d["deployments"]["lite"]["by_variant"].update(quantized={"x": "y"}),
     r"registry \[deployments.lite\]: by_variant must hold one table of card fields per "
     r"variant of \['default', 'metadata'\]"),
    (lambda d: d["deployments"]["lite"]["by_variant"]["metadata"].update(asset_path="x"),
     r"registry \[deployments.lite\] states \['asset_path'\] for every variant and in "
     r"by_variant.metadata: state each in one place"),
    (lambda d: d["publisher_pages"]["google"].pop("about"),
     r"registry \[publisher_pages.google\] lacks 'about'"),
    (lambda d: d["publisher_pages"]["tensorflow"].update(heading=""),
     r"registry \[publisher_pages.tensorflow\] must be a table of non-empty texts"),
    (lambda d: d["publisher_pages"].update({"Acme ML": d["publisher_pages"]["local"]}),
     r"registry \[publisher_pages.Acme ML\]: 'Acme ML' is not a publisher name"),
], ids=["num-classes-text", "num-classes-bool", "no-publisher", "publisher-field-missing",
        "num-cells-text", "image-size-negative", "display-name-empty", "model-not-a-table",
        "version-models-text", "momentum-text", "momentum-out-of-range", "flag-text",
        "version-not-a-number", "unpublished-models-text", "tfjs-models-text",
        "variants-text", "variants-twice", "by-variant-unknown", "by-variant-restates",
        "page-lacks-about", "page-empty-field", "page-bad-name"])
def test_hand_edited_fields_of_the_wrong_type_are_named(registry_data, edit, message):
  edit(registry_data)
  with pytest.raises(registry.RegistryError, match=message):
    registry.from_dict(registry_data)


def test_an_unreadable_or_malformed_registry_file_is_one_error(tmp_path):
  broken = tmp_path / "models.toml"
  broken.write_text(registry.REGISTRY_FILE.read_text().replace("[publisher]", "[publisher", 1))
  with pytest.raises(registry.RegistryError,
                     match=rf"registry '{broken}' is not valid TOML: .*\(at line \d+"):
    registry.load(broken)
  with pytest.raises(registry.RegistryError,
                     match=rf"cannot read the registry '{tmp_path}/absent.toml': No such file"):
    registry.load(tmp_path / "absent.toml")


def test_load_reads_an_edited_copy(tmp_path):
  text = registry.REGISTRY_FILE.read_text().replace("image_size = 224", "image_size = 225", 1)
  path = tmp_path / "models.toml"
  path.write_text(text)
  assert registry.load(path).model("nasnet_mobile").image_size == 225
  assert registry.default().model("nasnet_mobile").image_size == 224


# --- Card schemas: the hub's metadata schemas, as data. ---

def test_card_schemas_are_named_and_2021_04_is_the_default(reg):
  assert list(reg.card_schemas) == ["2021-04", "2021-06"]
  assert reg.card_schema().name == "2021-04"
  assert reg.card_schema(None) is reg.card_schema("2021-04")
  with pytest.raises(registry.RegistryError,
                     match="unknown card schema '2021-05'; known card schemas: 2021-04, 2021-06"):
    reg.card_schema("2021-05")


def test_the_2021_06_schema_writes_ids_and_task_in_place_of_module_type(reg):
  old, new = reg.card_schema("2021-04"), reg.card_schema("2021-06")
  assert old.key("module-type") == "module-type" and new.key("module-type") == "task"
  assert "task" in new.required and "module-type" not in new.keys
  assert "module-type" in old.required and "task" not in old.keys
  release = reg.release("pnasnet_large", "feature_vector", 5)
  assert [new.values[k].for_release(release) for k in ("dataset", "network-architecture", "task")] \
      == ["imagenet-ilsvrc-2012-cls", "pnasnet-5-large", "image-feature-vector"]
  assert [old.values[k].for_release(release) for k in ("dataset", "network-architecture", "module-type")] \
      == ["ImageNet (ILSVRC-2012-CLS)", "PNASNet-5 (large)", "image-feature-vector"]
  # The hub's tags have no PNASNet-5 (mobile) id, so the schema gives none and
  # leaves the optional line out of its cards.
  unpublished = reg.release("pnasnet_mobile", "classification", 2)
  assert new.values["network-architecture"].for_release(unpublished) is None
  assert new.omits("network-architecture", "pnasnet_mobile")
  assert not old.omits("network-architecture", "pnasnet_mobile")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["card_schemas"]["2021-06"]["values"]["network-architecture"]["by_model"].update(
        nasnet_mobile="NASNet-A (mobile)"),
     r"card schema '2021-06': network-architecture values \['NASNet-A \(mobile\)'\] are not "
     r"among its allowed values nasnet-a-large, nasnet-a-mobile, pnasnet-5-large"),
    (lambda d: d["card_schemas"]["2021-06"]["values"].update(dataset="ImageNet (ILSVRC-2012-CLS)"),
     r"dataset values \['ImageNet \(ILSVRC-2012-CLS\)'\] are not among its allowed values"),
    (lambda d: d["card_schemas"]["2021-06"]["values"]["task"]["by_module_type"].update(
        detection="object-detection"),
     r"task.by_module_type names unknown module types \['detection'\]"),
    (lambda d: d["card_schemas"]["2021-04"]["values"]["network-architecture"]["by_model"].update(
        resnet="ResNet"), r"network-architecture.by_model names unknown models \['resnet'\]"),
    (lambda d: d["card_schemas"]["2021-06"]["required"].append("module-type"),
     r"card schema '2021-06': required names unknown keys \['module-type'\]"),
    (lambda d: d["card_schemas"]["2021-06"]["renamed"].update({"module-type": "tasks"}),
     r"renamed names unknown keys \['tasks'\]"),
    (lambda d: d["card_schemas"]["2021-06"]["values"].update(license="apache-2.0"),
     r"values for unknown key 'license'"),
    (lambda d: d["card_schemas"]["2021-06"].pop("repeatable"),
     r"card schema '2021-06' lacks \['repeatable'\]"),
    (lambda d: d["cards"].update(default_schema="2021-05"),
     r"default_schema '2021-05' is not a \[card_schemas\] table; known card schemas: 2021-04, 2021-06"),
], ids=["display-name-for-id", "dataset-name", "unknown-module-type", "unknown-model",
        "unknown-required", "unknown-renamed", "unknown-value-key", "missing-field",
        "unknown-default"])
def test_bad_card_schemas_are_rejected(registry_data, edit, message):
  edit(registry_data)
  with pytest.raises(registry.RegistryError, match=message):
    registry.from_dict(registry_data)


# --- Releases TF Hub never made: their own publisher, versions from 1. ---

def test_unpublished_releases_have_their_own_publisher_and_follow_a_published_version(reg):
  assert reg.publishers["tfhub"]["name"] == "google"
  unpublished = reg.publishers["unpublished"]["name"]
  assert unpublished != "google"
  assert reg.publisher_names == ["google", unpublished]
  for number, followed in ((1, 3), (2, 5)):
    for module_type in registry.MODULE_TYPES:
      release = reg.release("pnasnet_mobile", module_type, number)
      assert release.handle_with_version == (
          f"{unpublished}/imagenet/pnasnet_mobile/{module_type}/{number}")
      version, published = release.version, reg.version(followed)
      assert version.follows == followed and not version.tfhub_published
      for field in ("format", "batch_norm_momentum", "bn_hparams_signatures",
                    "serving_signature"):
        assert getattr(version, field) == getattr(published, field), field
      assert version.extra["card_family"] == published.extra["card_family"]
      assert version.extra["changelog"] != published.extra["changelog"]
  assert all(r.version.publisher == "google" and r.version.tfhub_published
             for r in reg.releases() if r.model.name != "pnasnet_mobile")
  assert reg.handle("pnasnet_mobile", "feature_vector") == (
      f"{unpublished}/imagenet/pnasnet_mobile/feature_vector")


def test_format_comes_from_the_followed_version_not_the_number(registry_data):
  registry_data["unpublished_versions"]["1"]["follows"] = 5
  registry_data["unpublished_versions"]["2"]["follows"] = 1
  reg = registry.from_dict(registry_data)
  v1, v2 = reg.model_versions("pnasnet_mobile")
  assert (v1.format, v1.serving_signature) == ("saved_model_2", True)
  assert (v2.format, v2.batch_norm_momentum, v2.bn_hparams_signatures) == ("hub", 0.9997, False)


def test_the_unpublished_publisher_name_flows_to_every_handle(registry_data):
  registry_data["publishers"]["unpublished"]["name"] = "acme-ml"
  reg = registry.from_dict(registry_data)
  assert [r.handle_with_version for r in reg.releases(models=["pnasnet_mobile"],
                                                      module_types=["classification"])] == [
      "acme-ml/imagenet/pnasnet_mobile/classification/1",
      "acme-ml/imagenet/pnasnet_mobile/classification/2"]
  assert reg.release("nasnet_mobile", "classification", 1).handle.startswith("google/")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["publishers"]["unpublished"].update(name="google"),
     "must not use TF Hub's publisher name 'google'"),
    (lambda d: d["publishers"]["unpublished"].update(name="Local Models"),
     "name 'Local Models' is not a handle segment"),
    (lambda d: d["publishers"].pop("unpublished"), r"missing \['unpublished'\]"),
    (lambda d: d["publishers"]["unpublished"].pop("hub_url"),
     r"\[publishers.unpublished\] lacks a hub_url"),
    (lambda d: d["unpublished_versions"]["2"].update(format="saved_model_2"),
     r"unpublished version 2 sets \['format'\], which come from the version it follows"),
    (lambda d: d["unpublished_versions"]["1"].update(follows=6),
     "unpublished version 1 follows 6, which is no published version"),
    (lambda d: d["unpublished_versions"]["1"]["models"].append("nasnet_mobile"),
     r"unpublished version 1 names \['nasnet_mobile'\], which TF Hub published"),
    (lambda d: d["unpublished_versions"].update({"4": d["unpublished_versions"]["2"]}),
     r"must be numbered 1, 2, ... without gaps; got \[1, 2, 4\]"),
    (lambda d: d["card_schemas"]["2021-06"]["omitted"].update(task=["pnasnet_mobile"]),
     "omitted names 'task', which is not an optional key"),
], ids=["tfhub-name", "bad-name", "missing-role", "missing-url", "stated-twice",
        "unknown-followed", "published-model", "gap", "omitted-required"])
def test_bad_publisher_tables_are_rejected(registry_data, edit, message):
  edit(registry_data)
  with pytest.raises(registry.RegistryError, match=message):
    registry.from_dict(registry_data)


# --- A hand-edited registry in every command line (issue 20). ---

CLI_FLAGS = {
    "export": ["--model=nasnet_mobile", "--module_type=classification", "--version=3",
               "--checkpoint_path={tmp}/ckpt/model.ckpt", "--export_dir={tmp}/exports/out"],
    "export_all": ["--export_dir={tmp}/exports", "--checkpoint_dir={tmp}/ckpt"],
    "publish": ["--export_dir={tmp}/exports", "--dest={tmp}/published"],
    "verify": ["--model=nasnet_mobile", "--module_type=classification", "--version=3",
               "--checkpoint_path={tmp}/ckpt/model.ckpt", "--export_dir={tmp}/exports/out"],
}


@pytest.fixture(scope="module")
def tree_with_a_broken_registry(tmp_path_factory):
  """A copy of the project's packages whose models.toml lost a bracket."""
  import shutil
  root = tmp_path_factory.mktemp("broken_registry_tree")
  repo = registry.REGISTRY_FILE.parents[1]
  for package in ("registry", "slim_nets", "checkpoints", "exporters"):
    shutil.copytree(repo / package, root / package,
                    ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
  toml = root / "registry" / "models.toml"
  toml.write_text(toml.read_text().replace("[publisher]", "[publisher", 1))
  return root


@pytest.mark.parametrize("command", sorted(CLI_FLAGS))
def test_a_broken_registry_is_one_error_line_in_every_command(tree_with_a_broken_registry,
                                                              tmp_path, command):
  import subprocess
  import sys
  flags = [f.format(tmp=tmp_path) for f in CLI_FLAGS[command]]
  result = subprocess.run([sys.executable, "-m", f"exporters.{command}", *flags],
                          cwd=tree_with_a_broken_registry, capture_output=True, text=True,
                          timeout=120)
  toml = tree_with_a_broken_registry / "registry" / "models.toml"
  assert result.returncode == 1, result.stderr[-2000:]
  lines = result.stderr.splitlines()
  assert len(lines) == 1 and re.fullmatch(
      rf"error: registry '{re.escape(str(toml))}' is not valid TOML: .*\(at line \d+, "
      rf"column \d+\)", lines[0]), result.stderr[-2000:]
  assert list(tmp_path.iterdir()) == [], "a refused command left files behind"
