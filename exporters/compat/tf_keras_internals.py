"""tf_keras internals the TF2 writer uses (see tests/test_compat_internals.py).

The TF2 writer runs the unchanged TF1-style Slim builder inside a tf.Module
through tf_keras's `track_tf1_style_variables` shim, which is public in
TF 2.x's `tf.compat.v1.keras.utils` but lives only under `tf_keras.src` in
tf_keras 2.21. The shim keeps the variables it created, by their Slim
names, and one regularizer callable per regularized weight in a store on
the module; the writer reads both from there.
"""
from __future__ import annotations

from typing import Callable


def track_tf1_style_variables(method):
  from tf_keras.src.legacy_tf_layers.variable_scope_shim import (
      track_tf1_style_variables as shim)
  return shim(method)


def shim_variables(module) -> dict:
  """Slim name -> variable, in creation order, of a module using the shim."""
  return dict(module._tf1_style_var_store._vars)


def shim_regularizers(module) -> dict[str, Callable]:
  """Slim variable name -> its zero-argument regularization loss, in creation order."""
  return dict(module._tf1_style_var_store._regularizers)
