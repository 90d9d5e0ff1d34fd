"""Shared fixtures. Keep this file small; put helpers used by one test module in that module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler.emulator.server import RunningServer, start_background


@pytest.fixture(scope="session")
def emulator_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state directory (and so one local CA) for every HTTPS server of the test session."""
    return tmp_path_factory.mktemp("emulator-state")


@pytest.fixture(scope="session")
def serve_app(emulator_state_dir: Path) -> Iterator[Callable[..., RunningServer]]:
    """`serve_app(asgi_app, tls=True)` starts the app on 127.0.0.1 (random port) in a background
    thread and returns the RunningServer (`.base_url`, `.ca_path`); all are stopped at session end."""
    started: list[RunningServer] = []

    def start(app: Any, *, tls: bool = True) -> RunningServer:
        server = start_background(app, tls=tls, state_dir=emulator_state_dir, ready_timeout=30.0)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop(timeout=5.0)


SAMPLE_TENANT = Path(__file__).resolve().parent.parent / "examples" / "sample-tenant.json"


@dataclass
class Emulator:
    """A running emulator: `server` (.base_url, .graph_url, .ca_path), its `store`, `tokens`, and `seed`."""

    server: RunningServer
    store: Any
    tokens: Any
    seed: dict[str, Any]


@pytest.fixture
def start_emulator(tmp_path: Path, emulator_state_dir: Path) -> Iterator[Callable[..., Emulator]]:
    """`start_emulator(seed_path=SAMPLE_TENANT, **EmulatorOptions fields)`: the full Graph emulator on
    a fresh database over HTTPS (stopped at the end of the test). Sign in with msal against
    `f"{server.base_url}/{tenant_id}"`, `instance_discovery=False`, trusting `server.ca_path`."""
    from reconciler.emulator.app import EmulatorOptions, create_app
    from reconciler.emulator.auth import TokenService
    from reconciler.emulator.seed import load_seed
    from reconciler.emulator.store import Store

    running: list[Emulator] = []

    def start(seed_path: Path | str = SAMPLE_TENANT, **options: Any) -> Emulator:
        seed = load_seed(seed_path)
        store = Store.create(tmp_path / f"emulator-{len(running)}.db", seed)
        tokens = TokenService.from_seed(seed)
        app = create_app(store, token_service=tokens, options=EmulatorOptions(**options))
        server = start_background(app, state_dir=emulator_state_dir, ready_timeout=30.0)
        running.append(Emulator(server, store, tokens, seed))
        return running[-1]

    yield start
    for emu in reversed(running):
        emu.server.stop(timeout=5.0)
        emu.store.close()
