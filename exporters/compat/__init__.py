"""The TensorFlow and tf_keras internals the exporters must touch, one module each.

Everything here reaches past a public API; `tests/test_compat_internals.py`
exercises every access, so a TensorFlow or tf_keras upgrade that moves one
fails there first, with the name of what moved.
"""
