"""`reconciler apply` at the command line: policy paths with approval (terminal prompt,
--auto-approve, never a prompt without a terminal), saved plans without changes or blocked."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_apply_support import POLICIES, Tenant, writes_in_stats

from reconciler.plan import Plan, Violation
from reconciler.planfile import write_plan

pytestmark = pytest.mark.timeout(120)


def run_bare(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "RECONCILER_"))}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
    )


def test_policy_paths_without_a_terminal_need_auto_approve(tmp_path: Path) -> None:
    res = run_bare("apply", str(POLICIES), cwd=tmp_path)
    assert res.returncode == 64
    assert "--auto-approve" in res.stderr and "Traceback" not in res.stderr


def test_a_plan_file_and_policy_paths_together_are_a_usage_error(tmp_path: Path) -> None:
    plan = Plan("0.1.0", "t", "2026-01-01T00:00:00Z", "sha256:x", "sha256:y", (), ())
    write_plan(plan, tmp_path / "p.json")
    res = run_bare("apply", "p.json", str(POLICIES), cwd=tmp_path)
    assert res.returncode == 64 and "plan file" in res.stderr


def test_a_plan_without_changes_is_no_changes(tmp_path: Path) -> None:
    plan = Plan("0.1.0", "t", "2026-01-01T00:00:00Z", "sha256:x", "sha256:y", (), ())
    write_plan(plan, tmp_path / "p.json")
    res = run_bare("apply", "p.json", "--emulator", "no-such-seed.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "No changes.\n"


def test_a_blocked_plan_is_refused_before_connecting(tmp_path: Path) -> None:
    from reconciler.plan import Action, GraphRequest

    action = Action("reprocess", "r", GraphRequest("POST", "/users/x/reprocessLicenseAssignment"))
    blocked = Violation("CountViolation", "error", "no seats", "buy seats")
    policy = Violation("GroupNotFound", "error", "no group", "fix it")
    for violations, code in (((blocked,), 3), ((policy,), 3)):
        plan = Plan("0.1.0", "t", "2026-01-01T00:00:00Z", "sha256:x", "sha256:y", (action,), violations)
        write_plan(plan, tmp_path / "p.json")
        res = run_bare("apply", "p.json", "--emulator", "no-such-seed.json", cwd=tmp_path)
        assert res.returncode == code, res.stderr
        assert "blocking" in res.stderr or "policy errors" in res.stderr
    # --force accepts licensing violations (and goes on to connect: here the seed is missing -> 64)
    plan = Plan("0.1.0", "t", "2026-01-01T00:00:00Z", "sha256:x", "sha256:y", (action,), (blocked,))
    write_plan(plan, tmp_path / "p.json")
    res = run_bare("apply", "p.json", "--force", "--emulator", "no-such-seed.json", cwd=tmp_path)
    assert res.returncode == 64 and "seed file not found" in res.stderr


def test_policy_paths_with_auto_approve(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    t = Tenant(start_emulator(processing_delay=0.2))
    res = t.cli("apply", str(POLICIES), "--auto-approve", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Plan: " in res.stdout and "Apply complete" in res.stdout
    again = t.cli("apply", str(POLICIES), "--auto-approve", cwd=tmp_path)
    assert again.returncode == 0 and "No changes." in again.stdout and "Apply complete" not in again.stdout


def _answer_on_a_terminal(t: Tenant, answer: str, cwd: Path) -> tuple[int, str]:
    flags, env = t.cli_args("reconciler-apply")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "apply", str(POLICIES), *flags],
        cwd=cwd, env=env, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    os.close(slave)
    seen = b""
    assert proc.stderr is not None
    stderr = proc.stderr
    deadline = time.monotonic() + 60
    try:
        while b"Enter a value" not in seen and time.monotonic() < deadline and proc.poll() is None:
            # the prompt goes to stderr; the terminal only carries the answer
            ready, _, _ = select.select([stderr], [], [], 0.1)
            if ready:
                seen += os.read(stderr.fileno(), 4096)
        os.write(master, (answer + "\n").encode())
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
    return proc.returncode, out + seen.decode() + err


def test_a_terminal_is_asked_for_yes(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    t = Tenant(start_emulator(processing_delay=0.2))
    t.control("POST", "reset-stats")
    code, text = _answer_on_a_terminal(t, "no", tmp_path)
    assert code == 1 and "Apply cancelled" in text, text
    assert writes_in_stats(t.stats()) == 0
    code, text = _answer_on_a_terminal(t, "yes", tmp_path)
    assert code == 0 and "Apply complete" in text, text
    shutil.rmtree(tmp_path / ".reconciler", ignore_errors=True)
