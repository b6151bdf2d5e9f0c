"""Run every benchmark in turn; each prints its own figures."""

from __future__ import annotations

import importlib

BENCHMARKS = ["bench.cold_start"]

for name in BENCHMARKS:
    print(f"\n=== {name} ===", flush=True)
    importlib.import_module(name).main()
