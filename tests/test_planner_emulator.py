"""Issue 5 "done when": the prediction equals what the emulator records.

For the sample tenant and for a generated tenant: plan a policy against the emulator through
Graph (the read-only observe path), send every action's Graph request to the emulator by hand
(httpx, bearer token from the seed's apply application), drain group processing, read every
user's licenseAssignmentStates back through Graph, and compare each user's states with
plan.prediction (users the plan does not list must keep the states they had). Then the policy is
corrected as the resolutions say and the plan shows no violation of its own.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.emulator.generate import generate_tenant
from reconciler.graph.client import GraphClient
from reconciler.graph.credentials import Credential, CredentialSettings, MsalTokenProvider
from reconciler.plan import Plan
from reconciler.planner import make_plan
from reconciler.planner.run import observe_for
from reconciler.policy import Policy, load_policy

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-tenant.json"

StateKey = tuple[str, str | None, str, str]


class Tenant:
    """A running emulator with a reader (GraphClient, read-only app) and a writer (httpx, apply app)."""

    def __init__(self, emulator: Any) -> None:
        self.emu = emulator
        self.server = emulator.server
        org = emulator.seed["organization"]
        apps = {a["displayName"]: a for a in emulator.seed["applications"]}
        self.tenant_id = str(org["id"])

        def provider(app: dict[str, Any]) -> MsalTokenProvider:
            settings = CredentialSettings(
                tenant_id=self.tenant_id,
                client_id=str(app["appId"]),
                authority=self.server.base_url,
                ca_bundle=str(self.server.ca_path),
            )
            return MsalTokenProvider(settings, Credential("secret", "test", str(app["secret"])))

        self.read_token = provider(apps["reconciler-plan"])
        self.write_token = provider(apps["reconciler-apply"])
        self.ssl = ssl.create_default_context(cafile=str(self.server.ca_path))

    def plan(self, policy: Policy, *, force: bool = False) -> Plan:
        with GraphClient(self.server.graph_url, token_provider=self.read_token, verify=self.ssl, read_only=True) as c:
            state = observe_for(c, policy)
        return make_plan(policy, state, force=force)

    def http(self) -> httpx.Client:
        return httpx.Client(
            verify=self.ssl,
            trust_env=False,
            timeout=60.0,
            headers={"Authorization": f"Bearer {self.write_token()}"},
        )

    def states(self) -> dict[str, set[StateKey]]:
        out: dict[str, set[StateKey]] = {}
        url: str | None = f"{self.server.graph_url}/users?$select=id,licenseAssignmentStates&$top=999"
        with self.http() as http:
            while url:
                res = http.get(url)
                assert res.status_code == 200, res.text
                body = res.json()
                for u in body["value"]:
                    out[u["id"].lower()] = {
                        (s["skuId"].lower(), (s.get("assignedByGroup") or None), s["state"], s["error"] or "None")
                        for s in u.get("licenseAssignmentStates") or ()
                    }
                url = body.get("@odata.nextLink")
        return out

    def apply_by_hand(self, plan: Plan) -> dict[str, str]:
        """Send every request of the plan (one per request_key), drain, reprocess, drain.
        Returns placeholder -> id of the groups created."""
        created: dict[str, str] = {}
        sent: set[str] = set()

        def resolve(text: str) -> str:
            for placeholder, gid in created.items():
                text = text.replace(placeholder, gid)
            return text

        later = [a for a in plan.actions if a.kind == "reprocess"]
        with self.http() as http:
            for a in plan.actions:
                if a.kind == "reprocess":
                    continue
                if a.request_key is not None:
                    if a.request_key in sent:
                        continue
                    sent.add(a.request_key)
                res = http.request(
                    a.request.method,
                    self.server.graph_url + resolve(a.request.url),
                    json=a.request.body if a.request.body is not None else None,
                )
                assert res.status_code < 300, (a.kind, a.request.url, res.status_code, res.text)
                if a.kind == "createGroup":
                    created["{new:" + a.request.body["displayName"] + "}"] = res.json()["id"].lower()  # type: ignore[index]
            self.drain(http)
            for a in later:
                res = http.request(a.request.method, self.server.graph_url + resolve(a.request.url))
                assert res.status_code < 300, (a.kind, res.text)
            self.drain(http)
        return created

    def drain(self, http: httpx.Client) -> None:
        res = http.post(f"{self.server.base_url}/_emulator/drain")
        assert res.status_code < 300, res.text


def check_prediction(tenant: Tenant, plan: Plan) -> int:
    """Apply by hand and compare every user's recorded states with the prediction; returns how
    many users the prediction listed."""
    before = tenant.states()
    created = tenant.apply_by_hand(plan)
    after = tenant.states()
    back = {gid: placeholder for placeholder, gid in created.items()}
    assert set(after) == set(before)
    mismatches = []
    for uid, recorded in sorted(after.items()):
        got = {(s, back.get(g, g) if g else None, st, e) for s, g, st, e in recorded}
        if uid in plan.prediction:
            expected = {(p.sku_id, p.assigned_by_group, p.state, p.error) for p in plan.prediction[uid]}
        else:
            expected = before[uid]
        if got != expected:
            mismatches.append((uid, sorted(expected, key=str), sorted(got, key=str)))
    assert not mismatches, "\n".join(map(str, mismatches[:5]))
    return len(plan.prediction)


def write(tmp_path: Path, name: str, text: str) -> Policy:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "policy.yaml").write_text(text, encoding="utf-8")
    return load_policy([directory])


@pytest.fixture
def sample(start_emulator: Callable[..., Any]) -> Tenant:
    return Tenant(start_emulator(SAMPLE, start_worker=False))


def test_sample_policy_prediction_equals_the_emulator(sample: Tenant) -> None:
    plan = sample.plan(load_policy([ROOT / "policies"]))
    assert not plan.blocked and plan.actions
    assert check_prediction(sample, plan) >= 9


BAD = """\
apiVersion: reconciler/v1
tenant: contoso.onmicrosoft.com
groups:
  - group: LIC-E1-Kiosk
    create: true
    members: [kiosk1@contoso.com, kiosk2@contoso.com, alice@contoso.com]
    licenses:
      - sku: STANDARDPACK
  - group: LIC-Teams-Phone
    members: [brunei1@contoso.com, alice@contoso.com, bob@contoso.com, newhire1@contoso.com]
  - group: LIC-E5-Admins
    members: [admin1@contoso.com, admin2@contoso.com, admin3@contoso.com, carol@contoso.com, dave@contoso.com, erin@contoso.com, frank@contoso.com]
usageLocations:
  users:
    admin1@contoso.com: BN
unmanagedGroups: ignore
"""

# as the resolutions say: disable SharePoint Plan 1 in the kiosk group's E1, Teams Phone only for
# users who have Teams, no more E5 members than seats, a usage location where Teams Phone is allowed
FIXED = (
    BAD.replace("      - sku: STANDARDPACK\n", "      - sku: STANDARDPACK\n        disabledPlans: [SHAREPOINTSTANDARD]\n")
    .replace(", newhire1@contoso.com]", "]")
    .replace(", erin@contoso.com, frank@contoso.com]", "]")
    .replace("admin1@contoso.com: BN", "admin1@contoso.com: US")
)


def test_errors_the_plan_causes_are_predicted_exactly(sample: Tenant, tmp_path: Path) -> None:
    plan = sample.plan(write(tmp_path, "bad", BAD), force=True)
    new = {(v.code, v.sku, v.group, v.users) for v in plan.violations if v.status == "new"}
    assert ("MutuallyExclusiveViolation", "STANDARDPACK", "LIC-E1-Kiosk", ("alice@contoso.com",)) in new
    assert ("DependencyViolation", "MCOEV", "LIC-Teams-Phone", ("newhire1@contoso.com",)) in new
    # admin1 loses E5 in BN, so 3 seats for 4 newcomers: one of them (in user-id order) is short
    (count,) = [v for v in new if v[0] == "CountViolation"]
    assert count[1:3] == ("ENTERPRISEPREMIUM", "LIC-E5-Admins") and len(count[3]) == 1
    assert ("ProhibitedInUsageLocationViolation", "ENTERPRISEPREMIUM", "LIC-E5-Admins", ("admin1@contoso.com",)) in new
    assert plan.forced and not plan.blocked
    check_prediction(sample, plan)


def test_corrected_policy_shows_no_violation_of_its_own(sample: Tenant, tmp_path: Path) -> None:
    bad = sample.plan(write(tmp_path, "bad", BAD))
    assert bad.blocked
    plan = sample.plan(write(tmp_path, "fixed", FIXED))
    assert [v for v in plan.violations if v.status == "new"] == []
    assert not plan.blocked
    check_prediction(sample, plan)


def _generated_policy(doc: dict[str, Any]) -> str:
    """A policy for a generated tenant that changes a bit of everything."""
    parts = {s["skuId"]: s["skuPartNumber"] for s in doc["subscribedSkus"]}
    plans = {s["skuId"]: [p["servicePlanId"] for p in s["servicePlans"]] for s in doc["subscribedSkus"]}
    licensed = sorted((g for g in doc["groups"] if g.get("assignedLicenses")), key=lambda g: g["displayName"])
    user_ids = [u["id"] for u in doc["users"]]
    lines = ["apiVersion: reconciler/v1", "groups:"]
    spare_sku = next(s for s in parts if parts[s] == "POWER_BI_PRO")
    for i, g in enumerate(licensed):
        lines.append(f"  - group: {g['displayName']}")
        lics = list(g["assignedLicenses"])
        if i == 1:  # change plans in place: switch one more plan off
            first = lics[0]
            extra = next(p for p in plans[first["skuId"]] if p not in first["disabledPlans"])
            lics[0] = {**first, "disabledPlans": [*first["disabledPlans"], extra]}
        if i == 2 and all(x["skuId"] != spare_sku for x in lics):  # one more product: seats run short
            lics.append({"skuId": spare_sku, "disabledPlans": []})
        if i == 3:  # take the group's products away
            lics = []
        if i == 4:  # manage membership: drop some members, add unlicensed users
            members = [m for m in g["members"] if m in user_ids][5:]
            members += [u for u in user_ids[-40:] if u not in members][:15]
            lines.append("    members: [" + ", ".join(members) + "]")
        if not lics:
            lines.append("    licenses: []")
            continue
        lines.append("    licenses:")
        for x in lics:
            lines.append(f"      - sku: {parts[x['skuId']]}")
            if x["disabledPlans"]:
                lines.append("        disabledPlans: [" + ", ".join(x["disabledPlans"]) + "]")
    lines.append("  - group: LIC-New-Kiosk")
    lines.append("    create: true")
    lines.append("    members: [" + ", ".join(user_ids[:25]) + "]")
    lines.append("    licenses:")
    lines.append("      - sku: " + next(p for p in parts.values() if p in ("STANDARDPACK", "EMS", "VISIOCLIENT")))
    lines += [
        "usageLocations:",
        "  default: US",
        "directLicenses:",
        "  mode: removeRedundant",
        "  waveSize: 10",
        "unmanagedGroups: ignore",
        "safety:",
        "  maxRemovals: 100%",
    ]
    return "\n".join(lines) + "\n"


def test_generated_tenant_prediction_equals_the_emulator(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    doc = generate_tenant(users=600, groups=80, skus=8, seed=5)
    seed = tmp_path / "generated.json"
    seed.write_text(json.dumps(doc), encoding="utf-8")
    tenant = Tenant(start_emulator(seed, start_worker=False))
    plan = tenant.plan(write(tmp_path, "generated", _generated_policy(doc)), force=True)
    kinds = {a.kind for a in plan.actions}
    assert {"createGroup", "addMember", "removeMember", "assignLicense", "updateLicense", "removeLicense"} <= kinds
    assert check_prediction(tenant, plan) > 100
