"""Benchmark of the renderers and the plan file on a large hand-built plan.

    python tests/bench/bench_render.py [--users 100000]

The plan creates a group for N users: one assignLicense naming every user, N addMember and N
setUsageLocation actions, and two violations naming (almost) every user. Prints wall time for
each renderer, for writing and reading the plan file (with schema validation), the file size and
the markdown length. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plan_samples

from reconciler import planfile
from reconciler.render import render_github_annotations, render_markdown, render_text

T = TypeVar("T")


def measure(label: str, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    value = fn()
    print(f"{label:<28} {time.perf_counter() - start:8.2f} s")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    plan = measure(f"build plan ({args.users:,} users)", lambda: plan_samples.many_users(args.users))
    print(f"actions: {len(plan.actions):,}")
    text = measure("render_text", lambda: render_text(plan))
    md = measure("render_markdown", lambda: render_markdown(plan))
    measure("render_github_annotations", lambda: render_github_annotations(plan))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.json"
        measure("write_plan", lambda: planfile.write_plan(plan, path))
        again = measure("read_plan (validated)", lambda: planfile.read_plan(path))
        size = path.stat().st_size
    assert again == plan
    print(f"text lines: {text.count(chr(10)):,}; markdown: {len(md):,} characters; plan file: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
