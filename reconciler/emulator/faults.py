"""Injected failures for the emulator's realism switches (SPEC section 6).

With a fault rate r, each Graph request fails with probability r, one of:
503 Service Unavailable, 429 Too Many Requests with `Retry-After`, or a dropped
connection (the response is started and the connection closed before its body
is complete). The choice comes from a random generator seeded by the emulator's
`seed` option, so a run is reproducible for the same order of requests.
"""

from __future__ import annotations

import random
import threading
from enum import StrEnum


class Fault(StrEnum):
    UNAVAILABLE = "503"
    THROTTLED = "429"
    DROP = "drop"


class FaultInjector:
    def __init__(self, rate: float, seed: int = 0, kinds: tuple[Fault, ...] = tuple(Fault)) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, not {rate}")
        self.rate = rate
        self.kinds = kinds
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> Fault | None:
        """The fault for the next request, or None."""
        if self.rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            return self._rng.choice(self.kinds)

    def retry_after(self) -> int:
        with self._lock:
            return self._rng.randint(1, 3)
