"""observe reads a large tenant's users as parallel listings split by the first character of
userPrincipalName (over HTTPS against the emulator), reads exactly what the one-chain listing
reads, and falls back to that listing when the split does not cover every user (checked against
users/$count) or Graph refuses the filter."""

from __future__ import annotations

import json
import math
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.emulator.generate import generate_tenant
from reconciler.graph.client import GraphClient
from reconciler.graph.credentials import Credential, CredentialSettings, MsalTokenProvider
from reconciler.graph.observe import (
    UPN_FIRST_CHARACTERS,
    ObservePlan,
    observe,
    upn_prefix_filter,
    user_partitions,
)
from reconciler.state import TenantState

USERS = 2600  # 3 pages of 999: the first (in the first $batch) and 2 more
CHAINS = 6  # the client's default concurrency


def _reader(emulator: Any, transport: httpx.BaseTransport | None = None) -> Callable[[], GraphClient]:
    org = emulator.seed["organization"]
    app = next(a for a in emulator.seed["applications"] if a["displayName"] == "reconciler-plan")
    server = emulator.server
    settings = CredentialSettings(
        tenant_id=str(org["id"]), client_id=str(app["appId"]), authority=server.base_url, ca_bundle=str(server.ca_path)
    )
    token = MsalTokenProvider(settings, Credential("secret", "test", str(app["secret"])))
    context = ssl.create_default_context(cafile=str(server.ca_path))
    return lambda: GraphClient(
        server.graph_url, token_provider=token, verify=context, read_only=True, transport=transport
    )


def _start(start_emulator: Callable[..., Any], tmp_path: Path, doc: dict[str, Any]) -> Any:
    seed = tmp_path / "tenant.json"
    seed.write_text(json.dumps(doc), encoding="utf-8")
    return start_emulator(seed, start_worker=False)


def _read(client_factory: Callable[[], GraphClient], partition_pages: int) -> tuple[TenantState, int, ObservePlan]:
    plan = ObservePlan()
    with client_factory() as client:
        state = observe(
            client, all_users=True, all_groups=True, progress=False, plan=plan, partition_pages=partition_pages
        )
        return state, client.stats.requests, plan


def _listing_requests(doc: dict[str, Any]) -> int:
    """Requests of the split listing: each listing reads at least one (maybe empty) page."""
    first_page = sorted(doc["users"], key=lambda u: str(u["id"]).lower())[:999]
    parts = user_partitions([u["userPrincipalName"] for u in first_page], CHAINS)
    sizes = [0] * len(parts)
    for user in doc["users"]:
        first = str(user["userPrincipalName"])[0].lower()
        for i, chars in enumerate(parts):
            if first in chars:
                sizes[i] += 1
    return sum(max(1, math.ceil(n / 999)) for n in sizes)


def test_partitions_cover_every_character_once_and_balance_the_sample() -> None:
    sample = ["joe@x"] * 40 + ["jane@x"] * 40 + ["ann@x"] * 30 + ["bob@x"] * 20 + ["Zed@x"] * 10 + ["é@x"]
    parts = user_partitions(sample, 4)
    assert len(parts) == 4
    flat = [c for p in parts for c in p]
    assert sorted(flat) == sorted(set(UPN_FIRST_CHARACTERS) | {"é"})  # each exactly once, plus the sample's
    weight = {p: sum(1 for u in sample if u[0].lower() in p) for p in parts}
    assert max(weight.values()) == 80  # "j" alone; the others spread over the remaining listings
    assert ("j",) in parts  # the heaviest character has a listing to itself
    assert user_partitions([], 100) and len(user_partitions([], 100)) == len(UPN_FIRST_CHARACTERS)


def test_prefix_filter_quotes_apostrophes() -> None:
    assert upn_prefix_filter(["a", "'"]) == "startswith(userPrincipalName,'a') or startswith(userPrincipalName,'''')"


def test_partitioned_listing_reads_what_the_sequential_listing_reads(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    doc = generate_tenant(users=USERS, groups=30, skus=6, seed=3)
    client_factory = _reader(_start(start_emulator, tmp_path, doc))

    sequential, seq_requests, seq_plan = _read(client_factory, partition_pages=1000)
    partitioned, part_requests, part_plan = _read(client_factory, partition_pages=1)

    assert len(sequential.users) == USERS
    assert partitioned == sequential
    assert partitioned.fingerprint() == sequential.fingerprint()
    assert not any("parallel" in n for n in seq_plan.notes)
    assert f"users listed as {CHAINS} parallel listings by UPN" in part_plan.notes
    # the 2 pages after the first are replaced by the listings' pages (the first stays in the batch)
    assert part_requests == seq_requests - 2 + _listing_requests(doc)


def test_a_upn_outside_the_partitions_falls_back_to_the_sequential_listing(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    doc = generate_tenant(users=USERS, groups=30, skus=6, seed=4)
    odd = max(doc["users"], key=lambda u: str(u["id"]).lower())  # not in the first page: not sampled
    domain = str(odd["userPrincipalName"]).split("@", 1)[1]
    odd["userPrincipalName"] = f"+svc.backup@{domain}"
    odd["mail"] = odd["userPrincipalName"]
    odd["proxyAddresses"] = [f"SMTP:{odd['userPrincipalName']}"]
    client_factory = _reader(_start(start_emulator, tmp_path, doc))

    sequential, seq_requests, _ = _read(client_factory, partition_pages=1000)
    partitioned, part_requests, plan = _read(client_factory, partition_pages=1)

    assert odd["id"].lower() in partitioned.users
    assert partitioned == sequential
    assert partitioned.fingerprint() == sequential.fingerprint()
    assert any(f"held {USERS - 1} users, users/$count says {USERS}" in n for n in plan.notes)
    # the listings were read, then the 2 remaining pages of the one-chain listing
    assert part_requests == seq_requests + _listing_requests(doc)


class _RefuseStartswith(httpx.HTTPTransport):
    """Graph that answers 400 to a startswith filter on users (as a tenant might for a filter
    it cannot serve)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/users") and "startswith" in str(request.url.params.get("$filter", "")):
            body = {"error": {"code": "Request_UnsupportedQuery", "message": "Unsupported Query."}}
            return httpx.Response(400, json=body, request=request)
        return super().handle_request(request)


def test_a_refused_filter_falls_back_to_the_sequential_listing(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    doc = generate_tenant(users=USERS, groups=30, skus=6, seed=5)
    emulator = _start(start_emulator, tmp_path, doc)
    sequential, _, _ = _read(_reader(emulator), partition_pages=1000)
    context = ssl.create_default_context(cafile=str(emulator.server.ca_path))
    refused, _, plan = _read(_reader(emulator, _RefuseStartswith(verify=context)), partition_pages=1)
    assert refused == sequential
    assert any("startswith filter was refused" in n for n in plan.notes)


@pytest.mark.parametrize("pages", [0, 2, 8])
def test_small_tenants_keep_one_chain(start_emulator: Callable[..., Any], tmp_path: Path, pages: int) -> None:
    doc = generate_tenant(users=USERS, groups=30, skus=6, seed=6)
    client_factory = _reader(_start(start_emulator, tmp_path, doc))
    _, one_chain, _ = _read(client_factory, partition_pages=1000)
    _, requests, plan = _read(client_factory, partition_pages=pages)
    split = pages < 2  # 2 pages remain after the first
    assert any("parallel listings" in n for n in plan.notes) is split
    assert (requests == one_chain) is not split
