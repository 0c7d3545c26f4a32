"""Runs one test helper in a fresh Python, so that it runs beside the tests.

`python -m tests.in_subprocess MODULE:FUNCTION KWARGS_JSON OUT_NPZ` calls
FUNCTION(**kwargs), which returns numpy arrays by name, and saves them in
OUT_NPZ. It is for checks that hold the GIL for a minute or more (TensorFlow
tracing a restored model's gradients), which a thread cannot overlap; the
test that reads the arrays asserts on them (conftest.run_in_subprocess).
"""
import importlib
import json
import sys

import numpy as np


def main(argv: list[str]) -> None:
  target, kwargs_file, out_file = argv[1:]
  module, function = target.split(":")
  with open(kwargs_file) as f:
    kwargs = json.load(f)
  arrays = getattr(importlib.import_module(module), function)(**kwargs)
  np.savez(out_file, **arrays)


if __name__ == "__main__":
  main(sys.argv)
