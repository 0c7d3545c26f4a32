"""Renders the model cards (Markdown docs) of every published release.

Each card is a registry entry pushed through the Jinja2 template of its card
family (`templates/<card_family>_<module type>.md.j2`); no fact about a model or
version is written here. Rendering is strict (a field the registry lacks fails
loudly), every card passes `card_validator` before any file is touched, and
files are replaced atomically, so a failed run leaves the docs tree as it was.
The metadata lines follow a card schema of the registry (`[card_schemas]`):
its keys and values; everything else in a card is the same in every schema.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib

import jinja2

import registry
from exporters import filesystem, formats
from exporters.errors import ExportError
from exporters.cards import card_validator

TEMPLATE_DIR = pathlib.Path(__file__).with_name("templates")
TITLE_STYLES = ("plain", "zwnj")
# Version card fields a `card_quirks.<model>` table may override for one model.
QUIRK_FIELDS = ("card_family", "card_metadata", "asset_path", "metadata_blank_lines",
                "labels_file_link")


@dataclasses.dataclass(frozen=True)
class DocsConfig:
  """What to generate and where; empty filters mean every published release."""
  output_dir: pathlib.Path
  title_style: str = "plain"  # "zwnj": `&zwnj;` after each `/` of the title's handle.
  models: tuple[str, ...] = ()
  module_types: tuple[str, ...] = ()
  versions: tuple[int, ...] = ()
  check: bool = False  # Only compare with the tree on disk; write nothing.
  card_schema: str | None = None  # A [card_schemas] name; None: the registry's default.

  @property
  def filtered(self) -> bool:
    return bool(self.models or self.module_types or self.versions)


@dataclasses.dataclass(frozen=True)
class DocsResult:
  """Card paths, relative to the output directory, by what happened to them."""
  cards: tuple[str, ...]  # Every card generated.
  changed: tuple[str, ...]  # New or different: written (with `check`: would be).
  removed: tuple[str, ...]  # Cards of no published release: deleted (with `check`: would be).
  card_schema: str  # The card schema the cards were generated in.

  @property
  def up_to_date(self) -> bool:
    return not self.changed and not self.removed


def card_path(release: registry.Release) -> pathlib.PurePosixPath:
  """`<publisher>/models/<collection>/<model>/<module type>/<version>.md`, the hub's docs layout."""
  return pathlib.PurePosixPath(release.version.publisher, "models",
                               release.registry.publisher.collection,
                               release.model.name, release.module_type, release.card_file)


def deployment_card_path(deployment: registry.Deployment) -> pathlib.PurePosixPath:
  """`<publisher>/models/<rest of the parent's handle>/<parent version>/<variant>/<card
  folder>/<version>.md` (card folder: `tfjs`, `lite`), as tfhub.dev kept them."""
  publisher, rest = deployment.parent_handle_with_version.split("/", 1)
  return pathlib.PurePosixPath(
      publisher, "models", rest, deployment.variant,
      _field(deployment.extra, "card_folder", _where(deployment)), f"{deployment.version}.md")


def placeholder_card_path(placeholder: registry.Placeholder) -> pathlib.PurePosixPath:
  """`<publisher>/models/<rest of its handle>/<version>.md`, as tfhub.dev kept them."""
  publisher, rest = placeholder.handle.split("/", 1)
  return pathlib.PurePosixPath(publisher, "models", rest, f"{placeholder.version}.md")


def publisher_page_path(publisher: str) -> pathlib.PurePosixPath:
  """`<publisher>/<publisher>.md`, where the hub looks for a publisher's page."""
  return pathlib.PurePosixPath(publisher, f"{publisher}.md")


def _where(deployment: registry.Deployment) -> str:
  return f"[deployments.{deployment.name}]"


def environment() -> jinja2.Environment:
  """The templates' Jinja2 environment: strict, and byte-exact about whitespace."""
  return jinja2.Environment(
      loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
      undefined=jinja2.StrictUndefined,
      keep_trailing_newline=True,
      trim_blocks=True,
      lstrip_blocks=True,
      autoescape=False)


def card_context(release: registry.Release, title_style: str = "plain",
                 card_schema: str | None = None) -> dict:
  """Everything a card template may print, taken from the release's registry entries."""
  if title_style not in TITLE_STYLES:
    raise ValueError(f"unknown title style {title_style!r}; expected one of {', '.join(TITLE_STYLES)}")
  reg, model, version = release.registry, release.model, release.version
  card = _card_fields(release)
  model_fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.name != "extra"}
  model_fields.update(model.extra, checkpoint_label=model.checkpoint_label)
  family = _family_texts(release, model_fields)

  metadata = _metadata(release, card, reg.card_schema(card_schema))

  history = [v for v in reg.model_versions(model.name) if v.number <= version.number]
  changelog = [{"version": v.number, "entries": _field(v.extra, "changelog", f"version {v.number}")}
               for v in history] if len(history) > 1 else []

  companion_type = next(t for t in registry.MODULE_TYPES if t != release.module_type)
  companion = reg.release(model.name, companion_type, version.number)
  hub_url = _field(reg.publisher_of(version), "hub_url", f"publisher {version.publisher!r}")
  # A release TF Hub never made says so in one sentence, in its Training section.
  unpublished_text = (None if version.tfhub_published
                      else _field(reg.cards, "unpublished_text", "[cards]"))
  return {
      "card_family": _field(card, "card_family", f"version {version.number}"),
      "title_handle": release.handle.replace("/", "/&zwnj;") if title_style == "zwnj" else release.handle,
      "version": version.number,
      "url": hub_url + release.handle_with_version,
      "companion": {"handle": companion.handle_with_version,
                    "url": hub_url + companion.handle_with_version},
      "model": model_fields,
      "family": family,
      "training_source": family["training_source"],
      "dataset": _field(reg.cards, "dataset", "[cards]"),
      "num_classes": reg.publisher.num_classes,
      "metadata": metadata,
      "metadata_blank_lines": card.get("metadata_blank_lines"),
      "labels_file_link": card.get("labels_file_link", True),
      "batch_norm_momentum": version.batch_norm_momentum,
      "changelog": changelog,
      "unpublished_text": unpublished_text,
  }


def render_card(release: registry.Release, title_style: str = "plain",
                env: jinja2.Environment | None = None, card_schema: str | None = None) -> str:
  """The card of `release` in `card_schema` (None: the registry's default),
  unvalidated; raises RegistryError for a missing field."""
  context = card_context(release, title_style, card_schema)
  env = env or environment()
  name = f"{context['card_family']}_{release.module_type}.md.j2"
  try:
    template = env.get_template(name)
  except jinja2.TemplateNotFound:
    families = sorted({p.name.rsplit("_", 2)[0] for p in TEMPLATE_DIR.glob("*.md.j2")
                       if not p.name.startswith("_")})
    raise registry.RegistryError(
        f"{release.handle_with_version}: card_family {context['card_family']!r} has no "
        f"template {name} in {TEMPLATE_DIR}; card families with templates: "
        f"{', '.join(families)}") from None
  try:
    return template.render(context)
  except jinja2.UndefinedError as e:
    raise registry.RegistryError(
        f"{release.handle_with_version}: template {name} needs a value the registry "
        f"does not give: {e.message}") from e


def deployment_card_context(deployment: registry.Deployment,
                            card_schema: str | None = None) -> dict:
  """What a deployment's card template may print (its [deployments] table and its parent
  release)."""
  parent, card, where = deployment.parent, deployment.extra, _where(deployment)
  reg = parent.registry
  schema = reg.card_schema(card_schema)
  hub_url = _field(reg.publisher_of(parent.version), "hub_url",
                   f"publisher {parent.version.publisher!r}")
  values = {"asset-path": lambda: _field(card, "asset_path", where),
            "parent-model": lambda: deployment.parent_handle_with_version}
  metadata = []
  for line in _field(card, "card_metadata", where):
    key = schema.key(line)
    if line not in values or key not in schema.keys:
      raise registry.RegistryError(
          f"{where} card_metadata names {line!r}, which a deployment's card cannot write "
          f"in card schema {schema.name}; it can write: {', '.join(values)}")
    metadata.append((key, values[line]()))
  return {
      "card_family": _field(card, "card_family", where),
      "title_handle": deployment.card_handle,
      "parent": {"handle": deployment.parent_handle_with_version,
                 "url": hub_url + deployment.parent_handle_with_version},
      "url": hub_url + deployment.handle,
      "metadata": metadata,
      "card": card,  # The table's card fields (converter_url, ...), as the template uses them.
      "converter": formats.converter_for(deployment.kind).CARD_FACTS,
      "card_schema": schema.name,
      "image_size": parent.model.image_size,
      "num_classes": reg.publisher.num_classes,
  }


def render_deployment_card(deployment: registry.Deployment,
                           env: jinja2.Environment | None = None,
                           card_schema: str | None = None) -> str:
  """The card of a deployment, unvalidated; RegistryError for a missing field."""
  context = deployment_card_context(deployment, card_schema)
  return _render(env, f"{context['card_family']}_deployment.md.j2", context, _where(deployment))


def placeholder_card_context(placeholder: registry.Placeholder, reg: registry.Registry,
                             card_schema: str | None = None) -> dict:
  """What a placeholder's card template may print: its handle, its metadata lines in the
  schema (the task is its deployments' parents'), its model family's texts."""
  where = f"[placeholders.{placeholder.model.name}]"
  children = reg.placeholder_children(placeholder)
  if not children:
    raise registry.RegistryError(f"registry {where} is the parent of no deployment")
  release = children[0].parent
  schema = reg.card_schema(card_schema)
  metadata = []
  for line in _field(placeholder.extra, "card_metadata", where):
    key = schema.key(line)
    values = {c.parent.module_type: schema.values[key].for_release(c.parent)
              for c in children} if key in schema.values else {}
    if len(set(values.values())) != 1 or None in values.values():
      raise registry.RegistryError(
          f"registry {where} card_metadata names {line!r}, for which card schema "
          f"{schema.name} gives its deployments' parents no one value")
    metadata.append((key, values.popitem()[1]))
  model_fields = {f.name: getattr(release.model, f.name)
                  for f in dataclasses.fields(release.model) if f.name != "extra"}
  model_fields.update(release.model.extra, checkpoint_label=release.model.checkpoint_label)
  return {"card_family": _field(placeholder.extra, "card_family", where),
          "title_handle": placeholder.handle_with_version, "metadata": metadata,
          "family": _family_texts(release, model_fields), "card_schema": schema.name}


def render_placeholder_card(placeholder: registry.Placeholder, reg: registry.Registry,
                            env: jinja2.Environment | None = None,
                            card_schema: str | None = None) -> str:
  """The card of a placeholder model page, unvalidated; RegistryError for a missing field."""
  context = placeholder_card_context(placeholder, reg, card_schema)
  return _render(env, f"{context['card_family']}.md.j2", context,
                 f"[placeholders.{placeholder.model.name}]")


def render_publisher_page(publisher: str, reg: registry.Registry,
                          env: jinja2.Environment | None = None) -> str:
  """The page of `publisher` ([publisher_pages.<publisher>]); RegistryError without one."""
  if publisher not in reg.publisher_pages:
    raise registry.RegistryError(
        f"registry has no [publisher_pages.{publisher}], and cards are filed under "
        f"{publisher!r}; every publisher needs its page (the hub refuses a tree without it)")
  return _render(env, "publisher.md.j2", {"name": publisher,
                                          "page": reg.publisher_pages[publisher]},
                 f"[publisher_pages.{publisher}]")


def _render(env: jinja2.Environment | None, name: str, context: dict, where: str) -> str:
  """A deployment's, placeholder's or publisher page's template rendered; RegistryError
  naming the registry table `where` for a missing template or value."""
  try:
    return (env or environment()).get_template(name).render(context)
  except jinja2.TemplateNotFound:
    raise registry.RegistryError(f"registry {where}: card_family {context.get('card_family')!r} "
                                 f"has no template {name} in {TEMPLATE_DIR}") from None
  except jinja2.UndefinedError as e:
    raise registry.RegistryError(f"registry {where}: template {name} needs a value the "
                                 f"registry does not give: {e.message}") from e


def render_cards(config: DocsConfig, reg: registry.Registry | None = None) -> dict[str, str]:
  """Relative path -> card text for the selected releases and their deployments (with the
  placeholder cards and publisher pages they need), every card validated.

  Raises CardError listing the problems of every invalid card.
  """
  reg = reg or registry.default()
  schema = reg.card_schema(config.card_schema)
  env = environment()
  cards, problems = {}, []
  for release in reg.releases(models=config.models, module_types=config.module_types,
                              versions=config.versions):
    path = str(card_path(release))
    text = render_card(release, config.title_style, env, schema.name)
    problems.extend(f"{path}: {p}" for p in card_validator.validate(
        text, release.handle_with_version, schema))
    cards[path] = text
  deployments = reg.deployments(models=config.models, module_types=config.module_types,
                                versions=config.versions)
  for deployment in deployments:
    path = str(deployment_card_path(deployment))
    text = render_deployment_card(deployment, env, schema.name)
    problems.extend(f"{path}: {p}" for p in card_validator.validate_deployment(
        text, deployment.kind, deployment.card_handle, schema))
    cards[path] = text
  # The parent pages of the chosen deployments that are no release, then the page of every
  # publisher a card is filed under; a whole tree must also meet the tree's rules.
  placeholders = {d.placeholder.handle: d.placeholder for d in deployments if d.placeholder}
  for placeholder in placeholders.values():
    path = str(placeholder_card_path(placeholder))
    text = render_placeholder_card(placeholder, reg, env, schema.name)
    problems.extend(f"{path}: {p}" for p in card_validator.validate_placeholder(
        text, placeholder.handle_with_version, schema))
    cards[path] = text
  for publisher in dict.fromkeys(p.split("/")[0] for p in list(cards)):
    path = str(publisher_page_path(publisher))
    text = render_publisher_page(publisher, reg, env)
    problems.extend(f"{path}: {p}" for p in card_validator.validate_publisher_page(
        text, publisher))
    cards[path] = text
  if not config.filtered:
    problems.extend(card_validator.validate_tree(cards))
  if problems:
    raise card_validator.CardError(f"{len(problems)} problems in generated cards", problems)
  return cards


def run(config: DocsConfig, reg: registry.Registry | None = None) -> DocsResult:
  """Generates the cards and brings `config.output_dir` in line with them (or, with
  `check`, only reports what differs). Without filters, cards of releases the
  registry no longer publishes are removed."""
  reg = reg or registry.default()
  cards = render_cards(config, reg)
  out = pathlib.Path(config.output_dir)
  changed = [p for p, text in cards.items() if _read_bytes(out / p) != text.encode("utf-8")]
  removed = [] if config.filtered else [p for p in _existing_cards(out, reg) if p not in cards]
  if not config.check:
    _write_tree(out, {p: cards[p] for p in changed}, removed)
  return DocsResult(cards=tuple(cards), changed=tuple(changed), removed=tuple(removed),
                    card_schema=reg.card_schema(config.card_schema).name)


def _write_tree(out: pathlib.Path, texts: dict[str, str], removed: list[str]) -> None:
  """Stages every changed card beside its destination, then renames them all into
  place and removes the stale ones. A filesystem fault while staging (a file where
  a folder should be, a read-only or full disk) raises ExportError naming it and
  leaves the tree as it was, without the folders this call made."""
  created, staged = [], []
  try:
    for p, text in texts.items():
      created += filesystem.make_parents(out / p, "the card", ExportError)
      staged.append((filesystem.write_temporary(out / p, text.encode("utf-8")), out / p))
  except BaseException as e:
    for tmp, _ in staged:
      pathlib.Path(tmp).unlink(missing_ok=True)
    filesystem.remove_created(created)
    if isinstance(e, OSError):
      raise ExportError(f"cannot write the docs tree {str(out)!r}: {e.strerror or e} "
                        f"({e.filename or out}); nothing was changed") from None
    raise
  try:
    for tmp, path in staged:
      os.replace(tmp, path)
    for p in removed:
      (out / p).unlink()
  except OSError as e:
    raise ExportError(f"cannot update the docs tree {str(out)!r}: {e.strerror or e} "
                      f"({e.filename or out})") from None


def _metadata(release: registry.Release, card: dict,
              schema: registry.CardSchema) -> list[tuple[str, str]]:
  """The card's (key, value) metadata lines in `schema`, in the version's order.

  A version names its lines by their 2021-04 keys (`card_metadata`); the schema
  may write a line under another key, in place, and gives the values that
  depend on it. The rest come from the version and [cards] in every schema.
  """
  reg, version = release.registry, release.version
  where = release.handle_with_version
  common = {
      "asset-path": lambda: _field(card, "asset_path", f"version {version.number}"),
      "fine-tunable": lambda: "true" if _field(reg.cards, "fine_tunable", "[cards]") else "false",
      "format": lambda: version.format,
  }
  lines = _field(card, "card_metadata", f"version {version.number}")
  known = [line for line in (*common, *schema.renamed, *schema.values)
           if schema.key(line) in common or schema.key(line) in schema.values]
  unknown = [line for line in lines if line not in known]
  if unknown:
    raise registry.RegistryError(
        f"{where}: card_metadata names unknown keys {unknown}; known keys in card schema "
        f"{schema.name}: {', '.join(known)}")
  metadata = []
  for line in lines:
    key = schema.key(line)
    if schema.omits(key, release.model.name):
      continue
    if key in schema.values:
      value = schema.values[key].for_release(release)
      if value is None:
        raise registry.RegistryError(
            f"{where}: card schema {schema.name} gives no {key!r} value for model "
            f"{release.model.name!r}; add it to [card_schemas.\"{schema.name}\".values]")
    else:
      value = common[key]()
    metadata.append((key, value))
  return metadata


def _card_fields(release: registry.Release) -> dict:
  """The version's card fields with the model's `card_quirks` applied."""
  version = release.version
  quirks = version.extra.get("card_quirks", {})
  unknown_models = [m for m in quirks if m not in version.models]
  if unknown_models:
    raise registry.RegistryError(
        f"version {version.number}: card_quirks for {unknown_models}, which do not have "
        f"this version; its models: {', '.join(version.models)}")
  own = quirks.get(release.model.name, {})
  unknown = [k for k in own if k not in QUIRK_FIELDS]
  if unknown:
    raise registry.RegistryError(
        f"version {version.number}: card_quirks.{release.model.name} sets unknown fields "
        f"{unknown}; fields a quirk may set: {', '.join(QUIRK_FIELDS)}")
  return {**version.extra, **own}


def _family_texts(release: registry.Release, model_fields: dict) -> dict:
  """The model family's card texts, overridden by the model's own, papers resolved."""
  reg, model = release.registry, release.model
  if model.family not in reg.families:
    raise registry.RegistryError(
        f"model {model.name!r}: family {model.family!r} has no [families.{model.family}] "
        f"table; known families: {', '.join(reg.families) or 'none'}")
  texts = {k: model.extra.get(k, v) for k, v in reg.families[model.family].items()}
  where = f"family {model.family!r}"
  try:
    cells_text = _field(texts, "cells_text", where).format_map(model_fields)
  except KeyError as e:
    raise registry.RegistryError(
        f"{where}: cells_text names {{{e.args[0]}}}, which model {model.name!r} lacks") from None
  papers = []
  for key in _field(texts, "papers", where):
    if key not in reg.papers:
      raise registry.RegistryError(
          f"{where} cites unknown paper {key!r}; known papers: {', '.join(reg.papers)}")
    papers.append(reg.papers[key])
  return {**texts, "cells_text": cells_text, "papers": papers}


def _field(table: dict, key: str, where: str):
  try:
    return table[key]
  except KeyError:
    raise registry.RegistryError(
        f"registry {where} lacks card field {key!r}; it has: {', '.join(table) or 'nothing'}") from None


def _existing_cards(out: pathlib.Path, reg: registry.Registry) -> list[str]:
  """Cards on disk in the generated layout (`<model>/<module type>/<version>.md`, and
  `<model>/<module type>/<version>/<variant>/<card folder>/<version>.md` of deployments)."""
  found = []
  card_folders = sorted({t["card_folder"] for t in reg.deployment_tables.values()
                         if "card_folder" in t})
  for publisher in reg.publisher_names:
    root = out / publisher / "models" / reg.publisher.collection
    found.extend(p.relative_to(out).as_posix() for p in root.glob("*/*/*.md")
                 if p.parent.name in registry.MODULE_TYPES and p.stem.isdigit())
  # Deployment cards: `<variant>/<card folder>/<version>.md` under any publisher's models.
  for publisher in reg.page_publishers:
    for card_folder in card_folders:
      found.extend(p.relative_to(out).as_posix()
                   for p in (out / publisher / "models").rglob(f"{card_folder}/*.md")
                   if p.stem.isdigit() and p.parents[2].name.isdigit())
  # Placeholder cards (`<handle>/<version>.md` under models/) and publisher pages.
  found.extend(str(placeholder_card_path(p)) for p in reg.placeholders.values()
               if (out / placeholder_card_path(p)).is_file())
  found.extend(str(publisher_page_path(name)) for name in reg.page_publishers
               if (out / publisher_page_path(name)).is_file())
  return sorted(set(found))


def _read_bytes(path: pathlib.Path) -> bytes | None:
  try:
    return path.read_bytes()
  except (FileNotFoundError, NotADirectoryError):  # Absent: writing it says why not.
    return None
  except OSError as e:
    raise ExportError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
