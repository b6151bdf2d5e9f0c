"""Run every benchmark module in bench/ (each has a main() that prints its own figures).

`python -m bench NAME ...` runs only the named ones (e.g. `python -m bench cold_start`).
`python -m bench soak` runs the soak for BENCH_SOAK_MINUTES (default 2); for a long run:
`BENCH_SOAK_MINUTES=30 python -m bench soak` or `python -m bench.soak --minutes 30`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path

names = sys.argv[1:] or sorted(
    m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")
)
failed = []
for name in names:
    print(f"\n=== bench.{name} ===", flush=True)
    try:
        importlib.import_module(f"bench.{name}").main()
    except Exception:  # report it, run the others, and fail at the end
        traceback.print_exc()
        failed.append(name)
if failed:
    sys.exit(f"benchmarks that failed: {', '.join(failed)}")
