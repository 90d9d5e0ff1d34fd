"""The audit log: one JSON line per Graph write (direct or in $batch, success or failure), labelled
with the action and target, carrying Graph's request-id, never a token or secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.apply.audit import DEFAULT_AUDIT_LOG, AuditLog, audit_path
from reconciler.errors import GraphError, ReconcilerError
from reconciler.graph.client import BatchRequest, GraphClient, WriteRecord

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2lnbmF0dXJl"


def handler(request: httpx.Request) -> httpx.Response:
    headers = {"request-id": "rid-" + request.method.lower()}
    if request.url.path.endswith("/$batch"):
        body = json.loads(request.content)
        responses = [
            {"id": item["id"], "status": 204, "headers": {"request-id": f"item-{item['id']}"}}
            for item in body["requests"]
        ]
        return httpx.Response(200, json={"responses": responses}, headers=headers)
    if request.url.path.endswith("/bad/assignLicense"):
        err = {"error": {"code": "Request_BadRequest", "message": f"nope Bearer {TOKEN}", "innerError": {"request-id": "rid-err"}}}
        return httpx.Response(400, json=err, headers=headers)
    return httpx.Response(202, json={"id": "g"}, headers=headers)


def client(audit: AuditLog) -> GraphClient:
    return GraphClient(
        "https://graph.example/v1.0",
        token_provider=lambda: TOKEN,
        transport=httpx.MockTransport(handler),
        on_write=audit.hook,
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_every_write_is_one_labelled_line(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "audit.jsonl"
    with AuditLog(path) as audit, client(audit) as c:
        audit.expect("POST", "/groups/g1/assignLicense", "assignLicense", "group G1 (g1)")
        c.post("/groups/g1/assignLicense", json={"addLicenses": [], "removeLicenses": []})
        audit.expect("PATCH", "/users/u1", "setUsageLocation", "user u1@x (u1)")
        c.batch([BatchRequest("a", "PATCH", "/users/u1", body={"usageLocation": "FR"})], idempotent=True)
        with pytest.raises(GraphError):
            c.post("/groups/bad/assignLicense", json={"addLicenses": [], "removeLicenses": []})
        c.get("/groups/g1", select=("id",))  # reads are not logged
    got = lines(path)
    assert len(got) == 3
    first, second, third = got
    assert first["action"] == "assignLicense" and first["target"] == "group G1 (g1)"
    assert first["method"] == "POST" and first["status"] == 202 and first["requestId"] == "rid-post"
    assert first["body"] == {"addLicenses": [], "removeLicenses": []} and first["viaBatch"] is False
    assert first["time"].endswith("Z")
    assert second["action"] == "setUsageLocation" and second["viaBatch"] is True
    assert second["requestId"] == "item-a" and second["body"] == {"usageLocation": "FR"}
    assert third["status"] == 400 and third["action"] == "apply" and "nope" in third["error"]
    text = path.read_text()
    assert TOKEN not in text and "eyJ" not in text and "[redacted]" in text


def test_appends_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for _ in range(2):
        with AuditLog(path) as audit:
            audit.hook(WriteRecord("DELETE", "/groups/g/members/u/$ref", None, 204))
    assert len(lines(path)) == 2


def test_path_from_flag_then_environment_then_default() -> None:
    assert audit_path("x.jsonl", {"RECONCILER_AUDIT_LOG": "y.jsonl"}) == Path("x.jsonl")
    assert audit_path(None, {"RECONCILER_AUDIT_LOG": "y.jsonl"}) == Path("y.jsonl")
    assert audit_path(None, {}) == DEFAULT_AUDIT_LOG == Path(".reconciler/audit.jsonl")


def test_unwritable_log_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    audit = AuditLog(blocker / "audit.jsonl")
    with pytest.raises(ReconcilerError, match="cannot open the audit log"):
        audit.check_writable()
