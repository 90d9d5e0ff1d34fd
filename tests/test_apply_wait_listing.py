"""apply's user reads: many users are read by listing every user when that takes fewer requests."""

from __future__ import annotations

from test_graph_observe import FakeGraph, client_for, make_tenant

from reconciler.apply.wait import LIST_ABOVE, read_users


def test_many_users_are_listed_not_read_one_by_one() -> None:
    tenant = make_tenant(3000)
    fake = FakeGraph(tenant)
    wanted = [u["id"] for u in tenant["users"][: LIST_ABOVE + 500]]
    with client_for(fake) as client:
        got = read_users(client, [*wanted, "00000000-0000-0000-0000-00000000dead"])
        # $count, then 4 pages of up to 999 users, instead of 75 $batch calls of 20 GETs
        assert client.stats.requests == 5
    assert sorted(got) == sorted(wanted)
    assert not any(line.startswith("POST $batch") for line in fake.log)
    by_id = {u["id"]: u for u in tenant["users"]}
    assert all(got[i].user_principal_name == by_id[i]["userPrincipalName"] for i in wanted)


def test_few_users_are_read_by_id() -> None:
    tenant = make_tenant(3000)
    fake = FakeGraph(tenant)
    wanted = [u["id"] for u in tenant["users"][:40]]
    with client_for(fake) as client:
        got = read_users(client, wanted)
        assert client.stats.requests == 2  # two $batch calls of 20
    assert sorted(got) == sorted(wanted)


def test_by_id_when_listing_would_cost_more() -> None:
    # 1,200 of 60,000 users: 61 pages would cost more than 60 $batch calls
    tenant = make_tenant(3000)
    fake = FakeGraph(tenant)
    original = fake.get

    def get(url: str, headers: object) -> tuple[int, object]:
        if url.startswith("/users/$count"):
            return 200, "60000"
        return original(url, headers)  # type: ignore[arg-type]

    fake.get = get  # type: ignore[method-assign]
    wanted = [u["id"] for u in tenant["users"][:1200]]
    with client_for(fake) as client:
        got = read_users(client, wanted)
        assert client.stats.requests == 1 + 60
    assert sorted(got) == sorted(wanted)


def test_count_refused_falls_back_to_batches() -> None:
    tenant = make_tenant(1500)
    fake = FakeGraph(tenant, support_count=False)
    wanted = [u["id"] for u in tenant["users"][: LIST_ABOVE + 100]]
    with client_for(fake) as client:
        got = read_users(client, wanted)
        assert client.stats.requests == 1 + 55
    assert sorted(got) == sorted(wanted)
