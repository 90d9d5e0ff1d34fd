"""Benchmark: `apply` of the sample tenant's policy through the real HTTPS path.

    python tests/bench/bench_apply.py [--delay 2.0]

The emulator runs in this process (a thread) with the given group processing delay (the sample
seed's is 2 s). Printed, never asserted: the plan's actions; for apply, the HTTP requests sent
(each $batch counts once), the requests inside $batch, reads and writes by route, the emulator's
resource units, and the wall time of each step (observe + checks, writes, waits, verification).
"""

from __future__ import annotations

import argparse
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from reconciler.apply import ApplyOptions, AuditLog, apply_plan, check_plan, observe_scope  # noqa: E402
from reconciler.graph.client import GraphClient  # noqa: E402
from reconciler.graph.credentials import Credential, CredentialSettings, MsalTokenProvider  # noqa: E402
from reconciler.planner import make_plan  # noqa: E402
from reconciler.planner.run import observe_for  # noqa: E402
from reconciler.policy import load_policy  # noqa: E402

SAMPLE = ROOT / "examples" / "sample-tenant.json"
POLICIES = ROOT / "policies"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=2.0, help="group processing delay (seconds)")
    args = parser.parse_args()

    from reconciler.emulator.app import EmulatorOptions, create_app
    from reconciler.emulator.auth import TokenService
    from reconciler.emulator.seed import load_seed
    from reconciler.emulator.server import start_background
    from reconciler.emulator.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seed = load_seed(SAMPLE)
        store = Store.create(work / "t.db", seed)
        app = create_app(store, token_service=TokenService.from_seed(seed), options=EmulatorOptions(processing_delay=args.delay))
        server = start_background(app, state_dir=work, ready_timeout=60.0)
        try:
            ctx = ssl.create_default_context(cafile=str(server.ca_path))
            apps = {a["displayName"]: a for a in seed["applications"]}

            def tokens(name: str) -> MsalTokenProvider:
                a = apps[name]
                settings = CredentialSettings(
                    tenant_id=str(seed["organization"]["id"]), client_id=str(a["appId"]),
                    authority=server.base_url, ca_bundle=str(server.ca_path),
                )
                return MsalTokenProvider(settings, Credential("secret", "bench", str(a["secret"])))

            def client(name: str, **kw: Any) -> GraphClient:
                return GraphClient(
                    server.graph_url, token_provider=tokens(name), verify=ctx, read_only=name == "reconciler-plan", **kw
                )

            policy = load_policy([str(POLICIES)])
            with client("reconciler-plan") as reader:
                plan = make_plan(policy, observe_for(reader, policy))
            print(f"sample tenant, processing delay {args.delay:g} s; plan: {plan.summary}")

            marks: list[tuple[float, str]] = []
            start = time.perf_counter()

            def say(text: str) -> None:
                marks.append((time.perf_counter() - start, text))

            with AuditLog(work / "audit.jsonl") as audit, client("reconciler-apply", on_write=audit.hook) as writer:
                state = observe_scope(writer, plan)
                check_plan(plan, state)
                observed = time.perf_counter() - start
                observe_requests = writer.stats.requests
                result = apply_plan(writer, plan, state, ApplyOptions(progress=False, say=say, audit=audit))
                total = time.perf_counter() - start
                stats = writer.stats
            print(f"  result: {len(result.done)} done, {len(result.failed)} failed; verified={result.verified}, "
                  f"differences={len(result.differences)}")
            print(f"  HTTP requests: {stats.requests} ({observe_requests} to re-observe and check), "
                  f"{stats.batch_items} requests inside $batch, {audit.count} writes")
            for route, n in sorted(stats.by_route.items()):
                print(f"    {n:>4}  {route}")
            print("  inside $batch:")
            for route, n in sorted(stats.batch_items_by_route.items()):
                print(f"    {n:>4}  {route}")
            print(f"  time: re-observe + checks {observed:.2f} s, total {total:.2f} s")
            for at, text in marks:
                print(f"    {at:6.2f} s  {text}")
            with httpx.Client(verify=ctx) as h:
                bearer = {"Authorization": "Bearer " + tokens("reconciler-apply")()}
                emu = h.get(f"{server.base_url}/_emulator/stats", headers=bearer).json()
            print(f"  emulator: {emu['requests']['total']} requests, {emu['batchItems']['total']} batch items, "
                  f"{emu['resourceUnits']} resource units (plan and apply)")
        finally:
            server.stop(timeout=5.0)
            store.close()


if __name__ == "__main__":
    main()
