"""Emulator: `startswith(userPrincipalName,...)` listings (one prefix or an `or` of them) are
answered from a sorted UPN index, not by scanning every user for every page.

observe lists a large tenant as several such listings at once; with a scan, each of their pages
walked the whole tenant and parallel listing was slower than one chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from emulator_fixtures import Tenant, big_seed

from reconciler.emulator import odata

NAMES = ["Ann", "anna", "Bob", "bea", "carl", "Zed", "0day", "9lives", "_svc", "álvaro"]


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[Tenant]:
    doc = big_seed(1500)
    for i, user in enumerate(doc["users"]):
        user["userPrincipalName"] = f"{NAMES[i % len(NAMES)]}.{i}@contoso.com"
    t = Tenant(str(tmp_path / "t.db"), seed_doc=doc)
    yield t
    t.close()


def listing(tenant: Tenant, flt: str, top: int = 999) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    url: str | None = f"/v1.0/users?$select=id,userPrincipalName&$top={top}&$filter={flt}"
    while url:
        r = tenant.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        out.extend(body["value"])
        url = body.get("@odata.nextLink")
    return out


def expected(tenant: Tenant, *prefixes: str) -> list[str]:
    everyone = listing(tenant, "accountEnabled eq true or accountEnabled eq false")
    return sorted(u["id"] for u in everyone if u["userPrincipalName"].lower().startswith(prefixes))


@pytest.mark.parametrize(
    "flt, prefixes",
    [
        ("startswith(userPrincipalName,'a')", ("a",)),
        ("startswith(userPrincipalName,'ANN')", ("ann",)),
        ("startswith(userPrincipalName,'b') or startswith(userPrincipalName,'Z')", ("b", "z")),
        ("startswith(userPrincipalName,'0') or startswith(userPrincipalName,'9') or startswith(userPrincipalName,'_')",
         ("0", "9", "_")),
        ("startswith(userPrincipalName,'á')", ("á",)),
        ("startswith(userPrincipalName,'q')", ("q",)),
        ("startswith(userPrincipalName,'a') or startswith(userPrincipalName,'anna')", ("a",)),
    ],
)
def test_prefix_listing_equals_a_scan(tenant: Tenant, flt: str, prefixes: tuple[str, ...]) -> None:
    want = expected(tenant, *prefixes)
    got = listing(tenant, flt, top=100)  # several pages, keyset paging over the narrowed ids
    assert [u["id"] for u in got] == want
    assert len(want) == 0 or len(set(want)) == len(want)


def test_prefix_listing_evaluates_only_the_candidates(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = odata.evaluate

    def counting(node: Any, getter: Any) -> bool:
        calls.append(node)
        return real(node, getter)

    monkeypatch.setattr(odata, "evaluate", counting)
    got = listing(tenant, "startswith(userPrincipalName,'zed')")
    assert len(got) == 150
    assert calls == []  # the index answers the filter: no user is evaluated, let alone all 1,500
    got = listing(tenant, "startswith(userPrincipalName,'zed') and accountEnabled eq true")
    evaluated = [c for c in calls if isinstance(c, odata.BoolOp)]  # (evaluate recurses into the parts)
    assert len(got) == 150 and len(evaluated) == 1_500  # any other filter is still evaluated per user


def test_mixed_filters_still_scan(tenant: Tenant) -> None:
    got = listing(tenant, "startswith(userPrincipalName,'bob') or accountEnabled eq false")
    assert sorted(u["id"] for u in got) == expected(tenant, "bob")


def test_index_follows_writes(tenant: Tenant) -> None:
    flt = "startswith(userPrincipalName,'qu')"
    assert listing(tenant, flt) == []
    first = listing(tenant, "startswith(userPrincipalName,'zed')")[0]
    r = tenant.patch(f"/v1.0/users/{first['id']}", {"userPrincipalName": "quinn@contoso.com"})
    assert r.status_code == 204, r.text
    assert [u["id"] for u in listing(tenant, flt)] == [first["id"]]
    assert first["id"] not in {u["id"] for u in listing(tenant, "startswith(userPrincipalName,'zed')")}


def test_an_idle_processing_tick_is_not_a_write(tenant: Tenant) -> None:
    """The processing worker ticks every fraction of a second; a tick with nothing due must not
    count as a write, or every cache keyed by the store's version (this index among them) is
    rebuilt for each page a client reads."""
    store = tenant.store
    store.drain()
    version = store.version
    assert store.process_due() == 0
    assert store.drain() == 0
    assert store.version == version
    ids = store.users_with_upn_prefix(["zed"])
    assert store.users_with_upn_prefix(["zed"]) is ids  # kept between two pages
