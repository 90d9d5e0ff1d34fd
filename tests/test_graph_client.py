"""GraphClient and its transports against httpx.MockTransport (no network, no real sleeping)."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reconciler.errors import (
    AuthenticationError,
    GraphError,
    NotFoundError,
    PermissionDeniedError,
    ReadOnlyViolation,
    ThrottledError,
    TransportError,
)
from reconciler.graph.client import BatchRequest, GraphClient, WriteRecord, required_permission
from reconciler.graph.transport import RetryPolicy, parse_retry_after, route_of

BASE = "https://graph.test/v1.0"

Handler = Callable[[httpx.Request], httpx.Response]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_client(
    handler: Handler, *, read_only: bool = False, max_total_wait: float = 300.0, **kw: Any
) -> tuple[GraphClient, Sleeps]:
    sleeps = Sleeps()
    policy = RetryPolicy(max_total_wait=max_total_wait, sleep=sleeps, rand=lambda: 0.0)
    client = GraphClient(
        BASE,
        token_provider=lambda: "tok",
        transport=httpx.MockTransport(handler),
        read_only=read_only,
        retry=policy,
        **kw,
    )
    return client, sleeps


def graph_error(status: int, code: str, message: str = "msg") -> httpx.Response:
    return httpx.Response(
        status,
        json={"error": {"code": code, "message": message, "innerError": {"request-id": "rid-1"}}},
    )


# ----------------------------------------------------------------------------- reads and paging


def test_paging_follows_next_link_with_top_999_and_select() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        assert request.headers["Authorization"] == "Bearer tok"
        if "skiptoken" not in str(request.url):
            return httpx.Response(
                200,
                json={
                    "value": [{"id": "1"}, {"id": "2"}],
                    "@odata.nextLink": f"{BASE}/users?$top=999&$select=id&$skiptoken=abc",
                },
            )
        return httpx.Response(200, json={"value": [{"id": "3"}]})

    client, _ = make_client(handler)
    items = client.get_all("/users", select=["id", "userPrincipalName"])
    assert [i["id"] for i in items] == ["1", "2", "3"]
    assert len(seen) == 2
    first = seen[0]
    assert first.path == "/v1.0/users"
    assert first.params["$top"] == "999"
    assert first.params["$select"] == "id,userPrincipalName"
    assert "$skiptoken=abc" in str(seen[1])
    assert client.stats.requests == 2
    assert client.stats.by_route["GET /users"] == 2


def test_next_link_to_another_host_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"value": [], "@odata.nextLink": "https://evil.test/v1.0/users?x=1"})

    client, _ = make_client(handler)
    with pytest.raises(GraphError, match="another host"):
        client.get_all("/users", select=["id"])


def test_route_of_normalises_ids_and_upns() -> None:
    assert (
        route_of("get", f"{BASE}/users/0b7c1f0e-1a2b-4c3d-8e9f-0123456789ab?$select=id") == "GET /users/{id}"
    )
    assert route_of("POST", f"{BASE}/users/ann@contoso.com/assignLicense") == "POST /users/{id}/assignLicense"
    assert route_of("POST", f"{BASE}/$batch") == "POST /$batch"


# ----------------------------------------------------------------------------- retries


def test_429_retry_after_seconds_is_honoured() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= 2:
            return httpx.Response(
                429, headers={"Retry-After": "7"}, json={"error": {"code": "TooManyRequests"}}
            )
        return httpx.Response(200, json={"id": "org"})

    client, sleeps = make_client(handler)
    assert client.get("/organization", select=["id"]) == {"id": "org"}
    assert sleeps.waits == [7.0, 7.0]
    assert client.stats.requests == 3
    assert client.stats.throttled == 2


def test_429_retry_after_http_date_is_honoured() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            when = email.utils.formatdate(time.time() + 30, usegmt=True)
            return httpx.Response(429, headers={"Retry-After": when})
        return httpx.Response(200, json={"ok": True})

    client, sleeps = make_client(handler)
    assert client.get("/organization", select=["id"]) == {"ok": True}
    assert len(sleeps.waits) == 1
    assert 27.0 <= sleeps.waits[0] <= 31.0


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412480.0 - 10) == 10.0


def test_503_without_retry_after_backs_off_exponentially() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= 3:
            return httpx.Response(503 if calls["n"] != 2 else 504)
        return httpx.Response(200, json={"value": []})

    client, sleeps = make_client(handler)
    client.get_all("/groups", select=["id"])
    assert sleeps.waits == [0.5, 1.0, 2.0]


def test_total_wait_cap_raises_throttled_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "40"})

    client, sleeps = make_client(handler, max_total_wait=100.0)
    with pytest.raises(ThrottledError) as info:
        client.get("/subscribedSkus", select=["skuId"])
    assert sleeps.waits == [40.0, 40.0]  # a third wait would pass the cap
    message = str(info.value)
    assert "429" in message and "/subscribedSkus" in message and "cap 100 s" in message
    assert info.value.status == 429


def test_dropped_connection_is_retried_for_reads() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        if calls["n"] == 2:
            raise httpx.ConnectError("connection refused")
        if calls["n"] == 3:
            raise httpx.ReadError("reset by peer")
        return httpx.Response(200, json={"id": "x"})

    client, sleeps = make_client(handler)
    assert client.get("/users/x", select=["id"]) == {"id": "x"}
    assert len(sleeps.waits) == 3
    assert client.stats.dropped == 3


def test_dropped_connection_not_resent_for_a_non_idempotent_post() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        raise httpx.ReadError("reset by peer")

    client, _ = make_client(handler)
    with pytest.raises(TransportError, match="POST"):
        client.post("/groups", {"displayName": "G"})
    assert calls["n"] == 1


def test_dropped_connection_resent_for_idempotent_post() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.RemoteProtocolError("dropped")
        assert json.loads(request.content) == {"addLicenses": [], "removeLicenses": []}
        return httpx.Response(200, json={"id": "u"})

    client, _ = make_client(handler)
    assert client.post("/users/u/assignLicense", {"addLicenses": [], "removeLicenses": []}, idempotent=True)
    assert calls["n"] == 2


def test_persistent_connection_failure_becomes_transport_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client, sleeps = make_client(handler)
    with pytest.raises(TransportError, match="ConnectError"):
        client.get("/organization", select=["id"])
    assert len(sleeps.waits) == client.retry.max_retries


# ----------------------------------------------------------------------------- errors


def test_403_names_the_permission_the_call_needs() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(
            403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )

    client, _ = make_client(handler)
    with pytest.raises(PermissionDeniedError) as info:
        client.post("/groups/g1/assignLicense", {"addLicenses": [], "removeLicenses": []})
    assert "LicenseAssignment.ReadWrite.All" in str(info.value)
    assert "Authorization_RequestDenied" in str(info.value)
    assert "rid-1" in str(info.value)
    with pytest.raises(PermissionDeniedError, match=r"User\.Read\.All"):
        client.get_all("/users", select=["id"])
    with pytest.raises(PermissionDeniedError, match=r"Organization\.Read\.All"):
        client.get("/subscribedSkus", select=["skuId"])
    with pytest.raises(PermissionDeniedError, match=r"Group\.Read\.All"):
        client.get_all("/groups", select=["id"])
    with pytest.raises(PermissionDeniedError, match=r"User\.ReadWrite\.All"):
        client.post("/users/u1/reprocessLicenseAssignment")
    with pytest.raises(PermissionDeniedError, match=r"Group\.ReadWrite\.All"):
        client.post("/groups", {"displayName": "x"})


def test_required_permission_table() -> None:
    assert required_permission("POST", "/users/u/assignLicense") == "LicenseAssignment.ReadWrite.All"
    assert required_permission("PATCH", "/users/u") == "User.ReadWrite.All"
    assert "GroupMember.ReadWrite.All" in required_permission("POST", "/groups/g/members/$ref")
    assert required_permission("GET", f"{BASE}/organization?$select=id") == "Organization.Read.All"


def test_401_says_to_check_the_credentials() -> None:
    client, _ = make_client(
        lambda r: graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
    )
    with pytest.raises(AuthenticationError) as info:
        client.get("/organization", select=["id"])
    for word in ("tenant id", "client id", "secret or certificate"):
        assert word in str(info.value)
    assert "tok" not in str(info.value).replace("token", "")


def test_404_names_the_object() -> None:
    client, _ = make_client(lambda r: graph_error(404, "Request_ResourceNotFound"))
    with pytest.raises(NotFoundError, match=r"user 'ann@contoso\.com'"):
        client.get("/users/ann@contoso.com", select=["id"])


def test_timeout_becomes_transport_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.WriteTimeout("slow")

    client, _ = make_client(handler)
    with pytest.raises(TransportError, match="timed out"):
        client.get("/organization", select=["id"])


# ----------------------------------------------------------------------------- writes and hook


def test_write_hook_sees_every_write_and_its_outcome() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return graph_error(404, "Request_ResourceNotFound")
        return httpx.Response(204) if request.method == "PATCH" else httpx.Response(201, json={"id": "g"})

    records: list[WriteRecord] = []
    client, _ = make_client(handler, on_write=records.append)
    client.post("/groups", {"displayName": "G"})
    client.patch("/users/u", {"usageLocation": "FR"})
    with pytest.raises(NotFoundError):
        client.delete("/groups/g/members/u/$ref")
    assert [(r.method, r.status) for r in records] == [("POST", 201), ("PATCH", 204), ("DELETE", 404)]
    assert records[1].body == {"usageLocation": "FR"}
    assert records[2].error is not None


# ----------------------------------------------------------------------------- $batch


def batch_handler(answer: Callable[[dict[str, Any], int], dict[str, Any]]) -> tuple[Handler, list[list[str]]]:
    """A $batch endpoint; ``answer(item, call_no)`` gives each item's response."""
    calls: list[list[str]] = []
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1.0/$batch"
        body = json.loads(request.content)
        with lock:
            calls.append([item["id"] for item in body["requests"]])
            call_no = len(calls)
        responses = [{"id": item["id"], **answer(item, call_no)} for item in body["requests"]]
        return httpx.Response(200, json={"responses": list(reversed(responses))})

    return handler, calls


def test_batch_chunks_of_20_in_order() -> None:
    handler, calls = batch_handler(lambda item, n: {"status": 200, "body": {"url": item["url"]}})
    client, _ = make_client(handler)
    reqs = [BatchRequest(str(i), "GET", f"/users/{i}?$select=id") for i in range(45)]
    out = client.batch(reqs)
    assert [r.body["url"] for r in out] == [r.url for r in reqs]
    assert sorted(len(c) for c in calls) == [5, 20, 20]
    assert client.stats.by_route["POST /$batch"] == 3
    assert client.stats.batch_items == 45


def test_batch_items_429_are_retried_alone_after_their_retry_after() -> None:
    def answer(item: dict[str, Any], call_no: int) -> dict[str, Any]:
        if item["id"] in ("b", "c") and call_no == 1:
            return {"status": 429, "headers": {"Retry-After": "3" if item["id"] == "b" else "5"}, "body": {}}
        return {"status": 200, "body": {"id": item["id"]}}

    handler, calls = batch_handler(answer)
    client, sleeps = make_client(handler)
    out = client.batch([BatchRequest(x, "GET", f"/users/{x}") for x in "abcd"])
    assert [r.status for r in out] == [200, 200, 200, 200]
    assert calls == [["a", "b", "c", "d"], ["b", "c"]]
    assert sleeps.waits == [5.0]


def test_batch_item_503_without_retry_after_backs_off() -> None:
    def answer(item: dict[str, Any], call_no: int) -> dict[str, Any]:
        return {"status": 503 if call_no < 3 else 200, "body": {}}

    handler, _ = batch_handler(answer)
    client, sleeps = make_client(handler)
    assert [r.status for r in client.batch([BatchRequest("a", "GET", "/groups/g")])] == [200]
    assert sleeps.waits == [0.5, 1.0]


def test_batch_items_throttled_past_the_cap_raise() -> None:
    handler, _ = batch_handler(lambda item, n: {"status": 429, "headers": {"Retry-After": "60"}, "body": {}})
    client, _ = make_client(handler, max_total_wait=100.0)
    with pytest.raises(ThrottledError, match=r"\$batch"):
        client.batch([BatchRequest("a", "GET", "/users/a")])


def test_batch_depends_on_kept_together_and_424_retried_with_its_dependency() -> None:
    def answer(item: dict[str, Any], call_no: int) -> dict[str, Any]:
        if call_no == 1 and item["id"] == "create":
            return {"status": 429, "headers": {"Retry-After": "1"}, "body": {}}
        if call_no == 1 and item["id"] == "add":
            return {"status": 424, "body": {}}
        return {"status": 201 if item["method"] == "POST" else 200, "body": {"deps": item.get("dependsOn")}}

    handler, calls = batch_handler(answer)
    client, _ = make_client(handler)
    reqs = [BatchRequest(f"r{i}", "GET", f"/users/{i}") for i in range(19)]
    reqs += [
        BatchRequest("create", "POST", "/groups", body={"displayName": "G"}),
        BatchRequest(
            "add", "POST", "/groups/g/members/$ref", body={"@odata.id": "x"}, depends_on=("create",)
        ),
    ]
    out = client.batch(reqs)
    assert all(r.ok for r in out)
    # the linked pair travels together (so 19 + 2 does not fit one call)
    assert any({"create", "add"} <= set(c) for c in calls)
    assert calls[-1] == ["create", "add"]
    assert out[-1].body == {"deps": ["create"]}


def test_batch_rejects_duplicate_ids_and_unknown_dependencies() -> None:
    client, _ = make_client(lambda r: httpx.Response(500))
    with pytest.raises(ValueError, match="unique"):
        client.batch([BatchRequest("a", "GET", "/x"), BatchRequest("a", "GET", "/y")])
    with pytest.raises(ValueError, match="unknown"):
        client.batch([BatchRequest("a", "GET", "/x", depends_on=("zz",))])


def test_batch_get_all_follows_next_links_in_batches() -> None:
    def answer(item: dict[str, Any], call_no: int) -> dict[str, Any]:
        if "skiptoken" in item["url"]:
            return {"status": 200, "body": {"value": [{"id": item["id"] + "-2"}]}}
        return {
            "status": 200,
            "body": {
                "value": [{"id": item["id"] + "-1"}],
                "@odata.nextLink": f"{BASE}{item['url']}&$skiptoken=t",
            },
        }

    handler, calls = batch_handler(answer)
    client, _ = make_client(handler)
    out = client.batch_get_all(
        [BatchRequest(g, "GET", f"/groups/{g}/members?$select=id&$top=999") for g in ("g1", "g2")]
    )
    assert out == {"g1": [{"id": "g1-1"}, {"id": "g1#1-2"}], "g2": [{"id": "g2-1"}, {"id": "g2#1-2"}]}
    assert len(calls) == 2


def test_batch_writes_reach_the_hook() -> None:
    handler, _ = batch_handler(
        lambda item, n: {
            "status": 200 if item["id"] == "1" else 400,
            "body": {"error": {"code": "Request_BadRequest", "message": "bad"}},
        }
    )
    records: list[WriteRecord] = []
    client, _ = make_client(handler, on_write=records.append)
    client.batch(
        [
            BatchRequest("1", "POST", "/users/a/reprocessLicenseAssignment"),
            BatchRequest("2", "POST", "/users/b/reprocessLicenseAssignment"),
            BatchRequest("3", "GET", "/users/c"),
        ]
    )
    assert [(r.url, r.status, r.via_batch) for r in records] == [
        ("/users/a/reprocessLicenseAssignment", 200, True),
        ("/users/b/reprocessLicenseAssignment", 400, True),
    ]
    assert records[1].error == "Request_BadRequest: bad"


# ----------------------------------------------------------------------------- read-only


def test_read_only_refuses_writes_before_sending() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        return httpx.Response(200, json={"responses": []})

    client, _ = make_client(handler, read_only=True)
    with pytest.raises(ReadOnlyViolation, match="read-only"):
        client.post("/groups/g/assignLicense", {"addLicenses": [], "removeLicenses": []})
    with pytest.raises(ReadOnlyViolation):
        client.patch("/users/u", {"usageLocation": "US"})
    with pytest.raises(ReadOnlyViolation):
        client.delete("/groups/g")
    with pytest.raises(ReadOnlyViolation, match="POST /users/u/assignLicense"):
        client.batch(
            [
                BatchRequest("1", "GET", "/users/u"),
                BatchRequest(
                    "2", "POST", "/users/u/assignLicense", body={"addLicenses": [], "removeLicenses": []}
                ),
            ]
        )
    assert sent == []
    assert client.stats.requests == 0


def test_read_only_allows_gets_and_get_only_batches() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("$batch"):
            body = json.loads(request.content)
            return httpx.Response(
                200,
                json={"responses": [{"id": i["id"], "status": 200, "body": {}} for i in body["requests"]]},
            )
        return httpx.Response(200, json={"value": []})

    client, _ = make_client(handler, read_only=True)
    client.get_all("/users", select=["id"])
    assert [r.status for r in client.batch([BatchRequest("1", "GET", "/users/u")])] == [200]
    assert client.stats.requests == 2


def test_dropped_batch_is_resent_only_when_reads_or_idempotent() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] % 2 == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        body = json.loads(request.content)
        return httpx.Response(
            200, json={"responses": [{"id": i["id"], "status": 200, "body": {}} for i in body["requests"]]}
        )

    client, _ = make_client(handler)
    assert client.batch([BatchRequest("1", "GET", "/users/u")])[0].ok
    assert calls["n"] == 2
    write = [BatchRequest("1", "POST", "/groups", body={"displayName": "G"})]
    with pytest.raises(TransportError):
        client.batch(write)
    assert calls["n"] == 3
    calls["n"] = 0
    assert client.batch(
        [BatchRequest("1", "POST", "/users/u/assignLicense", body={"addLicenses": [], "removeLicenses": []})],
        idempotent=True,
    )[0].ok
    assert calls["n"] == 2


def test_environment_proxies_are_honoured_below_the_read_only_check() -> None:
    from reconciler.graph.transport import EnvironmentProxyTransport

    env = {"HTTPS_PROXY": "http://proxy.corp:3128", "no_proxy": "internal.corp,.local.test"}
    proxied = EnvironmentProxyTransport(env)
    assert proxied.proxy_for(httpx.URL("https://graph.microsoft.com/v1.0/users")) == "http://proxy.corp:3128"
    assert proxied.proxy_for(httpx.URL("https://internal.corp/x")) is None
    assert proxied.proxy_for(httpx.URL("https://a.local.test/x")) is None
    assert proxied.proxy_for(httpx.URL("https://127.0.0.1:8443/v1.0")) is None  # the emulator
    assert EnvironmentProxyTransport({}).proxy_for(httpx.URL("https://graph.microsoft.com/")) is None
    # the read-only check sits above the proxy: a write never reaches it
    client = GraphClient(BASE, transport=proxied, read_only=True)
    with pytest.raises(ReadOnlyViolation):
        client.post("/groups", {"displayName": "G"})
    assert client.stats.requests == 0


class RotatingTokens:
    def __init__(self) -> None:
        self.tokens = ["old", "new", "newer"]
        self.invalidated = 0

    def __call__(self) -> str:
        return self.tokens[0]

    def invalidate(self) -> None:
        self.invalidated += 1
        self.tokens.pop(0)


def test_401_gets_one_fresh_token_and_one_more_try() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer old":
            return graph_error(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
            )
        return httpx.Response(200, json={"id": "org"})

    tokens = RotatingTokens()
    client = GraphClient(BASE, token_provider=tokens, transport=httpx.MockTransport(handler))
    assert client.get("/organization", select=["id"]) == {"id": "org"}
    assert tokens.invalidated == 1
    assert client.stats.requests == 2

    always = GraphClient(
        BASE,
        token_provider=RotatingTokens(),
        transport=httpx.MockTransport(lambda r: graph_error(401, "InvalidAuthenticationToken")),
    )
    with pytest.raises(AuthenticationError):
        always.get("/organization", select=["id"])
    assert always.stats.requests == 2
