"""The plan file: versioned JSON, exact round trip, schema, clear errors (SPEC section 5)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import plan_samples
import pytest

from reconciler import planfile
from reconciler.errors import EXIT_INVALID, PlanFileError
from reconciler.plan import ACTION_KINDS, LICENSE_CODES, PLANNER_CODES, Action, GraphRequest, Plan
from reconciler.policy.schemas import load_schema

SAMPLES = sorted(plan_samples.ALL)


def _validator() -> jsonschema.protocols.Validator:
    schema = load_schema("plan")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.mark.parametrize("name", SAMPLES)
def test_round_trip_is_exact(name: str) -> None:
    plan = plan_samples.ALL[name]()
    text = planfile.dumps(plan)
    again = planfile.loads(text)
    assert again == plan
    assert planfile.dumps(again) == text


@pytest.mark.parametrize("name", SAMPLES)
def test_output_validates_against_the_schema(name: str) -> None:
    doc = json.loads(planfile.dumps(plan_samples.ALL[name]()))
    errors = list(_validator().iter_errors(doc))
    assert errors == []


def test_document_fields_and_summary() -> None:
    plan = plan_samples.blocking(forced=True)
    doc = json.loads(planfile.dumps(plan))
    assert list(doc) == [
        "format_version",
        "tool_version",
        "tenant_id",
        "created_at",
        "policy_digest",
        "state_fingerprint",
        "forced",
        "summary",
        "actions",
        "violations",
        "prediction",
    ]
    assert doc["format_version"] == 1
    assert doc["forced"] is True
    assert doc["summary"] == {"assignLicense": 1, "updateLicense": 1, "removeLicense": 1}
    first = doc["actions"][0]
    assert first["kind"] == "assignLicense"
    assert first["group"] == {"name": "LIC-E3-Base", "id": plan_samples.G_E3}
    assert first["request"]["method"] == "POST"
    assert first["request"]["url"] == f"/groups/{plan_samples.G_E3}/assignLicense"
    assert first["request"]["body"]["removeLicenses"] == [plan_samples.E1]
    assert first["source"] == {"path": "policies/groups.yaml", "line": 4, "column": 9}
    assert doc["violations"][0]["code"] == "MutuallyExclusiveViolation"
    assert doc["prediction"]["u2"][0]["error"] == "MutuallyExclusiveViolation"


def test_schema_enums_match_the_plan_model() -> None:
    schema = load_schema("plan")
    kinds = schema["$defs"]["actionKind"]["enum"]
    codes = schema["$defs"]["violationCode"]["enum"]
    assert sorted(kinds) == sorted(ACTION_KINDS) and len(set(kinds)) == len(kinds)
    assert sorted(codes) == sorted((*LICENSE_CODES, *PLANNER_CODES)) and len(set(codes)) == len(codes)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/plan/v1.json")


def _described(node: Any, path: str, missing: list[str]) -> None:
    if isinstance(node, dict):
        props = node.get("properties", {})
        for key, sub in props.items():
            if isinstance(sub, dict) and "description" not in sub and "$ref" not in sub:
                missing.append(f"{path}.{key}")
        for key, sub in node.items():
            _described(sub, f"{path}.{key}", missing)
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            _described(sub, f"{path}[{i}]", missing)


def test_every_schema_field_is_described() -> None:
    missing: list[str] = []
    _described(load_schema("plan"), "$", missing)
    assert missing == []


def test_output_is_deterministic_whatever_the_mapping_order() -> None:
    a = Action(
        kind="assignLicense",
        reason="r",
        request=GraphRequest("POST", "/groups/g/assignLicense", {"removeLicenses": [], "addLicenses": []}),
        details={"seats": {"needed": 1, "free": 2}, "enabledPlans": ["A"]},
    )
    b = Action(
        kind="assignLicense",
        reason="r",
        request=GraphRequest("POST", "/groups/g/assignLicense", {"addLicenses": [], "removeLicenses": []}),
        details={"enabledPlans": ["A"], "seats": {"free": 2, "needed": 1}},
    )
    base = plan_samples.no_changes()
    p1 = Plan(**{**base.__dict__, "actions": (a,)})
    p2 = Plan(**{**base.__dict__, "actions": (b,)})
    assert planfile.dumps(p1) == planfile.dumps(p2)


def test_write_and_read_a_file(tmp_path: Path) -> None:
    plan = plan_samples.removals()
    target = tmp_path / "plan.json"
    planfile.write_plan(plan, target)
    assert target.read_text(encoding="utf-8").endswith("}\n")
    assert planfile.read_plan(target) == plan
    first = target.read_bytes()
    planfile.write_plan(plan, target)
    assert target.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temporary file left behind


def test_non_ascii_names_survive(tmp_path: Path) -> None:
    base = plan_samples.removals()
    action = base.actions[0]
    renamed = Action(**{**action.__dict__, "reason": "Gruppe „Lizenz-Ü“ – entfernt", "users": ("zoë@contoso.com",)})
    plan = Plan(**{**base.__dict__, "actions": (renamed,)})
    target = tmp_path / "p.json"
    planfile.write_plan(plan, target)
    assert "zoë@contoso.com" in target.read_text(encoding="utf-8")
    assert planfile.read_plan(target) == plan


# ---------------------------------------------------------------- refusing bad files


def _good() -> dict[str, Any]:
    return json.loads(planfile.dumps(plan_samples.blocking()))


def _error(tmp_path: Path, content: str | bytes) -> str:
    target = tmp_path / "broken.json"
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    with pytest.raises(PlanFileError) as info:
        planfile.read_plan(target)
    assert info.value.exit_code == EXIT_INVALID == 3
    message = str(info.value)
    assert str(target) in message
    return message


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    doc = _good()
    doc["format_version"] = 2
    message = _error(tmp_path, json.dumps(doc))
    assert "format_version 2 is not supported" in message


@pytest.mark.parametrize("version", ["1", True, None, 1.5])
def test_format_version_of_another_type_is_refused(tmp_path: Path, version: Any) -> None:
    doc = _good()
    doc["format_version"] = version
    assert "is not supported" in _error(tmp_path, json.dumps(doc))


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    message = _error(tmp_path, '{\n  "format_version": 1,\n  "tool_version" "0.1.0"\n}\n')
    assert message.startswith(f"{tmp_path / 'broken.json'}:3:")
    assert "invalid JSON" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "invalid JSON"),
        ("[1, 2]", "top level is not a JSON object"),
        ('{"actions": []}', "no format_version"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        ("Plan: 1 to assign, 0 to change, 0 to remove, 1 user affected, 0 violations.\n", "invalid JSON"),
    ],
)
def test_garbage_is_refused(tmp_path: Path, content: str | bytes, expected: str) -> None:
    assert expected in _error(tmp_path, content)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(PlanFileError, match="no such plan file"):
        planfile.read_plan(tmp_path / "nope.json")
    with pytest.raises(PlanFileError, match="is a directory"):
        planfile.read_plan(tmp_path)


MUTATIONS: list[tuple[str, Any]] = [
    ("unknown kind", lambda d: d["actions"][0].update(kind="deleteEverything")),
    ("unknown code", lambda d: d["violations"][0].update(code="Oops")),
    ("bad severity", lambda d: d["violations"][0].update(severity="fatal")),
    ("bad status", lambda d: d["violations"][0].update(status="maybe")),
    ("missing reason", lambda d: d["actions"][0].pop("reason")),
    ("extra field", lambda d: d["actions"][0].update(token="eyJ0eXAi")),
    ("users not strings", lambda d: d["actions"][0].update(users=[1, 2])),
    ("group without id", lambda d: d["actions"][0].update(group={"name": "G"})),
    ("line zero", lambda d: d["violations"][0]["source"].update(line=0)),
    ("line as bool", lambda d: d["violations"][0]["source"].update(line=True)),
    ("method", lambda d: d["actions"][0]["request"].update(method="FETCH")),
    ("body a list", lambda d: d["actions"][0]["request"].update(body=[])),
    ("forced not bool", lambda d: d.update(forced="yes")),
    ("prediction state", lambda d: d["prediction"]["u1"][0].update(state="Fine")),
    ("summary kind", lambda d: d["summary"].update(deleteEverything=1)),
    ("summary zero", lambda d: d["summary"].update(reprocess=0)),
    ("no actions", lambda d: d.pop("actions")),
    ("actions object", lambda d: d.update(actions={})),
    ("details list", lambda d: d["actions"][0].update(details=[])),
    ("seats string", lambda d: d["actions"][0]["details"].update(seats={"needed": "many"})),
    ("empty tenant", lambda d: d.update(tenant_id="")),
    ("top-level extra", lambda d: d.update(secret="x")),
]


@pytest.mark.parametrize(("name", "mutate"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_schema_violations_are_refused_and_agree_with_jsonschema(tmp_path: Path, name: str, mutate: Any) -> None:
    doc = _good()
    mutate(doc)
    # the fast validator and jsonschema agree that this is invalid
    assert list(_validator().iter_errors(doc)), name
    assert planfile.schema_errors(doc), name
    message = _error(tmp_path, json.dumps(doc))
    assert "invalid plan file" in message
    assert "Traceback" not in message


def test_fast_validator_accepts_what_jsonschema_accepts() -> None:
    for name in SAMPLES:
        doc = json.loads(planfile.dumps(plan_samples.ALL[name]()))
        assert planfile.schema_errors(doc) == []
        # optional details keys and nulls that a planner may legitimately leave out or set
        doc2 = copy.deepcopy(doc)
        for action in doc2["actions"]:
            action["details"]["custom"] = {"anything": [1, "x", None]}
        assert list(_validator().iter_errors(doc2)) == []
        assert planfile.schema_errors(doc2) == []


def test_error_messages_name_the_json_path(tmp_path: Path) -> None:
    doc = _good()
    doc["actions"][2]["kind"] = "nope"
    message = _error(tmp_path, json.dumps(doc))
    assert "$.actions[2].kind" in message


def test_summary_that_disagrees_with_actions_is_refused(tmp_path: Path) -> None:
    doc = _good()
    doc["summary"]["assignLicense"] = 7
    assert "does not match its actions" in _error(tmp_path, json.dumps(doc))


def test_control_characters_in_the_file_are_not_echoed(tmp_path: Path) -> None:
    doc = _good()
    doc["actions"][0]["kind"] = "\x1b[31mred\x07"
    message = _error(tmp_path, json.dumps(doc))
    assert "\x1b" not in message and "\x07" not in message


def test_unwritable_target_is_a_plan_file_error(tmp_path: Path) -> None:
    with pytest.raises(PlanFileError, match="cannot write"):
        planfile.write_plan(plan_samples.no_changes(), tmp_path / "missing-dir" / "plan.json")
