"""Verification after apply: an error Entra records that the plan did not predict is reported
with the plans involved and the `catalog:` rule that would have predicted it; differences are
reported without failing apply."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_apply_support import POLICIES, SAMPLE, Tenant

pytestmark = pytest.mark.timeout(120)


def test_unpredicted_error_names_the_plans_and_suggests_the_catalog_rule(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    # this tenant enforces a rule reconciler does not know: Exchange Online Plan 1 (in E1) and
    # Exchange Foundation (in EMS) cannot be combined
    seed = json.loads(SAMPLE.read_text())
    seed["emulator"]["rules"]["mutuallyExclusive"].append(["EXCHANGE_S_STANDARD", "EXCHANGE_S_FOUNDATION"])
    seed_file = tmp_path / "tenant.json"
    seed_file.write_text(json.dumps(seed))
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    groups = policies / "licensed-groups.yaml"
    groups.write_text(
        groups.read_text().replace(
            "members: [kiosk1@contoso.com, kiosk2@contoso.com]",
            "members: [kiosk1@contoso.com, kiosk2@contoso.com, pilot1@contoso.com]",
        )
    )
    t = Tenant(start_emulator(seed_file, processing_delay=0.2))
    plan = t.plan([policies])
    assert not plan.blocked  # the planner does not know the rule
    result = t.apply(plan)
    assert result.exit_code == 0, result.render()  # differences are reported, not failures
    assert result.verified
    assert [d.user for d in result.differences] == ["pilot1@contoso.com"]
    d = result.differences[0]
    assert any("MutuallyExclusiveViolation" in g for g in d.got)
    explained = "\n".join(d.explanations)
    assert "EXCHANGE_S_STANDARD vs EXCHANGE_S_FOUNDATION" in explained, explained
    assert "catalog:\n    mutuallyExclusive:\n" in explained
    text = result.render()
    assert "Differences from the prediction (1 users)" in text and "pilot1@contoso.com" in text
    assert "1 differences" in text


def test_render_of_a_difference_shows_the_snippet() -> None:
    from reconciler.apply.verify import Difference

    d = Difference("id", "u@contoso.com", ["E1 from G: Active"], ["E1 from G: Error (MutuallyExclusiveViolation)"],
                   ["unpredicted X.\nTo have plan predict it, add to the policy:\n  catalog:\n    mutuallyExclusive:\n      - [A, B]"])
    text = d.render()
    assert text.splitlines()[0] == "u@contoso.com:"
    assert "    predicted: E1 from G: Active" in text and "        - [A, B]" in text
