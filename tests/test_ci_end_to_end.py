"""The CI examples end to end, against the emulator over HTTPS, with the commands and environment
variables the GitHub workflows use (examples/github-actions): a pull request is planned by the
read-only app signed in through GitHub OIDC (the comment markdown is produced, byte-identical on a
re-run), the writing app applies it from the approved environment, and a change made by hand through
Graph afterwards is caught by the drift run (exit 2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.graph.credentials import ssl_context
from tests.fake_github_oidc import FakeGitHubOidc
from tests.test_ci_federation import (
    APPLY_APP,
    ENV_SUBJECT,
    MAIN_SUBJECT,
    PLAN_APP,
    PR_SUBJECT,
    REPO,
    TENANT,
    federated_seed,
)

ROOT = Path(__file__).resolve().parent.parent
E3_GROUP = "8c129b84-7766-5585-a180-8b997afe016b"  # LIC-E3-Base in the sample tenant
E3 = "6fd2c87f-b296-42f0-b197-1e91e994b900"  # ENTERPRISEPACK
YAMMER, SWAY, TEAMS = (
    "7547a3fe-08ee-4ccb-b430-5077c5041653",
    "a23b959c-7ce8-4e57-9140-b90eb88a9e97",
    "57ff2da0-773e-42df-b2af-ffb7a2317929",
)
MARKER = "<!-- reconciler-plan -->"


class Runner:
    """Runs `reconciler` as the workflow steps do: in the checkout, with the job's environment."""

    def __init__(self, repo: Path, emulator: Any, oidc: FakeGitHubOidc, oidc_url: str, home: Path) -> None:
        self.repo = repo
        self.summary = repo.parent / "step-summary.md"
        drop = ("AZURE_", "ACTIONS_", "GITHUB_", "RECONCILER_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        self.base_env.update(
            HOME=str(home),
            NO_COLOR="1",
            GITHUB_ACTIONS="true",
            GITHUB_REPOSITORY=REPO,
            GITHUB_STEP_SUMMARY=str(self.summary),
            ACTIONS_ID_TOKEN_REQUEST_URL=oidc_url,
            ACTIONS_ID_TOKEN_REQUEST_TOKEN=oidc.request_token,
            AZURE_TENANT_ID=TENANT,
            RECONCILER_AUTHORITY=emulator.server.base_url,
            RECONCILER_GRAPH_URL=emulator.server.graph_url,
            RECONCILER_CA_BUNDLE=str(emulator.server.ca_path),
        )
        self.oidc = oidc

    def run(self, *args: str, client_id: str, subject: str, **env: str) -> subprocess.CompletedProcess[str]:
        self.oidc.subject = subject  # which job GitHub would be signing the ID token for
        full = {**self.base_env, "AZURE_CLIENT_ID": client_id, **env}
        result = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            cwd=self.repo,
            env=full,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result


@pytest.fixture
def ci(
    tmp_path: Path, start_emulator: Callable[..., Any], serve_app: Callable[..., Any]
) -> tuple[Runner, Any]:
    oidc = FakeGitHubOidc(repository=REPO, subject=PR_SUBJECT)
    seed_path = tmp_path / "tenant.json"
    seed_path.write_text(json.dumps(federated_seed(oidc)))  # the apps have no secret: federation only
    emulator = start_emulator(seed_path, processing_delay=0.2)
    oidc_server = serve_app(oidc.app(), tls=True)
    repo = tmp_path / "policy-repo"
    shutil.copytree(ROOT / "policies", repo / "policies")
    home = tmp_path / "home"
    home.mkdir()
    return Runner(repo, emulator, oidc, oidc.request_url(oidc_server.base_url), home), emulator


def _graph(emulator: Any, method: str, path: str, body: Any = None) -> httpx.Response:
    token = emulator.tokens.issue_access_token(APPLY_APP)  # an administrator's tool, outside reconciler
    with httpx.Client(verify=ssl_context(str(emulator.server.ca_path)), trust_env=False) as http:
        return http.request(
            method,
            f"{emulator.server.graph_url}/{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )


@pytest.mark.slow
def test_pull_request_plan_then_approved_apply_then_drift(ci: tuple[Runner, Any]) -> None:
    runner, emulator = ci

    # --- plan.yml: validate, then plan the pull request with the read-only app (PR subject)
    valid = runner.run("validate", "policies/", client_id=PLAN_APP, subject=PR_SUBJECT)
    assert valid.returncode == 0, valid.stderr
    plan_args = ("plan", "policies/", "--out", "plan.json", "--format", "markdown", "--annotations", "github")
    first = runner.run(*plan_args, client_id=PLAN_APP, subject=PR_SUBJECT)
    assert first.returncode == 0, first.stderr
    comment = first.stdout
    assert comment.startswith(MARKER + "\n")  # the hidden marker github-script finds the comment by
    assert "LIC-E3-Base" in comment
    assert any(line.startswith("::warning file=policies/") for line in first.stderr.splitlines())
    assert not any(line.startswith("::") for line in comment.splitlines())
    summary = runner.summary.read_text()
    assert summary.startswith(MARKER)
    plan_file = json.loads((runner.repo / "plan.json").read_text())
    assert plan_file["tenant_id"] == TENANT and plan_file["actions"]
    # a re-run (a new push to the pull request with the same policy) updates the comment with the same bytes
    second = runner.run(*plan_args, client_id=PLAN_APP, subject=PR_SUBJECT)
    assert second.returncode == 0, second.stderr
    assert second.stdout.encode() == comment.encode()
    assert runner.oidc.issued and all(c["sub"] == PR_SUBJECT for c in runner.oidc.issued)

    # the pull request's token cannot act as the writing app
    refused = runner.run("apply", "plan.json", "--auto-approve", client_id=APPLY_APP, subject=PR_SUBJECT)
    assert refused.returncode == 1
    assert "AADSTS700213" in refused.stderr

    # --- apply.yml: the merged commit planned again (read-only app, main), applied from the environment
    merged = runner.run(
        "plan", "policies/", "--out", "plan.json", "--format", "markdown", "--detailed-exitcode",
        client_id=PLAN_APP, subject=MAIN_SUBJECT,
    )  # fmt: skip
    assert merged.returncode == 2, merged.stderr
    applied = runner.run(
        "apply",
        "plan.json",
        "--auto-approve",
        "--wait",
        "--timeout",
        "300",
        client_id=APPLY_APP,
        subject=ENV_SUBJECT,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    audit = runner.repo / ".reconciler" / "audit.jsonl"
    records = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
    assert records, "the audit log the workflow uploads"
    assert "emulator-only" not in audit.read_text()
    for token_like in (runner.oidc.request_token,):
        assert token_like not in audit.read_text() + applied.stdout + applied.stderr

    # --- drift.yml: nothing to report right after the apply ...
    clean = runner.run(
        "plan", "policies/", "--out", "plan.json", "--format", "markdown", "--detailed-exitcode",
        client_id=PLAN_APP, subject=MAIN_SUBJECT,
    )  # fmt: skip
    assert clean.returncode == 0, clean.stdout + clean.stderr

    # ... until someone switches Teams off for LIC-E3-Base in the portal
    by_hand = _graph(
        emulator,
        "POST",
        f"groups/{E3_GROUP}/assignLicense",
        {"addLicenses": [{"skuId": E3, "disabledPlans": [YAMMER, SWAY, TEAMS]}], "removeLicenses": []},
    )
    assert by_hand.status_code in (200, 202), by_hand.text
    drift = runner.run(
        "plan", "policies/", "--out", "plan.json", "--format", "markdown", "--detailed-exitcode",
        client_id=PLAN_APP, subject=MAIN_SUBJECT,
    )  # fmt: skip
    assert drift.returncode == 2, drift.stdout + drift.stderr
    assert drift.stdout.startswith(MARKER) and "LIC-E3-Base" in drift.stdout and "TEAMS1" in drift.stdout
    actions = json.loads((runner.repo / "plan.json").read_text())["actions"]
    assert [a["kind"] for a in actions if a.get("group", {}).get("id") == E3_GROUP] == ["updateLicense"]


def test_fork_pull_request_without_oidc_token(ci: tuple[Runner, Any]) -> None:
    runner, _ = ci
    env = dict(runner.base_env)
    del env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    env.update(GITHUB_EVENT_NAME="pull_request", AZURE_CLIENT_ID=PLAN_APP)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "plan",
            "policies/",
            "--out",
            "plan.json",
            "--format",
            "markdown",
        ],
        cwd=runner.repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "fork" in result.stderr and "ACTIONS_ID_TOKEN_REQUEST_URL" in result.stderr
    assert not (runner.repo / "plan.json").exists()
