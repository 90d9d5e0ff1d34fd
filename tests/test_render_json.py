"""JSON rendering: the plan file itself, valid against schemas/plan.schema.json."""

from __future__ import annotations

import json

import jsonschema
import plan_samples
import pytest

from reconciler import planfile
from reconciler.policy.schemas import load_schema
from reconciler.render import render, render_json


@pytest.mark.parametrize("name", sorted(plan_samples.ALL))
def test_json_is_the_plan_file_and_validates(name: str) -> None:
    plan = plan_samples.ALL[name]()
    text = render_json(plan)
    assert text == planfile.dumps(plan) == render(plan, "json")
    schema = load_schema("plan")
    jsonschema.validators.validator_for(schema)(schema).validate(json.loads(text))
    assert planfile.loads(text) == plan
    assert render_json(plan_samples.ALL[name]()) == text


def test_json_counts_and_flags() -> None:
    doc = json.loads(render_json(plan_samples.many_users(30)))
    assert doc["summary"] == {"createGroup": 1, "addMember": 30, "setUsageLocation": 30, "assignLicense": 1}
    assert len(doc["actions"]) == 62
    assert [v["code"] for v in doc["violations"]] == ["CountViolation", "UsageLocationFallback"]


def test_unknown_format_name() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(plan_samples.no_changes(), "yaml")
