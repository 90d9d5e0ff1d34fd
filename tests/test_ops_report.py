"""`reconciler report` on the sample tenant: seat figures are the emulator's subscribedSkus; every
user's sources per SKU (direct, groups, errors) and enabled plans; csv one row per user x SKU."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.ops.report import build_report, read_report, render_report
from reconciler.state import TenantState
from tests.test_ops_support import Access

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-tenant.json"


def test_report_seats_equal_subscribed_skus(start_emulator: Callable[..., Any]) -> None:
    access = Access(start_emulator(SAMPLE))
    with access.reader() as client:
        report = read_report(client, progress=False)
        skus = client.get_all("/subscribedSkus", select=("skuId", "skuPartNumber", "consumedUnits", "prepaidUnits"))
    assert report.requests is not None and report.requests <= 4
    live = {
        s["skuPartNumber"]: (s["prepaidUnits"]["enabled"], s["consumedUnits"], s["prepaidUnits"]["enabled"] - s["consumedUnits"])
        for s in skus
    }
    assert {s.sku: (s.purchased, s.consumed, s.free) for s in report.skus} == live
    assert live["ENTERPRISEPACK"] == (40, 38, 2) and live["VISIOCLIENT"] == (4, 4, 0)
    lines = {s.sku: s for s in report.skus}
    assert lines["EMS"].groups == ("LIC-Analysts-Bundle", "Old-EMS-Pilot")
    assert lines["STANDARDPACK"].groups == ()
    # consumed seats are the users holding the SKU
    held: dict[str, int] = {}
    for u in report.users:
        if u.held:
            held[u.sku] = held.get(u.sku, 0) + 1
    assert held == {s.sku: s.consumed for s in report.skus if s.consumed}

    rows = {(u.user.split("@")[0], u.sku): u for u in report.users}
    m1 = rows[("migrate1", "ENTERPRISEPACK")]
    assert [s.name for s in m1.sources] == ["direct", "LIC-E3-Base"]
    assert "SWAY" not in m1.enabled_plans and "EXCHANGE_S_ENTERPRISE" in m1.enabled_plans
    m4 = rows[("migrate4", "ENTERPRISEPACK")]
    assert "SWAY" in m4.enabled_plans  # the union: its direct E3 has every plan on
    a4 = rows[("analyst4", "POWER_BI_PRO")]
    assert not a4.held and a4.enabled_plans == () and a4.sources[0].error == "CountViolation"
    assert rows[("analyst4", "EMS")].sources[0].error == "Other"
    assert ("silent1", "ENTERPRISEPACK") not in rows
    assert rows[("e1direct1", "STANDARDPACK")].sources[0].name == "direct"


def test_report_formats(
    start_emulator: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["report", "--emulator", str(SAMPLE), "--format", "csv"])
    assert exc.value.code == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    keys = [(r["user"], r["sku"]) for r in rows]
    assert len(keys) == len(set(keys))
    m1 = next(r for r in rows if r["user"] == "migrate1@contoso.com" and r["sku"] == "ENTERPRISEPACK")
    assert (m1["direct"], m1["groups"], m1["held"]) == ("yes", "LIC-E3-Base", "yes")
    v5 = next(r for r in rows if r["user"] == "visio5@contoso.com" and r["sku"] == "VISIOCLIENT")
    assert (v5["held"], v5["errors"]) == ("no", "LIC-Visio: CountViolation")
    with pytest.raises(SystemExit) as exc:
        main(["report", "--emulator", str(SAMPLE), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert {s["sku"] for s in doc["skus"]} >= {"ENTERPRISEPACK", "VISIOCLIENT"}
    with pytest.raises(SystemExit) as exc:
        main(["report", "--emulator", str(SAMPLE), "--format", "xml"])
    assert exc.value.code == 64


def test_report_renderings_offline() -> None:
    report = build_report(TenantState.from_snapshot(json.loads(SAMPLE.read_text())))
    text = render_report(report, "text")
    assert "all but SWAY, YAMMER_ENTERPRISE (34 of 36)" in text or "all but YAMMER_ENTERPRISE, SWAY (34 of 36)" in text
    assert text.rstrip().endswith("licensed users.")
    md = render_report(report, "markdown")
    assert "| ENTERPRISEPACK | 40 | 38 | 2 | LIC-E3-Base |" in md
