"""`reconciler export`: the live group licensing as a policy that validates, and that planned against
the same tenant shows no changes (through the emulator with the CLI, and offline with make_plan);
names not GUIDs, disabledPlans with the enabled plans in a comment, groups in name order, duplicate
display names by object id, SKUs the catalog does not know by id."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli import main
from reconciler.ops.export import export_policy, scalar
from reconciler.planner import make_plan
from reconciler.policy import load_policy, validate_paths
from reconciler.state import TenantState

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-tenant.json"
NOW = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)


def seed() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SAMPLE.read_text())
    return doc


def plan_of(text: str, state: TenantState, tmp_path: Path) -> Any:
    path = tmp_path / "exported.yaml"
    path.write_text(text)
    policy, problems = validate_paths([str(path)])
    assert policy is not None, [str(p) for p in problems]
    return make_plan(load_policy([str(path)]), state)


def test_export_then_plan_shows_no_changes_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["export", "--emulator", str(SAMPLE), "--out", "exported.yaml"])
    assert exc.value.code == 0
    text = (tmp_path / "exported.yaml").read_text()
    with pytest.raises(SystemExit) as exc:
        main(["validate", "exported.yaml"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        main(["plan", "exported.yaml", "--emulator", str(SAMPLE), "--detailed-exitcode", "--format", "json"])
    out = capsys.readouterr().out
    assert exc.value.code == 0, out
    plan = json.loads(out[out.index("{") :])
    assert plan["actions"] == []
    assert all(v["severity"] == "warning" for v in plan["violations"])  # existing errors only
    doc = yaml.safe_load(text)
    names = [g["group"] for g in doc["groups"]]
    assert names == sorted(names, key=str.casefold)
    assert names == ["LIC-Analysts-Bundle", "LIC-E3-Base", "LIC-E5-Admins", "LIC-Teams-Phone", "LIC-Visio", "Old-EMS-Pilot"]
    e3 = doc["groups"][1]["licenses"][0]
    assert e3 == {"sku": "ENTERPRISEPACK", "disabledPlans": ["SWAY", "YAMMER_ENTERPRISE"]}
    assert "# enabled (34 of 36): " in text and "EXCHANGE_S_ENTERPRISE" in text
    assert text.startswith("# Exported by reconciler")
    assert doc["apiVersion"] == "reconciler/v1" and doc["tenant"] == "contoso.onmicrosoft.com"


def test_export_one_group_to_stdout(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["export", "--emulator", str(SAMPLE), "--group", "lic-visio", "--group", "LIC-E5-Admins"])
    assert exc.value.code == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert [g["group"] for g in doc["groups"]] == ["LIC-E5-Admins", "LIC-Visio"]
    with pytest.raises(SystemExit) as exc:
        main(["export", "--emulator", str(SAMPLE), "--group", "nope"])
    assert exc.value.code == 64


def test_export_offline_plans_no_changes(tmp_path: Path) -> None:
    state = TenantState.from_snapshot(seed())
    text = export_policy(state, now=NOW, source="test")
    assert "2026-11-21T09:00:00Z" in text
    plan = plan_of(text, state, tmp_path)
    assert not plan.actions and not any(v.blocking for v in plan.violations)


def test_duplicate_names_and_unknown_sku_by_id(tmp_path: Path) -> None:
    doc = seed()
    visio = next(g for g in doc["groups"] if g["displayName"] == "LIC-Visio")
    twin = copy.deepcopy(visio)
    twin["id"] = "0b0b0b0b-0000-4000-8000-000000000001"
    twin["members"] = []
    doc["groups"].append(twin)
    # a product the bundled catalog does not know under this name
    mcoev = next(s for s in doc["subscribedSkus"] if s["skuPartNumber"] == "MCOEV")
    mcoev["skuPartNumber"] = "CONTOSO_PHONE"
    state = TenantState.from_snapshot(doc)
    text = export_policy(state, now=NOW)
    parsed = yaml.safe_load(text)
    refs = [g["group"] for g in parsed["groups"]]
    assert visio["id"] in refs and twin["id"] in refs and "LIC-Visio" not in refs
    assert "'LIC-Visio' is the display name of 2 groups" in text
    phone = next(g for g in parsed["groups"] if g["group"] == "LIC-Teams-Phone")
    assert phone["licenses"][0]["sku"] == mcoev["skuId"]
    assert "CONTOSO_PHONE" in text
    plan = plan_of(text, state, tmp_path)
    assert not plan.actions, [a.reason for a in plan.actions]


def test_scalar_quotes_what_yaml_would_change() -> None:
    for text in ("LIC-E3", "yes", "123", "a: b", "# x", "-lead", " pad", "Sales & Ops", "1e3", "null", "x #y"):
        assert yaml.safe_load(f"k: {scalar(text)}")["k"] == text
    assert scalar("LIC-E3-Base") == "LIC-E3-Base"


def test_export_out_to_a_missing_directory_is_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["export", "--emulator", str(SAMPLE), "--out", str(tmp_path / "missing" / "x.yaml")])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err
