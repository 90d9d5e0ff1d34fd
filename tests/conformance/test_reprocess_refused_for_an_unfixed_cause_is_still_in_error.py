"""B4, client side: a reprocess that Graph answers `400 Request_BadRequest` with a licensing error
(the user's cause is not fixed, e.g. no seat left or a missing prerequisite) was delivered: the user
is reported as still in error with Graph's reason, not as a failed call, and `reprocess` exits 0.

Sources: Microsoft Graph docs api-reference/v1.0/api/user-reprocesslicenseassignment.md (the
action); the 400 with the licensing text is what real tenants answer (a captured response quoted in
public write-ups: "License assignment failed because service plan ... depends on the service
plan(s) ...").
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from reconciler.apply.refusal import licensing_refusal
from reconciler.apply.reprocess import reprocess_users
from reconciler.graph.client import GraphClient

SKU = "c5928f49-12ba-48f7-ada3-0d743a3601d5"
SP_PROJECT = "fe71d6c3-a2ea-4499-9778-da042bf08063"
SP_ENT = "5dbe027f-2339-4123-9542-606e4d348a72"
USERS = {
    "00000000-0000-4000-8000-000000000001": "fixed@contoso.com",
    "00000000-0000-4000-8000-000000000002": "waiting@contoso.com",
    "00000000-0000-4000-8000-000000000003": "needs@contoso.com",
    "00000000-0000-4000-8000-000000000004": "broken@contoso.com",
}
ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "fixed@contoso.com": (200, {"id": "x"}),
    "waiting@contoso.com": (
        400,
        {"error": {"code": "Request_BadRequest", "message": f"Subscription with SKU {SKU} does not have any available licenses."}},
    ),
    "needs@contoso.com": (
        400,
        {
            "error": {
                "code": "Request_BadRequest",
                "message": f"License assignment failed because service plan {SP_PROJECT} depends on the service plan(s) {SP_ENT}",
            }
        },
    ),
    "broken@contoso.com": (400, {"error": {"code": "Request_BadRequest", "message": "Invalid object identifier 'x'."}}),
}


def handler(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path.endswith("/groups"):
        return httpx.Response(200, json={"value": [{"id": "00000000-0000-4000-9000-000000000001", "displayName": "G"}]})
    if "/members/" in path:
        return httpx.Response(200, json={"value": [{"id": k, "userPrincipalName": v} for k, v in USERS.items()]})
    if path.endswith("/subscribedSkus"):
        plans = [{"servicePlanId": SP_PROJECT, "servicePlanName": "SHAREPOINT_PROJECT"},
                 {"servicePlanId": SP_ENT, "servicePlanName": "SHAREPOINTENTERPRISE"}]
        return httpx.Response(200, json={"value": [{"skuId": SKU, "skuPartNumber": "VISIOCLIENT", "servicePlans": plans}]})
    if path.endswith("/$batch"):
        out = []
        for item in json.loads(request.content)["requests"]:
            upn = USERS[item["url"].split("/")[2]]
            status, body = ANSWERS[upn]
            out.append({"id": item["id"], "status": status, "headers": {}, "body": body})
        return httpx.Response(200, json={"responses": out})
    return httpx.Response(404, json={"error": {"code": "Request_ResourceNotFound", "message": path}})


def test_refused_reprocess_is_still_in_error_not_failed() -> None:
    client = GraphClient("https://graph.test/v1.0", token_provider=lambda: "tok", transport=httpx.MockTransport(handler))
    with client:
        result = reprocess_users(client, group="G")
    refused = dict(result.refused)
    assert set(refused) == {"waiting@contoso.com", "needs@contoso.com"}
    assert "VISIOCLIENT" in refused["waiting@contoso.com"]
    assert "SHAREPOINT_PROJECT" in refused["needs@contoso.com"] and "SHAREPOINTENTERPRISE" in refused["needs@contoso.com"]
    assert result.done == ["fixed@contoso.com"]
    assert [upn for upn, _ in result.failed] == ["broken@contoso.com"]
    text = result.render()
    assert "waiting@contoso.com still in error" in text
    assert "Reprocessed 3 of 4 users" in text


def test_only_licensing_texts_count_as_a_refusal() -> None:
    assert licensing_refusal(400, ANSWERS["needs@contoso.com"][1]) is not None
    assert licensing_refusal(400, ANSWERS["broken@contoso.com"][1]) is None
    assert licensing_refusal(403, ANSWERS["needs@contoso.com"][1]) is None
    assert licensing_refusal(400, "not json") is None

