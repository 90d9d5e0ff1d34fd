"""A1, client side: every write inside `$batch` carries a `body` and a `Content-Type` header.

Graph refuses the whole batch when a POST, PATCH or PUT item lacks either ("Write request id : <id>
does not contain Content-Type header or body."), also for an action that takes no parameters such as
`reprocessLicenseAssignment` (Microsoft Graph docs, concepts/json-batching.md).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from reconciler.graph.client import BatchRequest, GraphClient


def _sent_items(requests: list[BatchRequest]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        seen.extend(payload["requests"])
        return httpx.Response(
            200, json={"responses": [{"id": r["id"], "status": 200, "body": {}} for r in payload["requests"]]}
        )

    client = GraphClient("https://graph.test/v1.0", token_provider=lambda: "tok", transport=httpx.MockTransport(handler))
    with client:
        client.batch(requests)
    return seen


def test_bodyless_reprocess_in_batch_gets_empty_body_and_content_type() -> None:
    items = _sent_items([BatchRequest("1", "POST", "/users/u1/reprocessLicenseAssignment")])
    assert items[0]["body"] == {}
    assert items[0]["headers"]["Content-Type"] == "application/json"


def test_every_write_method_has_body_and_content_type_reads_have_neither() -> None:
    items = _sent_items(
        [
            BatchRequest("1", "PATCH", "/users/u1", body={"usageLocation": "FR"}),
            BatchRequest("2", "PUT", "/groups/g1/x"),
            BatchRequest("3", "POST", "/groups/g1/assignLicense", body={"addLicenses": [], "removeLicenses": []}),
            BatchRequest("4", "GET", "/users/u1"),
            BatchRequest("5", "DELETE", "/groups/g1/members/u1/$ref"),
        ]
    )
    by_id = {i["id"]: i for i in items}
    for write in ("1", "2", "3"):
        assert "body" in by_id[write]
        assert by_id[write]["headers"]["Content-Type"] == "application/json"
    assert "body" not in by_id["4"] and "headers" not in by_id["4"]
    assert "body" not in by_id["5"]


def test_a_caller_content_type_is_kept_not_doubled() -> None:
    items = _sent_items([BatchRequest("1", "POST", "/x", body={}, headers={"content-type": "application/json"})])
    assert [k for k in items[0]["headers"] if k.lower() == "content-type"] == ["content-type"]
