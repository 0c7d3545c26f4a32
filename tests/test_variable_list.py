"""The aux graph's variable list kept on disk (checkpoints/variable_list.py)."""
import shutil

import pytest

from checkpoints import variable_list
from slim_nets import manifest

MODEL = "pnasnet_mobile"  # The quickest graph to build.


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  variable_list.aux_graph_variables.cache_clear()
  yield tmp_path / "cache"
  variable_list.aux_graph_variables.cache_clear()


def no_graph(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("the graph was built although the cache holds the list")
  monkeypatch.setattr(manifest, "graph_variables", refuse)


def test_the_list_is_the_graphs_and_the_next_run_reads_it_without_building(cache_home,
                                                                          monkeypatch):
  built = variable_list.aux_graph_variables(MODEL)
  assert built == manifest.graph_variables(MODEL, aux=True)
  path = variable_list.cache_path(MODEL)
  assert path.is_relative_to(cache_home) and path.is_file()
  variable_list.aux_graph_variables.cache_clear()
  no_graph(monkeypatch)
  assert variable_list.aux_graph_variables(MODEL) == built


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape_type", "empty_list",
                                    "directory"])
def test_a_damaged_cache_file_is_treated_as_absent_and_rewritten(cache_home, damage):
  expected = variable_list.aux_graph_variables(MODEL)
  path = variable_list.cache_path(MODEL)
  text = path.read_text()
  path.unlink()
  if damage == "directory":
    path.mkdir()
  else:
    path.write_text({"garbage": "\x00not json", "truncated": text[:len(text) // 2],
                     "wrong_shape_type": '[["a", ["1"]]]',
                     "empty_list": "[]"}[damage])
  variable_list.aux_graph_variables.cache_clear()
  assert variable_list.aux_graph_variables(MODEL) == expected
  if damage != "directory":
    assert variable_list._read(path) == expected


def test_a_changed_graph_builder_builds_the_graph_again(cache_home, tmp_path, monkeypatch):
  variable_list.aux_graph_variables(MODEL)
  key = variable_list.cache_key(MODEL)
  sources = tmp_path / "slim_nets"
  shutil.copytree(variable_list.SLIM_NETS_DIR, sources,
                  ignore=shutil.ignore_patterns("__pycache__"))
  monkeypatch.setattr(variable_list, "SLIM_NETS_DIR", sources)
  assert variable_list.cache_key(MODEL) == key
  (sources / "cells.py").write_text((sources / "cells.py").read_text() + "\n# changed\n")
  assert variable_list.cache_key(MODEL) != key
  assert not variable_list.cache_path(MODEL).exists()
  assert variable_list.cache_key("pnasnet_large") != variable_list.cache_key(MODEL)


def test_an_unwritable_cache_folder_still_gives_the_list(cache_home):
  cache_home.parent.mkdir(parents=True, exist_ok=True)
  cache_home.write_text("a file where the cache folder would be")
  assert variable_list.aux_graph_variables(MODEL) == manifest.graph_variables(MODEL, aux=True)
