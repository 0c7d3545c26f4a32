"""The project's one registry of models and published versions.

The facts live in `models.toml` (data, not code); this module loads them into
frozen dataclasses and answers the questions every other part asks: which
(model, module type, version) triples are published, what a handle is called,
where a model's checkpoint comes from. Tests may load a modified copy with
`load(path)` to check that a changed fact flows everywhere.
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
import tomllib
from typing import Iterator

REGISTRY_FILE = pathlib.Path(__file__).with_name("models.toml")
MODULE_TYPES = ("classification", "feature_vector")
FORMATS = ("hub", "saved_model_2")


class RegistryError(ValueError):
  """A registry lookup or the registry file itself is wrong."""


@dataclasses.dataclass(frozen=True)
class Model:
  name: str
  family: str  # "nasnet" or "pnasnet": selects the graph builder family.
  display_name: str
  image_size: int
  feature_size: int
  num_cells: int
  num_conv_filters: int
  checkpoint_archive: str
  checkpoint_file: str
  checkpoint_url: str
  extra: dict  # Card-only fields (texts, links); see models.toml.

  @property
  def checkpoint_label(self) -> str:
    """How the cards name the checkpoint: `<archive stem>/model.ckpt`."""
    return f"{self.checkpoint_archive.removesuffix('.tar.gz')}/{self.checkpoint_file}"


@dataclasses.dataclass(frozen=True)
class Version:
  number: int
  format: str
  models: tuple[str, ...]
  batch_norm_momentum: float
  bn_hparams_signatures: bool
  serving_signature: bool
  extra: dict


@dataclasses.dataclass(frozen=True)
class Release:
  """One published (model, module type, version)."""
  registry: "Registry"
  model: Model
  module_type: str
  version: Version

  @property
  def handle(self) -> str:
    return self.registry.handle(self.model.name, self.module_type)

  @property
  def handle_with_version(self) -> str:
    return f"{self.handle}/{self.version.number}"


@dataclasses.dataclass(frozen=True)
class Registry:
  publisher: dict
  models: dict[str, Model]
  versions: dict[int, Version]
  # Card-only tables (see models.toml): what every card states, the papers
  # cards cite, and per-family texts. Empty when a registry carries no cards.
  cards: dict = dataclasses.field(default_factory=dict)
  papers: dict[str, dict] = dataclasses.field(default_factory=dict)
  families: dict[str, dict] = dataclasses.field(default_factory=dict)

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
    """`google/imagenet/<model>/<module_type>`, the path a hub serves."""
    check_module_type(module_type)
    return f"{self.publisher['name']}/{self.publisher['collection']}/{model}/{module_type}"

  def release(self, model: str, module_type: str, version: int) -> Release:
    m = self.model(model)
    v = self.version(version)
    check_module_type(module_type)
    if m.name not in v.models:
      published = [str(n) for n, ver in self.versions.items() if m.name in ver.models]
      raise RegistryError(
          f"{m.name} has no published version {v.number}; its versions: "
          f"{', '.join(published) or 'none'}")
    return Release(self, m, module_type, v)

  def releases(self, models=None, module_types=None, versions=None) -> Iterator[Release]:
    """Every published release, optionally filtered; unknown filter values raise."""
    for name in models or ():
      self.model(name)
    for t in module_types or ():
      check_module_type(t)
    for n in versions or ():
      self.version(n)
    wanted_versions = {int(n) for n in versions} if versions else None
    for m in self.models.values():
      if models and m.name not in models:
        continue
      for t in MODULE_TYPES:
        if module_types and t not in module_types:
          continue
        for v in self.versions.values():
          if m.name in v.models and (wanted_versions is None or v.number in wanted_versions):
            yield Release(self, m, t, v)

  def model_versions(self, model: str) -> list[Version]:
    return [v for v in self.versions.values() if model in v.models]


def check_module_type(module_type: str) -> str:
  if module_type not in MODULE_TYPES:
    raise RegistryError(
        f"unknown module type {module_type!r}; expected one of {', '.join(MODULE_TYPES)}")
  return module_type


_MODEL_FIELDS = {f.name for f in dataclasses.fields(Model)} - {"name", "extra", "checkpoint_url"}
_VERSION_FIELDS = {f.name for f in dataclasses.fields(Version)} - {"number", "extra"}


def from_dict(data: dict) -> Registry:
  """Builds a Registry from parsed TOML (or an edited copy of it)."""
  publisher = dict(data["publisher"])
  models = {}
  for name, entry in data["models"].items():
    missing = _MODEL_FIELDS - entry.keys()
    if missing:
      raise RegistryError(f"registry model {name!r} lacks {sorted(missing)}")
    core = {k: entry[k] for k in _MODEL_FIELDS}
    extra = {k: v for k, v in entry.items() if k not in _MODEL_FIELDS}
    url = extra.pop("checkpoint_url", publisher["checkpoint_base_url"] + entry["checkpoint_archive"])
    models[name] = Model(name=name, checkpoint_url=url, extra=extra, **core)
  versions = {}
  for number, entry in sorted(data["versions"].items(), key=lambda kv: int(kv[0])):
    missing = _VERSION_FIELDS - entry.keys()
    if missing:
      raise RegistryError(f"registry version {number} lacks {sorted(missing)}")
    if entry["format"] not in FORMATS:
      raise RegistryError(f"registry version {number}: format must be one of {FORMATS}")
    unknown = set(entry["models"]) - models.keys()
    if unknown:
      raise RegistryError(f"registry version {number} names unknown models {sorted(unknown)}")
    core = {k: entry[k] for k in _VERSION_FIELDS}
    core["models"] = tuple(core["models"])
    extra = {k: v for k, v in entry.items() if k not in _VERSION_FIELDS}
    versions[int(number)] = Version(number=int(number), extra=extra, **core)
  papers = dict(data.get("papers", {}))
  families = dict(data.get("families", {}))
  if families:
    _check_families(models, families, papers)
  return Registry(publisher=publisher, models=models, versions=versions,
                  cards=dict(data.get("cards", {})), papers=papers, families=families)


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
  with open(path, "rb") as f:
    return from_dict(tomllib.load(f))


@functools.lru_cache(maxsize=None)
def default() -> Registry:
  """The registry shipped with the package (cached)."""
  return load()
