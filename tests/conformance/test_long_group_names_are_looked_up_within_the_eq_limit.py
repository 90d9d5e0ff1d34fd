"""A4, client side: a `$filter` `eq` value has at most 120 characters on Graph, even for
`displayName` (which may have 256), so a longer group name is looked up by its first 120 characters
and compared by the client (Microsoft Graph docs, concepts/includes/known-issues/query-parameters.md).
"""

from __future__ import annotations

import re

import httpx
import pytest

from reconciler.apply.reprocess import select_users
from reconciler.graph.client import FILTER_EQ_MAX, GraphClient

LONG = "LIC-" + "Regional Sales and Customer Success (" + "x" * 150 + ") O'Brien"
GROUPS = [
    {"id": "00000000-0000-4000-9000-000000000001", "displayName": LONG},
    {"id": "00000000-0000-4000-9000-000000000002", "displayName": LONG + " (old)"},
]


def graph(request: httpx.Request) -> httpx.Response:
    query = request.url.params.get("$filter", "")
    m = re.search(r"displayName eq '((?:[^']|'')*)'", query)
    if m:
        if len(m.group(1)) > FILTER_EQ_MAX:
            return httpx.Response(400, json={"error": {"code": "Request_BadRequest", "message": "value too long"}})
        wanted = m.group(1).replace("''", "'").casefold()
        return httpx.Response(200, json={"value": [g for g in GROUPS if g["displayName"].casefold() == wanted]})
    m = re.search(r"startswith\(displayName,'((?:[^']|'')*)'\)", query)
    if m:
        assert len(m.group(1)) <= FILTER_EQ_MAX
        prefix = m.group(1).replace("''", "'").casefold()
        return httpx.Response(200, json={"value": [g for g in GROUPS if g["displayName"].casefold().startswith(prefix)]})
    if "/members/" in request.url.path:
        return httpx.Response(200, json={"value": [{"id": "00000000-0000-4000-8000-000000000001", "userPrincipalName": "a@contoso.com"}]})
    return httpx.Response(404, json={"error": {"code": "Request_ResourceNotFound", "message": request.url.path}})


@pytest.fixture
def client() -> GraphClient:
    return GraphClient("https://graph.test/v1.0", token_provider=lambda: "tok", transport=httpx.MockTransport(graph))


def test_a_name_longer_than_the_eq_limit_is_found_exactly(client: GraphClient) -> None:
    assert len(LONG) > FILTER_EQ_MAX
    with client:
        found = client.groups_named(LONG, ("id",))
    assert [g["id"] for g in found] == [GROUPS[0]["id"]]


def test_a_short_name_still_uses_eq(client: GraphClient) -> None:
    with client:
        assert client.groups_named("LIC-Nothing", ("id",)) == []


def test_reprocess_group_by_a_long_name(client: GraphClient) -> None:
    with client:
        _scope, users, gids = select_users(client, group=LONG, user=None, errors=False)
    assert gids == [GROUPS[0]["id"]] and list(users.values()) == ["a@contoso.com"]
