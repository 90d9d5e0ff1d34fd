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
from reconciler.ops.report import build_report, read_report, render_report, write_report
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


# --------------------------------------------------------------------------- the fast paths
# build_report shares sources and plan tuples between rows and works out each distinct tuple of
# license states once; the renderings come in pieces. Pinned here against the straightforward
# version (per user and SKU, every state rescanned; the standard json and csv encoders) on a
# tenant of a few thousand rows with the corner cases: UPNs equal but for case (and "ß"/"ss"),
# users with direct licenses and no states, several sources of one SKU, unknown SKUs and groups.


def _big_snapshot(copies: int = 40) -> dict[str, Any]:
    seed = json.loads(SAMPLE.read_text())
    licensed = [u for u in seed["users"] if u.get("licenseAssignmentStates") or u.get("assignedLicenses")]
    extra: list[dict[str, Any]] = []
    for k in range(copies):
        for i, user in enumerate(licensed):
            clone = json.loads(json.dumps(user))
            clone["id"] = f"{k:08x}-0000-4000-8000-{i:012x}"
            local, _, domain = user["userPrincipalName"].partition("@")
            prefix = {0: "", 1: "", 2: "straße.", 3: "STRASSE.", 4: "Émile."}.get(k, f"c{k}.")
            upn = f"{prefix}{local}@{domain}"
            clone["userPrincipalName"] = upn.upper() if k == 1 else upn  # k 0 and 1: equal but for case
            if k % 5 == 4:  # direct licenses only, no states
                clone.pop("licenseAssignmentStates", None)
            if k == 6 and clone.get("licenseAssignmentStates"):
                clone["licenseAssignmentStates"].append(
                    {"skuId": "00000000-0000-0000-0000-00000000beef", "assignedByGroup": "00000000-0000-0000-0000-00000000cafe",
                     "disabledPlans": [], "state": "Active", "error": "None"}
                )
            extra.append(clone)
    seed["users"] += extra
    return seed


def _reference(state: TenantState) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    gnames = {gid: g.display_name for gid, g in state.groups.items()}
    skus = []
    for line in sorted(state.skus.values(), key=lambda s: (s.part_number.casefold(), s.sku_id)):
        groups = sorted(
            (g.display_name for g in state.groups.values()
             if g.security_enabled and any(lic.sku_id == line.sku_id for lic in g.licenses)),
            key=str.casefold,
        )
        skus.append({"sku": line.part_number, "skuId": line.sku_id, "purchased": line.enabled_units,
                     "consumed": line.consumed_units, "free": line.free_units,
                     "capabilityStatus": line.capability_status, "groups": groups})
    rows: list[dict[str, Any]] = []
    for user in sorted(state.users.values(), key=lambda u: (u.user_principal_name.casefold(), u.id)):
        by_sku: dict[str, list[tuple[str, str | None, str, str]]] = {}
        for st in user.license_states:
            name = "direct" if st.assigned_by_group is None else gnames.get(st.assigned_by_group, st.assigned_by_group)
            by_sku.setdefault(st.sku_id, []).append((name, st.assigned_by_group, st.state, st.error))
        if not user.license_states:
            for lic in user.direct_licenses:
                by_sku.setdefault(lic.sku_id, []).append(("direct", None, "Active", "None"))
        for sku_id, sources in by_sku.items():
            sku = state.skus.get(sku_id)
            enabled: set[str] = set()
            for st in user.license_states:
                if st.sku_id == sku_id and st.state in ("Active", "ActiveWithError") and sku is not None:
                    enabled.update(p for p in sku.plan_ids if p not in st.disabled_plans)
            if not user.license_states and sku is not None:
                for lic in user.direct_licenses:
                    if lic.sku_id == sku_id:
                        enabled.update(p for p in sku.plan_ids if p not in lic.disabled_plans)
            sources.sort(key=lambda s: (s[1] is not None, s[0].casefold()))
            rows.append({
                "user": user.user_principal_name, "userId": user.id,
                "sku": sku.part_number if sku is not None else sku_id, "skuId": sku_id,
                "held": any(s[2] in ("Active", "ActiveWithError") for s in sources),
                "sources": [{"source": n, **({"groupId": g} if g else {}), "state": s, "error": e} for n, g, s, e in sources],
                "enabledPlans": [p.name or p.plan_id for p in sku.service_plans if p.plan_id in enabled] if sku else [],
            })
    rows.sort(key=lambda r: (r["user"].casefold(), r["sku"].casefold()))
    tenant = state.organization.initial_domain or state.organization.id
    every = {s.sku_id: tuple(p.name or p.plan_id for p in s.service_plans) for s in state.skus.values()}
    return {"tenant": tenant, "skus": skus, "users": rows}, every


def _source_text(s: dict[str, Any]) -> str:
    if s["error"] != "None":
        return f"{s['source']} ({s['state']}: {s['error']})"
    return s["source"] if s["state"] == "Active" else f"{s['source']} ({s['state']})"


def _reference_text(doc: dict[str, Any], every: dict[str, tuple[str, ...]]) -> str:
    width = max([3, *(len(s["sku"]) for s in doc["skus"])])
    out = [f"Seats in {doc['tenant']}", "", f"  {'SKU':<{width}}  purchased  consumed      free  licensed groups"]
    for s in doc["skus"]:
        out.append(f"  {s['sku']:<{width}}  {s['purchased']:>9}  {s['consumed']:>8}  {s['free']:>8}  {', '.join(s['groups']) or '-'}")
    holders = len({r["userId"] for r in doc["users"]})
    out += ["", f"Licenses per user ({holders} user{'' if holders == 1 else 's'})"]
    current = None
    for r in doc["users"]:
        if r["userId"] != current:
            current = r["userId"]
            out += ["", f"  {r['user']}"]
        out.append(f"    {r['sku']}: from {', '.join(_source_text(s) for s in r['sources'])}")
        plans, all_plans = r["enabledPlans"], every.get(r["skuId"], ())
        if plans:
            off = [p for p in all_plans if p not in plans]
            if not all_plans:
                said = ", ".join(plans)
            elif not off:
                said = f"all {len(all_plans)} plans"
            elif len(off) < len(plans):
                said = f"all but {', '.join(off)} ({len(all_plans) - len(off)} of {len(all_plans)})"
            else:
                said = ", ".join(plans)
            out.append(f"      plans: {said}")
        elif not r["held"]:
            out.append("      not held (every source is in error)")
    consumed, purchased = sum(s["consumed"] for s in doc["skus"]), sum(s["purchased"] for s in doc["skus"])
    out += ["", f"{len(doc['skus'])} SKUs, {consumed} of {purchased} seats consumed, {holders} licensed users."]
    return "\n".join(out) + "\n"


def _reference_markdown(doc: dict[str, Any]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")

    def table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
            "| " + " | ".join(cell(v) for v in row) + " |" for row in rows
        ]

    out = [f"## Licenses in {doc['tenant']}", "", "### Seats", ""]
    out += table(("SKU", "Purchased", "Consumed", "Free", "Licensed groups"),
                 [(s["sku"], s["purchased"], s["consumed"], s["free"], ", ".join(s["groups"])) for s in doc["skus"]])
    out += ["", "### Users", ""]
    out += table(("User", "SKU", "Sources", "Enabled plans"),
                 [(r["user"], r["sku"], ", ".join(_source_text(s) for s in r["sources"]), ", ".join(r["enabledPlans"]))
                  for r in doc["users"]])
    return "\n".join(out) + "\n"


def _reference_csv(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("user", "userId", "sku", "skuId", "held", "direct", "groups", "errors", "enabledPlans"))
    for r in doc["users"]:
        src = r["sources"]
        writer.writerow([
            r["user"], r["userId"], r["sku"], r["skuId"], "yes" if r["held"] else "no",
            "yes" if any("groupId" not in s and s["state"] in ("Active", "ActiveWithError") for s in src) else "no",
            "; ".join(s["source"] for s in src if "groupId" in s),
            "; ".join(f"{s['source']}: {s['error']}" for s in src if s["error"] != "None"),
            " ".join(r["enabledPlans"]),
        ])
    return buf.getvalue()


def test_report_equals_the_straightforward_build_and_encoders() -> None:
    state = TenantState.from_snapshot(_big_snapshot())
    doc, every = _reference(state)
    upns = [r["user"] for r in doc["users"]]
    assert len(doc["users"]) > 2000 and len({u.casefold() for u in upns}) < len(set(upns))  # case twins present
    report = build_report(state)
    assert report.to_dict() == doc
    assert render_report(report, "json") == json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    assert render_report(report, "text") == _reference_text(doc, every)
    assert render_report(report, "markdown") == _reference_markdown(doc)
    assert render_report(report, "csv") == _reference_csv(doc)


@pytest.mark.parametrize("fmt", ["json", "text", "markdown", "csv"])
def test_report_is_written_in_pieces(fmt: str) -> None:
    """The command writes the rendering as it comes: never the whole document in one string."""
    report = build_report(TenantState.from_snapshot(_big_snapshot()))
    pieces: list[str] = []

    class Out(io.StringIO):
        def write(self, text: str) -> int:
            pieces.append(text)
            return len(text)

    write_report(report, fmt, Out())
    whole = "".join(pieces)
    assert whole == render_report(report, fmt)
    assert len(pieces) >= 3 and max(len(p) for p in pieces) < len(whole) / 2
