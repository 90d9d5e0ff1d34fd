"""Apply under 10% injected faults (503, 429 with Retry-After, dropped connections) plus Graph's
resource-unit throttling: it completes, and the tenant ends exactly as after a fault-free run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_apply_support import Tenant, normalized

pytestmark = pytest.mark.timeout(180)


def test_faulty_graph_reaches_the_fault_free_state(start_emulator: Callable[..., Any]) -> None:
    clean = Tenant(start_emulator(processing_delay=0.2))
    reference = clean.apply(clean.plan())
    assert reference.exit_code == 0, reference.render()

    faulty = Tenant(start_emulator(processing_delay=0.2, fail_rate=0.1, throttle=True, seed=11))
    plan = faulty.plan()
    result = faulty.apply(plan)
    assert result.exit_code == 0, result.render()
    assert not result.failed and result.verified and not result.differences, result.render()
    stats = faulty.stats()
    assert sum(stats["faults"].values()) > 0, stats["faults"]  # faults really happened
    assert normalized(faulty.snapshot()) == normalized(clean.snapshot())
    assert not faulty.plan().has_changes
