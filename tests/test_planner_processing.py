"""`plan` does not plan from a half-processed tenant without saying so.

A license changed by hand on a group queues it for Entra's processing; its members' license states
change when processing ends. A plan made before that goes stale before `apply`. The planner waits
(bounded, `--processing-wait`) for the groups, observes again and plans from the processed state;
when groups are still processing after the bound it plans anyway with a `ProcessingPending` warning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from test_apply_support import POLICIES, ROOT, Tenant, fast_poller

from reconciler.plan import PLANNER_CODES
from reconciler.planner import make_plan
from reconciler.planner.run import observe_settled, processing_groups
from reconciler.policy import load_policy

pytestmark = pytest.mark.timeout(180)


def change_e3_by_hand(t: Tenant) -> str:
    """Switch Teams off for LIC-E3-Base through Graph, as an administrator's script would (the policy
    keeps YAMMER_ENTERPRISE and SWAY off: those stay off)."""
    gid = t.group_id("LIC-E3-Base")
    e3 = next(s for s in t.seed["subscribedSkus"] if s["skuPartNumber"] == "ENTERPRISEPACK")
    off = {"YAMMER_ENTERPRISE", "SWAY", "TEAMS1"}
    lic = {"skuId": e3["skuId"], "disabledPlans": [p["servicePlanId"] for p in e3["servicePlans"] if p["servicePlanName"] in off]}
    assert len(lic["disabledPlans"]) == 3
    t.graph("POST", f"/groups/{gid}/assignLicense", {"addLicenses": [lic], "removeLicenses": []})
    return gid


def test_plan_waits_for_processing_and_its_saved_plan_applies(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    t = Tenant(start_emulator(processing_delay=3.0))
    change_e3_by_hand(t)
    planned = t.cli("plan", str(POLICIES), "--out", "p.json", cwd=tmp_path, app="reconciler-plan")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "ProcessingPending" not in planned.stdout
    assert "still processing" not in planned.stderr  # the wait's message is for terminals only
    doc = json.loads((tmp_path / "p.json").read_text())
    assert "ProcessingPending" not in {v["code"] for v in doc["violations"]}
    assert "updateLicense" in doc["summary"]  # the hand's change is planned back
    applied = t.cli("apply", "p.json", cwd=tmp_path)
    assert applied.returncode == 0, applied.stdout + applied.stderr  # not refused as stale (exit 4)
    assert "stale" not in applied.stderr


def test_in_process_the_state_is_observed_again_once_processed(start_emulator: Callable[..., Any]) -> None:
    t = Tenant(start_emulator(processing_delay=2.0))
    gid = change_e3_by_hand(t)
    policy = load_policy([str(POLICIES)])
    with t.client(read_only=True) as c:
        state, busy = observe_settled(c, policy, processing_wait=60, poller=fast_poller(), say=lambda _t: None)
    assert busy == [] and processing_groups(state) == []
    assert state.groups[gid].processing_state == "ProcessingComplete"
    plan = make_plan(policy, state)
    assert not [v for v in plan.violations if v.code == "ProcessingPending"]
    t.apply(plan)  # check_plan raises StalePlanError when the fingerprint no longer matches


def test_processing_wait_0_plans_at_once_with_a_warning(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    t = Tenant(start_emulator(processing_delay=600.0))
    change_e3_by_hand(t)
    planned = t.cli(
        "plan", str(POLICIES), "--processing-wait", "0", "--format", "json", "--out", "p.json",
        cwd=tmp_path, app="reconciler-plan",
    )
    assert planned.returncode == 0, planned.stdout + planned.stderr  # a warning does not block
    doc = json.loads(planned.stdout)
    (warning,) = [v for v in doc["violations"] if v["code"] == "ProcessingPending"]
    assert warning["severity"] == "warning" and warning["group"] == "LIC-E3-Base"
    assert "LIC-E3-Base" in warning["message"] and "stale" in warning["message"]
    assert "re-plan" in warning["resolution"].lower()
    schema = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    jsonschema.validate(json.loads((tmp_path / "p.json").read_text()), schema)
    text = subprocess.run(
        [sys.executable, "-m", "reconciler", "show", "p.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"},
    )
    assert text.returncode == 0 and "ProcessingPending" in text.stdout and "LIC-E3-Base" in text.stdout


def test_still_processing_after_the_bound_plans_with_the_warning(start_emulator: Callable[..., Any]) -> None:
    from reconciler.planner.run import processing_pending

    t = Tenant(start_emulator(processing_delay=600.0))
    gid = change_e3_by_hand(t)
    policy = load_policy([str(POLICIES)])
    said: list[str] = []
    with t.client(read_only=True) as c:
        state, busy = observe_settled(c, policy, processing_wait=0.5, poller=fast_poller(), say=said.append)
    assert busy == [gid]
    assert said and "LIC-E3-Base" in said[0]
    v = processing_pending(state, busy, 0.5)
    assert v.code in PLANNER_CODES and v.severity == "warning" and not v.blocking
    assert "LIC-E3-Base" in v.message


def test_processing_wait_must_not_be_negative(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "reconciler", "plan", str(POLICIES), "--processing-wait", "-1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 64, res.stderr
    assert "Traceback" not in res.stderr
