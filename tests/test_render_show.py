"""`reconciler show PLANFILE [--format text|markdown|json]` (SPEC section 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import plan_samples
import pytest

from reconciler import planfile
from reconciler.policy.schemas import load_schema
from reconciler.render import MARKER, render_markdown, render_text


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], capture_output=True, text=True, encoding="utf-8"
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("show") / "plan.json"
    planfile.write_plan(plan_samples.blocking(), target)
    return target


def test_show_text_by_default(saved: Path) -> None:
    result = run("show", str(saved))
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_text(plan_samples.blocking())  # not a terminal: no colour
    assert result.stdout.splitlines()[-1].startswith("Plan: 1 to assign, 1 to change, 1 to remove")


def test_show_markdown(saved: Path) -> None:
    result = run("show", str(saved), "--format", "markdown")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == MARKER
    assert result.stdout == render_markdown(plan_samples.blocking(), hint=f"reconciler show {saved}")


def test_show_json_validates_against_the_schema(saved: Path) -> None:
    result = run("show", str(saved), "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    schema = load_schema("plan")
    jsonschema.validators.validator_for(schema)(schema).validate(doc)
    assert result.stdout == saved.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{ not json", "invalid JSON"),
        ('{"format_version": 99}', "format_version 99 is not supported"),
        ('{"format_version": 1, "actions": "all of them"}', "invalid plan file"),
        ("", "invalid JSON"),
    ],
)
def test_corrupt_plan_file_exits_3_naming_the_file(tmp_path: Path, content: str, expected: str) -> None:
    target = tmp_path / "corrupt.json"
    target.write_text(content, encoding="utf-8")
    result = run("show", str(target))
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert str(target) in result.stderr
    assert expected in result.stderr
    assert result.stdout == ""


def test_missing_plan_file_exits_3(tmp_path: Path) -> None:
    result = run("show", str(tmp_path / "nope.json"))
    assert result.returncode == 3
    assert "no such plan file" in result.stderr


def test_bad_format_is_a_usage_error(saved: Path) -> None:
    result = run("show", str(saved), "--format", "yaml")
    assert result.returncode == 64
    assert "--format" in result.stderr
    assert "Traceback" not in result.stderr
