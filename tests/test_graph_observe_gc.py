"""observe pauses the cyclic garbage collector while it reads (and restores it after)."""

from __future__ import annotations

import gc
from typing import Any

import httpx
import pytest
from test_graph_observe import FakeGraph, client_for, make_tenant

from reconciler.graph.observe import observe


class RecordingGraph(FakeGraph):
    def __init__(self, tenant: Any) -> None:
        super().__init__(tenant, max_page=5)
        self.gc_during: list[bool] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.gc_during.append(gc.isenabled())
        return super().handler(request)


def test_gc_is_paused_while_reading_and_restored() -> None:
    assert gc.isenabled()
    fake = RecordingGraph(make_tenant(30))
    with client_for(fake) as client:
        state = observe(client, all_users=True, all_groups=True, progress=False)
    assert len(state.users) == 30
    assert fake.gc_during and not any(fake.gc_during)
    assert gc.isenabled()


def test_gc_restored_after_a_failure_and_left_off_when_it_was_off() -> None:
    fake = RecordingGraph(make_tenant(12))

    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("boom")

    fake.handler = broken  # type: ignore[method-assign]
    with client_for(fake) as client, pytest.raises(RuntimeError):
        observe(client, progress=False)
    assert gc.isenabled()
    gc.disable()
    try:
        with client_for(RecordingGraph(make_tenant(12))) as client:
            observe(client, progress=False)
        assert not gc.isenabled()
    finally:
        gc.enable()
