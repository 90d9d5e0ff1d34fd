"""The emulator over real HTTPS (uvicorn in a background thread): background processing,
restart persistence, concurrent writers, injected faults."""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from emulator_fixtures import ADMIN_APP, E1, G_SALES, RULES, seed, uid

from reconciler.emulator.app import EmulatorOptions, create_app
from reconciler.emulator.auth import TokenService
from reconciler.emulator.server import RunningServer, start_background
from reconciler.emulator.store import Store


class Live:
    def __init__(self, tmp_path: Path, options: EmulatorOptions, *, fresh: bool = True) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        db = tmp_path / "tenant.db"
        self.store = Store.create(db, seed(), rules=RULES) if fresh else Store.open(db, rules=RULES)
        self.tokens = TokenService.from_seed(seed())
        app = create_app(self.store, token_service=self.tokens, options=options)
        self.server: RunningServer = start_background(app, tls=True, state_dir=tmp_path)
        assert self.server.ca_path is not None
        self.client = httpx.Client(
            base_url=self.server.base_url,
            verify=ssl.create_default_context(cafile=str(self.server.ca_path)),
            headers={"Authorization": f"Bearer {self.tokens.issue_access_token(ADMIN_APP)}"},
            timeout=30,
        )

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.store.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    t = Live(tmp_path, EmulatorOptions())
    yield t
    t.close()


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def processing_state(client: httpx.Client, group: str) -> str:
    body = client.get(f"/v1.0/groups/{group}?$select=licenseProcessingState").json()
    return str(body["licenseProcessingState"]["state"])


def add_e1_to_sales(client: httpx.Client) -> None:
    r = client.post(
        f"/v1.0/groups/{G_SALES}/assignLicense",
        json={"addLicenses": [{"skuId": E1, "disabledPlans": []}], "removeLicenses": []},
    )
    assert r.status_code == 202


def licenses(client: httpx.Client, user: str) -> list[Any]:
    return list(client.get(f"/v1.0/users/{user}?$select=assignedLicenses").json()["assignedLicenses"])


def test_group_processing_completes_in_the_background(live: Live) -> None:
    add_e1_to_sales(live.client)
    assert eventually(lambda: processing_state(live.client, G_SALES) == "ProcessingComplete")
    assert licenses(live.client, uid(5)) == [{"disabledPlans": [], "skuId": E1}]


def test_processing_delay_keeps_the_group_queued_until_drained(tmp_path: Path) -> None:
    t = Live(tmp_path, EmulatorOptions(processing_delay=600))
    try:
        add_e1_to_sales(t.client)
        assert processing_state(t.client, G_SALES) == "QueuedForProcessing"
        assert licenses(t.client, uid(5)) == []
        assert t.client.post("/_emulator/drain").json() == {"processed": 1}
        assert processing_state(t.client, G_SALES) == "ProcessingComplete"
        assert licenses(t.client, uid(5)) == [{"disabledPlans": [], "skuId": E1}]
    finally:
        t.close()


def test_short_processing_delay_completes_by_itself(tmp_path: Path) -> None:
    t = Live(tmp_path, EmulatorOptions(processing_delay=0.3))
    try:
        add_e1_to_sales(t.client)
        assert eventually(lambda: processing_state(t.client, G_SALES) == "ProcessingComplete")
        assert licenses(t.client, uid(6)) == [{"disabledPlans": [], "skuId": E1}]
    finally:
        t.close()


def test_state_survives_a_restart(tmp_path: Path) -> None:
    first = Live(tmp_path, EmulatorOptions(processing_delay=600))
    add_e1_to_sales(first.client)
    r = first.client.patch(f"/v1.0/users/{uid(7)}", json={"usageLocation": "DE"})
    assert r.status_code == 204
    snapshot = first.client.get("/_emulator/snapshot").json()
    first.close()

    second = Live(tmp_path, EmulatorOptions(processing_delay=600), fresh=False)
    try:
        assert second.client.get("/_emulator/snapshot").json() == snapshot
        assert processing_state(second.client, G_SALES) == "QueuedForProcessing"
        second.client.post("/_emulator/drain")
        assert licenses(second.client, uid(5)) == [{"disabledPlans": [], "skuId": E1}]
        user = second.client.get(f"/v1.0/users/{uid(7)}?$select=usageLocation").json()
        assert user["usageLocation"] == "DE"
    finally:
        second.close()


def test_fifty_concurrent_http_writers(live: Live) -> None:
    created: list[str] = []
    lock = threading.Lock()
    failures: list[str] = []
    barrier = threading.Barrier(50)

    def writer(i: int) -> None:
        barrier.wait()
        body = {
            "accountEnabled": True,
            "displayName": f"Writer {i}",
            "mailNickname": f"w{i}",
            "userPrincipalName": f"w{i}@contoso.com",
            "passwordProfile": {"password": "x"},
        }
        r = live.client.post("/v1.0/users", json=body)
        if r.status_code != 201:
            failures.append(r.text)
            return
        new_id = r.json()["id"]
        ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{new_id}"}
        r = live.client.post(f"/v1.0/groups/{G_SALES}/members/$ref", json=ref)
        if r.status_code != 204:
            failures.append(r.text)
        r = live.client.patch(f"/v1.0/users/{new_id}", json={"jobTitle": f"job {i}"})
        if r.status_code != 204:
            failures.append(r.text)
        with lock:
            created.append(new_id)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    members = live.client.get(f"/v1.0/groups/{G_SALES}/members?$select=id&$top=999").json()["value"]
    assert {m["id"] for m in members} >= set(created)
    assert len(members) == 52
    snap = live.client.get("/_emulator/snapshot").json()
    titles = {u["id"]: u.get("jobTitle") for u in snap["users"]}
    assert all(titles[c] is not None for c in created)


def test_fault_injection_is_deterministic_and_covers_every_kind(tmp_path: Path) -> None:
    def run() -> list[str]:
        t = Live(tmp_path / str(time.monotonic_ns()), EmulatorOptions(fail_rate=0.6, seed=7))
        outcomes = []
        try:
            for _ in range(30):
                try:
                    r = t.client.get("/v1.0/organization")
                except httpx.TransportError:
                    outcomes.append("drop")
                    continue
                if r.status_code == 429:
                    assert int(r.headers["retry-after"]) >= 1
                if r.status_code == 503:
                    assert r.json()["error"]["code"] == "serviceNotAvailable"
                outcomes.append(str(r.status_code))
        finally:
            t.close()
        return outcomes

    first = run()
    counts = Counter(first)
    assert counts["200"] > 0 and counts["503"] > 0 and counts["429"] > 0 and counts["drop"] > 0
    assert run() == first
