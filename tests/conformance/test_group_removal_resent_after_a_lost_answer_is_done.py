"""A3, client side: a group license removal re-sent after its answer was lost is recognised as done.

Graph refuses an `assignLicense` that removes a SKU the object does not hold ("User does not have a
corresponding license.", a real response quoted in MicrosoftDocs/OfficeDocs-Enterprise#873), so a
removal whose first answer was lost fails when it is sent again. apply reads the group again and
counts the write as done when the group holds what the write asked for.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_apply_support import FAST_RETRY, POLICIES, Tenant, fast_poller

from reconciler.apply import ApplyOptions, apply_plan, check_plan, observe_scope
from reconciler.graph.client import GraphClient
from reconciler.planner import make_plan
from reconciler.planner.run import observe_for
from reconciler.policy import load_policy

pytestmark = pytest.mark.timeout(120)


class SendsGroupWritesTwice(httpx.BaseTransport):
    """Every $batch that writes a group's licenses reaches the server twice; the client sees only
    the second answer (the first one was 'lost')."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.doubled = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/$batch") and b"/assignLicense" in request.content and b"/groups/" in request.content:
            first = self.inner.handle_request(request)
            first.read()
            first.close()
            self.doubled += 1
        return self.inner.handle_request(request)


def _policy_without_power_bi(tmp_path: Path) -> Path:
    dest = tmp_path / "policies"
    shutil.copytree(POLICIES, dest)
    groups = dest / "licensed-groups.yaml"
    text = groups.read_text()
    assert "      - sku: POWER_BI_PRO\n" in text
    groups.write_text(text.replace("      - sku: POWER_BI_PRO\n", "", 1))
    return dest


def test_a_group_removal_sent_twice_counts_as_done(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    t = Tenant(start_emulator(processing_delay=0.2))
    policy = load_policy([str(_policy_without_power_bi(tmp_path))])
    with t.client(read_only=True) as c:
        plan = make_plan(policy, observe_for(c, policy), force=True)
    removals = [a for a in plan.actions if a.kind == "removeLicense" and a.sku == "POWER_BI_PRO"]
    assert removals, [a.kind for a in plan.actions]
    doubling = SendsGroupWritesTwice(httpx.HTTPTransport(verify=t.ssl))
    client = GraphClient(
        t.server.graph_url, token_provider=t.token("reconciler-apply"), transport=doubling, retry=FAST_RETRY
    )
    with client:
        state = observe_scope(client, plan)
        check_plan(plan, state)
        result = apply_plan(client, plan, state, ApplyOptions(progress=False, say=lambda _t: None, poller=fast_poller()))
    assert doubling.doubled >= 1
    assert not result.failed, result.render()
    assert any("POWER_BI_PRO" in d for d in result.done), result.render()
    group = t.graph("GET", f"/groups/{t.group_id('LIC-Analysts-Bundle')}?$select=assignedLicenses").json()
    skus = {lic["skuId"] for lic in group["assignedLicenses"]}
    assert len(skus) == 1
