"""Benchmark: generate a large synthetic tenant, write it, and load it back.

    python tests/bench/bench_generate.py [--users 100000] [--groups 2000] [--skus 10] [--seed 1]
                                         [--keep FILE] [--no-store]

Steps, each timed on its own (wall time, untraced), with the process's maximum resident set
size after it; with --tracemalloc each step also reports its own peak of traced Python memory
(tracing slows the steps several times, so the times are then not comparable):
  1. generate_tenant (in memory)       2. write_tenant (JSON file)
  3. load_seed (parse + schema + reference checks + normalise)
  4. TenantState.from_snapshot         5. the emulator's Store.create (SQLite, computes licensing)
Figures are printed, never asserted. The process's maximum resident set size is printed last.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from reconciler.emulator.generate import generate_tenant, write_tenant
from reconciler.emulator.seed import load_seed, seed_rules
from reconciler.state import TenantState

T = TypeVar("T")


TRACE = False


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(label: str, fn: Callable[[], T]) -> T:
    gc.collect()
    if TRACE:
        tracemalloc.start()
    t0 = time.perf_counter()
    value = fn()
    elapsed = time.perf_counter() - t0
    line = f"{label:<34} {elapsed:8.2f} s   max RSS {max_rss_mib():8.1f} MiB"
    if TRACE:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        line += f"   traced peak {peak / 2**20:8.1f} MiB"
    print(line, flush=True)
    return value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--groups", type=int, default=2_000)
    ap.add_argument("--skus", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", metavar="FILE", help="write the tenant here (kept) instead of a temporary file")
    ap.add_argument("--no-store", action="store_true", help="skip loading into the emulator's store")
    ap.add_argument("--tracemalloc", action="store_true", help="also report each step's traced memory peak")
    args = ap.parse_args()
    global TRACE
    TRACE = args.tracemalloc

    tmpdir = tempfile.mkdtemp(prefix="bench-generate-")
    path = Path(args.keep) if args.keep else Path(tmpdir) / "tenant.json"
    print(f"tenant: {args.users} users, {args.groups} groups, {args.skus} SKUs, seed {args.seed}")

    doc2: dict[str, Any] = measure(
        "generate_tenant",
        lambda: generate_tenant(users=args.users, groups=args.groups, skus=args.skus, seed=args.seed),
    )

    def write(doc: dict[str, Any]) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            write_tenant(doc, fh)

    measure("write_tenant", lambda: write(doc2))
    print(f"  file: {path.stat().st_size / 2**20:.1f} MiB")
    doc2.clear()
    seed = measure("load_seed (validate + normalise)", lambda: load_seed(path))
    state = measure("TenantState.from_snapshot", lambda: TenantState.from_snapshot(seed))
    print(f"  state: {len(state.users)} users, {len(state.groups)} groups, {len(state.skus)} SKUs")
    del state

    if not args.no_store:
        try:
            from reconciler.emulator.store import Store
        except ImportError as exc:  # the emulator store is another module; report, don't fail
            print(f"emulator store not available: {exc}")
        else:
            rules = seed_rules(seed)
            db = Path(tmpdir) / "emulator.db"
            store = measure("emulator Store.create (SQLite)", lambda: Store.create(db, seed, rules=rules))
            store.close()
            print(f"  database: {db.stat().st_size / 2**20:.1f} MiB")

    print(f"max resident set size: {max_rss_mib():.0f} MiB")
    if not args.keep:
        for f in Path(tmpdir).iterdir():
            f.unlink()
        os.rmdir(tmpdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
