"""The emulator's Graph app in process: endpoints, Graph's shapes and errors, OData, $batch, auth."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from emulator_fixtures import (
    ADMIN_APP,
    E1,
    E3,
    EXCH_ENT,
    G_E3,
    G_PROJECT,
    G_SALES,
    PROJECT,
    RULES,
    SP_ENT,
    SP_PROJECT,
    SWAY,
    TENANT,
    UNKNOWN_SKU,
    Tenant,
    gid,
    seed,
    states,
    uid,
)

from reconciler.emulator.app import EmulatorOptions
from reconciler.emulator.graph_types import COMPLEX_TYPES, PROPERTIES

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[Tenant]:
    # a long processing delay: group processing completes only on drain (deterministic)
    t = Tenant(str(tmp_path / "t.db"), EmulatorOptions(processing_delay=3600))
    yield t
    t.close()


def error_of(response: Any) -> tuple[int, str, str]:
    body = response.json()
    inner = body["error"]["innerError"]
    assert inner["request-id"] == response.headers["request-id"]
    assert set(inner) == {"date", "request-id", "client-request-id"}
    return response.status_code, body["error"]["code"], body["error"]["message"]


def assign(add: list[tuple[str, list[str]]], remove: list[str] | None = None) -> dict[str, Any]:
    return {
        "addLicenses": [{"skuId": s, "disabledPlans": d} for s, d in add],
        "removeLicenses": remove or [],
    }


# ----------------------------------------------------------------------------- reads


def test_organization_and_subscribed_skus(tenant: Tenant) -> None:
    org = tenant.get("/v1.0/organization").json()
    assert org["@odata.context"] == "https://127.0.0.1:8443/v1.0/$metadata#organization"
    assert [o["id"] for o in org["value"]] == [TENANT]
    skus = tenant.get("/v1.0/subscribedSkus")
    assert skus.headers["x-ms-resource-unit"] == "3"
    by_id = {s["skuId"]: s for s in skus.json()["value"]}
    assert by_id[E3]["consumedUnits"] == 3
    assert by_id[E3]["prepaidUnits"] == {"enabled": 4, "suspended": 0, "warning": 0, "lockedOut": 0}
    one = tenant.get(f"/v1.0/subscribedSkus/{TENANT}_{E1}").json()
    assert one["skuPartNumber"] == "STANDARDPACK"
    assert one["@odata.context"].endswith("#subscribedSkus/$entity")


def test_user_by_id_or_upn_default_properties_and_select(tenant: Tenant) -> None:
    by_upn = tenant.get("/v1.0/users/Alice@contoso.com").json()
    by_id = tenant.get(f"/v1.0/users/{uid(1)}").json()
    assert by_upn == by_id
    assert by_id["@odata.context"].endswith("#users/$entity")
    # Graph's default property set: licensing properties only on $select
    assert "assignedLicenses" not in by_id and "usageLocation" not in by_id
    assert by_id["userPrincipalName"] == "alice@contoso.com"
    sel = tenant.get(
        f"/v1.0/users/{uid(1)}?$select=id,usageLocation,assignedLicenses,licenseAssignmentStates,assignedPlans"
    ).json()
    assert sel["@odata.context"].endswith(
        "#users(id,usageLocation,assignedLicenses,licenseAssignmentStates,assignedPlans)/$entity"
    )
    assert sel["assignedLicenses"] == [{"disabledPlans": [SWAY], "skuId": E3}]
    [state] = sel["licenseAssignmentStates"]
    assert state["assignedByGroup"] == G_E3 and state["state"] == "Active" and state["error"] == "None"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", state["lastUpdatedDateTime"])
    assert {p["servicePlanId"] for p in sel["assignedPlans"]} == {EXCH_ENT, SP_ENT, "57ff2da0-773e-42df-b2af-ffb7a2317929"}
    assert {p["service"] for p in sel["assignedPlans"]} >= {"exchange", "SharePoint"}
    missing = tenant.get(f"/v1.0/users/{uid(999)}")
    assert error_of(missing)[:2] == (404, "Request_ResourceNotFound")
    bad_select = tenant.get("/v1.0/users?$select=nope")
    assert error_of(bad_select) == (
        400,
        "BadRequest",
        "Could not find a property named 'nope' on type 'microsoft.graph.user'.",
    )


def test_paging_follows_next_links_with_the_original_query(tenant: Tenant) -> None:
    first = tenant.get("/v1.0/users?$top=3&$select=id,displayName").json()
    seen = [u["id"] for u in first["value"]]
    link = first["@odata.nextLink"]
    pages = 1
    while link:
        assert "$select=id%2CdisplayName" in link or "$select=id,displayName" in link
        assert "$top=3" in link and "$skiptoken=" in link
        page = tenant.get(link.replace("https://127.0.0.1:8443", "")).json()
        assert all(set(u) == {"id", "displayName"} for u in page["value"])
        seen += [u["id"] for u in page["value"]]
        link = page.get("@odata.nextLink")
        pages += 1
    assert pages == 4
    assert seen == sorted(seen) and len(set(seen)) == 10
    # default page size is 100: one page here
    assert "@odata.nextLink" not in tenant.get("/v1.0/users").json()


@pytest.mark.parametrize("top", ["1000", "0"])
def test_top_outside_1_999_is_refused_with_graphs_message(tenant: Tenant, top: str) -> None:
    assert error_of(tenant.get(f"/v1.0/users?$top={top}")) == (
        400,
        "Request_BadRequest",
        f"Invalid page size specified: '{top}'. Must be between 1 and 999 inclusive.",
    )
    assert tenant.get("/v1.0/users?$top=999").status_code == 200


def test_filters(tenant: Tenant) -> None:
    def ids(query: str, headers: dict[str, str] | None = None) -> list[str]:
        r = tenant.get(f"/v1.0/users?{query}", headers)
        assert r.status_code == 200, r.text
        return [u["id"] for u in r.json()["value"]]

    assert ids("$filter=userPrincipalName eq 'BOB@contoso.com'") == [uid(2)]
    assert ids(f"$filter=id eq '{uid(3)}'") == [uid(3)]
    assert ids("$filter=mail eq 'carol@contoso.com'") == [uid(3)]
    assert ids("$filter=displayName eq 'Dave'") == [uid(4)]
    assert ids("$filter=startswith(displayName,'a') or startswith(userPrincipalName,'bo')") == [uid(1), uid(2)]
    assert ids(f"$filter=assignedLicenses/any(x:x/skuId eq {E3})") == [uid(1), uid(2), uid(3)]
    assert ids(f"$filter=assignedLicenses/any(x:x/skuId eq {E1}) and startswith(displayName,'D')") == [uid(4)]
    assert ids("$filter=usageLocation eq null") == [uid(3), uid(7)]
    assert ids("$filter=proxyAddresses/any(x:x eq 'smtp:alice@contoso.com')") == [uid(1)]
    unsupported = tenant.get("/v1.0/users?$filter=jobTitle gt 'a'")
    assert error_of(unsupported)[:2] == (400, "Request_UnsupportedQuery")
    unknown = tenant.get("/v1.0/users?$filter=shoeSize eq 3")
    assert error_of(unknown)[:2] == (400, "BadRequest")
    # ne and endsWith are advanced queries: ConsistencyLevel: eventual and $count=true
    assert error_of(tenant.get("/v1.0/users?$filter=usageLocation ne 'US'"))[:2] == (400, "Request_UnsupportedQuery")
    eventual = {"ConsistencyLevel": "eventual"}
    assert ids("$filter=usageLocation ne 'US'&$count=true", eventual) == [uid(3), uid(7)]
    assert ids("$filter=endswith(mail,'e@contoso.com')&$count=true", eventual) == [uid(1), uid(4), uid(7)]


def test_count_needs_consistency_level_eventual(tenant: Tenant) -> None:
    assert error_of(tenant.get("/v1.0/users?$count=true")) == (
        400,
        "Request_BadRequest",
        "$count is not currently supported.",
    )
    r = tenant.get("/v1.0/users?$count=true&$top=2", {"ConsistencyLevel": "eventual"}).json()
    assert r["@odata.count"] == 10 and len(r["value"]) == 2
    r = tenant.get(
        f"/v1.0/users?$count=true&$filter=assignedLicenses/any(x:x/skuId eq {E3})", {"ConsistencyLevel": "eventual"}
    ).json()
    assert r["@odata.count"] == 3


def test_count_segment(tenant: Tenant) -> None:
    eventual = {"ConsistencyLevel": "eventual"}
    r = tenant.get("/v1.0/users/$count", eventual)
    assert (r.status_code, r.text, r.headers["content-type"].split(";")[0]) == (200, "10", "text/plain")
    assert tenant.get("/v1.0/users/$count?$filter=usageLocation ne 'US'", eventual).text == "2"
    assert tenant.get("/v1.0/groups/$count", eventual).text == "3"
    assert error_of(tenant.get("/v1.0/users/$count"))[:2] == (400, "Request_BadRequest")


def test_members_memberof_license_details(tenant: Tenant) -> None:
    members = tenant.get(f"/v1.0/groups/{G_E3}/members")
    assert members.headers["x-ms-resource-unit"] == "3"
    body = members.json()
    assert body["@odata.context"].endswith("#directoryObjects")
    kinds = {m["id"]: m["@odata.type"] for m in body["value"]}
    assert kinds == {
        uid(1): "#microsoft.graph.user",
        uid(2): "#microsoft.graph.user",
        uid(3): "#microsoft.graph.user",
        G_SALES: "#microsoft.graph.group",
    }
    users_only = tenant.get(f"/v1.0/groups/{G_E3}/members/microsoft.graph.user?$select=id,userPrincipalName").json()
    assert users_only["@odata.context"].endswith("#users(id,userPrincipalName)")
    assert [m["id"] for m in users_only["value"]] == [uid(1), uid(2), uid(3)]
    member_of = tenant.get(f"/v1.0/users/{uid(5)}/memberOf").json()
    assert [(g["id"], g["@odata.type"]) for g in member_of["value"]] == [(G_SALES, "#microsoft.graph.group")]
    details = tenant.get(f"/v1.0/users/{uid(1)}/licenseDetails").json()
    [detail] = details["value"]
    assert detail["skuId"] == E3 and detail["skuPartNumber"] == "ENTERPRISEPACK"
    status = {p["servicePlanId"]: p["provisioningStatus"] for p in detail["servicePlans"]}
    assert status[SWAY] == "Disabled" and status[EXCH_ENT] == "Success"


# ----------------------------------------------------------------------------- group licensing


def test_group_assign_license_is_accepted_then_processed_on_drain(tenant: Tenant) -> None:
    r = tenant.post(f"/v1.0/groups/{G_SALES}/assignLicense", assign([(E1, [])]))
    assert r.status_code == 202
    assert r.headers["location"] == (
        f"https://graph.microsoft.com/v2/{TENANT}/directoryObjects/{G_SALES}/Microsoft.DirectoryServices.Group"
    )
    assert r.json()["id"] == G_SALES
    sel = "?$select=id,assignedLicenses,licenseProcessingState"
    group = tenant.get(f"/v1.0/groups/{G_SALES}{sel}").json()
    assert group["licenseProcessingState"] == {"state": "QueuedForProcessing"}
    assert group["assignedLicenses"] == [{"disabledPlans": [], "skuId": E1}]
    # members are not licensed before processing
    assert tenant.get(f"/v1.0/users/{uid(5)}?$select=assignedLicenses").json()["assignedLicenses"] == []
    assert tenant.post("/_emulator/drain").json() == {"processed": 1}
    assert tenant.get(f"/v1.0/groups/{G_SALES}{sel}").json()["licenseProcessingState"] == {
        "state": "ProcessingComplete"
    }
    for n in (5, 6):
        user = tenant.get(f"/v1.0/users/{uid(n)}?$select=assignedLicenses,licenseAssignmentStates").json()
        assert user["assignedLicenses"] == [{"disabledPlans": [], "skuId": E1}]
        assert [(s["assignedByGroup"], s["state"], s["error"]) for s in user["licenseAssignmentStates"]] == [
            (G_SALES, "Active", "None")
        ]


def test_membership_change_triggers_processing(tenant: Tenant) -> None:
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{uid(8)}"}
    assert tenant.post(f"/v1.0/groups/{G_E3}/members/$ref", ref).status_code == 204
    again = tenant.post(f"/v1.0/groups/{G_E3}/members/$ref", ref)
    assert error_of(again) == (
        400,
        "Request_BadRequest",
        "One or more added object references already exist for the following modified properties: 'members'.",
    )
    state = tenant.get(f"/v1.0/groups/{G_E3}?$select=licenseProcessingState").json()
    assert state["licenseProcessingState"]["state"] == "QueuedForProcessing"
    assert tenant.delete(f"/v1.0/groups/{G_E3}/members/{uid(1)}/$ref").status_code == 204
    tenant.post("/_emulator/drain")
    assert states(tenant.store, uid(8)) == [(E3, G_E3, "Active", "None")]
    assert states(tenant.store, uid(1)) == []
    missing = tenant.delete(f"/v1.0/groups/{G_E3}/members/{uid(1)}/$ref")
    assert error_of(missing)[:2] == (404, "Request_ResourceNotFound")


def test_license_errors_are_exposed_but_has_members_with_license_errors_is_never_returned(tenant: Tenant) -> None:
    # PROJECT + E3 to ivan and judy: E3 has one seat left, so judy gets CountViolation (and Other on PROJECT)
    assert tenant.post(f"/v1.0/groups/{G_PROJECT}/assignLicense", assign([(PROJECT, []), (E3, [])])).status_code == 202
    for n in (9, 10):
        ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{uid(n)}"}
        assert tenant.post(f"/v1.0/groups/{G_PROJECT}/members/$ref", ref).status_code == 204
    tenant.post("/_emulator/drain")
    assert states(tenant.store, uid(10)) == [
        (PROJECT, G_PROJECT, "Error", "Other"),
        (E3, G_PROJECT, "Error", "CountViolation"),
    ]
    errors = tenant.get(f"/v1.0/groups/{G_PROJECT}/membersWithLicenseErrors").json()
    assert [(m["id"], m["@odata.type"]) for m in errors["value"]] == [(uid(10), "#microsoft.graph.user")]
    flagged = tenant.get("/v1.0/groups?$filter=hasMembersWithLicenseErrors eq true").json()
    assert [g["id"] for g in flagged["value"]] == [G_PROJECT]
    for g in flagged["value"]:
        assert "hasMembersWithLicenseErrors" not in g
    selected = tenant.get(f"/v1.0/groups/{G_PROJECT}?$select=id,hasMembersWithLicenseErrors").json()
    assert "hasMembersWithLicenseErrors" not in selected
    # reprocess after a seat frees up
    assert tenant.delete(f"/v1.0/groups/{G_E3}/members/{uid(2)}/$ref").status_code == 204
    tenant.post("/_emulator/drain")
    user = tenant.post(f"/v1.0/users/{uid(10)}/reprocessLicenseAssignment")
    assert user.status_code == 200 and user.json()["id"] == uid(10)
    assert states(tenant.store, uid(10)) == [(PROJECT, G_PROJECT, "Active", "None"), (E3, G_PROJECT, "Active", "None")]


def test_group_assign_license_refuses_an_add_on_without_its_prerequisite(tenant: Tenant) -> None:
    r = tenant.post(f"/v1.0/groups/{G_PROJECT}/assignLicense", assign([(PROJECT, [])]))
    status, code, message = error_of(r)
    assert (status, code) == (400, "Request_BadRequest")
    assert message.startswith("License operation failed.") and SP_PROJECT in message
    assert tenant.store.groups[G_PROJECT].licenses == {}


def test_group_create_patch_delete(tenant: Tenant) -> None:
    body = {"displayName": "LIC-New", "mailEnabled": False, "mailNickname": "lic-new", "securityEnabled": True}
    created = tenant.post("/v1.0/groups", body)
    assert created.status_code == 201
    new_id = created.json()["id"]
    assert GUID.match(new_id)
    assert tenant.patch(f"/v1.0/groups/{new_id}", {"description": "licensed"}).status_code == 204
    assert tenant.get(f"/v1.0/groups/{new_id}").json()["description"] == "licensed"
    missing = tenant.post("/v1.0/groups", {"displayName": "x"})
    assert error_of(missing)[:2] == (400, "Request_BadRequest")
    # a group with licenses cannot be deleted
    blocked = tenant.delete(f"/v1.0/groups/{G_E3}")
    assert error_of(blocked)[:2] == (400, "Request_BadRequest")
    assert tenant.delete(f"/v1.0/groups/{new_id}").status_code == 204
    assert tenant.get(f"/v1.0/groups/{new_id}").status_code == 404


# ----------------------------------------------------------------------------- users and direct licenses


def test_user_create_and_patch(tenant: Tenant) -> None:
    body = {
        "accountEnabled": True,
        "displayName": "Mallory",
        "mailNickname": "mallory",
        "userPrincipalName": "mallory@contoso.com",
        "passwordProfile": {"password": "x", "forceChangePasswordNextSignIn": True},
    }
    created = tenant.post("/v1.0/users", body)
    assert created.status_code == 201
    assert "passwordProfile" not in created.json()
    mid = created.json()["id"]
    duplicate = tenant.post("/v1.0/users", body)
    assert error_of(duplicate)[:2] == (400, "Request_BadRequest")
    assert tenant.patch(f"/v1.0/users/{mid}", {"usageLocation": "fr"}).status_code == 204
    assert tenant.get(f"/v1.0/users/{mid}?$select=usageLocation").json()["usageLocation"] == "FR"
    bad = tenant.patch(f"/v1.0/users/{mid}", {"usageLocation": "XX"})
    assert error_of(bad) == (
        400,
        "Request_BadRequest",
        "Invalid value specified for property 'usageLocation' of resource 'User'.",
    )
    read_only = tenant.patch(f"/v1.0/users/{mid}", {"assignedLicenses": []})
    assert error_of(read_only)[:2] == (400, "Request_BadRequest")


def test_direct_assign_license_succeeds_with_200_and_the_user(tenant: Tenant) -> None:
    r = tenant.post(f"/v1.0/users/{uid(5)}/assignLicense", assign([(E1, [])]))
    assert r.status_code == 200
    assert r.json()["id"] == uid(5) and r.json()["@odata.context"].endswith("#users/$entity")
    assert states(tenant.store, uid(5)) == [(E1, None, "Active", "None")]
    # changing disabled plans is an add of the same SKU
    r = tenant.post(f"/v1.0/users/{uid(5)}/assignLicense", assign([(E1, ["57ff2da0-773e-42df-b2af-ffb7a2317929"])]))
    assert r.status_code == 200
    user = tenant.get(f"/v1.0/users/{uid(5)}?$select=assignedLicenses").json()
    assert user["assignedLicenses"] == [{"disabledPlans": ["57ff2da0-773e-42df-b2af-ffb7a2317929"], "skuId": E1}]
    assert tenant.post(f"/v1.0/users/{uid(5)}/assignLicense", assign([], [E1])).status_code == 200
    assert states(tenant.store, uid(5)) == []


@pytest.mark.parametrize(
    ("user", "body", "message"),
    [
        (
            5,
            {"addLicenses": []},
            "One or more parameters of the operation 'assignLicense' are missing from the request payload. "
            "The missing parameters are: removeLicenses.",
        ),
        (
            5,
            {"removeLicenses": []},
            "One or more parameters of the operation 'assignLicense' are missing from the request payload. "
            "The missing parameters are: addLicenses.",
        ),
        (
            5,
            {"addLicenses": [{"skuId": "not-a-guid", "disabledPlans": []}], "removeLicenses": []},
            "Cannot convert a primitive value to the expected type 'Edm.Guid'. See the inner exception for more details.",
        ),
        (7, assign([(E1, [])]), "License assignment cannot be done for user with invalid usage location."),
        (5, assign([(UNKNOWN_SKU, [])]), f"License {UNKNOWN_SKU} does not correspond to a valid company License."),
        (
            4,
            assign([(E3, [])]),
            f"License assignment failed because service plans {SP_ENT},c7699d2e-19aa-44de-8edf-1736da088ca1 "
            "are mutually exclusive.",
        ),
        (
            5,
            assign([(PROJECT, [])]),
            f"License assignment failed because service plan {SP_PROJECT} depends on the service plan(s) {SP_ENT}",
        ),
        (
            1,
            assign([], [E3]),
            "User license is inherited from a group membership and it cannot be removed directly from the user.",
        ),
    ],
)
def test_direct_assign_license_errors_have_graphs_messages(
    tenant: Tenant, user: int, body: dict[str, Any], message: str
) -> None:
    before = tenant.store.snapshot()
    r = tenant.post(f"/v1.0/users/{uid(user)}/assignLicense", body)
    assert error_of(r) == (400, "Request_BadRequest", message)
    assert tenant.store.snapshot() == before


def test_direct_assign_license_without_seats(tenant: Tenant) -> None:
    assert tenant.post(f"/v1.0/users/{uid(5)}/assignLicense", assign([(E3, [])])).status_code == 200
    r = tenant.post(f"/v1.0/users/{uid(6)}/assignLicense", assign([(E3, [])]))
    assert error_of(r) == (400, "Request_BadRequest", f"Subscription with SKU {E3} does not have any available licenses.")


# ----------------------------------------------------------------------------- auth


def test_requests_without_a_valid_token_get_401(tenant: Tenant) -> None:
    for headers in ({}, {"Authorization": "Bearer not.a.token"}, {"Authorization": "Basic abc"}):
        r = tenant.client.get("/v1.0/users", headers=headers)
        assert error_of(r)[:2] == (401, "InvalidAuthenticationToken")
    assert tenant.client.post("/_emulator/drain").status_code == 401


def test_a_read_only_app_reads_but_cannot_write(tenant: Tenant) -> None:
    reader = tenant.reader
    assert tenant.client.get("/v1.0/users", headers=reader).status_code == 200
    writes = [
        ("POST", f"/v1.0/users/{uid(5)}/assignLicense", assign([(E1, [])])),
        ("POST", f"/v1.0/groups/{G_SALES}/assignLicense", assign([(E1, [])])),
        ("PATCH", f"/v1.0/users/{uid(5)}", {"usageLocation": "FR"}),
        ("POST", f"/v1.0/groups/{G_SALES}/members/$ref", {"@odata.id": f"https://x/v1.0/directoryObjects/{uid(9)}"}),
        ("POST", f"/v1.0/users/{uid(5)}/reprocessLicenseAssignment", None),
    ]
    before = tenant.store.snapshot()
    for method, url, body in writes:
        r = tenant.client.request(method, url, json=body, headers=reader)
        assert error_of(r) == (403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    assert tenant.store.snapshot() == before


# ----------------------------------------------------------------------------- batch


def test_batch_runs_items_with_their_own_status_and_depends_on(tenant: Tenant) -> None:
    requests = [
        {"id": "1", "method": "GET", "url": "/users?$top=1&$select=id"},
        {
            "id": "2",
            "method": "POST",
            "url": f"/users/{uid(7)}/assignLicense",  # grace has no usage location: 400
            "headers": {"Content-Type": "application/json"},
            "body": assign([(E1, [])]),
        },
        {"id": "3", "method": "GET", "url": f"/users/{uid(7)}", "dependsOn": ["2"]},
        {
            "id": "4",
            "method": "PATCH",
            "url": f"/users/{uid(7)}",
            "headers": {"Content-Type": "application/json"},
            "body": {"usageLocation": "US"},
        },
        {
            "id": "5",
            "method": "POST",
            "url": f"/users/{uid(7)}/assignLicense",
            "headers": {"Content-Type": "application/json"},
            "body": assign([(E1, [])]),
            "dependsOn": ["4"],
        },
    ]
    r = tenant.post("/v1.0/$batch", {"requests": requests})
    assert r.status_code == 200
    responses = {x["id"]: x for x in r.json()["responses"]}
    assert [responses[i]["status"] for i in "12345"] == [200, 400, 424, 204, 200]
    assert responses["1"]["body"]["value"] == [{"id": uid(1)}]
    assert responses["1"]["headers"]["x-ms-resource-unit"] == "1"
    assert responses["2"]["body"]["error"]["message"].startswith("License assignment cannot be done")
    assert states(tenant.store, uid(7)) == [(E1, None, "Active", "None")]


def test_batch_limits(tenant: Tenant) -> None:
    many = [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)]
    assert error_of(tenant.post("/v1.0/$batch", {"requests": many}))[0] == 400
    assert tenant.post("/v1.0/$batch", {"requests": many[:20]}).status_code == 200
    dup = [{"id": "1", "method": "GET", "url": "/users"}, {"id": "1", "method": "GET", "url": "/groups"}]
    assert error_of(tenant.post("/v1.0/$batch", {"requests": dup}))[0] == 400
    no_type = [{"id": "1", "method": "PATCH", "url": f"/users/{uid(1)}", "body": {"jobTitle": "x"}}]
    assert error_of(tenant.post("/v1.0/$batch", {"requests": no_type}))[0] == 400


def test_batch_items_are_authorised_one_by_one(tenant: Tenant) -> None:
    requests = [
        {"id": "r", "method": "GET", "url": "/groups"},
        {
            "id": "w",
            "method": "PATCH",
            "url": f"/groups/{G_SALES}",
            "headers": {"Content-Type": "application/json"},
            "body": {"description": "x"},
        },
    ]
    r = tenant.client.post("/v1.0/$batch", json={"requests": requests}, headers=tenant.reader)
    statuses = {x["id"]: x["status"] for x in r.json()["responses"]}
    assert statuses == {"r": 200, "w": 403}


# ----------------------------------------------------------------------------- headers, stats, throttling


def test_request_ids_resource_units_and_stats(tenant: Tenant) -> None:
    tenant.post("/_emulator/reset-stats")
    r = tenant.get("/v1.0/users?$select=id", {"client-request-id": "abc-123"})
    assert r.headers["client-request-id"] == "abc-123"
    assert GUID.match(r.headers["request-id"])
    assert r.headers["x-ms-resource-unit"] == "1"  # GET users 2, $select -1
    tenant.get(f"/v1.0/groups/{G_E3}/members?$top=5")  # 3 - 1
    assert tenant.get(f"/v1.0/users/{uid(404)}").headers["x-ms-resource-unit"] == "2"
    assert tenant.client.get("/v1.0/subscribedSkus").headers["x-ms-resource-unit"] == "3"  # 401
    batch = tenant.post("/v1.0/$batch", {"requests": [{"id": "1", "method": "GET", "url": "/subscribedSkus"}]})
    assert batch.headers["x-ms-resource-unit"] == "3"
    tenant.post("/_emulator/reset-stats")
    r = tenant.get("/v1.0/users?$select=id")
    tenant.get(f"/v1.0/groups/{G_E3}/members?$top=5")
    stats = tenant.get("/_emulator/stats").json()
    assert stats["requests"]["total"] == 2
    assert stats["requests"]["byRoute"] == {"GET /v1.0/users": 1, "GET /v1.0/groups/{id}/members": 1}
    assert stats["resourceUnits"] == 3


def test_resource_unit_throttling_returns_429_with_retry_after(tmp_path: Path) -> None:
    t = Tenant(str(tmp_path / "t.db"), EmulatorOptions(throttle=True, ru_limit=10, processing_delay=3600))
    try:
        responses = [t.get("/v1.0/subscribedSkus") for _ in range(4)]  # 3 RU each
        assert [r.status_code for r in responses] == [200, 200, 200, 429]
        # above 80% of the quota Graph says how close the app is
        assert "x-ms-throttle-limit-percentage" not in responses[1].headers
        assert responses[2].headers["x-ms-throttle-limit-percentage"] == "0.9"
        r = t.get("/v1.0/subscribedSkus")
        assert error_of(r)[:2] == (429, "TooManyRequests")
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["x-ms-throttle-scope"] == f"Tenant_Application/Read/{t.tokens.applications[0].app_id}/{TENANT}"
        assert r.headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
        # another application has its own bucket
        assert t.client.get("/v1.0/subscribedSkus", headers=t.reader).status_code == 200
        assert t.get("/_emulator/stats").json()["throttled"] == 2
    finally:
        t.close()


def test_write_quota(tmp_path: Path) -> None:
    t = Tenant(str(tmp_path / "t.db"), EmulatorOptions(throttle=True, write_limit=2, processing_delay=3600))
    try:
        codes = [t.patch(f"/v1.0/users/{uid(1)}", {"jobTitle": str(i)}).status_code for i in range(3)]
        assert codes == [204, 204, 429]
        assert t.get("/v1.0/users").status_code == 200  # reads still pass
    finally:
        t.close()


def test_snapshot_endpoint_returns_the_seed_format(tenant: Tenant) -> None:
    tenant.post(f"/v1.0/users/{uid(5)}/assignLicense", assign([(E1, [])]))
    snap = tenant.get("/_emulator/snapshot").json()
    assert set(snap) >= {"organization", "subscribedSkus", "users", "groups", "applications"}
    erin = next(u for u in snap["users"] if u["id"] == uid(5))
    assert erin["assignedLicenses"] == [{"disabledPlans": [], "skuId": E1}]
    assert next(g for g in snap["groups"] if g["id"] == G_E3)["members"] == sorted([uid(1), uid(2), uid(3), G_SALES])
    assert snap == tenant.store.snapshot()


# ----------------------------------------------------------------------------- schema conformance

_JSON_TYPES = {
    "Edm.String": str,
    "Edm.Guid": str,
    "Edm.Boolean": bool,
    "Edm.Int32": int,
    "Edm.DateTimeOffset": str,
}


def _check_value(value: Any, t: str, where: str) -> None:
    if value is None:
        return
    if t.startswith("Collection("):
        assert isinstance(value, list), where
        for v in value:
            _check_value(v, t[len("Collection(") : -1], where + "[]")
    elif t in _JSON_TYPES:
        assert isinstance(value, _JSON_TYPES[t]), where
        if t == "Edm.Guid":
            assert GUID.match(value), where
    else:
        assert isinstance(value, dict), where
        complex_name = t.split(".")[-1]
        if complex_name in COMPLEX_TYPES:
            _check_entity(value, complex_name, COMPLEX_TYPES[complex_name])


def _check_entity(obj: dict[str, Any], entity: str, props: dict[str, str] | None = None) -> None:
    props = props if props is not None else PROPERTIES[entity]
    for name, value in obj.items():
        if name.startswith("@odata"):
            continue
        assert name in props, f"{entity}.{name} is not in the v1.0 CSDL"
        _check_value(value, props[name], f"{entity}.{name}")


def test_returned_objects_use_only_csdl_properties(tenant: Tenant) -> None:
    user_props = ",".join(p for p in PROPERTIES["user"] if p != "hasMembersWithLicenseErrors")
    _check_entity(tenant.get(f"/v1.0/users/{uid(1)}?$select={user_props}").json(), "user")
    for u in tenant.get("/v1.0/users").json()["value"]:
        _check_entity(u, "user")
    group_props = ",".join(PROPERTIES["group"])
    _check_entity(tenant.get(f"/v1.0/groups/{G_E3}?$select={group_props}").json(), "group")
    for g in tenant.get("/v1.0/groups").json()["value"]:
        _check_entity(g, "group")
    for o in tenant.get("/v1.0/organization").json()["value"]:
        _check_entity(o, "organization")
    for s in tenant.get("/v1.0/subscribedSkus").json()["value"]:
        _check_entity(s, "subscribedSku")
    for d in tenant.get(f"/v1.0/users/{uid(1)}/licenseDetails").json()["value"]:
        _check_entity(d, "licenseDetails")
    for m in tenant.get(f"/v1.0/groups/{G_E3}/members").json()["value"]:
        _check_entity(m, "user" if m["@odata.type"] == "#microsoft.graph.user" else "group")


CSDL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "graph-v1.0.csdl"


@pytest.mark.skipif(not CSDL.is_file(), reason="the reference CSDL is not beside the repository")
def test_property_tables_match_the_csdl() -> None:
    import xml.etree.ElementTree as ET

    ns = {"edm": "http://docs.oasis-open.org/odata/ns/edm"}
    root = ET.parse(CSDL).getroot()
    graph = next(s for s in root.iter(f"{{{ns['edm']}}}Schema") if s.get("Namespace") == "microsoft.graph")

    def props(kind: str, name: str) -> dict[str, str]:
        node = graph.find(f"edm:{kind}[@Name='{name}']", ns)
        assert node is not None, name
        out = {p.get("Name", ""): p.get("Type", "") for p in node.findall("edm:Property", ns)}
        base = node.get("BaseType")
        if base:
            out = {**props(kind, base.split(".")[-1]), **out}
        return out

    for entity, table in PROPERTIES.items():
        assert table == props("EntityType", entity), entity
    for complex_name, table in COMPLEX_TYPES.items():
        assert table == props("ComplexType", complex_name), complex_name


def test_unknown_segment_is_graphs_400(tenant: Tenant) -> None:
    r = tenant.get("/v1.0/nothingHere")
    assert error_of(r) == (400, "BadRequest", "Resource not found for the segment 'nothingHere'.")
    assert tenant.get(f"/v1.0/groups/{gid(99)}").status_code == 404
    assert error_of(tenant.get("/v1.0/me")) == (
        400,
        "BadRequest",
        "/me request is only valid with delegated authentication flow.",
    )


def test_latency_switch_still_answers(tmp_path: Path) -> None:
    t = Tenant(str(tmp_path / "t.db"), EmulatorOptions(latency_ms=5, processing_delay=3600))
    try:
        assert t.get("/v1.0/organization").status_code == 200
    finally:
        t.close()


def test_group_filters_and_member_paging(tenant: Tenant) -> None:
    r = tenant.get("/v1.0/groups?$filter=startswith(displayName,'LIC-')&$select=id,displayName").json()
    assert [g["displayName"] for g in r["value"]] == ["LIC-E3", "LIC-Project"]
    r = tenant.get(f"/v1.0/groups?$filter=assignedLicenses/any(x:x/skuId eq {E3})&$select=id").json()
    assert r["value"] == [{"id": G_E3}]
    page = tenant.get(f"/v1.0/groups/{G_E3}/members?$top=2&$select=id").json()
    assert len(page["value"]) == 2
    rest = tenant.get(page["@odata.nextLink"].replace("https://127.0.0.1:8443", "")).json()
    assert [m["id"] for m in page["value"] + rest["value"]] == sorted([uid(1), uid(2), uid(3), G_SALES])
    counted = tenant.get(
        f"/v1.0/groups/{G_E3}/members/microsoft.graph.user?$count=true&$select=id", {"ConsistencyLevel": "eventual"}
    ).json()
    assert counted["@odata.count"] == 3


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"groupTypes": ["DynamicMembership"], "membershipRule": "user.department -eq 'x'"}, "dynamic membership"),
        ({"onPremisesSyncEnabled": True}, "on-premises mastered"),
        ({"mailEnabled": True}, "mail-enabled"),
    ],
)
def test_membership_of_dynamic_synced_and_mail_enabled_groups_cannot_be_edited(
    tenant: Tenant, patch: dict[str, Any], fragment: str
) -> None:
    g = tenant.store.groups[G_SALES]
    g.data.update(patch)  # as seeded
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{uid(9)}"}
    status, code, message = error_of(tenant.post(f"/v1.0/groups/{G_SALES}/members/$ref", ref))
    assert (status, code) == (400, "Request_BadRequest") and fragment in message
    assert error_of(tenant.delete(f"/v1.0/groups/{G_SALES}/members/{uid(5)}/$ref"))[0] == 400
    assert uid(9) not in g.members and uid(5) in g.members


def test_batch_items_are_throttled_one_by_one(tmp_path: Path) -> None:
    t = Tenant(str(tmp_path / "t.db"), EmulatorOptions(throttle=True, ru_limit=7, processing_delay=3600))
    try:
        requests = [{"id": str(i), "method": "GET", "url": "/subscribedSkus"} for i in range(3)]
        body = t.post("/v1.0/$batch", {"requests": requests}).json()
        statuses = [r["status"] for r in body["responses"]]
        assert statuses == [200, 200, 429]
        throttled = body["responses"][2]
        assert int(throttled["headers"]["Retry-After"]) >= 1
        assert throttled["headers"]["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    finally:
        t.close()


def test_processing_that_fell_due_while_stopped_is_finished_before_the_first_request(tmp_path: Path) -> None:
    from reconciler.emulator.store import Store
    from reconciler.licensing import License

    now = [1_000_000.0]
    db = tmp_path / "t.db"
    doc = seed()
    doc["emulator"]["processingDelaySeconds"] = 30
    store = Store.create(db, doc, rules=RULES, clock=lambda: now[0])
    store.assign_group_licenses(G_SALES, [License(E1)], [])
    store.close()
    now[0] += 60  # the emulator was stopped for a minute

    import warnings

    from emulator_fixtures import Tenant as _T  # noqa: F401  (same helper, explicit store below)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from reconciler.emulator.app import create_app
    from reconciler.emulator.auth import TokenService

    reopened = Store.open(db, rules=RULES, clock=lambda: now[0])
    tokens = TokenService.from_seed(doc)
    app = create_app(reopened, token_service=tokens, options=EmulatorOptions(start_worker=False))
    headers = {"Authorization": f"Bearer {tokens.issue_access_token(ADMIN_APP)}"}
    with TestClient(app, base_url="https://127.0.0.1:8443") as client:
        group = client.get(f"/v1.0/groups/{G_SALES}?$select=licenseProcessingState", headers=headers).json()
        assert group["licenseProcessingState"] == {"state": "ProcessingComplete"}
    assert states(reopened, uid(5)) == [(E1, G_SALES, "Active", "None")]
    reopened.close()
