"""`reconciler emulator generate`: deterministic synthetic tenants of realistic shape."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from reconciler.catalog import load_catalog
from reconciler.emulator.generate import generate_tenant, write_tenant
from reconciler.emulator.seed import (
    licensing_input_from_seed,
    load_seed,
    normalise_seed,
    seed_rules,
    validate_seed,
)
from reconciler.licensing import COUNT_VIOLATION, compute


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True, timeout=120)


@cache
def tenant_2000() -> dict[str, Any]:
    return generate_tenant(users=2000, groups=200, skus=10, seed=42)


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    for path, seed in ((a, "7"), (b, "7"), (c, "8")):
        result = run(
            "emulator", "generate", "--users", "300", "--groups", "40", "--seed", seed, "--out", str(path)
        )
        assert result.returncode == 0, result.stderr
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_stdout_output_is_the_same_document(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    assert run("emulator", "generate", "--users", "50", "--groups", "10", "--out", str(out)).returncode == 0
    result = run("emulator", "generate", "--users", "50", "--groups", "10")
    assert result.returncode == 0
    assert result.stdout == out.read_bytes()


def test_written_json_is_the_generated_document() -> None:
    doc = generate_tenant(users=100, groups=20, seed=3)
    buf = io.StringIO()
    write_tenant(doc, buf)
    assert json.loads(buf.getvalue()) == doc
    # one user per line keeps large files greppable and diffable
    assert buf.getvalue().count('"userPrincipalName"') == 100
    assert sum(1 for line in buf.getvalue().splitlines() if '"userPrincipalName"' in line) == 100


def test_a_generated_2000_user_tenant_passes_the_seed_checks(tmp_path: Path) -> None:
    assert validate_seed(tenant_2000()) == []
    path = tmp_path / "t.json"
    with open(path, "w", encoding="utf-8") as fh:
        write_tenant(tenant_2000(), fh)
    seed = load_seed(path)
    assert len(seed["users"]) == 2000 and len(seed["groups"]) == 200


def test_generated_tenant_has_a_realistic_shape() -> None:
    doc = tenant_2000()
    users, groups = doc["users"], doc["groups"]
    licensed = [g for g in groups if g["assignedLicenses"]]
    assert len(licensed) == 30  # 15% of the groups
    memberships = sum(len(g["members"]) for g in licensed)
    assert 1.3 <= memberships / len(users) <= 1.7
    direct = [u for u in users if u["assignedLicenses"]]
    assert 0.07 <= len(direct) / len(users) <= 0.13
    assert all(u["usageLocation"] for u in direct)  # Entra refuses a direct license without one
    no_location = [u for u in users if u["usageLocation"] is None]
    assert 0.02 <= len(no_location) / len(users) <= 0.08
    addresses = Counter(a.split(":", 1)[1].lower() for u in users for a in u["proxyAddresses"])
    assert any(n > 1 for n in addresses.values())  # a duplicate proxy address
    group_ids = {g["id"] for g in groups}
    assert any(m in group_ids for g in groups for m in g["members"])  # a nested group
    assert [a["displayName"] for a in doc["applications"]] == ["reconciler-plan", "reconciler-apply"]
    # some groups are much larger than others
    sizes = sorted(len(g["members"]) for g in licensed)
    assert sizes[-1] >= 5 * sizes[len(sizes) // 2]


def test_generated_skus_and_plans_are_real_and_popular_first() -> None:
    catalog = load_catalog()
    skus = tenant_2000()["subscribedSkus"]
    assert [s["skuPartNumber"] for s in skus[:4]] == ["SPE_E3", "ENTERPRISEPACK", "SPE_E5", "STANDARDPACK"]
    for s in skus:
        entry = catalog.sku(s["skuId"])
        assert entry is not None and entry.part_number == s["skuPartNumber"]
        assert [p["servicePlanId"] for p in s["servicePlans"]] == list(entry.plan_ids)
        assert all(catalog.plans[p["servicePlanId"]].name == p["servicePlanName"] for p in s["servicePlans"])


def test_seats_are_near_capacity_and_one_product_is_short() -> None:
    seed = normalise_seed(tenant_2000())
    result = compute(licensing_input_from_seed(seed, seed_rules(seed)))
    free = {
        s["skuPartNumber"]: s["prepaidUnits"]["enabled"] - result.consumed[s["skuId"]]
        for s in seed["subscribedSkus"]
    }
    used = {s["skuPartNumber"]: result.consumed[s["skuId"]] for s in seed["subscribedSkus"]}
    for part, n in free.items():
        assert n >= 0, part
        # spare seats are those of users in error (conflicts) plus about 2%
        assert n <= used[part] // 10 + 10, (part, n, used[part])
    errors = Counter(st.error for u in result.users.values() for st in u.states)
    assert errors[COUNT_VIOLATION] > 0
    assert sum(errors.values()) - errors["None"] < 0.1 * len(seed["users"])  # mostly healthy


@pytest.mark.parametrize(
    "args",
    [
        ("--users", "10", "--groups", "5", "--skus", "0"),
        ("--users", "-1", "--groups", "5"),
        ("--users", "10"),
        ("--users", "10", "--groups", "5", "--skus", "301"),
    ],
)
def test_bad_arguments_are_usage_errors(args: tuple[str, ...]) -> None:
    result = run("emulator", "generate", *args)
    assert result.returncode == 64
    assert b"Traceback" not in result.stderr


def test_unwritable_output_is_a_runtime_error(tmp_path: Path) -> None:
    result = run(
        "emulator", "generate", "--users", "5", "--groups", "2", "--out", str(tmp_path / "no" / "x.json")
    )
    assert result.returncode == 1
    assert b"cannot write" in result.stderr and b"Traceback" not in result.stderr


def test_tiny_tenants_work() -> None:
    for users, groups in ((0, 0), (1, 0), (0, 3), (3, 1)):
        doc = generate_tenant(users=users, groups=groups, seed=1)
        assert validate_seed(doc) == [], (users, groups)
