"""TF1 Hub format exports shared by the main-env and compat tests.

Both test modules need the same exports (nasnet_mobile, both module types,
every published TF1 Hub format version). `export()` writes each one at most
once per test session, whichever test asks first, through the real
export_lib.export (so every export has also verified itself).
"""
from __future__ import annotations

import pathlib

import registry
from exporters import export_lib

FAST_MODEL = "nasnet_mobile"
_exports: dict[tuple, tuple[export_lib.ExportResult, list[str]]] = {}
_root: list[pathlib.Path] = []


def hub_releases(models=(FAST_MODEL,)) -> list[registry.Release]:
  """The registry's TF1 Hub format releases of `models`, both module types."""
  return [r for r in registry.default().releases(models=list(models))
          if r.version.format == "hub"]


def release_id(release: registry.Release) -> str:
  return f"{release.model.name}-{release.module_type}-v{release.version.number}"


def export(release: registry.Release, checkpoint_prefix, tmp_path_factory
           ) -> export_lib.ExportResult:
  """Exports `release` from `checkpoint_prefix` (cached for the session)."""
  key = (release.model.name, release.module_type, release.version.number)
  if key not in _exports:
    if not _root:
      _root.append(tmp_path_factory.mktemp("tf1_exports"))
    config = export_lib.ExportConfig(
        model=release.model.name, module_type=release.module_type,
        version=release.version.number, checkpoint_path=str(checkpoint_prefix),
        export_dir=str(_root[0] / release_id(release)))
    messages = []
    _exports[key] = (export_lib.export(config, log=messages.append), messages)
  return _exports[key][0]


def log_messages(release: registry.Release) -> list[str]:
  """What the export of `release` logged (it must have been exported)."""
  return _exports[(release.model.name, release.module_type, release.version.number)][1]
