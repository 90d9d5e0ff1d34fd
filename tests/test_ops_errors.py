"""`reconciler errors` on the sample tenant (issue 7): every situation it was built with is found
through Graph (hasMembersWithLicenseErrors, membersWithLicenseErrors, proxyAddresses searches),
with the resolution the planner gives for the code; the silent duplicate-address case is listed
with the group that holds the address; exit codes 3 (some) and 0 (none)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.ops.errors import ErrorsReport, collect_errors, find_errors, render_errors, silent_candidates
from reconciler.state import TenantState
from tests.test_ops_support import Access

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-tenant.json"


def by_user(report: ErrorsReport) -> dict[tuple[str, str, str], Any]:
    return {(e.user.split("@")[0], e.code, e.sku): e for e in report.errors}


@pytest.fixture
def sample(start_emulator: Callable[..., Any]) -> Access:
    return Access(start_emulator(SAMPLE))


def test_errors_on_the_sample_tenant_find_every_situation(sample: Access) -> None:
    with sample.reader() as client:
        report = find_errors(client)
    got = by_user(report)
    assert set(got) == {
        ("e1direct1", "MutuallyExclusiveViolation", "ENTERPRISEPACK"),
        ("e1direct2", "MutuallyExclusiveViolation", "ENTERPRISEPACK"),
        ("visio5", "CountViolation", "VISIOCLIENT"),
        ("visio6", "CountViolation", "VISIOCLIENT"),
        ("brunei1", "ProhibitedInUsageLocationViolation", "MCOEV"),
        ("dup2", "UniquenessViolation", "ENTERPRISEPACK"),
        ("analyst4", "CountViolation", "POWER_BI_PRO"),
        ("analyst4", "Other", "EMS"),
    }
    # (a) E1 direct vs E3 group: SharePoint Plan 1 vs Plan 2, with the source of the other plan
    e = got[("e1direct1", "MutuallyExclusiveViolation", "ENTERPRISEPACK")]
    assert e.group == "LIC-E3-Base" and e.state == "Error"
    assert "SHAREPOINTENTERPRISE" in e.detail and "SHAREPOINTSTANDARD" in e.detail
    assert "direct STANDARDPACK" in e.detail
    assert "disable SHAREPOINTENTERPRISE in LIC-E3-Base's ENTERPRISEPACK" in e.resolution
    # (b) short of seats
    e = got[("visio5", "CountViolation", "VISIOCLIENT")]
    assert e.group == "LIC-Visio" and "4 bought" in e.detail
    assert e.resolution.startswith("buy more VISIOCLIENT seats")
    # (d) prohibited location
    e = got[("brunei1", "ProhibitedInUsageLocationViolation", "MCOEV")]
    assert "BN" in e.detail and "usage location" in e.resolution
    # (e) duplicate proxy address with another user: the other user is named
    e = got[("dup2", "UniquenessViolation", "ENTERPRISEPACK")]
    assert "sales@contoso.com: user dup1@contoso.com" in e.resolution
    assert "reprocess" in e.resolution
    # (g) multi-product group: Other names the sibling that failed
    e = got[("analyst4", "Other", "EMS")]
    assert e.failed_sibling == "POWER_BI_PRO"
    assert "POWER_BI_PRO (CountViolation)" in e.detail and "EMS then follows" in e.resolution
    assert got[("analyst4", "CountViolation", "POWER_BI_PRO")].group == "LIC-Analysts-Bundle"
    # (e') the silent case: no license, no error, and the group holding the address
    assert [(s.user, s.group, s.skus) for s in report.silent] == [
        ("silent1@contoso.com", "LIC-E3-Base", ("ENTERPRISEPACK",))
    ]
    s = report.silent[0]
    assert s.holders == ("helpdesk@contoso.com: group Helpdesk",)
    assert "Helpdesk" in s.resolution and "reprocess" in s.resolution
    # groups with members in error, counted
    assert {(g.name, g.users) for g in report.groups} == {
        ("LIC-E3-Base", 3),
        ("LIC-Visio", 2),
        ("LIC-Teams-Phone", 1),
        ("LIC-Analysts-Bundle", 1),
    }
    # (c) users without usage location and (h) nested members are not errors
    assert not any(e.user.startswith(("noloc", "nested")) for e in report.errors)
    assert not any(s.user.startswith("nested") for s in report.silent)
    # (h) the nested group, reported apart (not an error Entra records)
    assert [(n.group, n.nested, n.users) for n in report.nested] == [
        ("LIC-E3-Base", ("Sales-Team",), ("nested1@contoso.com", "nested2@contoso.com"))
    ]
    assert report.requests is not None and report.requests <= 12


def test_errors_for_one_group(sample: Access) -> None:
    with sample.reader() as client:
        report = find_errors(client, "lic-visio")
    assert {e.user for e in report.errors} == {"visio5@contoso.com", "visio6@contoso.com"}
    assert not report.silent and [g.name for g in report.groups] == ["LIC-Visio"]


def test_dependency_violation_after_a_removal(sample: Access) -> None:
    """(f) project1 leaves LIC-E3-Base: E3 stays in ActiveWithError / DependencyViolation."""
    snap = sample.snapshot()
    users = {u["userPrincipalName"].split("@")[0]: u["id"] for u in snap["users"]}
    groups = {g["displayName"]: g["id"] for g in snap["groups"]}
    with sample.writer() as w:
        w.delete(f"/groups/{groups['LIC-E3-Base']}/members/{users['project1']}/$ref")
    sample.drain()
    with sample.reader() as client:
        report = find_errors(client, "LIC-E3-Base")
    e = by_user(report)[("project1", "DependencyViolation", "ENTERPRISEPACK")]
    assert e.state == "ActiveWithError"
    assert "SHAREPOINT_PROJECT" in e.detail and "SHAREPOINTENTERPRISE" in e.detail
    assert "prerequisite" in e.resolution


def test_cli_exit_codes_and_formats(
    sample: Access, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["errors", "--emulator", str(SAMPLE), "--format", "json"])
    assert exc.value.code == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"] == {"groupsWithErrors": 4, "usersInError": 7, "errors": 8, "silentFailures": 1}
    assert doc["silentFailures"][0]["sameProxyAddress"] == ["helpdesk@contoso.com: group Helpdesk"]
    with pytest.raises(SystemExit) as exc:
        main(["errors", "--emulator", str(SAMPLE), "--format", "csv", "--group", "LIC-Analysts-Bundle"])
    assert exc.value.code == 3
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {(r["user"], r["code"], r["sku"], r["failedSibling"]) for r in rows} == {
        ("analyst4@contoso.com", "CountViolation", "POWER_BI_PRO", ""),
        ("analyst4@contoso.com", "Other", "EMS", "POWER_BI_PRO"),
    }
    with pytest.raises(SystemExit) as exc:
        main(["errors", "--emulator", str(SAMPLE), "--format", "yaml"])
    assert exc.value.code == 64
    with pytest.raises(SystemExit) as exc:
        main(["errors", "--emulator", str(SAMPLE), "--group", "No-Such-Group"])
    assert exc.value.code == 64
    assert "No-Such-Group" in capsys.readouterr().err


def test_no_errors_exit_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    seed = json.loads(SAMPLE.read_text())
    keep = {"LIC-E5-Admins"}
    seed["groups"] = [g for g in seed["groups"] if g["displayName"] in keep or not g.get("assignedLicenses")]
    for u in seed["users"]:
        u.pop("licenseAssignmentStates", None)
    path = tmp_path / "clean.json"
    path.write_text(json.dumps(seed))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["errors", "--emulator", str(path)])
    out = capsys.readouterr().out
    assert exc.value.code == 0, out
    assert "no license errors and no silent failures" in out


def test_collect_errors_offline_and_renderings() -> None:
    """The pure part on the seed itself: states as Entra recorded them, holders given."""
    state = TenantState.from_snapshot(json.loads(SAMPLE.read_text()))
    in_error = {
        gid: [u for u in state.users.values() if any(s.assigned_by_group == gid and s.error != "None" for s in u.license_states)]
        for gid in state.groups
    }
    report = collect_errors(state, in_error, {"helpdesk@contoso.com": ["group Helpdesk"]})
    assert len(report.errors) == 8 and len(report.silent) == 1
    assert [c.user_id for c in silent_candidates(state)] == [report.silent[0].user_id]
    text = render_errors(report, "text")
    assert text.rstrip().endswith(
        "4 groups with members in error, 7 users in error (8 errors), 1 silent failure; "
        "1 nested group ignored by group licensing."
    )
    assert "LIC-E3-Base contains Sales-Team: nested1@contoso.com, nested2@contoso.com" in text
    assert "### Nested groups" in render_errors(report, "markdown")
    md = render_errors(report, "markdown")
    assert md.startswith("## License errors") and "| LIC-Visio | visio5@contoso.com | CountViolation |" in md
    assert "### Silent failures" in md


def test_members_of_groups_still_processing_are_not_silent_failures(start_emulator: Callable[..., Any]) -> None:
    access = Access(start_emulator(SAMPLE, processing_delay=600))
    snap = access.snapshot()
    users = {u["userPrincipalName"].split("@")[0]: u["id"] for u in snap["users"]}
    groups = {g["displayName"]: g["id"] for g in snap["groups"]}
    with access.writer() as w:
        w.post(
            f"/groups/{groups['LIC-E5-Admins']}/members/$ref",
            {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{users['kiosk1']}"},
        )
    with access.reader() as client:
        report = find_errors(client)
    assert "LIC-E5-Admins" in report.pending_groups
    assert [s.user for s in report.silent] == ["silent1@contoso.com"]
    assert "Still processing" in render_errors(report, "text")


def _reference_candidates(state: TenantState) -> list[tuple[str, str, tuple[str, ...]]]:
    """silent_candidates the straightforward way (every member's states rescanned per group)."""
    out = []
    for g in sorted(state.groups.values(), key=lambda g: (g.display_name.casefold(), g.id)):
        if not g.licenses or not g.security_enabled or g.processing_state not in (None, "ProcessingComplete"):
            continue
        for uid in g.member_user_ids:
            if uid in state.users:
                have = {s.sku_id for s in state.users[uid].license_states if s.assigned_by_group == g.id}
                missing = tuple(lic.sku_id for lic in g.licenses if lic.sku_id not in have)
                if missing:
                    out.append((uid, g.id, missing))
    return out


def test_silent_candidates_with_shared_license_states() -> None:
    """Users whose states are equal share one parsed tuple of them (state.user_from_graph), and
    silent_candidates works each tuple out once: members of different groups with the same
    states must still be judged against their own group's SKUs."""
    seed = json.loads(SAMPLE.read_text())
    users = {u["userPrincipalName"].split("@")[0]: u for u in seed["users"]}
    groups = {g["displayName"]: g for g in seed["groups"]}
    licensed = [g for g in seed["groups"] if g.get("assignedLicenses") and g.get("securityEnabled", True)]
    # every licensed group gains members holding the states of silent1, of alice, and none
    for g in licensed:
        g["members"] = [*g["members"], users["silent1"]["id"], users["alice"]["id"], users["kiosk1"]["id"]]
    state = TenantState.from_snapshot(seed)
    assert state.users[users["silent1"]["id"]].license_states is not state.users[users["alice"]["id"]].license_states
    got = [(c.user_id, c.group_id, c.sku_ids) for c in silent_candidates(state)]
    assert got == _reference_candidates(state)
    assert len({gid for _, gid, _ in got}) >= 3 and groups["LIC-E3-Base"]["id"].lower() in {gid for _, gid, _ in got}


def test_collect_errors_takes_the_candidates_already_worked_out() -> None:
    state = TenantState.from_snapshot(json.loads(SAMPLE.read_text()))
    in_error: dict[str, list[Any]] = {}
    found = collect_errors(state, in_error, {})
    assert len(found.silent) == 1
    assert collect_errors(state, in_error, {}, candidates=[]).silent == []
    given = collect_errors(state, in_error, {}, candidates=silent_candidates(state))
    assert given.silent == found.silent


def test_the_predictor_runs_only_when_something_needs_explaining(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explainer runs the predictor over the whole tenant: made once, and only when a user is in
    error or a silent failure is found."""
    import reconciler.ops.errors as errors_module

    made: list[object] = []
    real = errors_module.Explainer

    def counting(state: TenantState) -> Any:
        made.append(state)
        return real(state)

    monkeypatch.setattr(errors_module, "Explainer", counting)
    seed = json.loads(SAMPLE.read_text())
    for u in seed["users"]:
        u.pop("licenseAssignmentStates", None)
    seed["groups"] = [g for g in seed["groups"] if not g.get("assignedLicenses")]
    clean = collect_errors(TenantState.from_snapshot(seed), {}, {})
    assert not clean.found and made == []
    state = TenantState.from_snapshot(json.loads(SAMPLE.read_text()))
    in_error = {
        gid: [u for u in state.users.values() if any(s.assigned_by_group == gid and s.error != "None" for s in u.license_states)]
        for gid in state.groups
    }
    report = collect_errors(state, in_error, {})
    assert len(report.errors) == 8 and len(report.silent) == 1 and made == [state]
