"""Emulator: `proxyAddresses/any(x:x eq 'smtp:...')` on users uses the address index, not a scan.

`reconciler errors` asks this once per address of every silent-failure candidate; scanning every
user each time made it quadratic on large tenants.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from emulator_fixtures import Tenant, big_seed, uid

from reconciler.emulator import odata


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[Tenant]:
    doc = big_seed(2000)
    doc["users"][5]["proxyAddresses"] = ["SMTP:Shared@contoso.com", "smtp:five@contoso.com"]
    doc["users"][9]["proxyAddresses"] = ["smtp:shared@contoso.com", "x500:/o=shared"]
    t = Tenant(str(tmp_path / "t.db"), seed_doc=doc)
    yield t
    t.close()


def ids(tenant: Tenant, flt: str) -> list[str]:
    r = tenant.get(f"/v1.0/users?$select=id&$filter={flt}")
    assert r.status_code == 200, r.text
    return [u["id"] for u in r.json()["value"]]


def test_address_filter_evaluates_only_the_owners(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = odata.evaluate

    def counting(node: Any, getter: Any) -> bool:
        calls.append(node)
        return real(node, getter)

    monkeypatch.setattr(odata, "evaluate", counting)
    assert ids(tenant, "proxyAddresses/any(x:x eq 'smtp:SHARED@contoso.com')") == sorted([uid(105), uid(109)])
    assert len(calls) == 2  # the two owners, not the 2,000 users
    calls.clear()
    assert ids(tenant, "proxyAddresses/any(x:x eq 'smtp:nobody@contoso.com')") == []
    assert ids(tenant, "proxyAddresses/any(x:x eq 'smtp:five@contoso.com') and accountEnabled eq true") == [uid(105)]
    assert len(calls) <= 3  # one owner (the `and` and its two parts)


def test_other_address_filters_still_scan(tenant: Tenant) -> None:
    assert ids(tenant, "proxyAddresses/any(x:x eq 'x500:/o=shared')") == [uid(109)]
    assert ids(tenant, "proxyAddresses/any(x:startswith(x,'smtp:shar'))") == sorted([uid(105), uid(109)])
