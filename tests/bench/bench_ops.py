"""Benchmark: the operate commands (errors, report, export, migrate) through the real HTTPS path.

    python tests/bench/bench_ops.py [--users 10000] [--no-migrate]

The emulator runs in this process (a thread, as in the tests). Printed, never asserted:
- on the sample tenant and on a generated tenant of --users users: for each command, the HTTP
  requests sent (each $batch counts once) and the wall time; for errors and report, the time of
  each --format rendering and the size of its output;
- on the generated tenant, the migration phase by phase (propose, then plan / apply / check until
  the plan shows no changes): wall time per phase, actions per plan, requests per phase.
"""

from __future__ import annotations

import argparse
import io
import json
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from reconciler.apply import ApplyOptions, apply_plan, check_plan, observe_scope  # noqa: E402
from reconciler.apply.wait import Poller  # noqa: E402
from reconciler.emulator.generate import generate_tenant  # noqa: E402
from reconciler.graph.client import GraphClient  # noqa: E402
from reconciler.graph.credentials import Credential, CredentialSettings, MsalTokenProvider  # noqa: E402
from reconciler.ops.errors import find_errors, render_errors  # noqa: E402
from reconciler.ops.export import export_policy, read_export_state  # noqa: E402
from reconciler.ops.migrate import migration_policy, propose_migration, read_migration_state  # noqa: E402
from reconciler.ops.report import read_report, write_report  # noqa: E402
from reconciler.planner import make_plan  # noqa: E402
from reconciler.planner.run import observe_for  # noqa: E402
from reconciler.policy import load_policy  # noqa: E402

SAMPLE = ROOT / "examples" / "sample-tenant.json"


class Emulator:
    def __init__(self, seed_path: Path, workdir: Path) -> None:
        from reconciler.emulator.app import EmulatorOptions, create_app
        from reconciler.emulator.auth import TokenService
        from reconciler.emulator.seed import load_seed
        from reconciler.emulator.server import start_background
        from reconciler.emulator.store import Store

        self.seed = load_seed(seed_path)
        self.store = Store.create(workdir / f"{seed_path.stem}.db", self.seed)
        tokens = TokenService.from_seed(self.seed)
        app = create_app(self.store, token_service=tokens, options=EmulatorOptions())
        self.server = start_background(app, state_dir=workdir, ready_timeout=60.0)
        self.ssl = ssl.create_default_context(cafile=str(self.server.ca_path))
        apps = {a["displayName"]: a for a in self.seed["applications"]}
        self.tokens = {name: self._provider(apps[name]) for name in ("reconciler-plan", "reconciler-apply")}

    def _provider(self, app: dict[str, Any]) -> MsalTokenProvider:
        settings = CredentialSettings(
            tenant_id=str(self.seed["organization"]["id"]),
            client_id=str(app["appId"]),
            authority=self.server.base_url,
            ca_bundle=str(self.server.ca_path),
        )
        return MsalTokenProvider(settings, Credential("secret", "bench", str(app["secret"])))

    def client(self, *, write: bool = False) -> GraphClient:
        name = "reconciler-apply" if write else "reconciler-plan"
        return GraphClient(self.server.graph_url, token_provider=self.tokens[name], verify=self.ssl, read_only=not write)

    def stop(self) -> None:
        self.server.stop(timeout=5.0)
        self.store.close()


def measure(emu: Emulator, name: str, fn: Callable[[GraphClient], Any]) -> Any:
    with emu.client() as client:
        start = time.perf_counter()
        result = fn(client)
        elapsed = time.perf_counter() - start
        print(f"  {name:<8} {client.stats.requests:>5} requests  {elapsed:7.2f} s")
    return result


def rendered(write: Callable[[str, io.StringIO], Any]) -> None:
    """Time of each --format rendering (written to memory) and the size of its output."""
    parts = []
    for fmt in ("text", "markdown", "json", "csv"):
        out = io.StringIO()
        start = time.perf_counter()
        write(fmt, out)
        parts.append(f"{fmt} {time.perf_counter() - start:.2f} s ({out.tell() / 1e6:.1f} MB)")
    print("           render: " + ", ".join(parts))


def commands(emu: Emulator, label: str) -> None:
    print(f"{label}:")
    report = measure(emu, "errors", lambda c: find_errors(c, progress=False))
    print(f"           ({len(report.errors)} errors, {len(report.silent)} silent failures)")
    rendered(lambda fmt, out: out.write(render_errors(report, fmt)))
    licenses = measure(emu, "report", lambda c: read_report(c, progress=False))
    print(f"           ({len(licenses.users)} user x SKU rows)")
    rendered(lambda fmt, out: write_report(licenses, fmt, out))
    measure(emu, "export", lambda c: export_policy(read_export_state(c)))
    measure(emu, "migrate", lambda c: propose_migration(read_migration_state(c, progress=False)))


def migrate(emu: Emulator, workdir: Path) -> None:
    print("migration, phase by phase:")
    start = time.perf_counter()
    with emu.client() as c:
        state = read_migration_state(c, progress=False)
    mig = propose_migration(state)
    path = workdir / "migration.yaml"
    path.write_text(migration_policy(mig, state))
    print(
        f"  propose: {time.perf_counter() - start:6.2f} s  {len(mig.mirror_groups)} mirror groups, "
        f"{len(mig.migrated_users)} users, {len(mig.skipped)} skipped"
    )
    policy = load_policy([str(path)])
    for round_no in range(1, 7):
        t0 = time.perf_counter()
        with emu.client() as c:
            st = observe_for(c, policy)
            plan_requests = c.stats.requests
        plan = make_plan(policy, st)
        t1 = time.perf_counter()
        print(f"  plan {round_no}:  {t1 - t0:6.2f} s  {plan_requests} requests  {dict(plan.summary)}")
        if not plan.has_changes:
            break
        with emu.client(write=True) as c:
            scope = observe_scope(c, plan)
            check_plan(plan, scope)
            opts = ApplyOptions(poller=Poller(first=0.1, factor=1.5, cap=0.5), progress=False, say=lambda _t: None)
            result = apply_plan(c, plan, scope, opts)
            apply_requests = c.stats.requests
        print(
            f"  apply {round_no}: {time.perf_counter() - t1:6.2f} s  {apply_requests} requests  "
            f"exit {result.exit_code}, {len(result.done)} done"
        )
    print(f"  total:   {time.perf_counter() - start:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--no-migrate", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        emu = Emulator(SAMPLE, workdir)
        try:
            commands(emu, "sample tenant (52 users)")
        finally:
            emu.stop()
        doc = generate_tenant(users=args.users, groups=max(20, args.users // 50), skus=8, seed=7)
        seed_path = workdir / "generated.json"
        seed_path.write_text(json.dumps(doc))
        emu = Emulator(seed_path, workdir)
        try:
            commands(emu, f"generated tenant ({args.users} users)")
            if not args.no_migrate:
                migrate(emu, workdir)
        finally:
            emu.stop()


if __name__ == "__main__":
    main()
