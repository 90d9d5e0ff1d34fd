"""ConnectionOptions: flags over environment, emulator conflicts, seed application choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import UsageError
from reconciler.graph.connect import ConnectionOptions, _seed_app, connect, emulator_state_dir
from reconciler.graph.credentials import MissingCredentialError

SEED = {
    "applications": [
        {
            "appId": "a-read",
            "displayName": "reconciler-plan",
            "secret": "s1",
            "permissions": ["User.Read.All"],
        },
        {
            "appId": "a-write",
            "displayName": "reconciler-apply",
            "secret": "s2",
            "permissions": ["LicenseAssignment.ReadWrite.All"],
        },
        {"appId": "a-other", "displayName": "other", "secret": "s3", "permissions": ["Group.ReadWrite.All"]},
    ]
}


def test_flags_win_over_environment() -> None:
    env = {
        "RECONCILER_GRAPH_URL": "https://env.test/v1.0/",
        "RECONCILER_AUTHORITY": "https://login.env.test",
        "RECONCILER_CA_BUNDLE": "/env/ca.pem",
        "AZURE_TENANT_ID": "env-tenant",
        "AZURE_CLIENT_ID": "env-client",
    }
    from_env = ConnectionOptions.resolve(env=env)
    assert from_env.graph_url == "https://env.test/v1.0"
    assert from_env.authority == "https://login.env.test"
    assert (from_env.ca_bundle, from_env.tenant_id, from_env.client_id) == (
        "/env/ca.pem",
        "env-tenant",
        "env-client",
    )
    flags = ConnectionOptions.resolve(graph_url="https://flag.test/v1.0", tenant_id="flag-tenant", env=env)
    assert flags.graph_url == "https://flag.test/v1.0" and flags.tenant_id == "flag-tenant"
    defaults = ConnectionOptions.resolve(env={})
    assert defaults.graph_url == "https://graph.microsoft.com/v1.0"
    assert defaults.authority == "https://login.microsoftonline.com"
    assert defaults.emulator is None  # never the emulator unless asked


def test_emulator_from_environment_and_conflicting_flags() -> None:
    assert ConnectionOptions.resolve(env={"RECONCILER_EMULATOR": "seed.json"}).emulator == Path("seed.json")
    with pytest.raises(UsageError, match="--graph-url"):
        ConnectionOptions.resolve(emulator="seed.json", graph_url="https://x.test/v1.0", env={})
    with pytest.raises(UsageError, match="--device-code"):
        ConnectionOptions.resolve(emulator="seed.json", device_code=True, env={})
    # an environment Graph URL does not contradict --emulator
    assert ConnectionOptions.resolve(
        emulator="s.json", env={"RECONCILER_GRAPH_URL": "https://x.test"}
    ).emulator


def test_http_authority_is_refused() -> None:
    with pytest.raises(UsageError, match="https"):
        ConnectionOptions.resolve(authority="http://login.test", env={})


def test_bad_max_wait() -> None:
    with pytest.raises(UsageError, match="RECONCILER_MAX_WAIT"):
        ConnectionOptions.resolve(env={"RECONCILER_MAX_WAIT": "soon"})
    assert ConnectionOptions.resolve(env={"RECONCILER_MAX_WAIT": "12"}).max_wait == 12.0


def test_seed_app_choice() -> None:
    read = ConnectionOptions(emulator=Path("s"), read_only=True)
    write = ConnectionOptions(emulator=Path("s"))
    assert _seed_app(SEED, read, {})["appId"] == "a-read"
    assert _seed_app(SEED, write, {})["appId"] == "a-write"
    assert _seed_app(SEED, ConnectionOptions(emulator=Path("s"), app="other"), {})["appId"] == "a-other"
    # AZURE_CLIENT_ID naming a seed app is used; one from a real tenant is ignored
    assert _seed_app(SEED, read, {"AZURE_CLIENT_ID": "a-other"})["appId"] == "a-other"
    assert _seed_app(SEED, read, {"AZURE_CLIENT_ID": "real-azure-app"})["appId"] == "a-read"
    explicit = ConnectionOptions.resolve(emulator="s", client_id="nope", env={})
    with pytest.raises(UsageError, match="reconciler-plan"):
        _seed_app(SEED, explicit, {})


def test_state_dir_is_per_seed_file(tmp_path: Path) -> None:
    a = emulator_state_dir(tmp_path / "one" / "tenant.json", tmp_path / "state")
    b = emulator_state_dir(tmp_path / "two" / "tenant.json", tmp_path / "state")
    assert a != b and a.name.startswith("tenant-") and a.parent == tmp_path / "state"


def test_connect_without_credentials_says_what_to_set() -> None:
    options = ConnectionOptions.resolve(env={})
    with pytest.raises(MissingCredentialError, match="AZURE_CLIENT_SECRET"):
        connect(options, env={})
