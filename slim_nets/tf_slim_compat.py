"""Makes tf-slim 1.1.0 usable on TensorFlow 2.21 (applied on import).

tf-slim 1.1.0 is the last release and breaks on current TensorFlow in two
known ways, and builds graphs in quadratic time in a third; each fix below is
the smallest that restores the old behaviour:

1. `slim.batch_norm` builds `tensorflow.python.layers.normalization`, a lazy
   loader for `tf_keras.legacy_tf_layers.normalization`. tf_keras ships that
   module as `tf_keras.src.legacy_tf_layers.normalization`, so the import fails
   with "No module named 'tf_keras.legacy_tf_layers'" (google-research/tf-slim
   issue 24; fixed upstream, never released). We point tf_slim's module
   reference at the real tf_keras module.
2. `tf_slim.layers.utils.constant_value` (and a few other tf_slim helpers)
   test `isinstance(x, tensorflow.python.framework.ops.Tensor)`; current
   TensorFlow no longer defines `ops.Tensor`. We restore the name as an alias
   of `tf.Tensor`, which is what it used to be.
3. Not a breakage but a cost: the legacy layers' `add_weight` (tf_keras's copy,
   used by `slim.batch_norm`, and TensorFlow's own, used by `slim.conv2d` and
   friends) builds `set(global_variables())` for every weight, only to ask
   whether the new weight was already there (then it is reused and gets no
   second regularization loss). Hashing a graph-mode variable is a slow Python
   call, so this is quadratic: ~200,000 hashes, ~2 of 7 s, for nasnet_mobile.
   We shadow the builtin `set` in those two modules with one that, for a list
   of plain variables, answers `in` by object identity, lazily and without
   `Variable.__hash__`. That is the same answer: add_weight asks only outside
   eager execution, where `tf.Variable` hashes by `id` and `==` is `is`; any
   other argument, or a variable type that overrides either, gets a real set.
   (The modules' only other `set` use, in `__deepcopy__`, is on strings.)
   `without_fix_3()` undoes it for a block, for tests that show the cost.

Import this module (slim_nets does, before any graph is built) instead of
importing tf_slim directly.
"""
import contextlib

import tensorflow as tf
from tensorflow.python.framework import ops as _tf_ops

if not hasattr(_tf_ops, "Tensor"):
  _tf_ops.Tensor = tf.Tensor  # Fix 2.

import tf_slim  # noqa: E402  (needs fix 2 in place before use)
from tf_slim.layers import layers as _slim_layers  # noqa: E402
from tf_keras.src.legacy_tf_layers import normalization as _keras_legacy_normalization  # noqa: E402
from tf_keras.src.legacy_tf_layers import base as _keras_legacy_base  # noqa: E402
from tensorflow.python.keras.legacy_tf_layers import base as _tf_legacy_base  # noqa: E402

_slim_layers.normalization_layers = _keras_legacy_normalization  # Fix 1.

_LEGACY_LAYER_BASES = (_keras_legacy_base, _tf_legacy_base)


def _compares_by_identity(cls):
  # Looked up on each call, so a test that wraps Variable.__hash__ still sees plain variables.
  return cls.__hash__ is tf.Variable.__hash__ and cls.__eq__ is tf.Variable.__eq__


class _VariableSnapshot:
  """add_weight's `set(global_variables())`; it only ever asks `variable in` it."""
  __slots__ = ("_variables", "_ids")

  def __init__(self, variables):
    self._variables = variables  # Keeps them alive, so their ids stay theirs.
    self._ids = None

  def __contains__(self, variable):
    if not _compares_by_identity(type(variable)):
      return variable in set(self._variables)
    if self._ids is None:  # Built only when asked: for regularized weights.
      self._ids = set(map(id, self._variables))
    return id(variable) in self._ids


def _legacy_base_set(iterable=(), /):
  """The `set` the legacy layer bases see (fix 3)."""
  if type(iterable) is list and all(map(_compares_by_identity, set(map(type, iterable)))):
    return _VariableSnapshot(iterable)
  return set(iterable)


def _apply_fix_3(enabled):
  for module in _LEGACY_LAYER_BASES:
    if enabled:
      module.set = _legacy_base_set
    else:
      vars(module).pop("set", None)


@contextlib.contextmanager
def without_fix_3():
  """Runs the block with the builtin `set` back in the legacy layer bases."""
  _apply_fix_3(False)
  try:
    yield
  finally:
    _apply_fix_3(True)


_apply_fix_3(True)  # Fix 3.

slim = tf_slim
