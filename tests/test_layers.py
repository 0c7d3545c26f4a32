"""The project's imports point one way: from the command lines down to the registry.

Every module is given a layer (LAYERS, lowest first); a module may import
from its own layer or below, never above, and no two modules import each
other through any chain (the module import graph has no cycle). Read from the
source with `ast`, so it checks every import, lazy ones inside functions too.
"""
import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("registry", "slim_nets", "checkpoints", "exporters", "bench")

# Lowest first. A module belongs to the first layer with a prefix of its name.
LAYERS = (
    # The base: exceptions, the one filesystem transaction, children that die with their
    # parent; they import no project code.
    ("exporters.errors", "exporters.filesystem", "exporters.child_processes",
     "exporters.fingerprint", "checkpoints.errors"),  # And the empty
    # package files exporters/__init__.py and checkpoints/__init__.py (EMPTY_PACKAGES).
    ("registry",),
    ("slim_nets",),
    ("checkpoints.catalog", "checkpoints.regular_file", "checkpoints.integrity",
     "checkpoints.layout", "checkpoints.download",
     "checkpoints.archive", "checkpoints.variable_list", "checkpoints.matching",
     "checkpoints.provenance", "checkpoints.fetch_lib"),
    ("exporters.compat",),
    ("exporters.network",),  # The Slim graph, the checkpoint matched to it, the reference.
    ("exporters.verification",),  # What verifying means, for every artifact.
    ("exporters.formats",),  # The format writers and the TF.js converter.
    ("exporters.pipeline",),  # The model run, and verifying a release on disk.
    ("exporters.cards",),
    ("exporters.export_tree",),
    ("exporters.publishing",),
    # The command lines and what they share.
    ("exporters.cli", "exporters.release_flags", "exporters.export", "exporters.export_all",
     "exporters.tfjs", "exporters.verify", "exporters.docs", "exporters.publish",
     "exporters.serve", "exporters.export_tree.worker", "checkpoints.fetch"),
    ("bench",),
)


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


EMPTY_PACKAGES = ("exporters", "checkpoints")


def layer_of(module: str) -> int:
  if module in EMPTY_PACKAGES:
    return 0
  # The longest prefix wins: exporters.export_tree.worker is a command line (a worker
  # process's main) although exporters.export_tree is a library.
  matches = [(len(p), index) for index, prefixes in enumerate(LAYERS) for p in prefixes
             if module == p or module.startswith(p + ".")]
  if matches:
    return max(matches)[1]
  raise AssertionError(f"{module} is in no layer of tests/test_layers.py's LAYERS")


def project_imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The project modules `path` imports (`from a import b` counts as a.b when that is one)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    names = []
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
    for name in names:
      while name and name not in modules:
        name = name.rpartition(".")[0]
      if name:
        found.add(name)
  return found


def import_graph() -> dict[str, set[str]]:
  paths = {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")
           if "node_modules" not in p.parts}
  modules = set(paths)
  graph = {}
  for module, path in paths.items():
    imported = project_imports(path, modules) - {module}
    # Importing a.b.c runs a/__init__ and a/b/__init__ too.
    graph[module] = imported | {m.rpartition(".")[0] for m in imported if "." in m} - {module}
    graph[module] = {m for m in graph[module] if m in modules and not module.startswith(m + ".")}
  return graph


def test_the_empty_packages_are_empty():
  for package in EMPTY_PACKAGES:
    assert (REPO / package / "__init__.py").read_text() == ""


def test_no_module_imports_from_a_higher_layer():
  upward = sorted(f"{m} (layer {layer_of(m)}) imports {i} (layer {layer_of(i)})"
                  for m, imported in import_graph().items() for i in imported
                  if layer_of(i) > layer_of(m))
  assert upward == []


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
  """One import cycle of the graph, or []."""
  state, stack = {}, []

  def visit(module):
    state[module] = "open"
    stack.append(module)
    for nxt in sorted(graph.get(module, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    state[module] = "done"
    stack.pop()
    return []

  for module in sorted(graph):
    if module not in state and (cycle := visit(module)):
      return cycle
  return []


def test_there_is_no_import_cycle():
  assert find_cycle(import_graph()) == []


@pytest.mark.parametrize("graph, wrong", [
    ({"exporters.formats.hub_module": {"exporters.pipeline.model_export"}}, "upward"),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "cycle"),
])
def test_the_checks_find_what_they_look_for(graph, wrong):
  """Seen failing: an import from the writers up to the model run, and a three-module cycle."""
  if wrong == "upward":
    assert any(layer_of(i) > layer_of(m) for m, imported in graph.items() for i in imported)
  else:
    assert find_cycle(graph) == ["a", "b", "c", "a"]
