"""schemas/policy.schema.json: a proper 2020-12 schema, documented for editors, shipped in the wheel."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from reconciler.cli import main
from reconciler.policy.schemas import load_schema, schema_bytes

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "schemas" / "policy.schema.json"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code: int = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def schema() -> dict[str, Any]:
    data = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_is_a_valid_versioned_2020_12_schema() -> None:
    data = schema()
    assert data["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert data["$id"] == "https://reconciler.dev/schemas/policy/v1.json"
    jsonschema.Draft202012Validator.check_schema(data)
    assert load_schema("policy") == data


def object_schemas(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "properties" in node:
            yield where, node
        for key, value in node.items():
            yield from object_schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from object_schemas(value, f"{where}/{i}")


def test_every_property_has_a_description_and_objects_are_closed() -> None:
    found = list(object_schemas(schema()))
    assert len(found) == 7  # root, catalog, usageLocations, directLicenses, safety, group, license
    for where, obj in found:
        assert obj.get("additionalProperties") is False, where
        for name, prop in obj["properties"].items():
            assert isinstance(prop, dict) and prop.get("description"), f"{where}/properties/{name}"
    # maps (requires, prohibitedLocations, users) describe their values too
    for where, obj in object_schemas(schema()):
        for name, prop in obj["properties"].items():
            extra = prop.get("additionalProperties")
            if isinstance(extra, dict):
                assert extra.get("description"), f"{where}/properties/{name}/additionalProperties"


def test_top_level_language_is_exactly_spec_section_2() -> None:
    props = schema()["properties"]
    assert set(props) == {
        "apiVersion",
        "tenant",
        "catalog",
        "groups",
        "usageLocations",
        "directLicenses",
        "unmanagedGroups",
        "safety",
    }
    assert props["apiVersion"]["const"] == "reconciler/v1"
    assert set(props["catalog"]["properties"]) == {"mutuallyExclusive", "requires", "prohibitedLocations"}
    group = schema()["$defs"]["group"]["properties"]
    assert set(group) == {"group", "create", "members", "licenses", "usageLocation"}
    assert set(schema()["$defs"]["license"]["properties"]) == {"sku", "disabledPlans", "enabledPlans"}
    assert props["directLicenses"]["properties"]["mode"]["enum"] == ["keep", "report", "removeRedundant"]
    assert props["unmanagedGroups"]["enum"] == ["report", "ignore", "remove"]


@pytest.mark.parametrize(
    ("document", "valid"),
    [
        ({"apiVersion": "reconciler/v1"}, True),
        ({"apiVersion": "reconciler/v1", "safety": {"maxRemovals": "10%"}}, True),
        ({"apiVersion": "reconciler/v1", "safety": {"maxRemovals": 0}}, True),
        ({"apiVersion": "reconciler/v1", "safety": {"maxRemovals": -1}}, False),
        ({"apiVersion": "reconciler/v1", "safety": {"maxRemovals": "10"}}, False),
        (
            {
                "apiVersion": "reconciler/v1",
                "groups": [
                    {"group": "G", "licenses": [{"sku": "E", "disabledPlans": [], "enabledPlans": []}]}
                ],
            },
            False,
        ),
        ({"apiVersion": "reconciler/v1", "groups": [{"group": "G", "usageLocation": "fr"}]}, False),
        ({"apiVersion": "reconciler/v1", "extra": 1}, False),
        ({"groups": []}, False),
    ],
)
def test_schema_decides(document: dict[str, Any], valid: bool) -> None:
    errors = list(jsonschema.Draft202012Validator(schema()).iter_errors(document))
    assert (errors == []) is valid


def policy_documents() -> Iterator[Path]:
    for folder in ("policies", "examples"):
        base = ROOT / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
                yield path


def test_printed_schema_validates_every_policy_in_policies_and_examples() -> None:
    code, out, _ = run_cli("schema", "--kind", "policy")
    assert code == 0
    validator = jsonschema.Draft202012Validator(json.loads(out))
    checked = []
    for path in policy_documents():
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            continue  # not ours (e.g. a workflow with custom tags)
        if not isinstance(document, dict) or document.get("apiVersion") != "reconciler/v1":
            continue  # a seed, a workflow, ...: not a policy
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)
        ]
        assert errors == [], path
        checked.append(path)
    if (ROOT / "policies").is_dir():
        assert any(p.is_relative_to(ROOT / "policies") for p in checked)


def test_schema_bytes_in_the_development_tree_are_the_repository_file() -> None:
    assert schema_bytes("policy") == SCHEMA_PATH.read_bytes()


@pytest.mark.slow
def test_wheel_ships_schemas_and_the_installed_copy_is_the_repository_copy(tmp_path: Path) -> None:
    """Build the wheel, install it into a directory, and read the schemas through the installed package."""
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("entra_license_reconciler-*.whl")
    repo_schemas = sorted(p.name for p in (ROOT / "schemas").glob("*.schema.json"))
    assert "policy.schema.json" in repo_schemas
    with zipfile.ZipFile(wheel) as zf:
        for name in repo_schemas:
            assert zf.read(f"reconciler/schemas/{name}") == (ROOT / "schemas" / name).read_bytes(), name
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    probe = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(target)!r})\n"
        "import reconciler\n"
        "from reconciler.policy.schemas import schema_bytes, schema_file\n"
        "kinds = [k for k in ('policy', 'plan', 'tenant') if sys.argv[1:] and k + '.schema.json' in sys.argv[1:]]\n"
        "print(json.dumps({'package': reconciler.__file__, 'files': {k: str(schema_file(k)) for k in kinds},\n"
        "                  'bytes': {k: schema_bytes(k).hex() for k in kinds}}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", probe, *repo_schemas],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["package"]).is_relative_to(target)
    for kind, path in report["files"].items():
        assert Path(path).is_relative_to(target / "reconciler" / "schemas"), path
        assert (
            bytes.fromhex(report["bytes"][kind]) == (ROOT / "schemas" / f"{kind}.schema.json").read_bytes()
        ), kind
    assert "policy" in report["bytes"]
