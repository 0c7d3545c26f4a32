"""`make bench`: how fast the exports run and how much exporting costs.

`bench_lib.run(BenchConfig(...))` measures on the current machine and writes
`bench.json`, `bench.md` and `bench.png`; each measurement that needs a clean
process (a model's inference, a model run exporting its releases, the
export-all floor, the constructions with and without tf_slim_compat's fix 3)
runs in its own child process (`bench.child`). See `python -m bench --help`.
"""
