"""Order and failure handling of apply: a license moved between groups is added before it is
removed (nobody loses a plan meanwhile), a failing group does not stop the others, --no-wait,
and the processing timeout."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_apply_support import POLICIES, Tenant, Watcher

from reconciler.apply import AuditLog
from reconciler.apply.wait import Poller

pytestmark = pytest.mark.timeout(120)


def policy_variant(tmp_path: Path, extra: str = "", replace: tuple[str, str] | None = None) -> Path:
    out = tmp_path / "policies"
    shutil.copytree(POLICIES, out)
    groups = out / "licensed-groups.yaml"
    text = groups.read_text()
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace)
    groups.write_text(text + extra)
    return out


MOVE_EMS = """
  # the pilot's EMS moves to a managed group; Old-EMS-Pilot loses it (unmanagedGroups: remove)
  - group: LIC-EMS
    create: true
    members: [pilot1@contoso.com, pilot2@contoso.com]
    licenses:
      - sku: EMS
"""


def test_a_license_moved_between_groups_is_added_before_it_is_removed(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    policies = policy_variant(tmp_path, MOVE_EMS)
    tenant_file = policies / "00-tenant.yaml"
    tenant_file.write_text(tenant_file.read_text().replace("unmanagedGroups: report", "unmanagedGroups: remove"))
    t = Tenant(start_emulator(processing_delay=0.5))
    plan = t.plan([policies])
    kinds = {(a.kind, a.group.name if a.group else None) for a in plan.actions}
    assert ("removeLicense", "Old-EMS-Pilot") in kinds and ("assignLicense", "LIC-EMS") in kinds
    old_id = t.group_id("Old-EMS-Pilot")
    pilots = {t.user_id("pilot1@contoso.com"), t.user_id("pilot2@contoso.com")}
    at_removal: list[set[tuple[str, str, str]]] = []

    def before_write(gid: str) -> None:
        if gid != old_id:
            return
        # the removal is written only once the new group's assignment is processed and Active
        snap = t.snapshot()
        new_id = next(g["id"] for g in snap["groups"] if g["displayName"] == "LIC-EMS")
        at_removal.append({
            (u["id"], s["state"], s["error"])
            for u in snap["users"] if u["id"] in pilots
            for s in u["licenseAssignmentStates"] if s.get("assignedByGroup") == new_id
        })

    watcher = Watcher(t)
    watcher.start()
    try:
        with AuditLog(tmp_path / "audit.jsonl") as audit:
            result = t.apply(plan, audit=audit, before_group_write=before_write)
        time.sleep(0.2)
    finally:
        watcher.stop.set()
        watcher.join(timeout=30)
    assert result.exit_code == 0, result.render()
    assert result.verified and not result.differences, result.render()
    assert watcher.lost == [] and watcher.reads > 3
    assert at_removal == [{(uid, "Active", "None") for uid in pilots}]
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    order = [(x["action"], x["target"].split(" (")[0]) for x in lines]
    assert order.index(("assignLicense", "group LIC-EMS")) < order.index(("removeLicense", "group Old-EMS-Pilot"))
    snap = t.snapshot()
    old = next(g for g in snap["groups"] if g["displayName"] == "Old-EMS-Pilot")
    assert old["assignedLicenses"] == []
    assert not t.plan([policies]).has_changes


def test_no_wait_leaves_a_moved_license_on_the_old_group(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    policies = policy_variant(tmp_path, MOVE_EMS)
    tenant_file = policies / "00-tenant.yaml"
    tenant_file.write_text(tenant_file.read_text().replace("unmanagedGroups: report", "unmanagedGroups: remove"))
    t = Tenant(start_emulator(processing_delay=0.2))
    result = t.apply(t.plan([policies]), wait=False)
    assert result.exit_code == 0, result.render()
    assert any(s.startswith("removeLicense Old-EMS-Pilot EMS") and "new assignment" in s for s in result.skipped)
    old = next(g for g in t.snapshot()["groups"] if g["displayName"] == "Old-EMS-Pilot")
    assert old["assignedLicenses"]  # kept until the new group's assignment is processed
    time.sleep(0.5)
    follow = t.plan([policies])
    assert {(a.kind, a.group.name if a.group else None) for a in follow.actions} >= {("removeLicense", "Old-EMS-Pilot")}
    assert t.apply(follow).exit_code == 0


def test_a_removal_waits_when_the_replacing_assignment_was_not_written(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    policies = policy_variant(tmp_path, MOVE_EMS)
    tenant_file = policies / "00-tenant.yaml"
    tenant_file.write_text(tenant_file.read_text().replace("unmanagedGroups: report", "unmanagedGroups: remove"))
    t = Tenant(start_emulator(processing_delay=0.2))
    plan = t.plan([policies])
    old_id = t.group_id("Old-EMS-Pilot")
    visio = next(s for s in t.seed["subscribedSkus"] if s["skuPartNumber"] == "VISIOCLIENT")

    def meanwhile(gid: str) -> None:
        if gid != old_id:  # someone gives the new LIC-EMS another license first: it is not written
            t.graph("POST", f"/groups/{gid}/assignLicense",
                    {"addLicenses": [{"skuId": visio["skuId"], "disabledPlans": []}], "removeLicenses": []})

    result = t.apply(plan, before_group_write=meanwhile)
    assert result.exit_code == 4, result.render()
    assert any("LIC-EMS" in c for c in result.conflicts)
    assert any(s.startswith("removeLicense Old-EMS-Pilot EMS") and "not written" in s for s in result.skipped)
    old = next(g for g in t.snapshot()["groups"] if g["id"] == old_id)
    assert old["assignedLicenses"]  # the pilots keep EMS


def test_a_failing_group_does_not_stop_the_others(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    # Project Online alone in a group: Graph refuses it (SharePoint Plan 2 must be in the same group)
    policies = policy_variant(
        tmp_path, replace=("  - group: LIC-Visio\n    licenses:\n", "  - group: LIC-Visio\n    licenses:\n      - sku: PROJECTPREMIUM\n        disabledPlans: [SHAREPOINTENTERPRISE]\n")
    )
    t = Tenant(start_emulator(processing_delay=0.2))
    plan = t.plan([policies], force=True)
    assert any(v.code == "DependencyViolation" and v.blocking for v in plan.violations)
    result = t.apply(plan)
    assert result.exit_code == 1
    assert result.failed and all("LIC-Visio" in f for f in result.failed), result.render()
    assert "refused" in result.failed[0] or "400" in result.failed[0]
    text = result.render()
    assert "Failed:" in text and "Apply finished with problems" in text
    snap = t.snapshot()
    kiosk = next(g for g in snap["groups"] if g["displayName"] == "LIC-E1-Kiosk")
    assert [lic["skuId"] for lic in kiosk["assignedLicenses"]] and len(kiosk["members"]) == 2
    assert any(d.startswith("removeDirectLicense") for d in result.done)


def test_no_wait_returns_after_the_writes_and_keeps_direct_licenses(start_emulator: Callable[..., Any]) -> None:
    t = Tenant(start_emulator(processing_delay=0.2))
    plan = t.plan()
    result = t.apply(plan, wait=False)
    assert result.exit_code == 0, result.render()
    assert not result.verified and not result.waited
    skipped = [s for s in result.skipped if s.startswith("removeDirectLicense")]
    assert len(skipped) == plan.summary["removeDirectLicense"]
    assert all("--no-wait" in s for s in skipped)
    assert any("still processing" in n for n in result.notes)
    time.sleep(0.5)
    follow = t.plan()
    assert set(follow.summary) == {"removeDirectLicense"}  # what is left: the removals, once processed


def test_timeout_reports_what_is_pending_and_removes_nothing(start_emulator: Callable[..., Any]) -> None:
    t = Tenant(start_emulator(processing_delay=60))
    plan = t.plan()
    result = t.apply(plan, timeout=0.5, poller=Poller(first=0.1, cap=0.2))
    assert result.exit_code == 1
    assert result.pending and any("LIC-E1-Kiosk" in p and "still processing" in p for p in result.pending)
    assert any(s.startswith("removeDirectLicense") and "timed out" in s for s in result.skipped)
    text = result.render()
    assert "Still processing when the wait timed out" in text


def test_the_plans_reprocess_actions_are_sent(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    # brunei1 moves to the US, where Teams Phone is allowed; the planner asks for a reprocess
    policies = policy_variant(tmp_path)
    tenant_file = policies / "00-tenant.yaml"
    tenant_file.write_text(tenant_file.read_text().replace("brunei1@contoso.com: BN", "brunei1@contoso.com: US"))
    t = Tenant(start_emulator(processing_delay=0.2))
    plan = t.plan([policies])
    assert "brunei1@contoso.com" in {u for v in plan.violations if v.status == "fixed" for u in v.users}
    assert [a.users for a in plan.actions if a.kind == "reprocess"] == [("brunei1@contoso.com",)]
    with AuditLog(tmp_path / "audit.jsonl") as audit:
        result = t.apply(plan, audit=audit)
    assert result.exit_code == 0, result.render()
    assert result.verified and not result.differences, result.render()
    audited = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [x["target"].split()[1] for x in audited if x["action"] == "reprocess"] == ["brunei1@contoso.com"]
    assert result.reprocessed == 1
    again = t.plan([policies])
    assert not again.has_changes
    assert not [v for v in again.violations if v.code == "ProhibitedInUsageLocationViolation"]


def test_users_whose_errors_the_apply_resolved_are_found() -> None:
    from reconciler.apply.executor import ApplyOptions, _Executor
    from reconciler.licensing import AssignmentState
    from reconciler.plan import Plan, PredictedState
    from reconciler.state import Organization, TenantState, User

    sku, group, new = "s1", "g1", "{new:G2}"
    plan = Plan(
        "0.1.0", "t", "2026-01-01T00:00:00Z", "sha256:x", "sha256:y", (), (),
        prediction={
            "u1": (PredictedState(sku, group, "Active", "None"),),  # error gone: reprocess
            "u2": (PredictedState(sku, group, "Error", "CountViolation"),),  # error kept
            "u3": (PredictedState(sku, new, "Active", "None"),),  # fine already
        },
    )
    state = TenantState.build(Organization("t", "T"), (), (), ())
    ex = _Executor(None, plan, state, ApplyOptions())  # type: ignore[arg-type]
    ex.ids[new] = "g2"

    def user(uid: str, g: str, st: str, err: str) -> User:
        return User(uid, f"{uid}@x", license_states=(AssignmentState(sku, g, frozenset(), st, err),))

    users = {
        "u1": user("u1", group, "Error", "CountViolation"),
        "u2": user("u2", group, "Error", "CountViolation"),
        "u3": user("u3", "g2", "Active", "None"),
    }
    assert ex.resolved_errors(users) == ["u1"]


def test_group_licenses_are_read_again_and_written_in_one_batch_each(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    # Entra queues every group written; sent together they are processed side by side
    policies = policy_variant(tmp_path, replace=("disabledPlans: [YAMMER_ENTERPRISE, SWAY]", "disabledPlans: [SWAY]"))
    t = Tenant(start_emulator(processing_delay=0.3))
    plan = t.plan([policies])
    requests = {a.request_key for a in plan.actions if a.kind in ("assignLicense", "updateLicense", "removeLicense")}
    assert len(requests) >= 2
    t.control("POST", "reset-stats")
    result = t.apply(plan)
    assert result.exit_code == 0, result.render()
    stats = t.stats()
    routes, items = stats["requests"]["byRoute"], stats["batchItems"]["byRoute"]
    assert "POST /v1.0/groups/{id}/assignLicense" not in routes and "GET /v1.0/groups/{id}" not in routes
    assert items["POST /v1.0/groups/{id}/assignLicense"] == len(requests)
    assert not t.plan([policies]).has_changes
