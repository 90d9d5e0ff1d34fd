"""Loading a policy: files and directories, merging, the typed model and its locations."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import PolicyError, UsageError
from reconciler.policy import Location, load_policy, validate_paths

FIXTURES = Path(__file__).parent / "fixtures" / "policies"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_spec_example_loads_into_the_typed_model() -> None:
    path = FIXTURES / "valid" / "spec-example.yaml"
    policy = load_policy([path])
    shown = str(path)
    assert policy.files == (shown,)
    assert policy.tenant is not None and policy.tenant.value == "contoso.onmicrosoft.com"
    e3, kiosk = policy.groups
    assert (
        e3.group == "LIC-E3-Base"
        and e3.loc == Location(shown, 12, 5)
        and e3.name_loc == Location(shown, 12, 12)
    )
    assert e3.members is None and e3.create is False
    assert e3.usage_location is not None and e3.usage_location.value == "FR"
    assert e3.licenses is not None
    e3pack, ems = e3.licenses
    assert e3pack.loc == Location(shown, 14, 9)
    assert e3pack.sku.value == "ENTERPRISEPACK" and e3pack.sku.loc == Location(shown, 14, 14)
    assert e3pack.sku.id == "6fd2c87f-b296-42f0-b197-1e91e994b900"
    assert e3pack.enabled_plans is None
    assert e3pack.disabled_plans is not None
    assert [(p.value, p.loc.line, p.loc.column) for p in e3pack.disabled_plans] == [
        ("YAMMER_ENTERPRISE", 15, 25),
        ("SWAY", 15, 44),
    ]
    assert all(p.id for p in e3pack.disabled_plans)
    assert ems.disabled_plans is None and ems.enabled_plans is not None
    assert [p.value for p in ems.enabled_plans] == ["AAD_PREMIUM", "INTUNE_A"]
    assert kiosk.create is True
    assert kiosk.members is not None
    assert [(m.value, m.loc.line) for m in kiosk.members] == [
        ("kiosk1@contoso.com", 21),
        ("kiosk2@contoso.com", 21),
    ]
    (user,) = policy.usage_locations.users
    assert (user.user, user.country, user.loc, user.country_loc) == (
        "alice@contoso.com",
        "FR",
        Location(shown, 27, 5),
        Location(shown, 27, 24),
    )
    assert policy.usage_locations.default is not None and policy.usage_locations.default.value == "US"
    assert policy.direct_licenses.mode == "keep" and policy.direct_licenses.wave_size == 200
    assert (
        policy.direct_licenses.skus is not None and policy.direct_licenses.skus[0].value == "ENTERPRISEPACK"
    )
    assert policy.unmanaged_groups == "report"
    mr = policy.safety.max_removals
    assert mr is not None and mr.percent == 10.0 and mr.count is None and mr.limit(250) == 25
    assert [p.value for p in policy.safety.protected] == ["LIC-E5-Admins"]
    assert [(a.value, b.value) for a, b in policy.catalog.mutually_exclusive] == [
        ("SHAREPOINTSTANDARD", "SHAREPOINTENTERPRISE")
    ]
    assert policy.catalog.raw["requires"] == {"SHAREPOINT_PROJECT": ["SHAREPOINTENTERPRISE"]}
    ((req_plan, req_any),) = policy.catalog.requires
    assert req_plan.value == "SHAREPOINT_PROJECT" and req_plan.loc == Location(shown, 8, 5)
    assert [r.value for r in req_any] == ["SHAREPOINTENTERPRISE"]
    assert policy.group("lic-e1-kiosk") is kiosk and policy.group("nope") is None
    assert policy.digest.startswith("sha256:")


def test_defaults_when_sections_are_absent(tmp_path: Path) -> None:
    policy = load_policy([write(tmp_path / "p.yaml", "apiVersion: reconciler/v1\n")])
    assert policy.groups == ()
    assert policy.direct_licenses.mode == "keep" and policy.direct_licenses.skus is None
    assert policy.unmanaged_groups == "report"
    assert policy.safety.max_removals is None


def test_licenses_absent_is_not_managed_and_empty_is_empty(tmp_path: Path) -> None:
    p = write(
        tmp_path / "p.yaml",
        "apiVersion: reconciler/v1\ngroups:\n  - group: A\n  - group: B\n    licenses: []\n",
    )
    a, b = load_policy([p]).groups
    assert a.licenses is None and b.licenses == ()


def test_directory_is_read_recursively_in_sorted_order_and_merged() -> None:
    root = FIXTURES / "split-valid"
    policy = load_policy([root])
    assert policy.files == (str(root / "a-groups.yaml"), str(root / "more" / "b-kiosk.yml"))
    assert [g.group for g in policy.groups] == ["LIC-E3-Base", "LIC-E1-Kiosk"]
    # lists concatenate, each entry keeps its own file
    assert [(r.value, Path(r.loc.path).name) for r in policy.safety.protected] == [
        ("LIC-E3-Base", "a-groups.yaml"),
        ("LIC-E1-Kiosk", "b-kiosk.yml"),
    ]
    assert policy.direct_licenses.skus is not None
    assert [s.value for s in policy.direct_licenses.skus] == ["ENTERPRISEPACK", "STANDARDPACK"]
    assert policy.direct_licenses.mode == "report"
    assert policy.groups[1].loc.path.endswith("b-kiosk.yml") and policy.groups[1].loc.line == 4


def test_merged_digest_does_not_depend_on_the_split(tmp_path: Path) -> None:
    one = write(
        tmp_path / "one" / "p.yaml", "apiVersion: reconciler/v1\ntenant: t\nunmanagedGroups: ignore\n"
    )
    write(tmp_path / "two" / "a.yaml", "apiVersion: reconciler/v1\ntenant: t\n")
    write(tmp_path / "two" / "b.yaml", "apiVersion: reconciler/v1\nunmanagedGroups: ignore\n")
    assert load_policy([one]).digest == load_policy([tmp_path / "two"]).digest


def test_scalar_conflict_names_both_places() -> None:
    root = FIXTURES / "conflict"
    policy, problems = validate_paths([root])
    assert policy is None
    a, b = str(root / "a.yaml"), str(root / "b.yaml")
    assert [str(p) for p in problems] == [
        f"{b}:2:9: tenant is fabrikam.onmicrosoft.com here but contoso.onmicrosoft.com at {a}:2:9; "
        "a value set in two files must agree",
        f"{b}:6:24: usageLocations.users.alice@contoso.com is DE here but FR at {a}:6:24; "
        "a value set in two files must agree",
    ]


def test_equal_scalars_in_two_files_agree(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "apiVersion: reconciler/v1\nsafety: {maxRemovals: 5}\n")
    write(tmp_path / "b.yaml", "apiVersion: reconciler/v1\nsafety: {maxRemovals: 5, protected: [X]}\n")
    policy = load_policy([tmp_path])
    assert policy.safety.max_removals is not None and policy.safety.max_removals.count == 5


def test_several_paths_merge_and_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    a = write(tmp_path / "d" / "a.yaml", "apiVersion: reconciler/v1\ngroups: [{group: A}]\n")
    b = write(tmp_path / "b.yaml", "apiVersion: reconciler/v1\ngroups: [{group: B}]\n")
    policy = load_policy([tmp_path / "d", b, a])
    assert [g.group for g in policy.groups] == ["A", "B"]


def test_hidden_and_non_yaml_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "p.YAML", "apiVersion: reconciler/v1\n")
    write(tmp_path / ".hidden.yaml", "garbage: [\n")
    write(tmp_path / ".git" / "x.yaml", "garbage: [\n")
    write(tmp_path / "notes.txt", "garbage: [\n")
    assert len(load_policy([tmp_path]).files) == 1


def test_policy_error_carries_every_problem(tmp_path: Path) -> None:
    p = write(tmp_path / "p.yaml", "apiVersion: reconciler/v2\ngroups: 3\nextra: 1\n")
    with pytest.raises(PolicyError) as info:
        load_policy([p])
    assert [(x.line, x.column) for x in info.value.problems] == [(1, 13), (2, 9), (3, 1)]
    assert info.value.exit_code == 3


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or directory"):
        load_policy([tmp_path / "nope.yaml"])
    with pytest.raises(UsageError):
        load_policy([])


def test_directory_without_policy_files(tmp_path: Path) -> None:
    write(tmp_path / "readme.md", "# nothing\n")
    policy, problems = validate_paths([tmp_path])
    assert policy is None
    assert [str(p) for p in problems] == [
        f"{tmp_path}:1:1: no policy files (*.yaml, *.yml) in this directory"
    ]


def test_schema_errors_do_not_hide_semantic_errors_in_other_parts(tmp_path: Path) -> None:
    p = write(
        tmp_path / "p.yaml",
        "apiVersion: reconciler/v1\n"
        "groups:\n"
        "  - group: A\n"
        "    create: maybe\n"
        "    licenses:\n"
        "      - sku: ENTERPRISPACK\n",
    )
    _, problems = validate_paths([p])
    assert [(x.line, x.message.split(" ")[0]) for x in problems] == [(4, "groups[0].create"), (6, "unknown")]


def test_an_invalid_entry_is_not_checked_further(tmp_path: Path) -> None:
    # the unknown key is pruned, the rest of the entry is still checked
    p = write(
        tmp_path / "p.yaml",
        "apiVersion: reconciler/v1\ngroups:\n  - group: A\n    licenses:\n      - sku: NOPE\n        disabled: [X]\n",
    )
    _, problems = validate_paths([p])
    assert [x.line for x in problems] == [5, 6]
    assert "unknown SKU 'NOPE'" in problems[0].message
    assert (
        "unknown key 'disabled'" in problems[1].message
        and "did you mean disabledPlans?" in problems[1].message
    )
