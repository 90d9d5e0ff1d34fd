"""Semantic checks after the schema, and the schema's own messages, one rule at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.policy import validate_paths

HEAD = "apiVersion: reconciler/v1\n"


def problems(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + body, encoding="utf-8")
    policy, found = validate_paths([path])
    assert (policy is None) == bool(found)
    return [f"{p.line}:{p.column}: {p.message}" for p in found]


def one_group(licenses: str, extra: str = "") -> str:
    return "groups:\n  - group: G\n" + extra + "    licenses:\n" + licenses


def test_unknown_sku_gets_a_suggestion(tmp_path: Path) -> None:
    assert problems(tmp_path, one_group("      - sku: ENTERPRISPACK\n")) == [
        "5:14: unknown SKU 'ENTERPRISPACK' in group 'G'; did you mean ENTERPRISEPACK?"
    ]


@pytest.mark.parametrize(
    "sku",
    [
        "enterprisepack",
        "EnterprisePack",
        "6fd2c87f-b296-42f0-b197-1e91e994b900",
        "6FD2C87F-B296-42F0-B197-1E91E994B900",
    ],
)
def test_skus_by_name_or_guid_case_insensitively(tmp_path: Path, sku: str) -> None:
    assert (
        problems(
            tmp_path, one_group(f"      - sku: {sku}\n        disabledPlans: [sway, Yammer_Enterprise]\n")
        )
        == []
    )


def test_a_guid_the_catalog_does_not_know_is_left_to_the_planner(tmp_path: Path) -> None:
    body = one_group(
        "      - sku: 00000000-1111-2222-3333-444444444444\n        disabledPlans: [aaaaaaaa-1111-2222-3333-444444444444]\n"
    )
    assert problems(tmp_path, body) == []


def test_unknown_plan_gets_a_suggestion_from_the_sku(tmp_path: Path) -> None:
    found = problems(tmp_path, one_group("      - sku: ENTERPRISEPACK\n        disabledPlans: [SWAYY]\n"))
    assert found == [
        "6:25: unknown service plan 'SWAYY' in disabledPlans of ENTERPRISEPACK in group 'G'; did you mean SWAY?"
    ]


def test_plan_not_part_of_its_sku(tmp_path: Path) -> None:
    found = problems(
        tmp_path, one_group("      - sku: STANDARDPACK\n        enabledPlans: [SHAREPOINTENTERPRISE]\n")
    )
    assert len(found) == 1
    assert found[0].startswith("6:24: SHAREPOINTENTERPRISE is not part of STANDARDPACK")


def test_disabled_and_enabled_plans_together(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        one_group(
            "      - sku: EMS\n        disabledPlans: [INTUNE_A]\n        enabledPlans: [AAD_PREMIUM]\n"
        ),
    )
    assert found == [
        "7:9: groups[0].licenses[0] has both disabledPlans and enabledPlans: use one (enabledPlans lists "
        "the plans switched on, disabledPlans the ones switched off)"
    ]


def test_group_listed_twice_case_insensitively(tmp_path: Path) -> None:
    found = problems(tmp_path, "groups:\n  - group: LIC-A\n  - group: lic-a\n")
    assert found == [
        f"4:12: group 'lic-a' is listed twice (first at {tmp_path / 'p.yaml'}:3:12); give each group one entry"
    ]


def test_sku_twice_in_one_group_by_name_and_by_id(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        one_group("      - sku: ENTERPRISEPACK\n      - sku: 6fd2c87f-b296-42f0-b197-1e91e994b900\n"),
    )
    assert len(found) == 1 and found[0].startswith(
        "6:14: SKU 6fd2c87f-b296-42f0-b197-1e91e994b900 is listed twice in group 'G'"
    )


def test_plan_and_member_listed_twice(tmp_path: Path) -> None:
    body = one_group(
        "      - sku: EMS\n        enabledPlans: [INTUNE_A, intune_a]\n", "    members: [a@x.com, A@x.com]\n"
    )
    found = problems(tmp_path, body)
    assert [f.split(":")[0] for f in found] == ["4", "7"]
    assert "member 'A@x.com' is listed twice" in found[0]
    assert "plan intune_a is listed twice" in found[1]


def test_same_sku_in_two_groups_is_fine(tmp_path: Path) -> None:
    body = "groups:\n  - group: A\n    licenses: [{sku: EMS}]\n  - group: B\n    licenses: [{sku: EMS}]\n"
    assert problems(tmp_path, body) == []


def test_user_with_two_usage_locations_explicit_and_through_a_group(tmp_path: Path) -> None:
    body = (
        "groups:\n  - group: G\n    members: [alice@contoso.com]\n    usageLocation: DE\n"
        "usageLocations:\n  users:\n    Alice@contoso.com: FR\n"
    )
    found = problems(tmp_path, body)
    assert len(found) == 1
    assert found[0].startswith(
        "4:15: user Alice@contoso.com is given usage location DE here (member of group 'G'"
    )
    assert f"but FR at {tmp_path / 'p.yaml'}:8:24 (usageLocations.users)" in found[0]


def test_user_in_two_groups_with_different_usage_locations(tmp_path: Path) -> None:
    body = (
        "groups:\n  - group: A\n    members: [bob@x.com]\n    usageLocation: DE\n"
        "  - group: B\n    members: [bob@x.com]\n    usageLocation: FR\n"
    )
    found = problems(tmp_path, body)
    assert len(found) == 1 and found[0].startswith("7:15: user bob@x.com is given usage location FR here")


def test_same_usage_location_twice_is_fine(tmp_path: Path) -> None:
    body = (
        "groups:\n  - group: A\n    members: [bob@x.com]\n    usageLocation: FR\n"
        "usageLocations:\n  default: US\n  users:\n    bob@x.com: FR\n"
    )
    assert problems(tmp_path, body) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("XX", "XX in usageLocations.default is not an ISO 3166-1 alpha-2 country code"),
        (
            "fr",
            "usageLocations.default: 'fr' is not an ISO 3166-1 alpha-2 country code (two upper-case letters such as US, FR, DE); write FR",
        ),
        (
            "FRA",
            "usageLocations.default: 'FRA' is not an ISO 3166-1 alpha-2 country code (two upper-case letters such as US, FR, DE)",
        ),
        (
            "NO",
            'usageLocations.default must be a string, not a boolean (false) (YAML reads an unquoted NO as a boolean: write "NO")',
        ),
        ("'NO'", None),
        ("12", "usageLocations.default must be a string, not a number (12)"),
    ],
)
def test_country_codes(tmp_path: Path, value: str, expected: str | None) -> None:
    found = problems(tmp_path, f"usageLocations:\n  default: {value}\n")
    assert found == ([] if expected is None else [f"3:12: {expected}"])


def test_country_codes_in_users_groups_and_catalog(tmp_path: Path) -> None:
    body = (
        "catalog:\n  prohibitedLocations:\n    MCOEV: [BN, QQ]\n"
        "groups:\n  - group: G\n    usageLocation: ZZ\n"
        "usageLocations:\n  users:\n    a@x.com: YY\n"
    )
    found = problems(tmp_path, body)
    assert [f.split(": ", 1)[1].split(" ")[0] for f in found] == ["QQ", "ZZ", "YY"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("10%", True),
        ("0", True),
        ("25", True),
        ("'100%'", True),
        ("12.5%", True),
        ("150%", False),
        ("-1", False),
        ("10 %", False),
        ("1.5", False),
        ("true", False),
        ("ten", False),
        ("'%'", False),
    ],
)
def test_max_removals(tmp_path: Path, value: str, ok: bool) -> None:
    found = problems(tmp_path, f"safety:\n  maxRemovals: {value}\n")
    assert (found == []) is ok, found
    if not ok:
        assert found[0].startswith("3:16: safety.maxRemovals")


def test_mutually_exclusive_plans_in_one_group(tmp_path: Path) -> None:
    body = one_group("      - sku: STANDARDPACK\n      - sku: ENTERPRISEPACK\n")
    found = problems(tmp_path, body)
    assert len(found) == 1
    assert found[0].startswith(
        "3:12: group 'G' enables both SHAREPOINTSTANDARD (in STANDARDPACK) and SHAREPOINTENTERPRISE "
        "(in ENTERPRISEPACK), which are mutually exclusive: every member would get MutuallyExclusiveViolation"
    )


def test_disabling_one_of_the_exclusive_plans_resolves_it(tmp_path: Path) -> None:
    body = one_group(
        "      - sku: STANDARDPACK\n        disabledPlans: [SHAREPOINTSTANDARD]\n      - sku: ENTERPRISEPACK\n"
    )
    assert problems(tmp_path, body) == []
    body = one_group(
        "      - sku: STANDARDPACK\n        enabledPlans: [EXCHANGE_S_STANDARD]\n      - sku: ENTERPRISEPACK\n"
    )
    assert problems(tmp_path, body) == []


def test_policy_catalog_adds_exclusive_pairs(tmp_path: Path) -> None:
    licenses = "      - sku: EXCHANGESTANDARD\n      - sku: ENTERPRISEPACK\n        disabledPlans: [SHAREPOINTENTERPRISE]\n"
    assert problems(tmp_path, one_group(licenses)) == []  # the Exchange pair is off in the bundled table
    body = "catalog:\n  mutuallyExclusive:\n    - [EXCHANGE_S_STANDARD, EXCHANGE_S_ENTERPRISE]\n" + one_group(
        licenses
    )
    found = problems(tmp_path, body)
    assert (
        len(found) == 1
        and "enables both EXCHANGE_S_STANDARD (in EXCHANGESTANDARD) and EXCHANGE_S_ENTERPRISE" in found[0]
    )
    assert f"(rule from catalog.mutuallyExclusive at {tmp_path / 'p.yaml'}:4:8)" in found[0]


def test_catalog_rules_naming_unknown_plans(tmp_path: Path) -> None:
    body = (
        "catalog:\n"
        "  mutuallyExclusive:\n    - [SHAREPOINTSTANDAR, 11111111-2222-3333-4444-555555555555]\n"
        "  requires:\n    MY_NEW_PLAN: [SHAREPOINTENTERPRISE]\n"
        "    22222222-2222-3333-4444-555555555555: [SHAREPOINTENTERPRISE]\n"
        "  prohibitedLocations:\n    MCOEVV: [BN]\n"
    )
    found = problems(tmp_path, body)
    assert found == [
        "4:8: unknown service plan 'SHAREPOINTSTANDAR' in catalog.mutuallyExclusive; did you mean SHAREPOINTSTANDARD?",
        "6:5: unknown service plan 'MY_NEW_PLAN' in catalog.requires (a plan the bundled catalog does not know "
        "must be given by its servicePlanId)",
        "9:5: unknown service plan 'MCOEVV' in catalog.prohibitedLocations; did you mean MCOEV?",
    ]


def test_unknown_sku_in_direct_licenses(tmp_path: Path) -> None:
    found = problems(tmp_path, "directLicenses:\n  mode: report\n  skus: [ENTERPRISPACK]\n")
    assert found == ["4:10: unknown SKU 'ENTERPRISPACK' in directLicenses.skus; did you mean ENTERPRISEPACK?"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "unmanagedGroups: delete\n",
            "2:18: unmanagedGroups must be one of report, ignore, remove, not a string ('delete')",
        ),
        (
            "directLicenses:\n  mode: removeredundant\n",
            "3:9: directLicenses.mode must be one of keep, report, "
            "removeRedundant, not a string ('removeredundant'); did you mean removeRedundant?",
        ),
        (
            "directLicenses:\n  waveSize: 0\n",
            "3:13: directLicenses.waveSize must be at least 1, not a number (0)",
        ),
        ("groups:\n  - licenses: []\n", "3:5: groups[0] needs the key 'group'"),
        ("groups:\n  - group: ''\n", "3:12: groups[0].group must not be empty"),
        ("groups:\n", "2:8: groups must be a list, not empty (null) (remove the key, or give it a value)"),
        ("tenant: [a]\n", "2:9: tenant must be a string, not a list"),
        (
            "grups: []\n",
            "2:1: unknown key 'grups' in the policy; did you mean groups? (allowed: apiVersion, catalog, "
            "directLicenses, groups, safety, tenant, unmanagedGroups, usageLocations)",
        ),
        (
            "catalog:\n  mutuallyExclusive: [[A, B, C]]\n",
            "3:23: catalog.mutuallyExclusive[0] must name exactly two plans",
        ),
    ],
)
def test_schema_messages_are_for_people(tmp_path: Path, body: str, expected: str) -> None:
    assert problems(tmp_path, body) == [expected]


def test_api_version_is_required_in_every_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("groups: []\n", encoding="utf-8")
    _, found = validate_paths([path])
    assert [str(p) for p in found] == [
        f"{path}:1:1: missing apiVersion: every policy file starts with apiVersion: reconciler/v1"
    ]
    path.write_text("apiVersion: reconciler/v2\n", encoding="utf-8")
    _, found = validate_paths([path])
    assert [str(p) for p in found] == [
        f"{path}:1:13: apiVersion must be reconciler/v1, not a string ('reconciler/v2')"
    ]
