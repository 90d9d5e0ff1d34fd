"""CLI behaviour the CI examples rely on: annotations on stderr (stdout stays the rendering, so
`--format json | jq` works), the job summary, and the fork pull-request message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample-tenant.json"
TENANT = "f1b45b40-57df-41f7-9596-7f2313883635"
PLAN_APP = "2f6a1c9e-7b4d-4e21-9a57-0c3d8e5f1a01"


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The process environment without anything that selects a credential or a connection."""
    drop = ("AZURE_", "ACTIONS_", "GITHUB_", "RECONCILER_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(HOME=str(tmp_path), NO_COLOR="1", **extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_annotations_go_to_stderr_and_json_stays_parseable(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    env = _clean_env(tmp_path, GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary))
    policies = tmp_path / "policies"
    policies.mkdir()
    for f in (ROOT / "policies").glob("*.yaml"):
        (policies / f.name).write_text(f.read_text())
    result = _run(
        ["plan", "policies", "--emulator", str(SAMPLE), "--format", "json", "--annotations", "github"],
        env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)  # nothing but the plan on stdout
    assert plan["tenant_id"] == TENANT
    annotations = [line for line in result.stderr.splitlines() if line.startswith("::")]
    assert annotations, result.stderr
    assert all(line.startswith(("::error file=", "::warning file=")) for line in annotations)
    assert any("file=policies/licensed-groups.yaml,line=" in line for line in annotations)
    assert "::" not in result.stdout
    # GITHUB_STEP_SUMMARY was picked up without a flag
    assert summary.read_text().startswith("<!-- reconciler-plan -->")


def test_fork_pull_request_gets_a_clear_message(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps(
            {
                "pull_request": {
                    "head": {"repo": {"full_name": "someone/policies", "fork": True}},
                    "base": {"repo": {"full_name": "contoso/policies", "fork": False}},
                }
            }
        )
    )
    env = _clean_env(
        tmp_path,
        GITHUB_ACTIONS="true",
        GITHUB_EVENT_NAME="pull_request",
        GITHUB_EVENT_PATH=str(event),
        AZURE_TENANT_ID=TENANT,
        AZURE_CLIENT_ID=PLAN_APP,
    )
    result = _run(["plan", str(ROOT / "policies")], env, tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "fork" in result.stderr and "OIDC token" in result.stderr
    assert "reconciler validate" in result.stderr
    assert result.stdout == ""


def test_github_actions_without_id_token_permission_says_what_to_add(tmp_path: Path) -> None:
    env = _clean_env(tmp_path, GITHUB_ACTIONS="true", AZURE_TENANT_ID=TENANT, AZURE_CLIENT_ID=PLAN_APP)
    result = _run(["plan", str(ROOT / "policies")], env, tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "id-token: write" in result.stderr
