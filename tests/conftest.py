"""Shared fixtures. Keep this file small; put helpers used by one test module in that module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
