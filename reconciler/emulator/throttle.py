"""Graph's identity resource-unit throttling (facts 3.1).

A token bucket of resource units per app + tenant (3,500 / 5,000 / 8,000 RU per
10 s by tenant size: under 50 users, up to 500, more) plus a write quota of
3,000 writes per 150 s. Request costs follow Graph's table: GET users 2,
members 3, transitiveMembers 5, subscribedSkus 3, licenseDetails 2, memberOf 2,
everything else 1; writes cost 1 RU and 1 write; `$select` -1, `$expand` +1,
`$top` < 20 -1, never below 1.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

RU_WINDOW = 10.0
WRITE_WINDOW = 150.0
WRITE_QUOTA = 3000

_BASE_COSTS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"^/users/?$"), 2),
    (re.compile(r"^/users/[^/]+/?$"), 2),
    (re.compile(r"^/groups/[^/]+/members(/.*)?$"), 3),
    (re.compile(r"^/groups/[^/]+/transitiveMembers(/.*)?$"), 5),
    (re.compile(r"^/subscribedSkus(/.*)?$"), 3),
    (re.compile(r"^/(me|users/[^/]+)/licenseDetails(/.*)?$"), 2),
    (re.compile(r"^/(me|users/[^/]+)/memberOf(/.*)?$"), 2),
    (re.compile(r"^/directoryObjects/getByIds$"), 3),
)


def ru_limit_for(user_count: int) -> int:
    """RU per 10 s for the app + tenant scope by tenant size (facts 3.1)."""
    if user_count < 50:
        return 3500
    if user_count <= 500:
        return 5000
    return 8000


def request_cost(method: str, path: str, query: Mapping[str, str]) -> tuple[int, bool]:
    """(resource units, is_write) of a Graph request; `path` is relative to /v1.0."""
    method = method.upper()
    is_write = method in ("POST", "PATCH", "PUT", "DELETE")
    if is_write:
        return 1, True
    cost = 1
    for pattern, base in _BASE_COSTS:
        if pattern.match(path):
            cost = base
            break
    keys = {k.lower().lstrip("$"): v for k, v in query.items()}
    if "select" in keys:
        cost -= 1
    if "expand" in keys:
        cost += 1
    top = keys.get("top")
    if top is not None and top.isdigit() and int(top) < 20:
        cost -= 1
    return max(1, cost), False


@dataclass
class Verdict:
    allowed: bool
    cost: int
    retry_after: int = 0
    limit: str = ""  # Read / Write for x-ms-throttle-scope
    information: str = ""  # ResourceUnitLimitExceeded / WriteLimitExceeded
    usage: float = 0.0  # fraction of the RU quota in use after this request


class _Bucket:
    def __init__(self, capacity: float, window: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / window
        self.tokens = capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> int:
        missing = amount - self.tokens
        return max(1, math.ceil(missing / self.rate)) if missing > 0 else 0


class Throttler:
    """Per-application buckets; thread-safe. `ru_limit`/`write_limit` override the defaults."""

    def __init__(
        self,
        *,
        ru_limit: int,
        write_limit: int = WRITE_QUOTA,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ru_limit = ru_limit
        self.write_limit = write_limit
        self.clock = clock
        self._lock = threading.Lock()
        self._ru: dict[str, _Bucket] = {}
        self._writes: dict[str, _Bucket] = {}

    def charge(self, app_id: str, cost: int, is_write: bool) -> Verdict:
        now = self.clock()
        with self._lock:
            ru = self._ru.setdefault(app_id, _Bucket(self.ru_limit, RU_WINDOW, now))
            ru.refill(now)
            wr = None
            if is_write:
                wr = self._writes.setdefault(app_id, _Bucket(self.write_limit, WRITE_WINDOW, now))
                wr.refill(now)
                if wr.tokens < 1:
                    return Verdict(False, cost, wr.wait_for(1), "Write", "WriteLimitExceeded", 1.0)
            if ru.tokens < cost:
                return Verdict(
                    False, cost, ru.wait_for(cost), "ReadWrite" if is_write else "Read", "ResourceUnitLimitExceeded", 1.0
                )
            ru.tokens -= cost
            if wr is not None:
                wr.tokens -= 1
            return Verdict(True, cost, usage=1.0 - ru.tokens / ru.capacity)
