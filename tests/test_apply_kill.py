"""apply killed with SIGKILL mid-way (CLI subprocess, emulator served by this process with a
processing delay): plan and apply again reach the state of an uninterrupted run, and no user
the policy keeps ever loses a service plan on the way (a watcher reads every user's effective
licenses while it all happens)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_apply_support import POLICIES, Tenant, Watcher, normalized

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
]


def test_killed_apply_converges_without_losing_a_license(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    clean = Tenant(start_emulator(processing_delay=0.2))
    assert clean.apply(clean.plan()).exit_code == 0

    t = Tenant(start_emulator(processing_delay=1.5))
    watcher = Watcher(t)
    watcher.start()
    try:
        assert t.cli("plan", str(POLICIES), "--out", "p1.json", cwd=tmp_path, app="reconciler-plan").returncode == 0
        audit = tmp_path / "audit.jsonl"
        proc = t.popen("apply", "p1.json", "--audit-log", str(audit), cwd=tmp_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if audit.exists() and audit.read_text().count("\n") >= 1:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "apply ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        written = audit.read_text().count("\n")
        assert written >= 1

        again = t.cli("plan", str(POLICIES), "--out", "p2.json", cwd=tmp_path, app="reconciler-plan")
        assert again.returncode == 0, again.stdout + again.stderr
        applied = t.cli("apply", "p2.json", "--audit-log", str(audit), cwd=tmp_path)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        final = t.cli("plan", str(POLICIES), "--detailed-exitcode", cwd=tmp_path, app="reconciler-plan")
        assert final.returncode == 0, final.stdout + final.stderr
        time.sleep(0.2)
    finally:
        watcher.stop.set()
        watcher.join(timeout=30)
    assert watcher.reads > 3
    assert watcher.lost == []
    assert normalized(t.snapshot()) == normalized(clean.snapshot())
