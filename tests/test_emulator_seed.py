"""The tenant seed format: schema, reference checks, JSON-path problems, normalisation."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from reconciler.emulator.seed import (
    SeedProblems,
    bundled_rules_section,
    licensing_input_from_seed,
    load_seed,
    normalise_seed,
    seed_rules,
    validate_seed,
)
from reconciler.errors import EXIT_INVALID, SeedError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-tenant.json"
SCHEMA = ROOT / "schemas" / "tenant.schema.json"

E3 = "6fd2c87f-b296-42f0-b197-1e91e994b900"
SP2 = "5dbe027f-2339-4123-9542-606e4d348a72"


def sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return data


def index(doc: dict[str, Any], kind: str, key: str, value: str) -> int:
    return next(i for i, x in enumerate(doc[kind]) if x[key] == value)


def test_schema_is_valid_2020_12_with_a_versioned_id() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/tenant/v1.json")


def test_sample_tenant_passes_schema_and_reference_checks() -> None:
    assert validate_seed(sample()) == []
    seed = load_seed(SAMPLE)
    assert len(seed["users"]) >= 50
    assert seed["organization"]["id"] == "f1b45b40-57df-41f7-9596-7f2313883635"


def test_sample_tenant_uses_real_sku_and_plan_ids() -> None:
    from reconciler.catalog import load_catalog

    catalog = load_catalog()
    for sku in sample()["subscribedSkus"]:
        entry = catalog.sku(sku["skuId"])
        assert entry is not None and entry.part_number == sku["skuPartNumber"]
        assert {p["servicePlanId"] for p in sku["servicePlans"]} == set(entry.plan_ids)


def test_guids_are_normalised_to_lower_case(tmp_path: Path) -> None:
    doc = sample()
    doc["organization"]["id"] = doc["organization"]["id"].upper()
    u = index(doc, "users", "userPrincipalName", "migrate1@contoso.com")
    doc["users"][u]["id"] = doc["users"][u]["id"].upper()
    doc["users"][u]["assignedLicenses"][0]["skuId"] = E3.upper()
    g = index(doc, "groups", "displayName", "LIC-E3-Base")
    members = doc["groups"][g]["members"]
    members[members.index(doc["users"][u]["id"].lower())] = doc["users"][u]["id"]
    path = tmp_path / "upper.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    seed = load_seed(path)
    assert seed["organization"]["id"] == "f1b45b40-57df-41f7-9596-7f2313883635"
    assert seed["users"][u]["id"] == seed["users"][u]["id"].lower()
    assert seed["users"][u]["assignedLicenses"][0]["skuId"] == E3
    assert seed["users"][u]["id"] in seed["groups"][g]["members"]


def test_yaml_seed_loads_like_json(tmp_path: Path) -> None:
    path = tmp_path / "tenant.yaml"
    path.write_text(yaml.safe_dump(sample()), encoding="utf-8")
    assert load_seed(path) == load_seed(SAMPLE)


def test_defaults_are_filled_in() -> None:
    doc = {
        "organization": {
            "id": "11111111-1111-1111-1111-111111111111",
            "displayName": "Tiny",
            "verifiedDomains": [{"name": "tiny.onmicrosoft.com", "isInitial": True}],
        },
        "subscribedSkus": [
            {
                "skuId": E3,
                "skuPartNumber": "ENTERPRISEPACK",
                "prepaidUnits": {"enabled": 1},
                "servicePlans": [{"servicePlanId": SP2, "servicePlanName": "SHAREPOINTENTERPRISE"}],
            }
        ],
        "users": [
            {"id": "22222222-2222-2222-2222-222222222222", "userPrincipalName": "a@tiny.onmicrosoft.com"}
        ],
        "groups": [],
    }
    assert validate_seed(doc) == []
    seed = normalise_seed(doc)
    sku = seed["subscribedSkus"][0]
    assert sku["id"] == f"11111111-1111-1111-1111-111111111111_{E3}"
    assert sku["prepaidUnits"] == {"enabled": 1, "suspended": 0, "warning": 0, "lockedOut": 0}
    assert sku["servicePlans"][0]["provisioningStatus"] == "Success"
    user = seed["users"][0]
    assert user["assignedLicenses"] == [] and user["accountEnabled"] is True and user["usageLocation"] is None
    assert seed["applications"] == []


def broken_seed() -> tuple[dict[str, Any], list[str]]:
    """A copy of the sample with one mistake of each kind, and the JSON path of each."""
    doc = copy.deepcopy(sample())
    expected = []
    u3 = 3
    doc["users"][u3]["assignedLicenses"] = [
        {"skuId": "c7df2760-2c81-4ef7-b578-5b5392b571df", "disabledPlans": []}
    ]
    doc["subscribedSkus"] = [s for s in doc["subscribedSkus"] if s["skuPartNumber"] != "ENTERPRISEPREMIUM"]
    # removing E5 also breaks LIC-E5-Admins' license and the admins' recorded states
    expected.append(f"$.users[{u3}].assignedLicenses[0].skuId")
    g = index(doc, "groups", "displayName", "LIC-E5-Admins")
    expected.append(f"$.groups[{g}].assignedLicenses[0].skuId")
    for i, user in enumerate(doc["users"]):
        for k, st in enumerate(user.get("licenseAssignmentStates") or ()):
            if st["skuId"] == "c7df2760-2c81-4ef7-b578-5b5392b571df":
                expected.append(f"$.users[{i}].licenseAssignmentStates[{k}].skuId")
    # a member that does not exist
    g = index(doc, "groups", "displayName", "LIC-Visio")
    doc["groups"][g]["members"].append("99999999-9999-9999-9999-999999999999")
    expected.append(f"$.groups[{g}].members[{len(doc['groups'][g]['members']) - 1}]")
    # a disabled plan that is not a plan of the SKU (SharePoint Plan 2 is not in E1)
    u = index(doc, "users", "userPrincipalName", "e1direct1@contoso.com")
    doc["users"][u]["assignedLicenses"][0]["disabledPlans"] = [SP2]
    expected.append(f"$.users[{u}].assignedLicenses[0].disabledPlans[0]")
    # a duplicate user principal name (case-insensitive)
    u = index(doc, "users", "userPrincipalName", "bob@contoso.com")
    doc["users"][u]["userPrincipalName"] = "ALICE@contoso.com"
    expected.append(f"$.users[{u}].userPrincipalName")
    # a duplicate object id
    u = index(doc, "users", "userPrincipalName", "kiosk1@contoso.com")
    newhire = index(doc, "users", "userPrincipalName", "newhire1@contoso.com")
    doc["users"][newhire]["id"] = doc["users"][u]["id"]
    expected.append(f"$.users[{newhire}].id")
    # a duplicate application id
    doc["applications"][1]["appId"] = doc["applications"][0]["appId"]
    expected.append("$.applications[1].appId")
    # an unknown plan in the emulator rules and a bad country code
    doc["emulator"]["rules"]["requires"]["SHAREPOINT_PROJECTT"] = ["SHAREPOINTENTERPRISE"]
    expected.append("$.emulator.rules.requires.SHAREPOINT_PROJECTT")
    doc["emulator"]["rules"]["prohibitedLocations"]["MCOEV"] = ["BN", "XX"]
    expected.append("$.emulator.rules.prohibitedLocations.MCOEV[1]")
    return doc, expected


def test_reference_problems_are_all_reported_with_their_json_path() -> None:
    doc, expected = broken_seed()
    problems = validate_seed(doc)
    paths = [p.split(": ", 1)[0] for p in problems]
    for path in expected:
        assert path in paths, (path, problems)
    assert len(problems) == len(expected), problems


def test_schema_problems_name_the_path() -> None:
    doc = sample()
    doc["users"][3]["id"] = "not-a-guid"
    doc["users"][4]["usagelocation"] = "US"
    doc["users"][5]["usageLocation"] = "usa"
    doc["groups"][0]["members"] = "all"
    del doc["subscribedSkus"][1]["prepaidUnits"]
    problems = validate_seed(doc)
    text = "\n".join(problems)
    assert "$.users[3].id: 'not-a-guid'" in text
    assert "$.users[4]: unknown property 'usagelocation'" in text
    assert "$.users[5].usageLocation: 'usa'" in text
    assert "$.groups[0].members: 'all' is not of type 'array'" in text
    assert "$.subscribedSkus[1]: 'prepaidUnits' is a required property" in text
    assert len(problems) == 5


def test_load_seed_raises_seed_error_listing_every_problem(tmp_path: Path) -> None:
    doc, expected = broken_seed()
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(SeedProblems) as info:
        load_seed(path)
    err = info.value
    assert isinstance(err, SeedError) and err.exit_code == EXIT_INVALID
    assert str(path) in str(err)
    for p in expected:
        assert f"  {p}: " in str(err)
    assert len(err.problems) == len(expected)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("syntax.json", '{"organization": {,}', "bad.json:1:"),
        ("empty.json", "  \n", "empty"),
        ("list.json", "[1, 2]", "$: a tenant seed is a JSON object"),
        ("bad.yaml", "users: [\n  - {id: 1\n", "invalid YAML"),
        ("binary.json", b"\xff\xfe\x00bin", "not UTF-8"),
    ],
)
def test_unreadable_seeds_give_one_clear_message(
    tmp_path: Path, name: str, content: str | bytes, needle: str
) -> None:
    path = tmp_path / ("bad.json" if name == "syntax.json" else name)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(SeedError) as info:
        load_seed(path)
    assert needle in str(info.value)


def test_missing_seed_file(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="not found"):
        load_seed(tmp_path / "nope.json")


def test_licensing_input_from_seed() -> None:
    seed = load_seed(SAMPLE)
    inp = licensing_input_from_seed(seed, seed_rules(seed))
    assert inp.tenant_location == "US"
    assert len(inp.users) == len(seed["users"]) and len(inp.groups) == len(seed["groups"])
    visio = next(s for s in inp.skus.values() if s.sku_id == "c5928f49-12ba-48f7-ada3-0d743a3601d5")
    assert visio.enabled_units == 4
    silent = next(u for u in seed["users"] if u["userPrincipalName"] == "silent1@contoso.com")
    assert inp.users[silent["id"]].proxy_addresses == frozenset(
        {"silent1@contoso.com", "helpdesk@contoso.com"}
    )
    helpdesk = next(g for g in seed["groups"] if g["displayName"] == "Helpdesk")
    assert inp.other_proxy_addresses["helpdesk@contoso.com"] == helpdesk["id"]
    # recorded states become `previous`
    visio1 = next(u for u in seed["users"] if u["userPrincipalName"] == "visio1@contoso.com")
    assert any(st.sku_id == visio.sku_id for st in inp.previous[visio1["id"]])


def test_seed_rules_are_the_seed_section_plus_bundled_mailbox_plans() -> None:
    seed = load_seed(SAMPLE)
    rules = seed_rules(seed)
    assert frozenset({"c7699d2e-19aa-44de-8edf-1736da088ca1", SP2}) in rules.mutually_exclusive
    assert rules.requires["fe71d6c3-a2ea-4499-9778-da042bf08063"] == frozenset({SP2})
    assert rules.prohibited_locations["4828c8ec-dc2e-4779-b502-87ac9ce28ab7"] == frozenset({"BN"})
    assert "efb87545-963c-4e0d-99df-69c6916d9eb0" in rules.mailbox_plans  # EXCHANGE_S_ENTERPRISE
    # without an emulator section: the bundled table, which the sample's Entra enforces exactly
    # (when rules.yaml changes, regenerate the sample's section with bundled_rules_section())
    bare = dict(seed, emulator={})
    assert seed_rules(bare) == rules
    assert seed["emulator"]["rules"] == bundled_rules_section()


def test_cli_serve_with_a_broken_seed_exits_3_without_traceback(tmp_path: Path) -> None:
    doc, expected = broken_seed()
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "emulator",
            "serve",
            "--seed",
            str(path),
            "--db",
            str(tmp_path / "db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "No such command 'emulator'" in result.stderr:
        pytest.skip("the emulator command group is not there yet")
    assert result.returncode == EXIT_INVALID, result.stderr
    assert "Traceback" not in result.stderr
    for p in expected:
        assert p in result.stderr


def test_fast_item_check_agrees_with_jsonschema_on_mutated_items() -> None:
    """The compiled per-item predicate (used for speed on large tenants) accepts exactly what
    the schema accepts, so no problem slips through and no valid item is worded as invalid."""
    import random

    from reconciler.emulator.seed import _item_check, _item_validator

    rng = random.Random(5)
    doc = sample()
    values: list[Any] = [
        None,
        True,
        0,
        -1,
        1.5,
        "",
        "x",
        "US",
        "usa",
        [],
        {},
        ["SMTP:a@b.com"],
        [1],
        {"a": 1},
    ]
    values += [
        "6fd2c87f-b296-42f0-b197-1e91e994b900",
        "Active",
        "Error",
        "None",
        "-----BEGIN CERTIFICATE-----",
    ]
    outcomes = {True: 0, False: 0}
    for key, name in (
        ("users", "user"),
        ("groups", "group"),
        ("subscribedSkus", "subscribedSku"),
        ("applications", "application"),
    ):
        check, validator = _item_check(name), _item_validator(name)
        for _ in range(400):
            item = copy.deepcopy(rng.choice(doc[key]))
            for _ in range(rng.randint(1, 3)):
                target: Any = item
                # walk down a random path, then change, add or delete something
                for _ in range(rng.randint(0, 3)):
                    if isinstance(target, dict) and target:
                        k = rng.choice(sorted(target))
                        if isinstance(target[k], dict | list) and target[k]:
                            target = target[k]
                    elif isinstance(target, list) and target:
                        i = rng.randrange(len(target))
                        if isinstance(target[i], dict | list) and target[i]:
                            target = target[i]
                op = rng.random()
                if isinstance(target, dict):
                    if op < 0.4 and target:
                        target[rng.choice(sorted(target))] = copy.deepcopy(rng.choice(values))
                    elif op < 0.7 and target:
                        del target[rng.choice(sorted(target))]
                    else:
                        target[rng.choice(["extra", "id", "skuId", "state", "usageLocation"])] = rng.choice(
                            values
                        )
                elif isinstance(target, list) and target:
                    target[rng.randrange(len(target))] = copy.deepcopy(rng.choice(values))
            valid = validator.is_valid(item)
            assert check(item) == valid, (name, item)
            outcomes[valid] += 1
        for item in doc[key]:
            assert check(item) and validator.is_valid(item)
    assert outcomes[True] > 100 and outcomes[False] > 100, outcomes


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("a: &x [1, 2]\nb: *x\n", "alias.yaml:2:4: invalid YAML: aliases"),
        (
            "organization: {}\norganization: {}\n",
            "alias.yaml:2:1: invalid YAML: duplicate key 'organization'",
        ),
        ("[" * 5000 + "]" * 5000, "alias.yaml"),
    ],
)
def test_hostile_yaml_seeds_are_refused(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "alias.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SeedError) as info:
        load_seed(path)
    assert needle in str(info.value)


def test_deeply_nested_json_seed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"a":' * 100_000 + "1" + "}" * 100_000, encoding="utf-8")
    with pytest.raises(SeedError, match="nested too deeply"):
        load_seed(path)
