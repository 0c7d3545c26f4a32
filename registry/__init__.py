"""The project's one registry of models and published versions.

The facts live in `models.toml` (data, not code); this module loads them into
frozen dataclasses and answers the questions every other part asks: which
(model, module type, version) triples are published, what a handle is called,
where a model's checkpoint comes from, which card metadata schemas the cards
can be written in (`card_schema`). Tests may load a modified copy with
`load(path)` to check that a changed fact flows everywhere.
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
import re
import tomllib
from typing import Iterator

REGISTRY_FILE = pathlib.Path(__file__).with_name("models.toml")
MODULE_TYPES = ("classification", "feature_vector")
# The export formats, as the registry's versions name them.
TF1_HUB_FORMAT = "hub"  # What hub.Module loads (google's versions 1-3).
SAVED_MODEL_2_FORMAT = "saved_model_2"  # A TF2 SavedModel for hub.KerasLayer (4-5).
FORMATS = (TF1_HUB_FORMAT, SAVED_MODEL_2_FORMAT)
# The kinds of deployment ([deployments.<name>] tables' `kind`), each the format of the
# releases it is converted from. A kind also names the deployment's format in tables,
# stamps and manifests.
DEPLOYMENT_KINDS = {
    "tfjs": TF1_HUB_FORMAT,  # A TF.js graph model, by the TF.js converter.
    "lite": SAVED_MODEL_2_FORMAT,  # A TFLite model, by TensorFlow's TFLite converter.
}
_PUBLISHER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


class RegistryError(ValueError):
  """A registry lookup or the registry file itself is wrong."""


@dataclasses.dataclass(frozen=True)
class Collection:
  """[publisher]: what every release of the registry shares."""
  collection: str  # The handles' second segment: google/<collection>/<model>/...
  num_classes: int  # Classifier outputs, background class included (1001).
  checkpoint_base_url: str  # Where the released checkpoint archives are.


@dataclasses.dataclass(frozen=True)
class Model:
  name: str
  family: str  # "nasnet" or "pnasnet": selects the card texts of the family.
  display_name: str
  image_size: int
  feature_size: int
  num_cells: int
  num_conv_filters: int
  # The L2 weight decay of the network's TF-Slim arg scope: the training-mode
  # exports' regularization losses are weight_decay * sum(w**2) / 2 per weight.
  weight_decay: float
  # Peak resident memory of one model run (GB): export-all's estimate until a
  # stamp records a measured peak (exporters.export_tree.plan.memory_gb).
  memory_gb: float
  checkpoint_archive: str
  checkpoint_file: str
  checkpoint_url: str
  extra: dict  # Card-only fields (texts, links); see models.toml.

  @property
  def input_shape(self) -> list:
    """Every release's images input: a batch of RGB images, image_size square."""
    return [None, self.image_size, self.image_size, 3]

  @property
  def checkpoint_label(self) -> str:
    """How the cards name the checkpoint: `<archive stem>/model.ckpt`."""
    return f"{self.checkpoint_archive.removesuffix('.tar.gz')}/{self.checkpoint_file}"


@dataclasses.dataclass(frozen=True)
class Version:
  """A version under one publisher; its `format` (not its number) says how it is written."""
  number: int
  format: str
  models: tuple[str, ...]
  batch_norm_momentum: float
  bn_hparams_signatures: bool
  serving_signature: bool
  extra: dict
  publisher: str = "google"  # The handles' first segment ([publishers] in models.toml).
  # For a release TF Hub never made: the published (tfhub) version it follows.
  follows: int | None = None

  @property
  def tfhub_published(self) -> bool:
    return self.follows is None


@dataclasses.dataclass(frozen=True)
class Release:
  """One published (model, module type, version)."""
  registry: "Registry"
  model: Model
  module_type: str
  version: Version

  @property
  def handle(self) -> str:
    """`<publisher>/<collection>/<model>/<module_type>`, the path a hub serves."""
    collection = self.registry.publisher.collection
    return f"{self.version.publisher}/{collection}/{self.model.name}/{self.module_type}"

  @property
  def handle_with_version(self) -> str:
    return f"{self.handle}/{self.version.number}"

  @property
  def card_file(self) -> str:
    """The card's name in the handle's folder, in every tree (docs, exports, hub)."""
    return f"{self.version.number}.md"


@dataclasses.dataclass(frozen=True)
class Placeholder:
  """A model page TF Hub made only as the parent of a network's deployments
  ([placeholders.<model>]): `tensorflow/nasnet/mobile/1` has no files of its own."""
  model: Model
  handle: str  # `<publisher>/<name...>`, without the version.
  version: int
  extra: dict  # Card fields.

  @property
  def handle_with_version(self) -> str:
    return f"{self.handle}/{self.version}"


@dataclasses.dataclass(frozen=True)
class Deployment:
  """A model TF Hub published for another runtime, converted from one release's verified
  export ([deployments.<name>])."""
  name: str  # Its [deployments] table.
  kind: str  # DEPLOYMENT_KINDS: which converter makes it, and the format it is in.
  parent: Release  # The release it is converted from.
  version: int
  variant: str
  handle_segment: str  # After the publisher: `tfjs-model`.
  extra: dict  # Card fields (the table less the deployment's own facts).
  # Its parent model on the hub when that is not `parent` (`parent_model = "placeholder"`).
  placeholder: Placeholder | None = None

  @property
  def parent_handle_with_version(self) -> str:
    """The model page its card names as `parent-model`: the release, or its placeholder."""
    if self.placeholder is not None:
      return self.placeholder.handle_with_version
    return self.parent.handle_with_version

  @property
  def handle_dir(self) -> str:
    """`<publisher>/<handle_segment>/<rest of the parent's handle>/<parent version>/<variant>`:
    `google/tfjs-model/imagenet/nasnet_mobile/classification/3/default`."""
    publisher, rest = self.parent_handle_with_version.split("/", 1)
    return f"{publisher}/{self.handle_segment}/{rest}/{self.variant}"

  @property
  def handle(self) -> str:
    """The handle its client loads (TF.js: `tf.loadGraphModel(..., {fromTFHub: true})`)."""
    return f"{self.handle_dir}/{self.version}"

  @property
  def card_handle(self) -> str:
    """How its card's title names it: `<parent handle>/<parent version>/<variant>/<version>`."""
    return f"{self.parent_handle_with_version}/{self.variant}/{self.version}"


@dataclasses.dataclass(frozen=True)
class CardValue:
  """What a card schema writes for one metadata key: one text on every card,
  or one per model or per module type (exactly one of the three is set)."""
  every: str | None = None
  by_model: dict[str, str] | None = None
  by_module_type: dict[str, str] | None = None

  def for_release(self, release: Release) -> str | None:
    """The release's value, or None when the schema gives none for its model."""
    if self.every is not None:
      return self.every
    if self.by_model is not None:
      return self.by_model.get(release.model.name)
    return self.by_module_type.get(release.module_type)

  def all_values(self) -> list[str]:
    if self.every is not None:
      return [self.every]
    return list((self.by_model or self.by_module_type).values())


@dataclasses.dataclass(frozen=True)
class CardSchema:
  """One of the hub's card metadata schemas (see [card_schemas] in models.toml)."""
  name: str
  keys: dict[str, tuple[str, ...]]  # Every known key -> allowed values; () = any text.
  required: tuple[str, ...]
  repeatable: tuple[str, ...]
  renamed: dict[str, str]  # A version's card_metadata line -> the key it is written under.
  values: dict[str, CardValue]  # The keys whose value depends on the schema.
  # Optional key -> models whose cards leave its line out (the hub has no tag for them).
  omitted: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
  deployment_required: tuple[str, ...] = ()  # The keys a deployment's card must have.

  def omits(self, key: str, model: str) -> bool:
    return model in self.omitted.get(key, ())

  def key(self, line: str) -> str:
    """The key this schema writes a `card_metadata` line under."""
    return self.renamed.get(line, line)


@dataclasses.dataclass(frozen=True)
class Registry:
  publisher: Collection
  models: dict[str, Model]
  versions: dict[int, Version]
  # Card-only tables (see models.toml): what every card states, the papers
  # cards cite, and per-family texts. Empty when a registry carries no cards.
  cards: dict = dataclasses.field(default_factory=dict)
  papers: dict[str, dict] = dataclasses.field(default_factory=dict)
  families: dict[str, dict] = dataclasses.field(default_factory=dict)
  card_schemas: dict[str, CardSchema] = dataclasses.field(default_factory=dict)
  # [publishers]: role ("tfhub", "unpublished") -> {"name", "hub_url"}.
  publishers: dict[str, dict] = dataclasses.field(default_factory=dict)
  # [unpublished_versions]: releases TF Hub never made, numbered from 1 under
  # their own publisher; `versions` holds the ones tfhub.dev published.
  unpublished_versions: dict[int, Version] = dataclasses.field(default_factory=dict)
  # [deployments.<name>]: which releases have a deployment of which kind, its handle and
  # card fields; checked by _deployment_table.
  deployment_tables: dict[str, dict] = dataclasses.field(default_factory=dict)
  # [placeholders.<model>]: the parent pages of deployments that name no release.
  placeholders: dict[str, Placeholder] = dataclasses.field(default_factory=dict)
  # [publisher_pages.<publisher>]: each publisher's page (<publisher>/<publisher>.md).
  publisher_pages: dict[str, dict] = dataclasses.field(default_factory=dict)

  def deployments(self, models=None, module_types=None, versions=None,
                  kind: str | None = None) -> list[Deployment]:
    """The deployments of the releases `releases(...)` selects, table by table (of `kind`
    only, when given), each table's in the releases' order."""
    found = []
    for name, table in self.deployment_tables.items():
      if kind is not None and table["kind"] != kind:
        continue
      own = {k: v for k, v in table.items()
             if k not in (*_DEPLOYMENT_FIELDS, *_OPTIONAL_DEPLOYMENT_FIELDS)}
      found += [Deployment(name=name, kind=table["kind"], parent=r, version=table["version"],
                           variant=variant, handle_segment=table["handle_segment"],
                           extra={**own, **table.get("by_variant", {}).get(variant, {})},
                           placeholder=(self.placeholders[r.model.name]
                                        if table.get("parent_model") == "placeholder" else None))
                for variant in table["variants"]
                for r in self.releases(models, module_types, versions)
                if r.model.name in table["models"] and r.version.tfhub_published
                and r.version.number in table["parent_versions"]
                and r.module_type in table.get("module_types", MODULE_TYPES)]
    return found

  def deployment(self, release: Release, kind: str, variant: str = "default") -> Deployment:
    """`release`'s deployment of `kind` and `variant`; RegistryError when it has none."""
    for deployment in self.deployments(models=[release.model.name],
                                       module_types=[release.module_type],
                                       versions=[release.version.number], kind=kind):
      if deployment.parent.version == release.version and deployment.variant == variant:
        return deployment
    having = ", ".join(d.parent.handle_with_version for d in self.deployments(kind=kind))
    raise RegistryError(f"{release.handle_with_version} has no {kind} deployment; the "
                        f"releases with one: {having or 'none'}")

  def all_versions(self) -> list[Version]:
    """Every version, TF Hub's first, each publisher's in ascending order."""
    return [*self.versions.values(), *self.unpublished_versions.values()]

  @property
  def publisher_names(self) -> list[str]:
    """The first segment of every release's handle, in registry order."""
    return list(dict.fromkeys(v.publisher for v in self.all_versions()))

  @property
  def page_publishers(self) -> list[str]:
    """Every publisher a card is filed under: the releases', then the placeholders'."""
    return list(dict.fromkeys([*self.publisher_names,
                               *(p.handle.split("/")[0] for p in self.placeholders.values())]))

  def placeholder_children(self, placeholder: Placeholder) -> list[Deployment]:
    """The deployments whose parent page is `placeholder`."""
    return [d for d in self.deployments() if d.placeholder == placeholder]

  def publisher_of(self, version: Version) -> dict:
    """The [publishers] entry whose name `version` is published under."""
    for entry in self.publishers.values():
      if entry.get("name") == version.publisher:
        return entry
    raise RegistryError(f"version {version.number} names publisher {version.publisher!r}, "
                        f"which no [publishers] table has")

  def card_schema(self, name: str | None = None) -> CardSchema:
    """The named card schema; None: the `[cards] default_schema`."""
    if name is None:
      name = self.cards.get("default_schema")
      if name is None:
        raise RegistryError("registry [cards] lacks default_schema")
    try:
      return self.card_schemas[name]
    except KeyError:
      raise RegistryError(
          f"unknown card schema {name!r}; known card schemas: "
          f"{', '.join(self.card_schemas) or 'none'}") from None

  def model(self, name: str) -> Model:
    try:
      return self.models[name]
    except KeyError:
      raise RegistryError(
          f"unknown model {name!r}; known models: {', '.join(self.models)}") from None

  def version(self, number: int) -> Version:
    try:
      return self.versions[int(number)]
    except (KeyError, ValueError):
      raise RegistryError(
          f"unknown version {number!r}; published versions: "
          f"{', '.join(map(str, self.versions))}") from None

  def handle(self, model: str, module_type: str) -> str:
    """`<publisher>/<collection>/<model>/<module_type>` of `model`'s releases."""
    m = self.model(model)
    check_module_type(module_type)
    versions = self.model_versions(m.name)
    if not versions:
      raise RegistryError(f"{m.name} has no published version, so no handle")
    return Release(self, m, module_type, versions[0]).handle

  def release(self, model: str, module_type: str, version: int) -> Release:
    """`model`'s release of `version`, numbered under the model's publisher."""
    m = self.model(model)
    self._check_version_number(version)
    check_module_type(module_type)
    own = self.model_versions(m.name)
    found = [v for v in own if v.number == int(version)]
    if not found:
      raise RegistryError(
          f"{m.name} has no published version {int(version)}; its versions: "
          f"{', '.join(str(v.number) for v in own) or 'none'}")
    return Release(self, m, module_type, found[0])

  def _check_version_number(self, number) -> None:
    """Raises unless some publisher has a version `number`."""
    known = sorted({v.number for v in self.all_versions()})
    try:
      if int(number) in known:
        return
    except (TypeError, ValueError):
      pass
    raise RegistryError(f"unknown version {number!r}; published versions: "
                        f"{', '.join(map(str, known))}")

  def releases(self, models=None, module_types=None, versions=None) -> Iterator[Release]:
    """Every published release, optionally filtered; unknown filter values raise."""
    for name in models or ():
      self.model(name)
    for t in module_types or ():
      check_module_type(t)
    for n in versions or ():
      self._check_version_number(n)
    wanted_versions = {int(n) for n in versions} if versions else None
    for m in self.models.values():
      if models and m.name not in models:
        continue
      for t in MODULE_TYPES:
        if module_types and t not in module_types:
          continue
        for v in self.model_versions(m.name):
          if wanted_versions is None or v.number in wanted_versions:
            yield Release(self, m, t, v)

  def model_versions(self, model: str) -> list[Version]:
    return [v for v in self.all_versions() if model in v.models]


def check_module_type(module_type: str) -> str:
  if module_type not in MODULE_TYPES:
    raise RegistryError(
        f"unknown module type {module_type!r}; expected one of {', '.join(MODULE_TYPES)}")
  return module_type


_MODEL_FIELDS = {f.name for f in dataclasses.fields(Model)} - {"name", "extra", "checkpoint_url"}
_VERSION_FIELDS = ({f.name for f in dataclasses.fields(Version)}
                   - {"number", "extra", "publisher", "follows"})
# What an unpublished version takes from the published version it follows: how
# it is written, and the card fields of that version except its history.
_FOLLOWED_FIELDS = _VERSION_FIELDS - {"models"}
_OWN_CARD_FIELDS = ("changelog",)  # card_quirks belong to the followed version's models.
_PUBLISHER_ROLES = ("tfhub", "unpublished")
# What every [publisher_pages] table states (the icon is optional).
PUBLISHER_PAGE_FIELDS = ("display_name", "heading", "about")
# A [deployments.<name>] table's own facts; its other fields are card fields.
_DEPLOYMENT_FIELDS = ("kind", "models", "parent_versions", "handle_segment", "variants",
                      "version")
# module_types: which of the parent's module types (default: both); parent_model:
# "placeholder" when the hub names the model's placeholder as the parent, not the release;
# by_variant: the card fields of one variant (by_variant.<variant>.<field>).
_OPTIONAL_DEPLOYMENT_FIELDS = ("module_types", "parent_model", "by_variant")


def _typed(where: str, entry, record: type, fields) -> dict:
  """The named fields of entry (a TOML table), each checked against its type in the
  dataclass record: a positive int, a number, a non-empty text, a bool or a list of
  texts. Raises RegistryError naming the first field that is missing or wrong."""
  if not isinstance(entry, dict):
    raise RegistryError(f"{where} must be a table, not {entry!r}")
  missing = sorted(set(fields) - entry.keys())
  if missing:
    raise RegistryError(f"{where} lacks {missing}")
  types = {f.name: f.type for f in dataclasses.fields(record)}
  for field in sorted(fields):
    value, kind = entry[field], types[field]
    if kind == "int":
      ok, wanted = type(value) is int and value > 0, "a positive whole number"
    elif kind == "float":
      ok, wanted = type(value) in (int, float), "a number"
    elif kind == "bool":
      ok, wanted = type(value) is bool, "true or false"
    elif kind == "str":
      ok, wanted = isinstance(value, str) and value != "", "a text"
    elif kind.startswith("tuple[str"):
      ok, wanted = _is_list_of_texts(value), "a list of texts"
    else:  # A field this check does not know how to check: a programming error.
      raise TypeError(f"{record.__name__}.{field}: no check for type {kind}")
    if not ok:
      raise RegistryError(f"{where}: {field} must be {wanted}, not {value!r}")
  return {k: entry[k] for k in fields}


def _is_list_of_texts(value) -> bool:
  return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _check_range(where: str, entry: dict, field: str, low: float, high: float | None) -> None:
  """`entry[field]` (already checked to be a number) lies above `low`, and below `high`."""
  value = entry[field]
  if not (low < value and (high is None or value < high)):
    bounds = f"more than {low:g}" if high is None else f"between {low:g} and {high:g}"
    raise RegistryError(f"{where}: {field} must be {bounds}, not {value!r}")


def _table(data: dict, name: str):
  if name not in data:
    raise RegistryError(f"registry lacks its [{name}] table")
  if not isinstance(data[name], dict):
    raise RegistryError(f"registry [{name}] must be a table, not {data[name]!r}")
  return data[name]


def from_dict(data: dict) -> Registry:
  """Builds a Registry from parsed TOML (or an edited copy of it), every field the
  code reads checked for its type first."""
  fields = [f.name for f in dataclasses.fields(Collection)]
  publisher = Collection(**_typed("registry [publisher]", _table(data, "publisher"),
                                  Collection, fields))
  publishers = _publishers(data.get("publishers", {}))
  models = {}
  for name, entry in _table(data, "models").items():
    where = f"registry model {name!r}"
    core = _typed(where, entry, Model, _MODEL_FIELDS)
    _check_range(where, core, "memory_gb", 0, None)
    _check_range(where, core, "weight_decay", 0, 1)
    extra = {k: v for k, v in entry.items() if k not in _MODEL_FIELDS}
    url = extra.pop("checkpoint_url", publisher.checkpoint_base_url + entry["checkpoint_archive"])
    models[name] = Model(name=name, checkpoint_url=url, extra=extra, **core)
  versions = {}
  numbered = _table(data, "versions").items()
  wrong = [n for n, _ in numbered if not str(n).isdigit() or int(n) < 1]
  if wrong:
    raise RegistryError(f"registry [versions] are numbered 1, 2, ...; not {wrong}")
  for number, entry in sorted(numbered, key=lambda kv: int(kv[0])):
    _typed(f"registry version {number}", entry, Version, _VERSION_FIELDS)
    _check_range(f"registry version {number}", entry, "batch_norm_momentum", 0, 1)
    if entry["format"] not in FORMATS:
      raise RegistryError(f"registry version {number}: format must be one of {FORMATS}")
    unknown = set(entry["models"]) - models.keys()
    if unknown:
      raise RegistryError(f"registry version {number} names unknown models {sorted(unknown)}")
    core = {k: entry[k] for k in _VERSION_FIELDS}
    core["models"] = tuple(core["models"])
    extra = {k: v for k, v in entry.items() if k not in _VERSION_FIELDS}
    versions[int(number)] = Version(number=int(number), extra=extra,
                                    publisher=publishers["tfhub"]["name"], **core)
  unpublished_versions = _unpublished_versions(data.get("unpublished_versions", {}), versions,
                                               models, publishers)
  papers = dict(data.get("papers", {}))
  families = dict(data.get("families", {}))
  if families:
    _check_families(models, families, papers)
  cards = dict(data.get("cards", {}))
  card_schemas = {name: _card_schema(name, entry, models)
                  for name, entry in data.get("card_schemas", {}).items()}
  default_schema = cards.get("default_schema")
  if default_schema is not None and default_schema not in card_schemas:
    raise RegistryError(
        f"registry [cards] default_schema {default_schema!r} is not a [card_schemas] "
        f"table; known card schemas: {', '.join(card_schemas) or 'none'}")
  tables = data.get("deployments", {})
  if not isinstance(tables, dict):
    raise RegistryError(f"registry [deployments] must be a table, not {tables!r}")
  placeholders = _placeholders(data.get("placeholders", {}), models)
  deployment_tables = {name: _deployment_table(name, table, versions, models, placeholders)
                       for name, table in tables.items()}
  return Registry(publisher=publisher, models=models, versions=versions, cards=cards,
                  papers=papers, families=families, card_schemas=card_schemas,
                  publishers=publishers, unpublished_versions=unpublished_versions,
                  deployment_tables=deployment_tables, placeholders=placeholders,
                  publisher_pages=_publisher_pages(data.get("publisher_pages", {})))


def _placeholders(data, models: dict[str, Model]) -> dict[str, Placeholder]:
  """[placeholders.<model>]: a known model, a handle of segments and a version; the
  [placeholders] table's own fields are every placeholder's card fields."""
  if not isinstance(data, dict):
    raise RegistryError(f"registry [placeholders] must be a table, not {data!r}")
  found = {}
  shared = {k: v for k, v in data.items() if not isinstance(v, dict)}
  for name, entry in data.items():
    if name in shared:
      continue
    where = f"registry [placeholders.{name}]"
    if name not in models:
      raise RegistryError(f"{where} names an unknown model")
    if not isinstance(entry, dict) or not isinstance(entry.get("handle"), str):
      raise RegistryError(f"{where} lacks a handle")
    segments = entry["handle"].split("/")
    if len(segments) < 2 or not all(_PUBLISHER_NAME.fullmatch(s) for s in segments):
      raise RegistryError(f"{where}: handle {entry['handle']!r} must be handle segments "
                          f"joined by '/'")
    if type(entry.get("version")) is not int or entry["version"] < 1:
      raise RegistryError(f"{where}: version must be a positive whole number, not "
                          f"{entry.get('version')!r}")
    found[name] = Placeholder(model=models[name], handle=entry["handle"],
                              version=entry["version"],
                              extra={**shared, **{k: v for k, v in entry.items()
                                                  if k not in ("handle", "version")}})
  return found


def _publisher_pages(data) -> dict[str, dict]:
  """[publisher_pages.<publisher>]: a publisher page's fields, each a non-empty text."""
  if not isinstance(data, dict):
    raise RegistryError(f"registry [publisher_pages] must be a table, not {data!r}")
  for name, page in data.items():
    where = f"registry [publisher_pages.{name}]"
    if not _PUBLISHER_NAME.fullmatch(name):
      raise RegistryError(f"{where}: {name!r} is not a publisher name (a handle segment)")
    if not isinstance(page, dict) or not all(isinstance(v, str) and v.strip()
                                             for v in page.values()):
      raise RegistryError(f"{where} must be a table of non-empty texts")
    for field in PUBLISHER_PAGE_FIELDS:
      if field not in page:
        raise RegistryError(f"{where} lacks {field!r}")
  return {name: dict(page) for name, page in data.items()}


def _deployment_table(name: str, data, versions: dict[int, Version],
                      models: dict[str, Model], placeholders: dict[str, Placeholder]) -> dict:
  """[deployments.<name>]: a known kind; its models have each parent version, a version of
  TF Hub's in the format the kind converts from."""
  where = f"registry [deployments.{name}]"
  if not isinstance(data, dict):
    raise RegistryError(f"{where} must be a table, not {data!r}")
  missing = [f for f in _DEPLOYMENT_FIELDS if f not in data]
  if missing:
    raise RegistryError(f"{where} lacks {missing}")
  if data["kind"] not in DEPLOYMENT_KINDS:
    raise RegistryError(f"{where}: kind must be one of {', '.join(DEPLOYMENT_KINDS)}, not "
                        f"{data['kind']!r}")
  for field in ("models", "parent_versions"):
    kind = str if field == "models" else int
    if not isinstance(data[field], list) or not all(type(v) is kind for v in data[field]):
      raise RegistryError(f"{where}: {field} must be a list of "
                          f"{'texts' if kind is str else 'version numbers'}, not {data[field]!r}")
  if type(data["version"]) is not int or data["version"] < 1:
    raise RegistryError(f"{where}: version must be a positive whole number, not "
                        f"{data['version']!r}")
  unknown = sorted(set(data["models"]) - models.keys())
  if unknown:
    raise RegistryError(f"{where} names unknown models {unknown}")
  source_format = DEPLOYMENT_KINDS[data["kind"]]
  for number in data["parent_versions"]:
    version = versions.get(number)
    if version is None or version.format != source_format:
      raise RegistryError(f"{where} parent version {number!r} is not a published version "
                          f"of format {source_format!r} (what the {data['kind']} converter "
                          f"reads)")
    lacking = [m for m in data["models"] if m not in version.models]
    if lacking:
      raise RegistryError(f"{where}: {lacking} have no version {number}")
  variants = data["variants"]
  if (not _PUBLISHER_NAME.fullmatch(str(data["handle_segment"])) or not isinstance(variants, list)
      or not variants or len(set(map(str, variants))) != len(variants)
      or not all(isinstance(v, str) and _PUBLISHER_NAME.fullmatch(v) for v in variants)):
    raise RegistryError(f"{where}: handle_segment must be a handle segment and variants a "
                        f"list of distinct handle segments")
  by_variant = data.get("by_variant", {})
  if (not isinstance(by_variant, dict) or not set(by_variant) <= set(variants)
      or not all(isinstance(v, dict) for v in by_variant.values())):
    raise RegistryError(f"{where}: by_variant must hold one table of card fields per variant "
                        f"of {variants}, not {by_variant!r}")
  for variant, fields in by_variant.items():
    twice = sorted(fields.keys() & data.keys())
    if twice:
      raise RegistryError(f"{where} states {twice} for every variant and in "
                          f"by_variant.{variant}: state each in one place")
  module_types = data.get("module_types", list(MODULE_TYPES))
  if (not isinstance(module_types, list) or not module_types
      or any(t not in MODULE_TYPES for t in module_types)):
    raise RegistryError(f"{where}: module_types must be a list of {', '.join(MODULE_TYPES)}, "
                        f"not {module_types!r}")
  if data.get("parent_model", "placeholder") != "placeholder":
    raise RegistryError(f"{where}: parent_model can only be \"placeholder\" (or absent: the "
                        f"parent release), not {data['parent_model']!r}")
  if "parent_model" in data:
    lacking = [m for m in data["models"] if m not in placeholders]
    if lacking:
      raise RegistryError(f"{where}: {lacking} have no [placeholders] table")
  return dict(data)


def _publishers(data: dict) -> dict[str, dict]:
  """[publishers.tfhub] and [publishers.unpublished]: distinct names, each with a hub_url."""
  missing = [role for role in _PUBLISHER_ROLES if role not in data]
  unknown = [role for role in data if role not in _PUBLISHER_ROLES]
  if missing or unknown:
    raise RegistryError(f"registry [publishers] must have exactly the tables "
                        f"{', '.join(_PUBLISHER_ROLES)}; missing {missing}, unknown {unknown}")
  for role, entry in data.items():
    for field in ("name", "hub_url"):
      if not isinstance(entry.get(field), str) or not entry[field]:
        raise RegistryError(f"registry [publishers.{role}] lacks a {field}")
    if not _PUBLISHER_NAME.fullmatch(entry["name"]):
      raise RegistryError(f"registry [publishers.{role}] name {entry['name']!r} is not a "
                          f"handle segment (lowercase letters, digits, '-', '_')")
  if data["tfhub"]["name"] == data["unpublished"]["name"]:
    raise RegistryError(
        f"registry [publishers]: the releases TF Hub never made must not use TF Hub's "
        f"publisher name {data['tfhub']['name']!r}")
  return {role: dict(data[role]) for role in _PUBLISHER_ROLES}


def _unpublished_versions(data: dict, published: dict[int, Version], models: dict[str, Model],
                          publishers: dict[str, dict]) -> dict[int, Version]:
  """[unpublished_versions.N]: numbered from 1, each following a published version."""
  numbers = sorted(int(n) for n in data)
  if numbers != list(range(1, len(numbers) + 1)):
    raise RegistryError(f"registry [unpublished_versions] must be numbered 1, 2, ... "
                        f"without gaps; got {numbers}")
  tfhub_models = {m for v in published.values() for m in v.models}
  versions = {}
  for number, entry in sorted(data.items(), key=lambda kv: int(kv[0])):
    where = f"registry unpublished version {number}"
    missing = [f for f in ("follows", "models") if f not in entry]
    if missing:
      raise RegistryError(f"{where} lacks {missing}")
    if not _is_list_of_texts(entry["models"]):
      raise RegistryError(f"{where}: models must be a list of texts, not {entry['models']!r}")
    followed = published.get(entry["follows"])
    if followed is None:
      raise RegistryError(f"{where} follows {entry['follows']!r}, which is no published "
                          f"version; published versions: {', '.join(map(str, published))}")
    unknown = set(entry["models"]) - models.keys()
    if unknown:
      raise RegistryError(f"{where} names unknown models {sorted(unknown)}")
    on_tfhub = sorted(set(entry["models"]) & tfhub_models)
    if on_tfhub:
      raise RegistryError(f"{where} names {on_tfhub}, which TF Hub published")
    stated_twice = sorted((set(entry) - {"follows", "models"}) - set(_OWN_CARD_FIELDS))
    if stated_twice:
      raise RegistryError(f"{where} sets {stated_twice}, which come from the version it "
                          f"follows; it may set only {', '.join(_OWN_CARD_FIELDS)}")
    extra = {k: v for k, v in followed.extra.items()
             if k not in _OWN_CARD_FIELDS and k != "card_quirks"}
    extra.update({k: entry[k] for k in _OWN_CARD_FIELDS if k in entry})
    versions[int(number)] = Version(
        number=int(number), extra=extra, models=tuple(entry["models"]),
        publisher=publishers["unpublished"]["name"], follows=followed.number,
        **{f: getattr(followed, f) for f in _FOLLOWED_FIELDS})
  return versions


_SCHEMA_FIELDS = ("keys", "required", "repeatable", "renamed", "values", "omitted")
_OPTIONAL_SCHEMA_FIELDS = ("deployment_required",)


def _card_schema(name: str, entry: dict, models: dict[str, Model]) -> CardSchema:
  """Builds one [card_schemas.<name>] table; every value it writes must be allowed."""
  where = f"registry card schema {name!r}"
  missing = [f for f in _SCHEMA_FIELDS if f not in entry]
  if missing:
    raise RegistryError(f"{where} lacks {missing}")
  keys = {k: tuple(v) for k, v in entry["keys"].items()}
  for field in ("required", "repeatable", *_OPTIONAL_SCHEMA_FIELDS):
    unknown = [k for k in entry.get(field, ()) if k not in keys]
    if unknown:
      raise RegistryError(f"{where}: {field} names unknown keys {unknown}; its keys: {', '.join(keys)}")
  unknown = [k for k in entry["renamed"].values() if k not in keys]
  if unknown:
    raise RegistryError(f"{where}: renamed names unknown keys {unknown}; its keys: {', '.join(keys)}")
  values = {}
  for key, spec in entry["values"].items():
    if key not in keys:
      raise RegistryError(f"{where}: values for unknown key {key!r}; its keys: {', '.join(keys)}")
    if isinstance(spec, str):
      value = CardValue(every=spec)
    elif isinstance(spec, dict) and len(spec) == 1 and "by_model" in spec:
      unknown = [m for m in spec["by_model"] if m not in models]
      if unknown:
        raise RegistryError(f"{where}: {key}.by_model names unknown models {unknown}")
      value = CardValue(by_model=dict(spec["by_model"]))
    elif isinstance(spec, dict) and len(spec) == 1 and "by_module_type" in spec:
      unknown = [t for t in spec["by_module_type"] if t not in MODULE_TYPES]
      if unknown:
        raise RegistryError(f"{where}: {key}.by_module_type names unknown module types {unknown}")
      value = CardValue(by_module_type=dict(spec["by_module_type"]))
    else:
      raise RegistryError(
          f"{where}: values.{key} must be a text, a by_model table or a by_module_type table")
    allowed = keys[key]
    wrong = [v for v in value.all_values() if allowed and v not in allowed]
    if wrong:
      raise RegistryError(f"{where}: {key} values {wrong} are not among its allowed values "
                          f"{', '.join(allowed)}")
    values[key] = value
  omitted = {k: tuple(v) for k, v in entry["omitted"].items()}
  for key, names in omitted.items():
    if key not in keys or key in entry["required"]:
      raise RegistryError(f"{where}: omitted names {key!r}, which is not an optional key")
    unknown = [m for m in names if m not in models]
    if unknown:
      raise RegistryError(f"{where}: omitted.{key} names unknown models {unknown}")
  return CardSchema(name=name, keys=keys, required=tuple(entry["required"]),
                    repeatable=tuple(entry["repeatable"]), renamed=dict(entry["renamed"]),
                    values=values, omitted=omitted,
                    deployment_required=tuple(entry.get("deployment_required", ())))


def _check_families(models: dict[str, Model], families: dict, papers: dict) -> None:
  """Every model's family has card texts, and every cited paper exists."""
  for m in models.values():
    if m.family not in families:
      raise RegistryError(
          f"registry model {m.name!r} has family {m.family!r}, which has no "
          f"[families.{m.family}] table; known families: {', '.join(families)}")
  for name, family in families.items():
    unknown = [p for p in family.get("papers", ()) if p not in papers]
    if unknown:
      raise RegistryError(
          f"registry family {name!r} cites unknown papers {unknown}; "
          f"known papers: {', '.join(papers) or 'none'}")


def load(path: str | pathlib.Path = REGISTRY_FILE) -> Registry:
  try:
    with open(path, "rb") as f:
      data = tomllib.load(f)
  except OSError as e:
    raise RegistryError(f"cannot read the registry {str(path)!r}: {e.strerror or e}") from None
  except tomllib.TOMLDecodeError as e:
    raise RegistryError(f"registry {str(path)!r} is not valid TOML: {e}") from None
  return from_dict(data)


@functools.lru_cache(maxsize=None)
def default() -> Registry:
  """The registry shipped with the package (cached)."""
  return load()
