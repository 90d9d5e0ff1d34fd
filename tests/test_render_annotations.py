"""`--annotations github`: workflow commands for located violations, escaped per GitHub's rules."""

from __future__ import annotations

import plan_samples

from reconciler.plan import Location, Plan, Violation
from reconciler.render import render_github_annotations
from reconciler.render.annotations import escape_data, escape_property


def test_one_command_per_located_violation() -> None:
    out = render_github_annotations(plan_samples.blocking()).splitlines()
    assert out == [
        "::error file=policies/groups.yaml,line=4,col=9,title=MutuallyExclusiveViolation::"
        "SHAREPOINTSTANDARD (from LIC-E1-Kiosk) and SHAREPOINTENTERPRISE (from LIC-E3-Base) cannot both be "
        "enabled.%0AResolution: Disable SHAREPOINTSTANDARD in LIC-E1-Kiosk, or remove the user from "
        "one of the groups.",
        "::warning file=policies/groups.yaml,line=2,col=5,title=NestedGroup::"
        "LIC-E3-Base contains the group Sales-EU; its 5 members will not be licensed (nested groups are "
        "ignored).%0AResolution: Add the users as direct members of LIC-E3-Base.",
    ]


def test_nothing_without_locations() -> None:
    assert render_github_annotations(plan_samples.no_changes()) == ""
    assert render_github_annotations(plan_samples.no_changes_with_existing()) == ""


def test_escaping() -> None:
    assert escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert escape_property("a:b,c%d\ne") == "a%3Ab%2Cc%25d%0Ae"
    base = plan_samples.no_changes()
    v = Violation(
        code="UnknownSku",
        severity="error",
        message="SKU 'E5:X' is unknown, 100% sure\nreally",
        resolution="",
        source=Location("policies/odd,name:1.yaml", 7, 3),
    )
    out = render_github_annotations(Plan(**{**base.__dict__, "violations": (v,)}))
    assert out == (
        "::error file=policies/odd%2Cname%3A1.yaml,line=7,col=3,title=UnknownSku::"
        "SKU 'E5:X' is unknown, 100%25 sure%0Areally\n"
    )
    # one line per command, whatever the message holds
    assert out.count("\n") == 1
