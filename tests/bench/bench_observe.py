"""Benchmark: read a generated 100,000-user tenant through the real HTTPS path.

    python tests/bench/bench_observe.py [--users 100000] [--groups 2000] [--latency-ms 50] [--no-naive]

The emulator runs in a subprocess (`reconciler emulator serve`, 50 ms latency per request) so the
figures for this process are the client's alone. Measured, printed, never asserted:

- observe(): wall time, requests sent, peak RSS of this process;
- the lower bound of requests that `$top=999` and `$batch` (20 per call) allow for the same data;
- a naive client in the same run: page size 100, one request per group, no `$batch`, one at a time.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from reconciler.graph.client import GraphClient
from reconciler.graph.credentials import Credential, CredentialSettings, MsalTokenProvider, ssl_context
from reconciler.graph.observe import USER_SELECT, ObservePlan, observe


def start_emulator(seed: Path, workdir: Path, latency_ms: float) -> tuple[subprocess.Popen[str], str, str]:
    """`reconciler emulator serve` in a subprocess; returns (process, base URL, CA path)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "emulator",
            "serve",
            "--seed",
            str(seed),
            "--db",
            str(workdir / "tenant.db"),
            "--latency-ms",
            str(latency_ms),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    base = ca = None
    lines: list[str] = []
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and (base is None or ca is None):
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                raise SystemExit("emulator exited:\n" + "".join(lines))
            continue
        lines.append(line)
        m = re.search(r" at (https://\S+)", line)
        if m and base is None:
            base = m.group(1)
        m = re.match(r"\s+CA:\s+(\S.*)$", line)
        if m:
            ca = m.group(1).strip()
    if base is None or ca is None:
        raise SystemExit("emulator did not report its address:\n" + "".join(lines))
    # keep draining stderr so the emulator never blocks on a full pipe
    threading.Thread(target=lambda: [None for _ in proc.stderr or ()], daemon=True).start()
    return proc, base, ca


def lower_bound(seed: dict[str, Any]) -> int:
    """Requests needed at best: one $batch (organization, SKUs, first pages of groups and users),
    the other pages of groups and users, and the member pages of licensed groups 20 per $batch."""
    n_users = len(seed["users"])
    n_groups = len(seed["groups"])
    licensed = [g for g in seed["groups"] if g.get("assignedLicenses")]
    member_pages = sum(max(1, math.ceil(len(g.get("members") or []) / 999)) for g in licensed)
    return 1 + (math.ceil(n_groups / 999) - 1) + (math.ceil(n_users / 999) - 1) + math.ceil(member_pages / 20)


def naive_requests(seed: dict[str, Any], page: int = 100) -> int:
    licensed = [g for g in seed["groups"] if g.get("assignedLicenses")]
    return (
        2
        + math.ceil(len(seed["groups"]) / page)
        + math.ceil(len(seed["users"]) / page)
        + sum(max(1, math.ceil(len(g.get("members") or []) / page)) for g in licensed)
    )


def naive_read(base: str, ca: str, token: str) -> tuple[int, int, int]:
    """A straightforward client: $top=100, sequential, one request per group, no $batch."""
    count = 0
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base + "/v1.0/", verify=ssl_context(ca), headers=headers, timeout=120) as http:

        def pages(url: str) -> list[dict[str, Any]]:
            nonlocal count
            out: list[dict[str, Any]] = []
            next_url: str | None = url
            while next_url:
                count += 1
                body = http.get(next_url).raise_for_status().json()
                out.extend(body.get("value") or [])
                next_url = body.get("@odata.nextLink")
            return out

        pages("organization?$select=id")
        pages("subscribedSkus?$select=skuId,consumedUnits,prepaidUnits,servicePlans")
        groups = pages("groups?$top=100&$select=id,displayName,assignedLicenses")
        users = pages(
            "users?$top=100&$select=id,userPrincipalName,usageLocation,proxyAddresses,assignedLicenses,"
            "licenseAssignmentStates"
        )
        memberships = 0
        for g in groups:
            if g.get("assignedLicenses"):
                memberships += len(pages(f"groups/{g['id']}/members?$top=100&$select=id"))
    return count, len(users), memberships


class RssSampler:
    """Peak resident memory of this process while a block runs (Linux /proc; else ru_maxrss)."""

    def __init__(self) -> None:
        self.baseline = self.peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current() -> float:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return peak_rss_mb()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.current())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--no-naive", action="store_true", help="skip the naive client")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-observe-") as tmp:
        work = Path(tmp)
        seed_path = work / "tenant.json"
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler",
                "emulator",
                "generate",
                "--users",
                str(args.users),
                "--groups",
                str(args.groups),
                "--out",
                str(seed_path),
            ],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        seed = json.loads(seed_path.read_text())
        memberships = sum(len(g.get("members") or []) for g in seed["groups"] if g.get("assignedLicenses"))
        n_licensed = sum(1 for g in seed["groups"] if g.get("assignedLicenses"))
        print(
            f"generated {len(seed['users']):,} users, {len(seed['groups']):,} groups ({n_licensed} licensed,"
            f" {memberships:,} memberships in them) in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
        proc, base, ca = start_emulator(seed_path, work, args.latency_ms)
        try:
            org = seed["organization"]
            app = next(a for a in seed["applications"] if a["displayName"] == "reconciler-plan")
            settings = CredentialSettings(
                tenant_id=org["id"], client_id=app["appId"], authority=base, ca_bundle=ca
            )
            tokens = MsalTokenProvider(settings, Credential("secret", "seed", app["secret"]))
            token = tokens()
            # the critical path: user pages follow each other (each nextLink comes with the page before)
            with GraphClient(
                base + "/v1.0", token_provider=tokens, verify=ssl_context(ca), read_only=True
            ) as probe:
                samples = []
                pages = probe.iter_pages("/users", select=USER_SELECT)
                for _ in range(3):
                    t0 = time.perf_counter()
                    next(pages)
                    samples.append(time.perf_counter() - t0)
                page_time = sorted(samples)[1]
            n_users = len(seed["users"])
            bound = lower_bound(seed)
            naive_est = naive_requests(seed)
            del seed["users"][:]  # the bench process keeps only the client's memory
            gc.collect()
            sampler = RssSampler()
            with GraphClient(
                base + "/v1.0",
                token_provider=tokens,
                verify=ssl_context(ca),
                read_only=True,
                max_concurrency=args.concurrency,
            ) as client:
                plan = ObservePlan()
                t0 = time.perf_counter()
                with sampler:
                    state = observe(client, plan=plan, progress=False)
                wall = time.perf_counter() - t0
                sent = client.stats.requests
                routes = dict(client.stats.by_route)
                retries = client.stats.retries
            print()
            print(
                f"tenant: {n_users:,} users, {len(seed['groups']):,} groups, {n_licensed} licensed,"
                f" {memberships:,} memberships; emulator latency {args.latency_ms:g} ms per request"
            )
            print(
                f"observe: {len(state.users):,} users, {len(state.groups)} groups read; user strategy"
                f" '{plan.user_strategy}'; requests by route: {routes}; retries {retries}"
            )
            rows = [
                (
                    "reconciler observe()",
                    sent,
                    f"{wall:.1f} s",
                    f"{sampler.peak:.0f} MB (+{sampler.peak - sampler.baseline:.0f} MB)",
                )
            ]
            if not args.no_naive:
                t0 = time.perf_counter()
                n_naive, n_users_naive, n_members_naive = naive_read(base, ca, token)
                print(f"naive client read {n_users_naive:,} users and {n_members_naive:,} memberships")
                rows.append(
                    (
                        "naive (page 100, per group, no batch)",
                        n_naive,
                        f"{time.perf_counter() - t0:.1f} s",
                        "-",
                    )
                )
            print()
            print(f"{'client':40} {'requests':>9} {'wall':>9}  peak RSS")
            for name, n, w, mem in rows:
                print(f"{name:40} {n:>9,} {w:>9}  {mem}")
            print(f"{'lower bound ($top=999, $batch of 20)':40} {bound:>9,}")
            print(f"{'naive, computed':40} {naive_est:>9,}")
            print()
            user_pages = math.ceil(n_users / 999)
            print(
                f"critical path: {user_pages} user pages in sequence x {page_time:.2f} s per page (measured)"
                f" = {user_pages * page_time:.1f} s; observe took {wall:.1f} s"
            )
            print(
                f"observe / lower bound = {sent / bound:.2f}x;"
                f" naive / observe = {(rows[1][1] if len(rows) > 1 else naive_est) / sent:.1f}x fewer requests"
            )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
