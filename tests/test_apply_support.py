"""Helpers for the apply, reprocess and audit tests (no tests here).

`Tenant` wraps a running emulator (the `start_emulator` fixture): Graph clients for the seed's
reader and writer applications, plan / observe / apply in-process, snapshot and stats, and the CLI
as a subprocess (`python -m reconciler`) pointed at the same emulator over HTTPS.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from reconciler.apply import ApplyOptions, ApplyResult, AuditLog, apply_plan, check_plan, observe_scope
from reconciler.apply.wait import Poller
from reconciler.graph.client import GraphClient, WriteHook
from reconciler.graph.credentials import Credential, CredentialSettings, MsalTokenProvider
from reconciler.graph.transport import RetryPolicy
from reconciler.plan import Plan
from reconciler.planner import make_plan
from reconciler.planner.run import observe_for
from reconciler.policy import Policy, load_policy

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-tenant.json"
POLICIES = ROOT / "policies"

FAST_RETRY = RetryPolicy(sleep=lambda s: time.sleep(min(s, 0.05)))


def fast_poller() -> Poller:
    return Poller(first=0.2, factor=1.5, cap=1.0)


class Tenant:
    def __init__(self, emulator: Any) -> None:
        self.emu = emulator
        self.server = emulator.server
        self.seed = emulator.seed
        self.tenant_id = str(self.seed["organization"]["id"])
        self.apps = {a["displayName"]: a for a in self.seed["applications"]}
        self.ssl = ssl.create_default_context(cafile=str(self.server.ca_path))
        self._tokens: dict[str, MsalTokenProvider] = {}

    def token(self, app: str = "reconciler-apply") -> MsalTokenProvider:
        if app not in self._tokens:
            a = self.apps[app]
            settings = CredentialSettings(
                tenant_id=self.tenant_id,
                client_id=str(a["appId"]),
                authority=self.server.base_url,
                ca_bundle=str(self.server.ca_path),
            )
            self._tokens[app] = MsalTokenProvider(settings, Credential("secret", "test", str(a["secret"])))
        return self._tokens[app]

    def client(
        self, *, read_only: bool = False, on_write: WriteHook | None = None, retry: RetryPolicy | None = None
    ) -> GraphClient:
        app = "reconciler-plan" if read_only else "reconciler-apply"
        return GraphClient(
            self.server.graph_url,
            token_provider=self.token(app),
            verify=self.ssl,
            read_only=read_only,
            on_write=on_write,
            retry=retry or FAST_RETRY,
        )

    def plan(self, policy: Policy | Sequence[str | Path] = (POLICIES,), *, force: bool = False) -> Plan:
        if not isinstance(policy, Policy):
            policy = load_policy([str(p) for p in policy])
        with self.client(read_only=True) as c:
            state = observe_for(c, policy)
        return make_plan(policy, state, force=force)

    def apply(self, plan: Plan, *, audit: AuditLog | None = None, **options: Any) -> ApplyResult:
        hook = audit.hook if audit is not None else None
        with self.client(on_write=hook) as c:
            state = observe_scope(c, plan)
            check_plan(plan, state)
            options.setdefault("poller", fast_poller())
            opts = ApplyOptions(progress=False, say=lambda _t: None, audit=audit, **options)
            return apply_plan(c, plan, state, opts)

    # -- Graph by hand
    def http(self) -> httpx.Client:
        return httpx.Client(
            verify=self.ssl,
            trust_env=False,
            timeout=60.0,
            headers={"Authorization": f"Bearer {self.token()()}"},
        )

    def graph(self, method: str, path: str, body: Any = None) -> httpx.Response:
        with self.http() as h:
            res = h.request(method, self.server.graph_url + path, json=body)
        assert res.status_code < 300, res.text
        return res

    def control(self, method: str, name: str) -> Any:
        with self.http() as h:
            res = h.request(method, f"{self.server.base_url}/_emulator/{name}")
        assert res.status_code == 200, res.text
        return res.json()

    def snapshot(self) -> dict[str, Any]:
        return dict(self.control("GET", "snapshot"))

    def stats(self) -> dict[str, Any]:
        return dict(self.control("GET", "stats"))

    def group_id(self, name: str) -> str:
        return next(str(g["id"]) for g in self.snapshot()["groups"] if g["displayName"] == name)

    def user_id(self, upn: str) -> str:
        return next(str(u["id"]) for u in self.snapshot()["users"] if u["userPrincipalName"] == upn)

    # -- the CLI as a subprocess
    def cli_args(self, app: str) -> tuple[list[str], dict[str, str]]:
        a = self.apps[app]
        flags = [
            "--graph-url", self.server.graph_url,
            "--authority", self.server.base_url,
            "--ca-bundle", str(self.server.ca_path),
            "--tenant-id", self.tenant_id,
            "--client-id", str(a["appId"]),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "RECONCILER_"))}
        env["AZURE_CLIENT_SECRET"] = str(a["secret"])
        env["NO_COLOR"] = "1"
        return flags, env

    def cli(
        self, *args: str, cwd: Path, app: str = "reconciler-apply", timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        flags, env = self.cli_args(app)
        return subprocess.run(
            [sys.executable, "-m", "reconciler", *args, *flags],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str, cwd: Path, app: str = "reconciler-apply") -> subprocess.Popen[str]:
        flags, env = self.cli_args(app)
        return subprocess.Popen(
            [sys.executable, "-m", "reconciler", *args, *flags],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        )


def writes_in_stats(stats: Mapping[str, Any]) -> int:
    """Graph writes the emulator answered (direct and inside $batch), the $batch envelope excluded."""
    total = 0
    for section in (stats["requests"]["byRoute"], stats["batchItems"]["byRoute"]):
        for route, n in section.items():
            method = route.split(" ", 1)[0]
            if method in ("POST", "PATCH", "PUT", "DELETE") and "$batch" not in route and route != "fault":
                total += int(n)
    return total


def normalized(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """A snapshot comparable across runs: created groups named instead of their random ids, no
    timestamps, lists sorted."""
    groups = {str(g["id"]): str(g["displayName"]) for g in snapshot["groups"]}

    def gid(x: Any) -> Any:
        return groups.get(str(x), x) if x else x

    users = []
    for u in snapshot["users"]:
        u = {k: v for k, v in u.items() if k not in ("createdDateTime",)}
        u["licenseAssignmentStates"] = sorted(
            (
                {**{k: v for k, v in s.items() if k != "lastUpdatedDateTime"}, "assignedByGroup": gid(s.get("assignedByGroup"))}
                for s in u.get("licenseAssignmentStates") or ()
            ),
            key=lambda s: json.dumps(s, sort_keys=True),
        )
        users.append(u)
    out_groups = []
    for g in snapshot["groups"]:
        g = {k: v for k, v in g.items() if k not in ("id", "createdDateTime", "renewedDateTime")}
        g["members"] = sorted(str(m) for m in g.get("members") or ())
        out_groups.append(g)
    return {
        "users": sorted(users, key=lambda u: str(u["id"])),
        "groups": sorted(out_groups, key=lambda g: str(g["displayName"])),
        "subscribedSkus": snapshot["subscribedSkus"],
    }


class Watcher(threading.Thread):
    """Reads every user's effective licenses over and over; records any enabled plan lost."""

    def __init__(self, tenant: Tenant) -> None:
        super().__init__(daemon=True)
        self.tenant = tenant
        self.plans = {
            str(s["skuId"]).lower(): {str(p["servicePlanId"]).lower() for p in s["servicePlans"]}
            for s in tenant.seed["subscribedSkus"]
        }
        self.stop = threading.Event()
        self.last: dict[str, set[str]] = {}
        self.lost: list[tuple[str, set[str]]] = []
        self.reads = 0

    def enabled(self, user: dict[str, Any]) -> set[str]:
        out: set[str] = set()
        for lic in user.get("assignedLicenses") or ():
            sku = str(lic["skuId"]).lower()
            out |= self.plans.get(sku, set()) - {str(p).lower() for p in lic.get("disabledPlans") or ()}
        return out

    def run(self) -> None:
        with self.tenant.client(read_only=True) as c:
            while not self.stop.is_set():
                users = c.get_all("/users", select=("id", "userPrincipalName", "assignedLicenses"))
                self.reads += 1
                for u in users:
                    now = self.enabled(u)
                    before = self.last.get(u["id"], now)
                    if before - now:
                        self.lost.append((str(u["userPrincipalName"]), before - now))
                    self.last[u["id"]] = now
                time.sleep(0.05)
