"""make_plan as a whole: plan fields, determinism, and the sample tenant with the sample policy."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

from planner_fixtures import BASE_POLICY, NOW, TENANT_ID, base_state, kinds, plan_for, write_policy

from reconciler import __version__
from reconciler.emulator.seed import load_seed
from reconciler.planfile import dumps, loads
from reconciler.planner import make_plan
from reconciler.policy import load_policy
from reconciler.render import render_markdown, render_text
from reconciler.state import TenantState

ROOT = Path(__file__).resolve().parents[1]
CHANGES = BASE_POLICY + """\
  - group: LIC-E1-Kiosk
    create: true
    members: [ivan@contoso.com]
    licenses:
      - sku: STANDARDPACK
usageLocations:
  default: US
directLicenses:
  mode: removeRedundant
"""


def test_plan_fields(tmp_path: Path) -> None:
    state = base_state()
    policy = write_policy(tmp_path, CHANGES)
    plan = make_plan(policy, state, now=NOW)
    assert plan.tenant_id == TENANT_ID
    assert plan.created_at == "2026-11-21T09:00:00Z"
    assert plan.policy_digest == policy.digest
    assert plan.state_fingerprint == state.fingerprint()
    assert plan.tool_version == __version__
    assert not plan.forced
    # a clock can be injected as a callable; naive datetimes are taken as UTC
    other = make_plan(policy, state, now=lambda: dt.datetime(2027, 1, 2, 3, 4, 5))
    assert other.created_at == "2027-01-02T03:04:05Z"


def test_same_inputs_give_byte_identical_output(tmp_path: Path) -> None:
    a = plan_for(tmp_path, base_state(), CHANGES)
    b = plan_for(tmp_path, base_state(), CHANGES)
    assert dumps(a) == dumps(b)
    assert render_text(a) == render_text(b) and render_markdown(a) == render_markdown(b)
    # the plan file round-trips (the schema knows every code and field the planner writes)
    assert loads(dumps(a)) == a


@cache
def sample_state() -> TenantState:
    return TenantState.from_snapshot(load_seed(ROOT / "examples" / "sample-tenant.json"))


def sample_plan() -> object:
    return make_plan(load_policy([ROOT / "policies"]), sample_state(), now=NOW)


def test_sample_tenant_with_sample_policy() -> None:
    plan = make_plan(load_policy([ROOT / "policies"]), sample_state(), now=NOW)
    assert kinds(plan) == [
        ("createGroup", "LIC-E1-Kiosk", ""),
        ("setUsageLocation", "alice@contoso.com", ""),
        ("setUsageLocation", "noloc1@contoso.com", ""),
        ("setUsageLocation", "noloc2@contoso.com", ""),
        ("setUsageLocation", "noloc3@contoso.com", ""),
        ("addMember", "kiosk1@contoso.com", ""),
        ("addMember", "kiosk2@contoso.com", ""),
        ("assignLicense", "LIC-E1-Kiosk", "STANDARDPACK"),
        ("removeDirectLicense", "migrate1@contoso.com", "ENTERPRISEPACK"),
        ("removeDirectLicense", "migrate2@contoso.com", "ENTERPRISEPACK"),
        ("removeDirectLicense", "migrate3@contoso.com", "ENTERPRISEPACK"),
    ]
    assert not plan.blocked
    existing = {(v.code, v.sku, v.group, v.users) for v in plan.violations if v.status == "existing"}
    assert ("CountViolation", "VISIOCLIENT", "LIC-Visio", ("visio5@contoso.com", "visio6@contoso.com")) in existing
    assert ("CountViolation", "POWER_BI_PRO", "LIC-Analysts-Bundle", ("analyst4@contoso.com",)) in existing
    assert ("Other", "EMS", "LIC-Analysts-Bundle", ("analyst4@contoso.com",)) in existing
    assert (
        "MutuallyExclusiveViolation",
        "ENTERPRISEPACK",
        "LIC-E3-Base",
        ("e1direct1@contoso.com", "e1direct2@contoso.com"),
    ) in existing
    assert ("ProhibitedInUsageLocationViolation", "MCOEV", "LIC-Teams-Phone", ("brunei1@contoso.com",)) in existing
    assert ("UniquenessViolation", "ENTERPRISEPACK", "LIC-E3-Base", ("dup2@contoso.com",)) in existing
    assert ("UniquenessViolation", None, "LIC-E3-Base", ("silent1@contoso.com",)) in existing
    assert ("NestedGroup", None, "LIC-E3-Base", ("nested1@contoso.com", "nested2@contoso.com")) in existing
    assert ("UnmanagedGroup", "EMS", "Old-EMS-Pilot", ("pilot1@contoso.com", "pilot2@contoso.com")) in existing
    assert ("DirectLicenseKept", "ENTERPRISEPACK", None, ("migrate4@contoso.com",)) in existing
    assert not [v for v in plan.violations if v.status == "new"]
    text = render_text(plan)
    assert text.rstrip().endswith("Plan: 8 to assign, 0 to change, 3 to remove, 9 users affected, 10 violations.")
