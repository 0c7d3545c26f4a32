"""The released TF-Slim checkpoint archives, as a view over the registry.

Every fact here (archive name, URL, path of the checkpoint inside) comes from
`registry/models.toml`; this module only gives them the shape the fetcher
needs, so a changed registry entry changes the catalog with it.

  python -m checkpoints.catalog    # prints the catalog, one archive a line
"""
from __future__ import annotations

import dataclasses

import registry


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
  model: str
  archive_name: str  # The released file name (the registry's checkpoint_archive).
  archive_url: str  # Where the publisher serves it.
  checkpoint_file: str  # Path of the checkpoint prefix inside the archive, e.g. model.ckpt.


def entry(model: str, reg: registry.Registry | None = None) -> CatalogEntry:
  """The archive of `model`; raises registry.RegistryError for an unknown model."""
  m = (reg or registry.default()).model(model)
  return CatalogEntry(model=m.name, archive_name=m.checkpoint_archive,
                      archive_url=m.checkpoint_url, checkpoint_file=m.checkpoint_file)


def entries(reg: registry.Registry | None = None) -> list[CatalogEntry]:
  """One entry per registry model, in registry order."""
  reg = reg or registry.default()
  return [entry(name, reg) for name in reg.models]


def main():
  for e in entries():
    print(f"{e.model}\t{e.archive_url}\t{e.checkpoint_file}")


if __name__ == "__main__":
  main()
