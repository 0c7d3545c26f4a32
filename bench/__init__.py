"""`make bench`: how fast the exports run and how much exporting costs.

`bench_lib.run(BenchConfig(...))` measures on the current machine and writes
`bench.json`, `bench.md` and `bench.png`; each measurement that needs a clean
process (a model's inference, one export, the export floor) runs in its own
child process (`bench.child`). See `python -m bench --help`.
"""
