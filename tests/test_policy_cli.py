"""`reconciler validate` and `reconciler schema`: output, exit codes, and the issue's "done when" cases."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import main

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "policies"


def run_cli(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        else:  # pragma: no cover - main always exits
            code = 0
    return code, out.getvalue(), err.getvalue()


def run_process(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *argv], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_five_mistakes_over_two_files_are_all_reported_with_file_and_line() -> None:
    folder = FIXTURES / "five-mistakes"
    groups, settings = folder / "10-groups.yaml", folder / "20-settings.yaml"
    code, out, err = run_cli("validate", str(folder))
    assert code == 3
    assert out == ""
    lines = err.splitlines()
    assert lines[-1] == "invalid: 5 problems in 2 files"
    located = [line.split(": ", 1)[0] for line in lines[:-1]]
    assert located == [
        f"{groups}:6:14",
        f"{groups}:11:25",
        f"{settings}:3:12",
        f"{settings}:6:18",
        f"{settings}:8:16",
    ]
    text = "\n".join(lines)
    assert "unknown SKU 'ENTERPRISPACK' in group 'LIC-E3-Base'; did you mean ENTERPRISEPACK?" in text
    assert "SHAREPOINTENTERPRISE is not part of STANDARDPACK" in text
    assert f"group 'LIC-E3-Base' is listed twice (first at {groups}:4:12)" in text
    assert "unmanagedGroups must be one of report, ignore, remove" in text
    assert "safety.maxRemovals must be a non-negative whole number" in text
    assert "Traceback" not in err


def test_valid_policy_exits_0_with_a_summary_on_stdout() -> None:
    code, out, err = run_cli("validate", str(FIXTURES / "valid" / "spec-example.yaml"))
    assert (code, out, err) == (0, "valid: 1 file, 2 groups, 3 licenses\n", "")


def test_several_paths_are_one_policy() -> None:
    a = FIXTURES / "split-valid" / "a-groups.yaml"
    b = FIXTURES / "split-valid" / "more" / "b-kiosk.yml"
    assert run_cli("validate", str(a), str(b))[:2] == (0, "valid: 2 files, 2 groups, 2 licenses\n")


def test_missing_path_is_a_usage_error_64(tmp_path: Path) -> None:
    code, _, err = run_cli("validate", str(tmp_path / "nope"))
    assert code == 64
    assert err == f"error: {tmp_path / 'nope'}: no such file or directory\n"


def test_no_path_is_a_usage_error_64() -> None:
    code, _, err = run_cli("validate")
    assert code == 64 and "PATH" in err


def test_control_characters_from_the_file_are_escaped_in_messages(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text('apiVersion: reconciler/v1\n"\\e[31mred": 1\n', encoding="utf-8")
    code, _, err = run_cli("validate", str(path))
    assert code == 3
    assert "\x1b" not in err and "\\x1b[31mred" in err


def test_schema_prints_the_policy_schema() -> None:
    code, out, err = run_cli("schema")
    assert code == 0 and err == ""
    assert out == (ROOT / "schemas" / "policy.schema.json").read_text(encoding="utf-8")
    assert run_cli("schema", "--kind", "policy")[1] == out
    assert json.loads(out)["$id"] == "https://reconciler.dev/schemas/policy/v1.json"


@pytest.mark.parametrize("kind", ["plan", "tenant"])
def test_schema_other_kinds(kind: str) -> None:
    path = ROOT / "schemas" / f"{kind}.schema.json"
    code, out, err = run_cli("schema", "--kind", kind)
    if path.is_file():
        assert code == 0 and json.loads(out) == json.loads(path.read_text(encoding="utf-8"))
    else:  # not written yet by its owner
        assert code == 1 and "not installed" in err


def test_schema_unknown_kind_is_a_usage_error() -> None:
    code, out, err = run_cli("schema", "--kind", "bogus")
    assert (code, out) == (64, "")
    assert "--kind must be one of policy, plan, tenant" in err


def test_schema_missing_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.policy import schemas

    def missing(kind: str) -> bytes:
        raise schemas.SchemaNotFound(
            f"the {kind} schema ({kind}.schema.json) is not installed with this copy"
        )

    monkeypatch.setattr(schemas, "schema_bytes", missing)
    code, out, err = run_cli("schema", "--kind", "plan")
    assert (code, out) == (1, "")
    assert err == "error: the plan schema (plan.schema.json) is not installed with this copy\n"


# --- a few real processes -------------------------------------------------------------------------


def test_process_valid_and_invalid() -> None:
    ok = run_process("validate", "tests/fixtures/policies/valid")
    assert (ok.returncode, ok.stdout) == (0, "valid: 1 file, 2 groups, 3 licenses\n")
    bad = run_process("validate", "tests/fixtures/policies/five-mistakes")
    assert bad.returncode == 3
    assert bad.stderr.splitlines()[0].startswith(
        "tests/fixtures/policies/five-mistakes/10-groups.yaml:6:14: unknown SKU 'ENTERPRISPACK'"
    )
    assert "Traceback" not in bad.stderr


def test_process_missing_path_and_binary_file(tmp_path: Path) -> None:
    missing = run_process("validate", str(tmp_path / "none.yaml"))
    assert missing.returncode == 64 and "Traceback" not in missing.stderr
    binary = tmp_path / "b.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    result = run_process("validate", str(binary))
    assert result.returncode == 3
    assert f"{binary}:1:1: binary data" in result.stderr and "Traceback" not in result.stderr


def test_process_schema() -> None:
    result = run_process("schema", "--kind", "policy")
    assert result.returncode == 0
    assert json.loads(result.stdout)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
