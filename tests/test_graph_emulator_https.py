"""The Graph client against the emulator over real HTTPS (uvicorn on 127.0.0.1, random port, its own
CA), signed in through msal at the emulator's token endpoint with the sample tenant's applications.

Retry waits are virtual: the client's RetryPolicy.sleep advances a clock that the emulator's
throttler also reads, so a storm of 429s is survived exactly as Retry-After says, without sleeping.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import reconciler.emulator.app as emulator_app
from reconciler.emulator.auth import TokenService
from reconciler.emulator.seed import load_seed
from reconciler.emulator.server import RunningServer
from reconciler.emulator.store import Store
from reconciler.emulator.throttle import Throttler
from reconciler.errors import GraphError, PermissionDeniedError, ReadOnlyViolation
from reconciler.graph.client import BatchRequest, GraphClient
from reconciler.graph.connect import ConnectionOptions, connect
from reconciler.graph.credentials import Credential, CredentialSettings, MsalTokenProvider, ssl_context
from reconciler.graph.observe import ObservePlan, observe
from reconciler.graph.transport import RetryPolicy
from reconciler.state import TenantState

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample-tenant.json"


class VirtualClock:
    """monotonic() plus the time the client pretended to sleep."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.offset += seconds


@pytest.fixture(scope="module")
def seed() -> dict[str, Any]:
    return load_seed(SAMPLE)


@pytest.fixture(scope="module")
def emulator_factory(
    serve_app: Callable[..., RunningServer], seed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., RunningServer]]:
    stores: list[Store] = []

    def start(**options: Any) -> RunningServer:
        store = Store.create(tmp_path_factory.mktemp("tenant") / "tenant.db", seed)
        stores.append(store)
        tokens = TokenService.from_seed(
            {"organization": store.organization, "applications": store.applications()}
        )
        app = emulator_app.create_app(
            store, token_service=tokens, options=emulator_app.EmulatorOptions(**options)
        )
        return serve_app(app)

    yield start
    for store in stores:
        store.close()


@pytest.fixture(scope="module")
def emulator(emulator_factory: Callable[..., RunningServer]) -> RunningServer:
    return emulator_factory()


def app_of(seed: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in seed["applications"] if a["displayName"] == name)


def make_client(
    server: RunningServer,
    seed: dict[str, Any],
    app: str,
    *,
    read_only: bool,
    retry: RetryPolicy | None = None,
) -> GraphClient:
    application = app_of(seed, app)
    settings = CredentialSettings(
        tenant_id=seed["organization"]["id"],
        client_id=application["appId"],
        authority=server.base_url,
        ca_bundle=str(server.ca_path),
    )
    tokens = MsalTokenProvider(settings, Credential("secret", app, application["secret"]))
    return GraphClient(
        server.graph_url,
        token_provider=tokens,
        verify=ssl_context(server.ca_path),
        read_only=read_only,
        retry=retry,
    )


def comparable(state: TenantState) -> TenantState:
    """The snapshot (seed format) has no licenseProcessingState, which Graph computes; drop it."""
    groups = [dataclasses.replace(g, processing_state=None) for g in state.groups.values()]
    return TenantState.build(state.organization, state.skus.values(), state.users.values(), groups)


def control(client: GraphClient, server: RunningServer, what: str) -> Any:
    return client.get_raw(f"{server.base_url}/_emulator/{what}")


def test_observe_equals_the_emulator_snapshot_with_exact_request_count(
    emulator: RunningServer, seed: dict[str, Any]
) -> None:
    with make_client(emulator, seed, "reconciler-plan", read_only=True) as client:
        before = control(client, emulator, "stats")["requests"]["total"]
        client.stats.reset()
        plan = ObservePlan()
        state = observe(client, all_users=True, all_groups=True, progress=False, plan=plan)
        sent = client.stats.requests
        routes = dict(client.stats.by_route)
        after = control(client, emulator, "stats")["requests"]["total"]
        snapshot = control(client, emulator, "snapshot")
    assert comparable(state) == TenantState.from_snapshot(snapshot)
    assert state.fingerprint() == TenantState.from_snapshot(snapshot).fingerprint()
    assert {g.processing_state for g in state.groups.values() if g.licenses} == {"ProcessingComplete"}
    # 52 users and 9 groups: one $batch (organization, SKUs, first pages of groups and users)
    # and one $batch with the members of the 9 groups
    assert sent == 2
    assert routes == {"POST /$batch": 2}
    assert after - before == 2  # the emulator saw exactly what the client counted
    assert plan.users_total == 52 and plan.user_strategy == "all"
    assert len(state.users) == 52 and len(state.groups) == 9


def test_default_observe_of_the_sample_reads_licensed_groups_in_two_requests(
    emulator: RunningServer, seed: dict[str, Any]
) -> None:
    with make_client(emulator, seed, "reconciler-plan", read_only=True) as client:
        state = observe(client, progress=False)
        assert client.stats.requests == 2
        snapshot = control(client, emulator, "snapshot")
    full = TenantState.from_snapshot(snapshot)
    state = comparable(state)
    licensed = {g["id"] for g in snapshot["groups"] if g.get("assignedLicenses")}
    assert set(state.groups) == licensed
    for gid in licensed:
        assert state.groups[gid] == full.groups[gid]
    for uid, user in state.users.items():
        assert user == full.users[uid]
    members = {m for gid in licensed for m in full.groups[gid].member_user_ids}
    direct = {u.id for u in full.users.values() if u.direct_licenses}
    assert set(state.users) == members | direct


def test_read_only_app_is_refused_on_write_with_the_permission_named(
    emulator: RunningServer, seed: dict[str, Any]
) -> None:
    group = next(g for g in seed["groups"] if g.get("assignedLicenses"))
    with (
        make_client(emulator, seed, "reconciler-plan", read_only=False) as client,
        pytest.raises(PermissionDeniedError) as info,
    ):
        client.post(f"/groups/{group['id']}/assignLicense", {"addLicenses": [], "removeLicenses": []})
    assert info.value.status == 403
    assert "LicenseAssignment.ReadWrite.All" in str(info.value)


def test_read_only_transport_refuses_before_anything_is_sent(
    emulator: RunningServer, seed: dict[str, Any]
) -> None:
    group = next(g for g in seed["groups"] if g.get("assignedLicenses"))
    user = seed["users"][0]
    with make_client(emulator, seed, "reconciler-apply", read_only=True) as client:
        before = control(client, emulator, "stats")
        with pytest.raises(ReadOnlyViolation):
            client.post(f"/groups/{group['id']}/assignLicense", {"addLicenses": [], "removeLicenses": []})
        with pytest.raises(ReadOnlyViolation):
            client.patch(f"/users/{user['id']}", {"usageLocation": "FR"})
        with pytest.raises(ReadOnlyViolation):
            client.batch([BatchRequest("1", "POST", f"/users/{user['id']}/reprocessLicenseAssignment")])
        after = control(client, emulator, "stats")
    # nothing reached Graph: only the two calls to the (uncounted) stats endpoint left the process
    assert after["requests"] == before["requests"]
    assert after["batchItems"] == before["batchItems"]
    assert dict(client.stats.by_route) == {"GET /_emulator/stats": 2}


def test_a_storm_of_429_with_retry_after_is_survived(
    emulator_factory: Callable[..., RunningServer], seed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock()
    monkeypatch.setattr(emulator_app, "Throttler", functools.partial(Throttler, clock=clock.now))
    server = emulator_factory(throttle=True, ru_limit=6)
    retry = RetryPolicy(sleep=clock.sleep, max_total_wait=600)
    with make_client(server, seed, "reconciler-plan", read_only=True, retry=retry) as client:
        state = observe(client, all_users=True, all_groups=True, progress=False)
        stats = control(client, server, "stats")
        snapshot = control(client, server, "snapshot")
    assert comparable(state) == TenantState.from_snapshot(snapshot)
    assert stats["throttled"] >= 5
    assert client.stats.retries >= 1
    # every wait was one the emulator asked for (whole seconds from Retry-After, no backoff guess)
    assert clock.sleeps and all(s == int(s) and s >= 1 for s in clock.sleeps)


def test_random_503_429_and_dropped_connections_are_survived_with_identical_results(
    emulator_factory: Callable[..., RunningServer], seed: dict[str, Any]
) -> None:
    clean = emulator_factory()
    with make_client(clean, seed, "reconciler-plan", read_only=True) as client:
        expected = observe(client, all_users=True, all_groups=True, progress=False)
        expected_default = observe(client, progress=False)
    clock = VirtualClock()
    faulty = emulator_factory(fail_rate=0.1, seed=7)
    retry = RetryPolicy(sleep=clock.sleep, rand=lambda: 0.5)
    with make_client(faulty, seed, "reconciler-plan", read_only=True, retry=retry) as client:
        results = [observe(client, all_users=True, all_groups=True, progress=False) for _ in range(5)]
        results_default = [observe(client, progress=False) for _ in range(5)]
        stats = control(client, faulty, "stats")
    assert all(r == expected for r in results)
    assert all(r == expected_default for r in results_default)
    assert sum(stats["faults"].values()) >= 2
    assert client.stats.retries == sum(stats["faults"].values()) - stats["faults"].get("control", 0)


def test_connect_with_emulator_seed_persists_state_and_never_modifies_the_seed(
    tmp_path: Path, seed: dict[str, Any]
) -> None:
    seed_copy = tmp_path / "sample-tenant.json"
    seed_copy.write_bytes(SAMPLE.read_bytes())
    options = ConnectionOptions.resolve(emulator=str(seed_copy), env={})
    options = ConnectionOptions(**{**options.__dict__, "state_root": tmp_path / "state"})
    user = next(u for u in seed["users"] if u.get("usageLocation") != "NZ")
    with connect(options, read_only=False, env={}) as client:
        client.patch(f"/users/{user['id']}", {"usageLocation": "NZ"})
    with connect(options, read_only=True, env={}) as client:
        got = client.get(f"/users/{user['id']}", select=["usageLocation"])
        with pytest.raises(ReadOnlyViolation):
            client.patch(f"/users/{user['id']}", {"usageLocation": "US"})
    assert got["usageLocation"] == "NZ"
    assert seed_copy.read_bytes() == SAMPLE.read_bytes()
    assert next(iter((tmp_path / "state").iterdir())).name.startswith("sample-tenant-")


def test_emulator_read_only_connection_signs_in_as_the_plan_app(tmp_path: Path, seed: dict[str, Any]) -> None:
    options = ConnectionOptions(emulator=SAMPLE, state_root=tmp_path / "state", read_only=True)
    with connect(options, env={}) as client:
        assert client.read_only
        assert client.emulator is not None
        client.get("/organization", select=["id"])
        stats = control(client, client.emulator.server, "stats")
        assert app_of(seed, "reconciler-plan")["appId"] in stats["requests"]["byApp"]


def test_client_never_sends_tokens_to_another_host(emulator: RunningServer, seed: dict[str, Any]) -> None:
    with (
        make_client(emulator, seed, "reconciler-plan", read_only=True) as client,
        pytest.raises(GraphError, match="another host"),
    ):
        client.get_raw("https://example.invalid/_emulator/stats")
    assert client.stats.requests == 0


def test_large_tenant_few_licensed_members_reads_only_those_users(
    serve_app: Callable[..., RunningServer], seed: dict[str, Any], tmp_path: Path
) -> None:
    """20,000 unlicensed users more than the sample: listing everybody would take 21 pages, so
    observe reads the SKU holders (assignedLicenses/any) and the other members by id instead."""
    import json
    import uuid

    big = json.loads(SAMPLE.read_text())
    for i in range(20_000):
        upn = f"extra{i}@contoso.com"
        big["users"].append(
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, upn)),
                "displayName": f"Extra {i}",
                "userPrincipalName": upn,
                "mail": upn,
                "usageLocation": "US",
                "proxyAddresses": [f"SMTP:{upn}"],
                "accountEnabled": True,
                "assignedLicenses": [],
            }
        )
    path = tmp_path / "big.json"
    path.write_text(json.dumps(big))
    store = Store.create(tmp_path / "big.db", load_seed(path))
    try:
        tokens = TokenService.from_seed(
            {"organization": store.organization, "applications": store.applications()}
        )
        server = serve_app(emulator_app.create_app(store, token_service=tokens))
        with make_client(server, seed, "reconciler-plan", read_only=True) as client:
            plan = ObservePlan()
            state = observe(client, progress=False, plan=plan)
            sent = client.stats.requests
            items = dict(client.stats.batch_items_by_route)
            snapshot = control(client, server, "snapshot")
    finally:
        store.close()
    assert plan.user_strategy == "members"
    assert plan.users_total == 20_052
    assert "GET /users" not in client.stats.by_route or client.stats.by_route["GET /users"] == 0
    full = TenantState.from_snapshot(snapshot)
    licensed = {g["id"] for g in snapshot["groups"] if g.get("assignedLicenses")}
    members = {m for gid in licensed for m in full.groups[gid].member_user_ids}
    direct = {u.id for u in full.users.values() if u.direct_licenses}
    assert set(state.users) == members | direct
    assert all(state.users[uid] == full.users[uid] for uid in state.users)
    assert comparable(state).groups == {gid: full.groups[gid] for gid in licensed}
    # first batch, members of the 6 licensed groups, the holders of each SKU in use; then the
    # members holding no license, by id
    holders = sum(1 for s in full.skus.values() if s.consumed_units > 0)
    assert items["GET /users"] == 1 + holders
    by_id = items.get("GET /users/{id}", 0)
    assert sent == 3 + -(-by_id // 20)
