"""The SKU/plan catalog generated from Microsoft's table, and the bundled rule table."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.catalog import (
    MUTUALLY_EXCLUSIVE,
    PROHIBITED_LOCATIONS,
    REQUIRES,
    Catalog,
    Rule,
    RuleTable,
    bundled_rules,
    load_catalog,
    name_key,
)

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "tools" / "generate_catalog.py"
CSV = ROOT.parent / "shared" / "reference" / "licensing-service-plan-reference.csv"
DATA = ROOT / "reconciler" / "data"

ENTERPRISEPACK = "6fd2c87f-b296-42f0-b197-1e91e994b900"
STANDARDPACK = "18181a46-0d4e-45cd-891e-60aabd171b4e"
EXCHANGE_S_STANDARD = "9aaf7827-d63c-4b61-89c3-182f06f82e5c"
EXCHANGE_S_ENTERPRISE = "efb87545-963c-4e0d-99df-69c6916d9eb0"
EXCHANGE_S_FOUNDATION = "113feb6c-3fe4-4440-bddc-54d774bf0318"
SHAREPOINTSTANDARD = "c7699d2e-19aa-44de-8edf-1736da088ca1"
SHAREPOINTENTERPRISE = "5dbe027f-2339-4123-9542-606e4d348a72"
SHAREPOINT_PROJECT = "fe71d6c3-a2ea-4499-9778-da042bf08063"
TEAMS1 = "57ff2da0-773e-42df-b2af-ffb7a2317929"
TEAMS_FREE = "4fa4026d-ce74-4962-a151-8e96d57ea8e4"
MCOSTANDARD = "0feaeb32-d00e-4d66-bd5a-43b5b83db82c"
MCOEV = "4828c8ec-dc2e-4779-b502-87ac9ce28ab7"
MCOMEETADV = "3e26ee1f-8a5f-4d52-aee2-b81ce45c8f40"
WORKPLACE_ANALYTICS_PLAN = "f477b0f0-3bb1-4890-940c-40fcee6ce05f"
CUSTOM = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_catalog", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- generated data ------------------------------------------------------------------------------


@pytest.mark.skipif(not CSV.exists(), reason="Microsoft's product table is not beside the repository")
def test_committed_catalog_equals_a_fresh_generation(tmp_path: Path) -> None:
    out = tmp_path / "catalog.json"
    result = subprocess.run(
        [sys.executable, str(GENERATOR), str(CSV), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (DATA / "catalog.json").read_bytes(), (
        "run tools/generate_catalog.py and commit"
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Product_Display_Name,String_Id,GUID,Service_Plan_Name,Service_Plan_Id\n", "unexpected header"),
        ("", "unexpected header"),
    ],
)
def test_generator_rejects_a_file_that_is_not_the_table(tmp_path: Path, header: str, expected: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(header, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(GENERATOR), str(bad), "--out", str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 3
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_generator_cleans_and_deduplicates_rows(tmp_path: Path) -> None:
    rows = [
        "\ufeffProduct_Display_Name,String_Id,GUID,Service_Plan_Name,Service_Plan_Id,Service_Plans_Included_Friendly_Names",
        "Prod A,SKU_A\u00a0,AAAAAAAA-0000-0000-0000-000000000001\u00a0,PLAN_X ,00000000-0000-0000-0000-00000000000b,X",
        "Prod A,SKU_A,aaaaaaaa-0000-0000-0000-000000000001,PLAN_Y,00000000-0000-0000-0000-00000000000c,Y",
        "Prod A,SKU_A,aaaaaaaa-0000-0000-0000-000000000001,PLAN_X,00000000-0000-0000-0000-00000000000b,X",
        "Prod B,SKU_B,bbbbbbbb-0000-0000-0000-000000000002,PLAN_X,00000000-0000-0000-0000-00000000000b,x friendly",
        "Prod B,SKU_B,bbbbbbbb-0000-0000-0000-000000000002,PLAN_X,00000000-0000-0000-0000-00000000000a,X2",
        "Prod C,SKU_B,cccccccc-0000-0000-0000-000000000003,PLAN_Y),00000000-0000-0000-0000-00000000000c,Y",
    ]
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("\r\n".join(rows) + "\r\n", encoding="utf-8")
    text, notes = _generator().generate(csv_file)
    small = Catalog.from_document(json.loads(text))
    assert len(small.skus) == 3 and len(small.plans) == 3
    sku_a = small.sku("sku_a")
    assert sku_a is not None
    assert sku_a.sku_id == "aaaaaaaa-0000-0000-0000-000000000001"
    assert sku_a.plan_ids == ("00000000-0000-0000-0000-00000000000b", "00000000-0000-0000-0000-00000000000c")
    # PLAN_X names two ids: the name goes to the one it is used with most
    plan_x = small.plan("PLAN_X")
    assert plan_x is not None and plan_x.plan_id.endswith("b")
    assert small.plan_ids("PLAN_X") == (
        "00000000-0000-0000-0000-00000000000b",
        "00000000-0000-0000-0000-00000000000a",
    )
    # a misspelling in the table is kept as an alias of the id
    plan_y = small.plan("PLAN_Y)")
    assert plan_y is not None and plan_y.name == "PLAN_Y"
    # SKU_B names two SKUs: the one with more plans wins
    sku_b = small.sku("SKU_B")
    assert sku_b is not None and sku_b.sku_id.startswith("bbbbbbbb")
    assert any("repeated" in n for n in notes)
    assert any("SKU_B".casefold() in n for n in notes)


def test_generator_and_package_normalise_names_alike() -> None:
    generator_key = _generator().name_key
    for name in [
        "ENTERPRISEPACK",
        " O365_w/o\u00a0Teams\u00a0Bundle_M3 ",
        "Virtualization \tRights",
        "Deskless",
    ]:
        assert generator_key(name) == name_key(name)


def test_counts_match_microsofts_table(catalog: Catalog) -> None:
    assert len(catalog.skus) == 569
    assert len(catalog.plans) == 723
    # every SKU's plans are known plans
    assert all(p in catalog.plans for s in catalog.skus.values() for p in s.plan_ids)


def test_catalog_is_loaded_once() -> None:
    assert load_catalog() is load_catalog()


def test_data_files_ship_in_the_package() -> None:
    for name in ("catalog.json", "rules.yaml", "countries.json"):
        packaged = resources.files("reconciler") / "data" / name
        assert packaged.read_bytes() == (DATA / name).read_bytes()


@pytest.mark.slow
def test_wheel_contains_the_data_files(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    result = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in ("catalog.json", "rules.yaml", "countries.json"):
            assert archive.read(f"reconciler/data/{name}") == (DATA / name).read_bytes()


# --- lookups ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sku_id"),
    [
        ("ENTERPRISEPACK", ENTERPRISEPACK),
        ("enterprisepack", ENTERPRISEPACK),
        ("  EnterprisePack ", ENTERPRISEPACK),
        (ENTERPRISEPACK, ENTERPRISEPACK),
        (ENTERPRISEPACK.upper(), ENTERPRISEPACK),
        ("STANDARDPACK", STANDARDPACK),
        ("ENTERPRISEPREMIUM", "c7df2760-2c81-4ef7-b578-5b5392b571df"),
        ("SPE_E3", "05e9a617-0261-4cee-bb44-138d3ef5d965"),
        ("SPE_E5", "06ebc4ee-1bb5-47dd-8120-11324bc54e06"),
        ("EXCHANGESTANDARD", "4b9405b0-7788-4568-add1-99614e613b69"),
        ("EXCHANGEENTERPRISE", "19ec0d23-8335-4cbd-94ac-6050e30712fa"),
        ("EMSPREMIUM", "b05e124f-c7cc-45a0-a6aa-8cf78c946968"),
        ("AAD_PREMIUM", "078d2b04-f1bd-4111-bbd4-b4b1b354cef4"),
        ("SPB", "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46"),
        ("WORKPLACE_ANALYTICS", "3d957427-ecdc-4df2-aacd-01cc9d519da8"),
        ("MCOMEETADV", "0c266dff-15dd-4b49-8397-2bb16070ed52"),
        # stray spaces and no-break spaces in Microsoft's table
        ("MCOCAP_FACULTY", "420c7602-7f70-4895-9394-d3d679ea36fb"),
        ("AAD_PREMIUM_USGOV_GCCHIGH", "de597797-22fb-4d65-a9fe-b7dbe8893914"),
        ("O365_w/o Teams Bundle_M3", "c2fe850d-fbbb-4858-b67d-bd0c6e746da3"),
        # one part number, two SKU ids: by name the SKU with more plans, then the lower id
        ("MCOPSTN5", "54a152dc-90de-4996-93d2-bc47e670fc06"),
        ("d43177b5-475b-4880-92d4-d54c27b5efbd", "d43177b5-475b-4880-92d4-d54c27b5efbd"),
    ],
)
def test_sku_lookup(catalog: Catalog, text: str, sku_id: str) -> None:
    sku = catalog.sku(text)
    assert sku is not None
    assert sku.sku_id == sku_id


@pytest.mark.parametrize(
    "text", ["ENTERPRISPACK", "", "00000000-0000-0000-0000-000000000000", "EXCHANGE_S_ENTERPRISE"]
)
def test_unknown_sku(catalog: Catalog, text: str) -> None:
    assert catalog.sku(text) is None


@pytest.mark.parametrize(
    ("text", "plan_id", "name"),
    [
        ("EXCHANGE_S_ENTERPRISE", EXCHANGE_S_ENTERPRISE, "EXCHANGE_S_ENTERPRISE"),
        ("exchange_s_enterprise", EXCHANGE_S_ENTERPRISE, "EXCHANGE_S_ENTERPRISE"),
        (EXCHANGE_S_ENTERPRISE.upper(), EXCHANGE_S_ENTERPRISE, "EXCHANGE_S_ENTERPRISE"),
        ("EXCHANGE_S_STANDARD", EXCHANGE_S_STANDARD, "EXCHANGE_S_STANDARD"),
        ("EXCHANGE_S_DESKLESS", "4a82b400-a79f-41a4-b4e2-e94f5787b113", "EXCHANGE_S_DESKLESS"),
        ("EXCHANGE_S_FOUNDATION", EXCHANGE_S_FOUNDATION, "EXCHANGE_S_FOUNDATION"),
        ("SHAREPOINTSTANDARD", SHAREPOINTSTANDARD, "SHAREPOINTSTANDARD"),
        ("SHAREPOINTENTERPRISE", SHAREPOINTENTERPRISE, "SHAREPOINTENTERPRISE"),
        ("SHAREPOINT_PROJECT", SHAREPOINT_PROJECT, "SHAREPOINT_PROJECT"),
        ("TEAMS1", TEAMS1, "TEAMS1"),
        ("TEAMS_FREE", TEAMS_FREE, "TEAMS_FREE"),
        ("MCOSTANDARD", MCOSTANDARD, "MCOSTANDARD"),
        ("MCOEV", MCOEV, "MCOEV"),
        ("INTUNE_O365", "882e1d05-acd1-4ccb-8708-6ee03664b117", "INTUNE_O365"),
        # spellings Microsoft's table also uses for the same id
        ("RMS_S_ENTERPRISE)", "bea4c11e-220a-4e6d-8eb8-8ea15d019f90", "RMS_S_ENTERPRISE"),
        ("EXCHANGE_FOUNDATION_GOV", "922ba911-5694-4e99-a794-73aed9bfeec8", "EXCHANGE_S_FOUNDATION_GOV"),
        ("DESKLESS", "8c7d2df8-86f0-4902-b2ed-a0458298f3b3", "Deskless"),
        ("Project Online for Education", "664a2fed-6c7a-468e-af35-d61740f0ec90", "SHAREPOINT_PROJECT_EDU"),
        # one name, two ids: the id it is used with most
        ("PROJECT_ESSENTIALS", "1259157c-8581-4875-bca7-2ffb18c51bda", "PROJECT_ESSENTIALS"),
        (
            "f944d685-f762-4371-806d-a1f48e5bea13",
            "f944d685-f762-4371-806d-a1f48e5bea13",
            "PROJECT_ESSENTIALS",
        ),
    ],
)
def test_plan_lookup(catalog: Catalog, text: str, plan_id: str, name: str) -> None:
    plan = catalog.plan(text)
    assert plan is not None
    assert (plan.plan_id, plan.name) == (plan_id, name)


@pytest.mark.parametrize(
    "text", ["SHAREPOINTENTERPRSE", "", "00000000-0000-0000-0000-000000000000", "ENTERPRISEPACK"]
)
def test_unknown_plan(catalog: Catalog, text: str) -> None:
    assert catalog.plan(text) is None


def test_plan_friendly_name(catalog: Catalog) -> None:
    plan = catalog.plan("EXCHANGE_S_ENTERPRISE")
    assert plan is not None and plan.friendly_name == "Exchange Online (Plan 2)"


@pytest.mark.parametrize(
    ("sku", "plan", "included"),
    [
        ("ENTERPRISEPACK", "SHAREPOINTENTERPRISE", True),
        ("STANDARDPACK", "SHAREPOINTENTERPRISE", False),
        ("STANDARDPACK", "SHAREPOINTSTANDARD", True),
        ("ENTERPRISEPACK", "EXCHANGE_S_ENTERPRISE", True),
        ("STANDARDPACK", "EXCHANGE_S_STANDARD", True),
        ("STANDARDPACK", "EXCHANGE_S_ENTERPRISE", False),
        ("ENTERPRISEPACK", "yammer_enterprise", True),
        ("ENTERPRISEPACK", "SWAY", True),
        ("ENTERPRISEPACK", EXCHANGE_S_ENTERPRISE, True),
        ("ENTERPRISEPACK", "MCOEV", False),
        ("ENTERPRISEPREMIUM", "MCOEV", True),
        ("EMS", "AAD_PREMIUM", True),
        ("EMS", "INTUNE_A", True),
        ("PROJECTPREMIUM", "SHAREPOINT_PROJECT", True),
        # PROJECT_ESSENTIALS is f944d685-... in this SKU, 1259157c-... elsewhere
        ("D365_SALES_PRO", "PROJECT_ESSENTIALS", True),
        ("D365_SALES_PRO", "1259157c-8581-4875-bca7-2ffb18c51bda", False),
    ],
)
def test_plan_in_sku(catalog: Catalog, sku: str, plan: str, included: bool) -> None:
    entry = catalog.sku(sku)
    assert entry is not None
    found = catalog.plan_in_sku(entry, plan)
    assert (found is not None) is included
    if found is not None:
        assert found.plan_id in entry.plan_ids


def test_sku_plans_keep_table_order(catalog: Catalog) -> None:
    e3 = catalog.sku("ENTERPRISEPACK")
    assert e3 is not None
    plans = catalog.sku_plans(e3)
    assert [p.plan_id for p in plans] == list(e3.plan_ids)
    assert len(set(e3.plan_ids)) == len(e3.plan_ids)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ENTERPRISPACK", "ENTERPRISEPACK"),
        ("enterprisepak", "ENTERPRISEPACK"),
        ("ENTERPRISEPACK", "ENTERPRISEPACK"),
        ("STANDARDPAK", "STANDARDPACK"),
        ("SPE_E33", "SPE_E3"),
        ("Office 365 E3", "ENTERPRISEPACK"),
        ("QQQQQQ", None),
        ("", None),
    ],
)
def test_suggest_sku(catalog: Catalog, text: str, expected: str | None) -> None:
    assert catalog.suggest_sku(text) == expected


@pytest.mark.parametrize(
    ("text", "sku", "expected"),
    [
        ("SHAREPOINTENTERPRSE", None, "SHAREPOINTENTERPRISE"),
        ("exchange_s_enterprse", None, "EXCHANGE_S_ENTERPRISE"),
        ("Exchange Online (Plan 2)", None, "EXCHANGE_S_ENTERPRISE"),
        ("YAMMER_ENTERPRSE", "ENTERPRISEPACK", "YAMMER_ENTERPRISE"),
        # inside a SKU, that SKU's plans come first
        ("EXCHANGE_S_STANDARD_GO", None, "EXCHANGE_S_STANDARD_GOV"),
        ("EXCHANGE_S_STANDARD_GO", "STANDARDPACK", "EXCHANGE_S_STANDARD"),
        ("SHAREPOINTSTANDRD", "STANDARDPACK", "SHAREPOINTSTANDARD"),
        # a plan of another SKU is still offered when the SKU has nothing close
        ("EXCHANGE_S_ENTERPRIS", "STANDARDPACK", "EXCHANGE_S_ENTERPRISE"),
        # nothing close in the SKU: fall back to every plan
        ("WORKPLACE_ANALYTIC", "STANDARDPACK", "WORKPLACE_ANALYTICS"),
        ("ZZZZZZZZ", None, None),
    ],
)
def test_suggest_plan(catalog: Catalog, text: str, sku: str | None, expected: str | None) -> None:
    entry = catalog.sku(sku) if sku else None
    assert catalog.suggest_plan(text, entry) == expected


# --- rule table ------------------------------------------------------------------------------------


def _plan_names_in_rules_yaml() -> list[str]:
    document = yaml.safe_load((DATA / "rules.yaml").read_text(encoding="utf-8"))
    names: list[str] = []
    for entry in document[MUTUALLY_EXCLUSIVE]:
        names.extend(entry["plans"])
    for plan, entry in document[REQUIRES].items():
        names.append(plan)
        names.extend(entry["anyOf"])
    names.extend(document[PROHIBITED_LOCATIONS])
    names.extend(document["mailboxPlans"]["plans"])
    return names


@pytest.mark.parametrize("name", sorted(set(_plan_names_in_rules_yaml())))
def test_every_plan_in_the_rule_table_is_in_the_catalog(catalog: Catalog, name: str) -> None:
    plan = catalog.plan(name)
    assert plan is not None, f"rules.yaml names {name!r}, which Microsoft's table lacks"
    assert plan.name == name, "write the plan's name as Microsoft's table spells it"


def test_every_bundled_rule_has_a_source() -> None:
    table = bundled_rules()
    assert table.rules
    assert all(
        rule.source.strip() and rule.kind in (MUTUALLY_EXCLUSIVE, REQUIRES, PROHIBITED_LOCATIONS)
        for rule in table.rules
    )
    assert bundled_rules() is table


@pytest.mark.parametrize(
    ("kind", "plan", "others", "enabled"),
    [
        (MUTUALLY_EXCLUSIVE, "SHAREPOINTSTANDARD", ("SHAREPOINTENTERPRISE",), True),
        (MUTUALLY_EXCLUSIVE, "EXCHANGE_S_STANDARD", ("EXCHANGE_S_ENTERPRISE",), False),
        (MUTUALLY_EXCLUSIVE, "TEAMS_FREE", ("TEAMS1",), True),
        (REQUIRES, "SHAREPOINT_PROJECT", ("SHAREPOINTENTERPRISE",), True),
        (REQUIRES, "WORKPLACE_ANALYTICS", ("EXCHANGE_S_STANDARD", "EXCHANGE_S_ENTERPRISE"), True),
        (PROHIBITED_LOCATIONS, "MCOEV", ("BN",), True),
    ],
)
def test_bundled_rules(kind: str, plan: str, others: tuple[str, ...], enabled: bool) -> None:
    matches = [r for r in bundled_rules().rules if (r.kind, r.plan, r.others) == (kind, plan, others)]
    assert len(matches) == 1
    assert matches[0].enabled is enabled


@pytest.mark.parametrize("plan", ["MCOEV", "MCOMEETADV"])
def test_teams_calling_plans_require_skype_or_teams(catalog: Catalog, plan: str) -> None:
    (rule,) = [r for r in bundled_rules().rules if r.kind == REQUIRES and r.plan == plan]
    assert rule.enabled and {"MCOSTANDARD", "TEAMS1"} <= set(rule.others)


def test_bundled_rules_resolve_to_plan_ids(catalog: Catalog) -> None:
    rules = bundled_rules().to_rules(catalog)
    assert frozenset({SHAREPOINTSTANDARD, SHAREPOINTENTERPRISE}) in rules.mutually_exclusive
    assert frozenset({TEAMS_FREE, TEAMS1}) in rules.mutually_exclusive
    # the Exchange pair is in the table but switched off (Microsoft now allows duplication)
    assert frozenset({EXCHANGE_S_STANDARD, EXCHANGE_S_ENTERPRISE}) not in rules.mutually_exclusive
    assert rules.requires[SHAREPOINT_PROJECT] == frozenset({SHAREPOINTENTERPRISE})
    assert rules.requires[WORKPLACE_ANALYTICS_PLAN] == frozenset({EXCHANGE_S_STANDARD, EXCHANGE_S_ENTERPRISE})
    assert {MCOSTANDARD, TEAMS1} <= rules.requires[MCOEV]
    assert {MCOSTANDARD, TEAMS1} <= rules.requires[MCOMEETADV]
    assert rules.prohibited_locations[MCOEV] == frozenset({"BN"})
    assert {
        EXCHANGE_S_STANDARD,
        EXCHANGE_S_ENTERPRISE,
        "4a82b400-a79f-41a4-b4e2-e94f5787b113",
    } <= rules.mailbox_plans
    assert "1126bef5-da20-4f07-b45e-ad25d2581aa8" in rules.mailbox_plans  # EXCHANGE_S_ESSENTIALS
    assert EXCHANGE_S_FOUNDATION not in rules.mailbox_plans


def test_mailbox_plans_are_exchange_mailbox_plans(catalog: Catalog) -> None:
    for name in bundled_rules().mailbox_plans:
        plan = catalog.plan(name)
        assert plan is not None and plan.name.startswith("EXCHANGE_")
        assert "FOUNDATION" not in plan.name and "ARCHIVE" not in plan.name


@pytest.mark.parametrize(
    ("policy_catalog", "kind", "plan", "others"),
    [
        (
            {"mutuallyExclusive": [["EXCHANGE_S_STANDARD", "EXCHANGE_S_ENTERPRISE"]]},
            MUTUALLY_EXCLUSIVE,
            "EXCHANGE_S_STANDARD",
            ("EXCHANGE_S_ENTERPRISE",),
        ),
        (
            {"mutuallyExclusive": [[SHAREPOINTSTANDARD, "sharepointenterprise"]]},
            MUTUALLY_EXCLUSIVE,
            SHAREPOINTSTANDARD,
            ("sharepointenterprise",),
        ),
        ({"requires": {"MCOEV": ["TEAMS1"]}}, REQUIRES, "MCOEV", ("TEAMS1",)),
        ({"prohibitedLocations": {MCOEV: ["CU", "KP"]}}, PROHIBITED_LOCATIONS, MCOEV, ("CU", "KP")),
    ],
)
def test_extend_adds_rules_with_the_given_source(
    policy_catalog: dict[str, Any], kind: str, plan: str, others: tuple[str, ...]
) -> None:
    base = bundled_rules()
    extended = base.extend(policy_catalog, "policies/base.yaml")
    assert extended.rules[: len(base.rules)] == base.rules
    assert extended.rules[len(base.rules) :] == (Rule(kind, plan, others, "policies/base.yaml"),)
    assert base.rules == bundled_rules().rules  # the bundled table is not changed


def test_extend_with_nothing_is_the_same_table() -> None:
    assert bundled_rules().extend({}, "p.yaml") == bundled_rules()


def test_policy_can_switch_on_the_exchange_conflict(catalog: Catalog) -> None:
    table = bundled_rules().extend(
        {"mutuallyExclusive": [["EXCHANGE_S_STANDARD", "EXCHANGE_S_ENTERPRISE"]]}, "p.yaml"
    )
    assert (
        frozenset({EXCHANGE_S_STANDARD, EXCHANGE_S_ENTERPRISE}) in table.to_rules(catalog).mutually_exclusive
    )


def test_policy_requires_replaces_the_bundled_any_of_list(catalog: Catalog) -> None:
    table = bundled_rules().extend(
        {"requires": {"SHAREPOINT_PROJECT": ["SHAREPOINTSTANDARD", "SHAREPOINTENTERPRISE"]}}, "p"
    )
    assert table.to_rules(catalog).requires[SHAREPOINT_PROJECT] == frozenset(
        {SHAREPOINTSTANDARD, SHAREPOINTENTERPRISE}
    )


def test_prohibited_locations_add_up(catalog: Catalog) -> None:
    table = bundled_rules().extend({"prohibitedLocations": {"MCOEV": ["CU"]}}, "p")
    assert table.to_rules(catalog).prohibited_locations[MCOEV] == frozenset({"BN", "CU"})


@pytest.mark.parametrize(
    ("policy_catalog", "message"),
    [
        (
            {"requires": {"SHAREPOINT_PROJCT": ["SHAREPOINTENTERPRISE"]}},
            "unknown service plan 'SHAREPOINT_PROJCT' (did you mean 'SHAREPOINT_PROJECT'?)",
        ),
        (
            {"requires": {"SHAREPOINT_PROJECT": ["NO_SUCH_PLAN_AT_ALL"]}},
            "unknown service plan 'NO_SUCH_PLAN_AT_ALL'",
        ),
        (
            {"mutuallyExclusive": [["TEAMS1", "TEAMS_FRE"]]},
            "catalog.mutuallyExclusive[0][1]: unknown service plan 'TEAMS_FRE'",
        ),
        (
            {"prohibitedLocations": {"MCOEVV": ["BN"]}},
            "unknown service plan 'MCOEVV' (did you mean 'MCOEV'?)",
        ),
        ({"prohibitedLocations": {"MCOEV": ["XX"]}}, "'XX' is not an ISO 3166-1 alpha-2 country code"),
        ({"prohibitedLocations": {"MCOEV": ["bn"]}}, "(did you mean 'BN'?)"),
        ({"prohibitedLocations": {"MCOEV": []}}, "non-empty list"),
        ({"mutuallyExclusive": [["TEAMS1"]]}, "pair of two service plans"),
        ({"mutuallyExclusive": [["TEAMS1", "teams1"]]}, "cannot exclude itself"),
        ({"mutuallyExclusive": [["TEAMS1", TEAMS1]]}, "cannot exclude itself"),
        ({"requires": {"MCOEV": ["MCOEV"]}}, "cannot require itself"),
        ({"requires": {"MCOEV": "TEAMS1"}}, "non-empty list"),
        ({"requires": ["MCOEV"]}, "must map a service plan"),
        ({"exclusive": []}, "unknown key 'exclusive'"),
    ],
)
def test_extend_rejects_bad_entries_with_a_clear_message(
    policy_catalog: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        bundled_rules().extend(policy_catalog, "p.yaml")
    assert message in str(caught.value)


def test_problems_point_at_each_bad_entry() -> None:
    problems = bundled_rules().problems(
        {
            "mutuallyExclusive": [["TEAMS1", "TEAMS_FRE"]],
            "requires": {"SHAREPOINT_PROJECT": ["SHAREPOINTENTERPRISE", "NOPE_NOPE"]},
            "prohibitedLocations": {"MCOEV": ["BN", "ZZ"]},
        }
    )
    assert [path for path, _ in problems] == [
        ("mutuallyExclusive", 0, 1),
        ("requires", "SHAREPOINT_PROJECT", 1),
        ("prohibitedLocations", "MCOEV", 1),
    ]
    assert bundled_rules().problems({"requires": {"MCOEV": ["TEAMS1"]}}) == []
    assert bundled_rules().problems(None) == []


def test_unknown_plans_lists_names_without_raising() -> None:
    policy_catalog = {
        "mutuallyExclusive": [["TEAMS1", "TEAMS_FRE"]],
        "requires": {"SHAREPOINT_PROJCT": ["SHAREPOINTENTERPRISE", "TEAMS_FRE"]},
        "prohibitedLocations": {CUSTOM: ["BN"]},
    }
    assert bundled_rules().unknown_plans(policy_catalog) == ["TEAMS_FRE", "SHAREPOINT_PROJCT"]
    assert bundled_rules().unknown_plans({"requires": "garbage"}) == []


def test_tenant_plans_missing_from_the_catalog(catalog: Catalog) -> None:
    extra = [("CONTOSO_PLAN", CUSTOM)]
    policy_catalog = {"requires": {"CONTOSO_PLAN": ["EXCHANGE_S_ENTERPRISE"]}}
    with pytest.raises(ValueError, match="CONTOSO_PLAN"):
        bundled_rules().extend(policy_catalog, "seed.yaml")
    table = bundled_rules().extend(policy_catalog, "seed.yaml", extra_plans=extra)
    assert table.rules[-1].source == "seed.yaml"
    with pytest.raises(ValueError, match="CONTOSO_PLAN"):
        table.to_rules(catalog)
    assert table.to_rules(catalog, extra).requires[CUSTOM] == frozenset({EXCHANGE_S_ENTERPRISE})
    assert table.to_rules(catalog, [("contoso_plan", CUSTOM.upper())]).requires[CUSTOM] == frozenset(
        {EXCHANGE_S_ENTERPRISE}
    )


def test_unknown_plan_ids_are_accepted_as_ids(catalog: Catalog) -> None:
    table = bundled_rules().extend({"mutuallyExclusive": [[CUSTOM.upper(), "TEAMS1"]]}, "p")
    assert frozenset({CUSTOM, TEAMS1}) in table.to_rules(catalog).mutually_exclusive


def test_a_name_with_two_ids_covers_both(catalog: Catalog) -> None:
    table = RuleTable(rules=(Rule(REQUIRES, "PROJECT_ESSENTIALS", ("SHAREPOINTENTERPRISE",), "test"),))
    requires = table.to_rules(catalog).requires
    assert set(requires) == {"1259157c-8581-4875-bca7-2ffb18c51bda", "f944d685-f762-4371-806d-a1f48e5bea13"}


def test_disabled_rules_are_not_enforced(catalog: Catalog) -> None:
    table = RuleTable(
        rules=(
            Rule(MUTUALLY_EXCLUSIVE, "TEAMS_FREE", ("TEAMS1",), "test", enabled=False),
            Rule(PROHIBITED_LOCATIONS, "MCOEV", ("BN",), "test", enabled=False),
        )
    )
    rules = table.to_rules(catalog)
    assert not rules.mutually_exclusive and not rules.prohibited_locations and not rules.requires
