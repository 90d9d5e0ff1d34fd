"""`reconciler plan` end to end against the built-in emulator (--emulator): output, plan file,
exit codes of SPEC section 3, GitHub annotations and job summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.planfile import read_plan

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(ROOT / "examples" / "sample-tenant.json")
POLICIES = str(ROOT / "policies")

BLOCKING = """\
apiVersion: reconciler/v1
groups:
  - group: LIC-E5-Admins
    members: [admin1@contoso.com, admin2@contoso.com, admin3@contoso.com, carol@contoso.com, dave@contoso.com, erin@contoso.com]
unmanagedGroups: ignore
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["plan", *args])
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the emulator keeps its state under ./.reconciler/
    for var in ("RECONCILER_EMULATOR", "RECONCILER_GRAPH_URL", "GITHUB_STEP_SUMMARY", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(var, raising=False)


def policy(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_sample_plan_text_out_and_show(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, POLICIES, "--emulator", SAMPLE, "--out", "plan.json")
    assert code == 0, err
    assert "+ create security group LIC-E1-Kiosk" in out
    assert "CountViolation  VISIOCLIENT  group LIC-Visio" in out
    assert out.rstrip().endswith("Plan: 8 to assign, 0 to change, 3 to remove, 9 users affected, 10 violations.")
    assert "plan written to plan.json" in err
    plan = read_plan(tmp_path / "plan.json")
    assert plan.tenant_id == "f1b45b40-57df-41f7-9596-7f2313883635" and not plan.blocked
    with pytest.raises(SystemExit):
        main(["show", "plan.json"])
    shown, _ = capsys.readouterr()
    assert shown == out
    # the same tenant and policy: the same plan, but for its timestamp
    code, again, _ = run(capsys, POLICIES, "--emulator", SAMPLE, "--format", "json")
    assert code == 0
    first = json.loads((tmp_path / "plan.json").read_text(encoding="utf-8"))
    second = json.loads(again)
    first.pop("created_at"), second.pop("created_at")
    assert first == second


def test_detailed_exitcode(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, _ = run(capsys, POLICIES, "--emulator", SAMPLE, "--detailed-exitcode")
    assert code == 2
    nothing = policy(tmp_path, "apiVersion: reconciler/v1\nunmanagedGroups: ignore\n")
    code, out, _ = run(capsys, nothing, "--emulator", SAMPLE, "--detailed-exitcode")
    assert code == 0 and out.rstrip().endswith("No changes.")


def test_blocked_plan_is_printed_and_written_then_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = policy(tmp_path, BLOCKING)
    code, out, _ = run(capsys, path, "--emulator", SAMPLE, "--out", "blocked.json")
    assert code == 3
    assert "error  CountViolation  ENTERPRISEPREMIUM  group LIC-E5-Admins" in out
    assert "Blocked:" in out
    assert read_plan(tmp_path / "blocked.json").blocked
    code, out, _ = run(capsys, path, "--emulator", SAMPLE, "--force", "--out", "forced.json")
    assert code == 0 and "This plan was forced" in out
    assert read_plan(tmp_path / "forced.json").forced


def test_policy_errors_exit_3_even_when_forced(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = policy(tmp_path, "apiVersion: reconciler/v1\ngroups:\n  - group: LIC-Nobody\n    licenses: []\n")
    code, out, _ = run(capsys, path, "--emulator", SAMPLE, "--force")
    assert code == 3 and "GroupNotFound" in out and "policy.yaml:3:12" in out


def test_invalid_policy_exits_3_with_every_problem(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = policy(tmp_path, "apiVersion: reconciler/v1\ngroups:\n  - group: X\n    licenses:\n      - sku: NOT_A_SKU\n")
    code, out, err = run(capsys, path, "--emulator", SAMPLE)
    assert code == 3 and out == ""
    assert "policy.yaml:5:" in err and "NOT_A_SKU" in err and "Traceback" not in err


def test_other_tenant_exits_4(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = policy(tmp_path, "apiVersion: reconciler/v1\ntenant: fabrikam.onmicrosoft.com\n")
    code, out, err = run(capsys, path, "--emulator", SAMPLE)
    assert code == 4 and out == ""
    assert "fabrikam.onmicrosoft.com" in err and "contoso.onmicrosoft.com" in err


def test_github_annotations_and_job_summary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, err = run(capsys, policy(tmp_path, BLOCKING), "--emulator", SAMPLE, "--annotations", "github")
    assert code == 3
    # workflow commands go to stderr (the runner reads both streams); stdout stays the rendering
    assert not [line for line in out.splitlines() if line.startswith("::")]
    lines = [line for line in err.splitlines() if line.startswith("::")]
    assert any(line.startswith("::error file=") and "title=CountViolation" in line for line in lines)
    assert "CountViolation" in summary.read_text(encoding="utf-8")


def test_usage_errors_exit_64(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, POLICIES, "--emulator", SAMPLE, "--format", "yaml")[0] == 64
    assert run(capsys, POLICIES, "--emulator", SAMPLE, "--annotations", "gitlab")[0] == 64
    assert run(capsys, POLICIES, "--emulator", SAMPLE, "--graph-url", "https://example.com/v1.0")[0] == 64


def test_readme_command_as_a_subprocess(tmp_path: Path) -> None:
    # what the README runs, from the repository's root: policies/ against the sample tenant
    res = subprocess.run(
        [sys.executable, "-m", "reconciler", "plan", POLICIES, "--emulator", SAMPLE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    for code in ("CountViolation", "MutuallyExclusiveViolation", "ProhibitedInUsageLocationViolation", "UniquenessViolation"):
        assert code in res.stdout
    assert "Traceback" not in res.stderr
