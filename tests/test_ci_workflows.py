"""The CI examples: every GitHub workflow and Azure pipeline validates against its published schema
(check-jsonschema's bundled copies, no network), and each does what examples/README.md promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / "examples" / "github-actions"
AZURE = ROOT / "examples" / "azure-devops"
GITHUB_FILES = sorted(GITHUB.glob("*.yml"))
AZURE_FILES = sorted(AZURE.glob("*.yml"))


def _check_jsonschema() -> list[str]:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    if not Path(exe).exists():
        pytest.fail("check-jsonschema is not installed (it is in the project's test extras)")
    return [exe]


def _validate(schema: str, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_check_jsonschema(), *extra, "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def test_the_examples_exist() -> None:
    assert {p.name for p in GITHUB_FILES} == {"plan.yml", "apply.yml", "drift.yml"}
    assert {p.name for p in AZURE_FILES} >= {"azure-pipelines.yml", "drift-pipeline.yml"}


@pytest.mark.parametrize("path", GITHUB_FILES, ids=lambda p: p.name)
def test_github_workflow_matches_the_published_schema(path: Path) -> None:
    result = _validate("vendor.github-workflows", path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", AZURE_FILES, ids=lambda p: p.name)
def test_azure_pipeline_matches_the_published_schema(path: Path) -> None:
    # the bundled Azure Pipelines schema has patterns only Python's regex engine compiles
    result = _validate("vendor.azure-pipelines", path, "--regex-variant", "python")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  plan:\n    steps:\n      - run: true\n")  # no runs-on
    assert _validate("vendor.github-workflows", broken).returncode != 0
    pipeline = tmp_path / "broken-pipeline.yml"
    pipeline.write_text("stages:\n  - stage: a\n    jobs:\n      - job: b\n        stepz: []\n")
    assert _validate("vendor.azure-pipelines", pipeline, "--regex-variant", "python").returncode != 0


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps = job.get("steps")
    assert isinstance(steps, list)
    return steps


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in _steps(job))


def _on(workflow: dict[Any, Any]) -> dict[str, Any]:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    assert isinstance(on, dict)
    return on


def test_plan_workflow() -> None:
    wf = _load(GITHUB / "plan.yml")
    assert _on(wf)["pull_request"]["paths"][0] == "policies/**"
    assert wf["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    job = wf["jobs"]["plan"]
    assert job["env"]["AZURE_TENANT_ID"] == "${{ vars.AZURE_TENANT_ID }}"
    assert "vars." in job["env"]["AZURE_CLIENT_ID"]
    assert not any("secrets." in str(v) for v in job["env"].values()), "OIDC only, no secret"
    runs = _runs(job)
    assert "reconciler validate policies/" in runs
    assert "reconciler plan policies/ --out plan.json --format markdown --annotations github" in runs
    uses = [str(s.get("uses", "")) for s in _steps(job)]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    script = next(
        s["with"]["script"]
        for s in _steps(job)
        if str(s.get("uses", "")).startswith("actions/github-script@")
    )
    assert "<!-- reconciler-plan -->" in script and "updateComment" in script and "createComment" in script
    # forks: a note instead of a plan
    fork_steps = [s for s in _steps(job) if "FORK == 'true'" in str(s.get("if", ""))]
    assert fork_steps and "fork" in str(fork_steps[0]["run"]).lower()


def test_apply_workflow() -> None:
    wf = _load(GITHUB / "apply.yml")
    assert _on(wf)["push"]["branches"] == ["main"]
    assert wf["concurrency"] == {
        "group": "reconciler-${{ vars.AZURE_TENANT_ID }}",
        "cancel-in-progress": False,
    }
    assert wf["permissions"]["id-token"] == "write"
    apply = wf["jobs"]["apply"]
    assert apply["environment"] == "licensing-production"
    assert apply["needs"] == "plan"
    assert apply["env"]["AZURE_CLIENT_ID"] != wf["jobs"]["plan"]["env"]["AZURE_CLIENT_ID"], (
        "two app registrations"
    )
    assert "reconciler plan policies/ --out plan.json" in _runs(wf["jobs"]["plan"])
    assert "reconciler apply plan.json --auto-approve --wait" in _runs(apply)
    audit = [s for s in _steps(apply) if s.get("with", {}).get("path") == ".reconciler/audit.jsonl"]
    assert audit and audit[0]["if"] == "always()"


def test_drift_workflow() -> None:
    wf = _load(GITHUB / "drift.yml")
    on = _on(wf)
    assert on["schedule"][0]["cron"] and "workflow_dispatch" in on
    assert wf["permissions"]["issues"] == "write"
    job = wf["jobs"]["drift"]
    assert "--detailed-exitcode" in _runs(job)
    script = next(
        s["with"]["script"]
        for s in _steps(job)
        if str(s.get("uses", "")).startswith("actions/github-script@")
    )
    assert "reconciler-drift" in script and "issues.create" in script and "issues.update" in script


def test_azure_pipelines_sign_in_through_a_federated_token_file() -> None:
    for path in AZURE_FILES:
        text = path.read_text()
        if "AzureCLI@2" not in text:
            continue
        assert "addSpnToEnvironment: true" in text
        assert 'AZURE_FEDERATED_TOKEN_FILE="$token_file"' in text
        assert "$idToken" in text and "echo $idToken" not in text, f"{path.name} must never print the token"
    main = _load(AZURE / "azure-pipelines.yml")
    deployments = [j for s in main["stages"] for j in s["jobs"] if "deployment" in j]
    assert deployments and deployments[0]["environment"] == "licensing-production"
    drift = _load(AZURE / "drift-pipeline.yml")
    assert drift["schedules"][0]["cron"] and drift["trigger"] == "none"
