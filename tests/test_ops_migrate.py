"""`reconciler migrate` (issue 7): propose mirror groups, then plan and apply (reconciler.apply)
until the plan shows no changes, on the sample tenant and on a generated tenant. Between every
phase (from /_emulator/snapshot): no user loses an enabled plan and no SKU's consumed seats exceed
its purchased ones. At the end every migrated user holds the license only from a group and every
skipped user still has what they had."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.apply import ApplyOptions, apply_plan, check_plan, observe_scope
from reconciler.apply.wait import Poller
from reconciler.cli import main
from reconciler.emulator.generate import generate_tenant
from reconciler.graph.transport import RetryPolicy
from reconciler.ops.migrate import (
    Migration,
    migration_policy,
    propose_migration,
    read_migration_state,
    render_summary,
)
from reconciler.plan import Plan
from reconciler.planner import make_plan
from reconciler.planner.run import observe_for
from reconciler.policy import load_policy, validate_paths
from reconciler.state import TenantState
from tests.test_ops_support import Access

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-tenant.json"
FAST_RETRY = RetryPolicy(sleep=lambda s: time.sleep(min(s, 0.05)))
HELD = ("Active", "ActiveWithError")

Plans = dict[str, dict[str, frozenset[str]]]  # user id -> sku id -> enabled plans


def enabled_by_user(snapshot: dict[str, Any]) -> Plans:
    sku_plans = {
        s["skuId"].lower(): [p["servicePlanId"].lower() for p in s["servicePlans"]] for s in snapshot["subscribedSkus"]
    }
    out: Plans = {}
    for u in snapshot["users"]:
        mine: dict[str, set[str]] = {}
        for st in u.get("licenseAssignmentStates") or ():
            if st["state"] in HELD:
                sku = st["skuId"].lower()
                off = {p.lower() for p in st.get("disabledPlans") or ()}
                mine.setdefault(sku, set()).update(p for p in sku_plans.get(sku, ()) if p not in off)
        out[u["id"].lower()] = {k: frozenset(v) for k, v in mine.items()}
    return out


def check_phase(access: Access, before: Plans, phase: str) -> Plans:
    """Every user keeps every plan of `before`; consumed <= purchased for every SKU."""
    snap = access.snapshot()
    for s in snap["subscribedSkus"]:
        assert s["consumedUnits"] <= s["prepaidUnits"]["enabled"], (phase, s["skuPartNumber"])
    now = enabled_by_user(snap)
    lost = []
    for uid, skus in before.items():
        for sku, plans in skus.items():
            missing = plans - now.get(uid, {}).get(sku, frozenset())
            if missing:
                lost.append((uid, sku, sorted(missing)[:3]))
    assert not lost, (phase, lost[:5])
    return now


def plan_of(access: Access, policy_path: Path) -> Plan:
    policy = load_policy([str(policy_path)])
    with access.reader() as c:
        state = observe_for(c, policy)
    return make_plan(policy, state)


def apply(access: Access, plan: Plan, on_phase: Callable[[str], None]) -> None:
    """Apply with reconciler.apply; `on_phase` runs at every stage apply announces (its `say`)."""
    with access.writer() as c:
        c.retry = FAST_RETRY
        state = observe_scope(c, plan)
        check_plan(plan, state)
        opts = ApplyOptions(poller=Poller(first=0.1, factor=1.5, cap=0.5), progress=False, say=on_phase)
        result = apply_plan(c, plan, state, opts)
    assert result.exit_code == 0, result.render()


def propose(access: Access, tmp_path: Path, **kw: Any) -> tuple[Migration, TenantState, Path]:
    with access.reader() as c:
        state = read_migration_state(c, progress=False)
    mig = propose_migration(state, **kw)
    path = tmp_path / "migration.yaml"
    path.write_text(migration_policy(mig, state))
    policy, problems = validate_paths([str(path)])
    assert policy is not None, [str(p) for p in problems]
    return mig, state, path


def run_migration(access: Access, path: Path, max_rounds: int = 6) -> list[Plan]:
    first = access.snapshot()
    baseline = enabled_by_user(first)
    plans: list[Plan] = []
    for round_no in range(max_rounds):
        plan = plan_of(access, path)
        plans.append(plan)
        assert not plan.blocked, [v.message for v in plan.blocking_violations]
        if not plan.has_changes:
            return plans
        phases: list[str] = []

        def on_phase(text: str, round_no: int = round_no, phases: list[str] = phases) -> None:
            phases.append(text)
            check_phase(access, baseline, f"apply {round_no + 1}, before: {text}")

        apply(access, plan, on_phase)
        assert phases
        access.drain()
        check_phase(access, baseline, f"after apply {round_no + 1}")
    raise AssertionError(f"no convergence after {max_rounds} rounds")


def check_end(access: Access, mig: Migration, before: TenantState) -> None:
    snap = access.snapshot()
    users = {u["id"].lower(): u for u in snap["users"]}
    for uid, sku_id in sorted(mig.migrated_pairs()):
        u = users[uid]
        states = [s for s in u.get("licenseAssignmentStates") or () if s["skuId"].lower() == sku_id]
        assert not any(s.get("assignedByGroup") is None for s in states), (u["userPrincipalName"], sku_id)
        assert any(s.get("assignedByGroup") and s["state"] == "Active" for s in states), (u["userPrincipalName"], sku_id)
        assert all(a["skuId"].lower() != sku_id for a in u["assignedLicenses"])  # seed format: direct only
    parts = {s.sku_id: s.part_number for s in before.skus.values()}
    for s in mig.skipped:
        u = users[s.user_id]
        held = {st["skuId"].lower() for st in u.get("licenseAssignmentStates") or () if st["state"] in HELD}
        assert before.users[s.user_id].held_skus() <= held, s.user
        direct = {parts[a["skuId"].lower()] for a in u["assignedLicenses"]}
        assert set(s.kept) <= direct, s.user


def test_migrate_sample_tenant_plan_apply_until_no_changes(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    access = Access(start_emulator(SAMPLE))
    mig, state, path = propose(access, tmp_path)
    upn = {u.id: u.user_principal_name.split("@")[0] for u in state.users.values()}
    assert [(g.name, [upn[m] for m in g.members]) for g in mig.mirror_groups] == [
        ("LIC-ENTERPRISEPACK-1", ["direct1", "direct2"])
    ]
    assert sorted(upn[c.user_id] for c in mig.covered) == ["migrate1", "migrate2", "migrate3"]
    skipped = {upn[s.user_id]: s.reason for s in mig.skipped}
    assert set(skipped) == {"e1direct1", "e1direct2", "migrate4", "project1"}
    assert "MutuallyExclusiveViolation" in skipped["e1direct1"]
    assert "SWAY" in skipped["migrate4"] and "LIC-E3-Base" in skipped["migrate4"]
    assert "SHAREPOINT_PROJECT requires SHAREPOINTENTERPRISE" in skipped["project1"]
    assert mig.extra_seats(state) == {"6fd2c87f-b296-42f0-b197-1e91e994b900": 0}
    summary = render_summary(mig, state)
    assert "ENTERPRISEPACK: 0 extra" in summary and "migrate4@contoso.com" in summary

    doc = yaml.safe_load(path.read_text())
    mirror = next(g for g in doc["groups"] if g["group"] == "LIC-ENTERPRISEPACK-1")
    assert mirror["create"] is True and mirror["members"] == ["direct1@contoso.com", "direct2@contoso.com"]
    assert doc["directLicenses"] == {"mode": "removeRedundant", "skus": ["ENTERPRISEPACK"]}

    plans = run_migration(access, path)
    first = plans[0]
    kinds = first.summary
    assert kinds.get("createGroup") == 1 and kinds.get("addMember") == 2 and kinds.get("assignLicense") == 1
    assign = next(a for a in first.actions if a.kind == "assignLicense")
    assert assign.details["seats"]["needed"] == 0
    removed_first = sorted(a.users[0] for a in first.actions if a.kind == "removeDirectLicense")
    assert removed_first == ["migrate1@contoso.com", "migrate2@contoso.com", "migrate3@contoso.com"]
    # the mirror groups' direct licenses wait for processing: removed by the second plan
    removed_second = sorted(a.users[0] for a in plans[1].actions if a.kind == "removeDirectLicense")
    assert removed_second == ["direct1@contoso.com", "direct2@contoso.com"]
    assert len(plans) == 3 and not plans[-1].has_changes
    check_end(access, mig, state)


def test_migrate_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["migrate", "--emulator", str(SAMPLE), "--sku", "enterprisepack", "--out", "m.yaml", "--name-pattern", "GBL-{sku}-{n}", "--wave-size", "50"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "+ GBL-ENTERPRISEPACK-1: ENTERPRISEPACK for 2 users" in out and "0 extra" in out
    assert "project1" not in out  # PROJECTPREMIUM is out of scope
    doc = yaml.safe_load((tmp_path / "m.yaml").read_text())
    assert doc["directLicenses"] == {"mode": "removeRedundant", "skus": ["ENTERPRISEPACK"], "waveSize": 50}
    with pytest.raises(SystemExit) as exc:
        main(["migrate", "--emulator", str(SAMPLE), "--sku", "VISIOCLIENT", "--out", "none.yaml"])
    assert exc.value.code == 0
    assert "0 users to migrate" in capsys.readouterr().out
    assert yaml.safe_load((tmp_path / "none.yaml").read_text())["directLicenses"] == {"mode": "keep"}
    with pytest.raises(SystemExit) as exc:
        main(["migrate", "--emulator", str(SAMPLE), "--sku", "NOPE"])
    assert exc.value.code == 64
    with pytest.raises(SystemExit) as exc:
        main(["migrate", "--emulator", str(SAMPLE), "--name-pattern", "LIC-{team}"])
    assert exc.value.code == 64


@pytest.mark.parametrize(
    "users",
    [pytest.param(1500, id="1500"), pytest.param(10_000, id="10000", marks=pytest.mark.slow)],
)
@pytest.mark.timeout(900)
def test_migrate_generated_tenant(start_emulator: Callable[..., Any], tmp_path: Path, users: int) -> None:
    doc = generate_tenant(users=users, groups=max(20, users // 50), skus=8, seed=7)
    seed_path = tmp_path / "generated.json"
    seed_path.write_text(json.dumps(doc))
    access = Access(start_emulator(seed_path))
    mig, state, path = propose(access, tmp_path)
    direct_users = [u for u in state.users.values() if u.direct_licenses]
    assert len(mig.migrated_users) + len(mig.skipped) == len(direct_users)
    assert mig.migrated_users and all(v == 0 for v in mig.extra_seats(state).values())
    run_migration(access, path)
    check_end(access, mig, state)


def test_mirror_names_and_combinations_offline(tmp_path: Path) -> None:
    doc = json.loads(SAMPLE.read_text())
    taken = json.loads(json.dumps(next(g for g in doc["groups"] if g["displayName"] == "Sales-Team")))
    taken["id"] = "0b0b0b0b-0000-4000-8000-000000000002"
    taken["displayName"] = "LIC-ENTERPRISEPACK-1"
    taken["members"] = []
    doc["groups"].append(taken)
    ems = next(s for s in doc["subscribedSkus"] if s["skuPartNumber"] == "EMS")["skuId"]
    d2 = next(u for u in doc["users"] if u["userPrincipalName"].startswith("direct2@"))
    d2["assignedLicenses"].append({"skuId": ems, "disabledPlans": []})
    d2.setdefault("licenseAssignmentStates", []).append(
        {"skuId": ems, "disabledPlans": [], "assignedByGroup": None, "state": "Active", "error": "None"}
    )
    state = TenantState.from_snapshot(doc)
    mig = propose_migration(state)
    names = {g.name: sorted(state.users[m].user_principal_name for m in g.members) for g in mig.mirror_groups}
    assert names == {
        "LIC-EMS+ENTERPRISEPACK-1": ["direct2@contoso.com"],
        "LIC-ENTERPRISEPACK-2": ["direct1@contoso.com"],
    }
    path = tmp_path / "m.yaml"
    path.write_text(migration_policy(mig, state))
    policy = load_policy([str(path)])
    plan = make_plan(policy, state)
    assert not plan.blocked
    seats = [a.details["seats"]["needed"] for a in plan.actions if a.kind == "assignLicense"]
    assert seats == [0, 0, 0]
    mig = propose_migration(state, pattern="M365-{sku}")
    assert sorted(g.name for g in mig.mirror_groups) == ["M365-EMS+ENTERPRISEPACK", "M365-ENTERPRISEPACK"]
