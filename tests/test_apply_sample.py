"""Issue 6 on the sample tenant: plan -> apply -> plan converges, stale plans and lost updates are
refused, and the audit log holds every write and no secret."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_apply_support import POLICIES, Tenant, writes_in_stats

from reconciler.apply import AuditLog
from reconciler.errors import StalePlanError

pytestmark = pytest.mark.timeout(120)


def test_plan_apply_plan_converges_and_audits_every_write(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    t = Tenant(start_emulator(processing_delay=0.3))
    plan = t.plan()
    assert plan.has_changes and not plan.blocked
    t.control("POST", "reset-stats")
    with AuditLog(tmp_path / "audit.jsonl") as audit:
        result = t.apply(plan, audit=audit)
    stats = t.stats()
    assert result.exit_code == 0, result.render()
    assert not result.failed and not result.skipped and not result.conflicts and not result.pending
    assert result.verified and result.differences == [], result.render()
    assert "{new:LIC-E1-Kiosk}" in result.created

    again = t.plan()
    assert not again.has_changes
    # what only an administrator can resolve stays reported, as warnings
    assert again.violations and all(v.severity == "warning" for v in again.violations)
    assert {"CountViolation", "UniquenessViolation", "ProhibitedInUsageLocationViolation"} <= {
        v.code for v in again.violations
    }

    text = (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == writes_in_stats(stats) == len(result.done)
    assert {line["action"] for line in lines} == set(plan.summary)
    # the order: groups created, usage locations, members, group licenses, then direct removals
    kinds = [line["action"] for line in lines]
    assert [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k] == [
        "createGroup", "setUsageLocation", "addMember", "assignLicense", "removeDirectLicense"
    ]
    assert all(line["status"] < 300 and line["requestId"] for line in lines)
    for app in t.apps.values():
        assert str(app["secret"]) not in text
    token = t.token()()
    assert token not in text and token.split(".")[1] not in text and "Bearer" not in text


def test_cli_plan_apply_plan(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    t = Tenant(start_emulator(processing_delay=0.3))
    planned = t.cli("plan", str(POLICIES), "--out", "p.json", cwd=tmp_path, app="reconciler-plan")
    assert planned.returncode == 0, planned.stderr
    applied = t.cli("apply", "p.json", cwd=tmp_path)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert applied.stderr == ""  # no progress or log lines when stderr is not a terminal
    assert "Apply complete" in applied.stdout and "matches the prediction" in applied.stdout
    audit = (tmp_path / ".reconciler" / "audit.jsonl").read_text()
    assert len(audit.splitlines()) == writes_in_stats(t.stats())
    assert str(t.apps["reconciler-apply"]["secret"]) not in audit and "eyJ" not in audit
    again = t.cli("plan", str(POLICIES), "--detailed-exitcode", cwd=tmp_path, app="reconciler-plan")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout and "CountViolation" in again.stdout
    # applying the same (now stale) plan again is refused
    twice = t.cli("apply", "p.json", cwd=tmp_path)
    assert twice.returncode == 4, twice.stderr
    assert "stale" in twice.stderr


def test_saved_plan_is_refused_after_the_tenant_changed(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    t = Tenant(start_emulator(processing_delay=0.3))
    assert t.cli("plan", str(POLICIES), "--out", "p.json", cwd=tmp_path, app="reconciler-plan").returncode == 0
    t.graph("PATCH", f"/users/{t.user_id('visio1@contoso.com')}", {"usageLocation": "DE"})
    t.control("POST", "reset-stats")
    refused = t.cli("apply", "p.json", "--audit-log", "audit.jsonl", cwd=tmp_path)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "stale" in refused.stderr and "Traceback" not in refused.stderr
    assert writes_in_stats(t.stats()) == 0
    assert not (tmp_path / "audit.jsonl").exists() or not (tmp_path / "audit.jsonl").read_text()


def test_saved_plan_is_refused_in_process(start_emulator: Callable[..., Any]) -> None:
    t = Tenant(start_emulator(processing_delay=0.3))
    plan = t.plan()
    t.graph("POST", f"/groups/{t.group_id('LIC-Visio')}/members/$ref", {
        "@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{t.user_id('alice@contoso.com')}"
    })
    with pytest.raises(StalePlanError):
        t.apply(plan)


def test_group_changed_between_plan_and_write_is_not_overwritten(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    groups = policies / "licensed-groups.yaml"
    groups.write_text(groups.read_text().replace("[YAMMER_ENTERPRISE, SWAY]", "[YAMMER_ENTERPRISE]"))
    t = Tenant(start_emulator(processing_delay=0.3))
    plan = t.plan([policies])
    assert "updateLicense" in plan.summary
    e3_group = t.group_id("LIC-E3-Base")
    e3 = next(s for s in t.seed["subscribedSkus"] if s["skuPartNumber"] == "ENTERPRISEPACK")
    by_hand = {"skuId": e3["skuId"], "disabledPlans": [e3["servicePlans"][0]["servicePlanId"]]}
    seen: list[str] = []

    def meanwhile(gid: str) -> None:
        seen.append(gid)
        if gid == e3_group:
            t.graph("POST", f"/groups/{gid}/assignLicense", {"addLicenses": [by_hand], "removeLicenses": []})

    result = t.apply(plan, before_group_write=meanwhile)
    assert e3_group in seen and len(seen) == 2  # the new kiosk group was written too
    assert result.exit_code == 4, result.render()
    assert len(result.conflicts) == 1 and "LIC-E3-Base" in result.conflicts[0]
    assert not result.failed
    snap = t.snapshot()
    e3_now = next(g for g in snap["groups"] if g["id"] == e3_group)["assignedLicenses"]
    assert [lic["disabledPlans"] for lic in e3_now] == [by_hand["disabledPlans"]]  # the hand's change stands
    kiosk = next(g for g in snap["groups"] if g["displayName"] == "LIC-E1-Kiosk")
    assert [lic["skuId"] for lic in kiosk["assignedLicenses"]]  # the other group was written


def test_a_plan_of_another_tenant_is_refused(start_emulator: Callable[..., Any]) -> None:
    import dataclasses

    from reconciler.errors import WrongTenantError

    t = Tenant(start_emulator(processing_delay=0.3))
    plan = dataclasses.replace(t.plan(), tenant_id="00000000-0000-0000-0000-000000000001")
    with pytest.raises(WrongTenantError, match="made for tenant 00000000"):
        t.apply(plan)
