"""Canonical bytes for TF2 SavedModels: what a release's files hold depends on the release only.

`tf.saved_model.save` names every traced function after a process-wide
counter (`__inference___call___52719`), and writes such counters into the
`_user_specified_name` of the arguments that carry captured variables. The
same release saved in a fresh process, or after other releases and models
were traced, would otherwise differ in those names only. Here every function
is renamed to `<its name without the counter>_<k>`, k its position in a
walk of the SavedModel that does not depend on the counters (the object
graph's nodes in order, then the functions each function calls, in node
order), every reference to it follows, and counter-valued argument names
take the argument's own name; the library lists the functions in that order.
The fingerprint is then computed anew.
"""
from __future__ import annotations

import os
import re

from exporters.compat import tf_internals

SAVED_MODEL_FILENAME = "saved_model.pb"
_COUNTER_SUFFIX = re.compile(r"^(.*)_(\d+)$")


def make_saved_model_canonical(export_dir: str) -> None:
  """Rewrites `export_dir`'s saved_model.pb and fingerprint.pb in canonical form."""
  from tensorflow.core.protobuf import saved_model_pb2

  path = os.path.join(export_dir, SAVED_MODEL_FILENAME)
  saved_model = saved_model_pb2.SavedModel()
  with open(path, "rb") as f:
    saved_model.ParseFromString(f.read())
  for meta_graph in saved_model.meta_graphs:
    canonicalize_meta_graph(meta_graph)
  with open(path, "wb") as f:
    f.write(saved_model.SerializeToString(deterministic=True))
  tf_internals.write_fingerprint(export_dir)


def _called_functions(nodes, functions):
  """Names of the library functions that `nodes` call, in node order."""
  for node in nodes:
    if node.op in functions:
      yield node.op
    for value in node.attr.values():
      if value.HasField("func"):
        yield value.func.name
      for func in value.list.func:
        yield func.name


def canonical_function_names(meta_graph) -> dict[str, str]:
  """Old function name -> canonical name, for every function of the library."""
  functions = {f.signature.name: f for f in meta_graph.graph_def.library.function}
  order, seen = [], set()

  def visit(name):
    if name in functions and name not in seen:
      seen.add(name)
      order.append(name)

  for node in meta_graph.object_graph_def.nodes:
    kind = node.WhichOneof("kind")
    if kind == "function":
      for name in node.function.concrete_functions:
        visit(name)
    elif kind == "bare_concrete_function":
      visit(node.bare_concrete_function.concrete_function_name)
  for name in _called_functions(meta_graph.graph_def.node, functions):
    visit(name)
  i = 0
  while i < len(order):  # Breadth first through what the functions call.
    for name in _called_functions(functions[order[i]].node_def, functions):
      visit(name)
    i += 1
  # Unreachable functions (none are expected) keep their relative order.
  order += sorted(set(functions) - seen, key=lambda n: (_counter(n), n))
  renamed = {}
  for k, name in enumerate(order):
    match = _COUNTER_SUFFIX.match(name)
    renamed[name] = f"{match.group(1) if match else name}_{k}"
  return renamed


def _counter(name: str) -> int:
  match = _COUNTER_SUFFIX.match(name)
  return int(match.group(2)) if match else -1


def canonicalize_meta_graph(meta_graph) -> None:
  """Renames the functions of one MetaGraphDef (in place); see the module docstring."""
  renamed = canonical_function_names(meta_graph)
  library = meta_graph.graph_def.library

  def rename_calls(nodes):
    for node in nodes:
      if node.op in renamed:
        node.op = renamed[node.op]
      for value in node.attr.values():
        if value.HasField("func") and value.func.name in renamed:
          value.func.name = renamed[value.func.name]
        for func in value.list.func:
          if func.name in renamed:
            func.name = renamed[func.name]

  rename_calls(meta_graph.graph_def.node)
  for function in library.function:
    rename_calls(function.node_def)
    function.signature.name = renamed[function.signature.name]
    for index, attrs in function.arg_attr.items():
      name = attrs.attr.get("_user_specified_name")
      if name is not None and name.s.isdigit():
        name.s = function.signature.input_arg[index].name.encode()
  # The library lists functions in the order they were traced: list them in the canonical one.
  position = {name: k for k, name in enumerate(renamed.values())}
  ordered = sorted(library.function, key=lambda f: position[f.signature.name])
  ordered = [type(f).FromString(f.SerializeToString(deterministic=True)) for f in ordered]
  del library.function[:]
  library.function.extend(ordered)
  for gradient in library.gradient:
    gradient.function_name = renamed.get(gradient.function_name, gradient.function_name)
    gradient.gradient_func = renamed.get(gradient.gradient_func, gradient.gradient_func)
  object_graph = meta_graph.object_graph_def
  for node in object_graph.nodes:
    kind = node.WhichOneof("kind")
    if kind == "function":
      names = [renamed[n] for n in node.function.concrete_functions]
      del node.function.concrete_functions[:]
      node.function.concrete_functions.extend(names)
    elif kind == "bare_concrete_function":
      bare = node.bare_concrete_function
      bare.concrete_function_name = renamed[bare.concrete_function_name]
  concrete = [(renamed[name], function.SerializeToString(deterministic=True))
               for name, function in object_graph.concrete_functions.items()]
  object_graph.ClearField("concrete_functions")
  for name, serialized in concrete:
    object_graph.concrete_functions[name].ParseFromString(serialized)
