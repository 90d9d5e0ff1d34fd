"""httpx transports for Microsoft Graph: retries and read-only enforcement.

The client stacks them as ``ReadOnlyTransport(RetryingTransport(CountingTransport(HTTPTransport)))``:

* ``ReadOnlyTransport`` refuses every write before anything leaves the process (``plan`` uses it);
  a ``POST $batch`` whose body holds only GET requests is a read and passes.
* ``RetryingTransport`` retries 429/503/504 and dropped connections, honouring ``Retry-After``
  (seconds or an HTTP date), otherwise exponential backoff with jitter, with a cap on the total
  wait per request (then ``ThrottledError``) — the behaviour of Microsoft's own SDK retry handler
  (facts 3.2, 3.6) with a larger retry budget, as bulk reads and reprocessing need it.
* ``CountingTransport`` counts what really went over the wire, per route (tests, benchmarks).

Tokens never pass through here in clear text to any log: nothing in this module logs headers.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import httpx

from reconciler.errors import ReadOnlyViolation, ThrottledError, TransportError

RETRY_STATUSES = frozenset({429, 503, 504})
# errors where the connection dropped or never came up; the request may be sent again
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.ReadTimeout,
    httpx.PoolTimeout,
)
# errors where the request certainly never reached the server
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

# request extension keys understood by RetryingTransport
EXT_IDEMPOTENT = "reconciler.idempotent"

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def route_of(method: str, url: str | httpx.URL) -> str:
    """A stable route name for counting: ``GET /users/{id}``, ``POST /$batch`` (no query string)."""
    path = httpx.URL(str(url)).path if not isinstance(url, httpx.URL) else url.path
    if path.startswith("/v1.0"):
        path = path[len("/v1.0") :]
    elif path.startswith("/beta"):
        path = path[len("/beta") :]
    path = _GUID.sub("{id}", path)
    # a user addressed by UPN: /users/alice@contoso.com
    path = re.sub(r"/users/[^/]*@[^/]*", "/users/{id}", path)
    return f"{method.upper()} {path or '/'}"


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date. None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``max_total_wait`` caps the sleeping done for one request."""

    max_retries: int = 10
    max_total_wait: float = 300.0
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    jitter: float = 1.0
    # injectable for tests: no real sleeping, recorded waits
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random

    def backoff(self, attempt: int) -> float:
        """Exponential backoff for retry number ``attempt`` (1-based), plus jitter."""
        return float(
            min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)) + self.jitter * self.rand()
        )


@dataclass
class RequestStats:
    """What really went over the wire (each retry counts)."""

    requests: int = 0
    by_route: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    throttled: int = 0
    dropped: int = 0
    waited: float = 0.0
    batch_items: int = 0
    batch_items_by_route: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, route: str) -> None:
        with self._lock:
            self.requests += 1
            self.by_route[route] += 1

    def count_items(self, routes: list[str]) -> None:
        with self._lock:
            self.batch_items += len(routes)
            self.batch_items_by_route.update(routes)

    def note_retry(self, *, status: int | None, wait: float) -> None:
        with self._lock:
            self.retries += 1
            self.waited += wait
            if status == 429:
                self.throttled += 1
            if status is None:
                self.dropped += 1

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.by_route.clear()
            self.retries = self.throttled = self.dropped = 0
            self.waited = 0.0
            self.batch_items = 0
            self.batch_items_by_route.clear()


class CountingTransport(httpx.BaseTransport):
    """Counts every request handed to the wrapped transport."""

    def __init__(self, inner: httpx.BaseTransport, stats: RequestStats) -> None:
        self.inner = inner
        self.stats = stats

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.stats.count(route_of(request.method, request.url))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _describe(request: httpx.Request) -> str:
    return f"{request.method} {request.url.copy_with(query=None)}"


class RetryingTransport(httpx.BaseTransport):
    """Retries 429/503/504 and dropped connections; see the module docstring."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        policy: RetryPolicy | None = None,
        stats: RequestStats | None = None,
    ) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()
        self.stats = stats

    def _may_resend_after_drop(self, request: httpx.Request, exc: Exception) -> bool:
        if isinstance(exc, NOT_SENT_ERRORS):
            return True
        if request.method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"):
            return True
        if request.extensions.get(EXT_IDEMPOTENT):
            return True
        # a POST that may have reached the server: only a read-only $batch is safe to resend
        return is_get_only_batch(request)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        policy = self.policy
        waited = 0.0
        attempt = 0
        request.read()  # so the body can be sent again
        while True:
            attempt += 1
            try:
                response = self.inner.handle_request(request)
                try:
                    # read the body here, so a connection dropped mid-body is retried too
                    response.read()
                except BaseException:
                    response.close()
                    raise
            except CONNECTION_ERRORS as exc:
                if attempt > policy.max_retries or not self._may_resend_after_drop(request, exc):
                    raise TransportError(
                        f"{_describe(request)} failed: {type(exc).__name__}: {exc or 'connection dropped'}"
                        f" (after {attempt} attempt{'s' if attempt != 1 else ''}). Check the network,"
                        " proxy and --graph-url, then try again."
                    ) from exc
                wait = policy.backoff(attempt)
                if waited + wait > policy.max_total_wait:
                    raise TransportError(
                        f"{_describe(request)} kept failing ({type(exc).__name__}) for {waited:.0f} s;"
                        " check the network and try again."
                    ) from exc
                if self.stats is not None:
                    self.stats.note_retry(status=None, wait=wait)
                policy.sleep(wait)
                waited += wait
                continue
            if response.status_code not in RETRY_STATUSES:
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            wait = retry_after if retry_after is not None else policy.backoff(attempt)
            status = response.status_code
            response.close()
            if attempt > policy.max_retries or waited + wait > policy.max_total_wait:
                what = "throttled (429)" if status == 429 else f"unavailable ({status})"
                raise ThrottledError(
                    f"Graph kept answering {_describe(request)} with {what}: gave up after {attempt}"
                    f" attempt{'s' if attempt != 1 else ''} and {waited:.0f} s of waiting (cap"
                    f" {policy.max_total_wait:.0f} s, next wait {wait:.0f} s). The app or tenant is over"
                    " Graph's limits: wait a few minutes and run again, or run fewer tools at once against"
                    " this tenant.",
                    status=status,
                    code="TooManyRequests" if status == 429 else "ServiceUnavailable",
                )
            if self.stats is not None:
                self.stats.note_retry(status=status, wait=wait)
            policy.sleep(wait)
            waited += wait

    def close(self) -> None:
        self.inner.close()


def _batch_requests(request: httpx.Request) -> list[dict[str, object]] | None:
    """The sub-requests of a ``POST .../$batch`` request, or None if it isn't one."""
    if request.method != "POST" or not request.url.path.rstrip("/").endswith("/$batch"):
        return None
    try:
        body = json.loads(request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        return []
    items = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict)]


def is_get_only_batch(request: httpx.Request) -> bool:
    items = _batch_requests(request)
    return bool(items) and all(str(item.get("method", "")).upper() == "GET" for item in items or ())


class EnvironmentProxyTransport(httpx.BaseTransport):
    """Direct connections, or through the proxy that HTTPS_PROXY / HTTP_PROXY / ALL_PROXY name
    (NO_PROXY honoured), at the bottom of the stack so retries, counting and the read-only check
    apply either way. (httpx ignores proxy variables when it is given a transport.)"""

    def __init__(self, env: Mapping[str, str] | None = None, **transport_options: Any) -> None:
        self._options = transport_options
        environ = os.environ if env is None else env
        self._proxies = {
            scheme: url
            for scheme in ("https", "http")
            if (url := _env(environ, f"{scheme}_proxy") or _env(environ, "all_proxy"))
        }
        self._no_proxy = [
            h.strip().lower() for h in (_env(environ, "no_proxy") or "").split(",") if h.strip()
        ]
        self._direct = httpx.HTTPTransport(**transport_options)
        self._via: dict[str, httpx.HTTPTransport] = {}
        self._lock = threading.Lock()

    def _bypass(self, host: str) -> bool:
        host = host.lower()
        if host in ("localhost", "127.0.0.1", "::1"):
            return True  # the emulator, never behind a proxy
        for entry in self._no_proxy:
            if entry == "*":
                return True
            entry = entry.lstrip(".").split(":", 1)[0]
            if host == entry or host.endswith("." + entry):
                return True
        return False

    def proxy_for(self, url: httpx.URL) -> str | None:
        proxy = self._proxies.get(url.scheme)
        if proxy is None or self._bypass(url.host):
            return None
        return proxy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        proxy = self.proxy_for(request.url)
        if proxy is None:
            return self._direct.handle_request(request)
        with self._lock:
            transport = self._via.get(proxy)
            if transport is None:
                transport = self._via[proxy] = httpx.HTTPTransport(proxy=proxy, **self._options)
        return transport.handle_request(request)

    def close(self) -> None:
        self._direct.close()
        for transport in self._via.values():
            transport.close()


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name) or environ.get(name.upper())
    return value.strip() if value and value.strip() else None


class ReadOnlyTransport(httpx.BaseTransport):
    """Refuses every write before it leaves the process (any method but GET; a GET-only $batch passes)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        method = request.method.upper()
        if method != "GET":
            items = _batch_requests(request)
            if items is None:
                raise ReadOnlyViolation(
                    f"refused {method} {request.url.copy_with(query=None)}: this connection is read-only"
                    " (plan never changes the tenant; use `reconciler apply` to make changes)."
                )
            writes = [
                f"{str(item.get('method', '?')).upper()} {item.get('url', '?')}"
                for item in items
                if str(item.get("method", "")).upper() != "GET"
            ]
            if writes or not items:
                shown = ", ".join(writes[:3]) + (f" and {len(writes) - 3} more" if len(writes) > 3 else "")
                raise ReadOnlyViolation(
                    f"refused a $batch containing writes ({shown or 'unreadable body'}): this connection"
                    " is read-only (plan never changes the tenant; use `reconciler apply` to make changes)."
                )
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()
