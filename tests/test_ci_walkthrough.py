"""examples/README.md part 1, run as a new user would: every sh block between the walkthrough marks,
in order, in an empty directory, with only the installed `reconciler` on PATH. From nothing to an
exported, migrated, changed, applied and drift-checked policy against the emulator."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "examples" / "README.md"


def walkthrough_script(port: int) -> str:
    text = README.read_text()
    start = text.index("<!-- walkthrough:start")
    end = text.index("<!-- walkthrough:end -->")
    blocks = re.findall(r"^```sh\n(.*?)^```$", text[start:end], flags=re.S | re.M)
    assert len(blocks) >= 8
    body = "\n".join(blocks).replace("8443", str(port))
    return "set -euo pipefail\ntrap 'kill ${EMULATOR_PID:-} 2>/dev/null || true' EXIT\n" + body


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_walkthrough_runs_from_an_empty_directory(tmp_path: Path) -> None:
    drop = ("AZURE_", "ACTIONS_", "GITHUB_", "RECONCILER_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        HOME=str(tmp_path),
        NO_COLOR="1",
        RECONCILER_SRC=str(ROOT),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        GIT_AUTHOR_NAME="Admin",
        GIT_AUTHOR_EMAIL="admin@contoso.com",
        GIT_COMMITTER_NAME="Admin",
        GIT_COMMITTER_EMAIL="admin@contoso.com",
    )
    result = subprocess.run(
        ["bash", "-c", walkthrough_script(_free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    repo = tmp_path / "licensing-policies"
    assert sorted(p.name for p in (repo / "policies").iterdir()) == [
        "20-migrate-e3.yaml",
        "30-kiosk.yaml",
        "groups.yaml",
    ]
    assert (repo / "plan.md").read_text().startswith("<!-- reconciler-plan -->")
    assert (repo / ".reconciler" / "audit.jsonl").stat().st_size > 0
    log = subprocess.run(["git", "log", "--format=%s"], cwd=repo, capture_output=True, text=True, env=env)
    assert log.stdout.splitlines()[-1] == "licensing policy: the tenant as it is"
