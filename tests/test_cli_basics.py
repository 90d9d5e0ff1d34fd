import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True, text=True)


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("reconciler ")


def test_unknown_flag_is_a_usage_error_with_exit_64() -> None:
    result = run("--no-such-flag")
    assert result.returncode == 64
    assert "Traceback" not in result.stderr
