"""GraphClient: the product's only way to talk to Microsoft Graph.

Synchronous API over httpx with:
- ``$select`` required on every read, ``$top=999`` paging that follows ``@odata.nextLink``;
- ``batch()``: JSON ``$batch`` in chunks of 20 sent concurrently (bounded), items answered
  429/503/504 resent on their own honouring their ``Retry-After``, ``dependsOn`` kept together;
- retries, backoff and the total-wait cap in :mod:`reconciler.graph.transport`;
- Graph errors turned into :mod:`reconciler.errors` exceptions whose messages say what to do;
- a write hook (``on_write``) so ``apply`` can keep an audit log of every change it makes;
- ``stats``: what was really sent, per route.

Facts: reference/graph-licensing-facts.md sections 3.2-3.6.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from reconciler.errors import (
    AuthenticationError,
    GraphError,
    NotFoundError,
    PermissionDeniedError,
    ThrottledError,
    TransportError,
)
from reconciler.graph.transport import (
    EXT_IDEMPOTENT,
    RETRY_STATUSES,
    CountingTransport,
    EnvironmentProxyTransport,
    ReadOnlyTransport,
    RequestStats,
    RetryingTransport,
    RetryPolicy,
    parse_retry_after,
    route_of,
)

DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
PAGE_SIZE = 999
BATCH_SIZE = 20
BODY_METHODS = frozenset({"POST", "PATCH", "PUT"})
# Graph's limit on the value of a $filter `eq` (Microsoft Graph docs,
# concepts/includes/known-issues/query-parameters.md)
FILTER_EQ_MAX = 120
DEFAULT_CONCURRENCY = 6

TokenProvider = Callable[[], str]


@dataclass(frozen=True)
class BatchRequest:
    """One request inside a ``$batch``; ``url`` is relative to the version root (``/users/...``)."""

    id: str
    method: str
    url: str
    body: Any = None
    headers: Mapping[str, str] | None = None
    depends_on: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        method = self.method.upper()
        item: dict[str, Any] = {"id": self.id, "method": method, "url": self.url}
        headers = dict(self.headers or {})
        body = self.body
        if body is None and method in BODY_METHODS:
            # Graph refuses the whole batch when a write item lacks a body or its Content-Type,
            # even for an action that takes no parameters (Microsoft Graph docs,
            # concepts/json-batching.md): such a target gets an empty object
            body = {}
        if body is not None:
            item["body"] = body
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        if headers:
            item["headers"] = headers
        if self.depends_on:
            item["dependsOn"] = list(self.depends_on)
        return item


@dataclass(frozen=True)
class BatchResponse:
    id: str
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class WriteRecord:
    """One write sent to Graph and its outcome, handed to the ``on_write`` hook (the audit log)."""

    method: str
    url: str
    body: Any
    status: int | None
    response: Any = None
    error: str | None = None
    via_batch: bool = False
    request_id: str | None = None  # Graph's request-id (the $batch call's when the item has none)


WriteHook = Callable[[WriteRecord], None]


# --------------------------------------------------------------------------- error mapping

_GUIDISH = re.compile(r"^[0-9a-fA-F-]{36}$")


def required_permission(method: str, path: str) -> str:
    """The Graph application permission a call needs, for 403 messages."""
    method = method.upper()
    path = httpx.URL(path).path if "://" in path else path.split("?", 1)[0]
    path = re.sub(r"^/(v1\.0|beta)", "", path)
    parts = [p for p in path.split("/") if p]
    root = parts[0].lower() if parts else ""
    last = parts[-1] if parts else ""
    if last == "assignLicense":
        return "LicenseAssignment.ReadWrite.All"
    if last == "reprocessLicenseAssignment":
        return "User.ReadWrite.All (or LicenseAssignment.ReadWrite.All)"
    if method == "GET":
        if root in ("organization", "subscribedskus"):
            return "Organization.Read.All"
        if root == "groups":
            return "Group.Read.All (or GroupMember.Read.All for members)"
        if root == "users":
            if last in ("memberOf", "transitiveMemberOf"):
                return "User.Read.All and GroupMember.Read.All"
            return "User.Read.All"
        if root == "directoryobjects":
            return "Directory.Read.All"
        return "Directory.Read.All"
    if root == "groups":
        if "members" in parts:
            return "GroupMember.ReadWrite.All (or Group.ReadWrite.All)"
        return "Group.ReadWrite.All"
    if root == "users":
        return "User.ReadWrite.All"
    return "Directory.ReadWrite.All"


def _object_of(path: str) -> str:
    path = path.split("?", 1)[0]
    path = re.sub(r"^/(v1\.0|beta)", "", path)
    parts = [p for p in path.split("/") if p]
    kinds = {
        "users": "user",
        "groups": "group",
        "subscribedSkus": "subscribed SKU",
        "organization": "organization",
    }
    if len(parts) >= 2 and parts[0] in kinds:
        what = f"{kinds[parts[0]]} '{parts[1]}'"
        if len(parts) >= 4 and parts[2] == "members":
            what += f" (member '{parts[3]}')"
        return what
    return f"'{path}'"


def _graph_error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            inner = err.get("innerError") or err.get("innererror") or {}
            request_id = inner.get("request-id") if isinstance(inner, Mapping) else None
            return (
                str(err.get("code")) if err.get("code") else None,
                str(err.get("message")) if err.get("message") else None,
                str(request_id) if request_id else None,
            )
    return None, None, None


def error_for(
    method: str, path: str, status: int, body: Any, headers: Mapping[str, str] | None = None
) -> GraphError:
    """The typed exception for a failed Graph call, with a message that says what to do."""
    code, message, request_id = _graph_error_fields(body)
    if request_id is None and headers:
        request_id = headers.get("request-id")
    where = f"{method.upper()} {path.split('?', 1)[0]}"
    detail = f"{status} {code or ''}".strip() + (f": {message}" if message else "")
    ref = f" (request-id {request_id})" if request_id else ""
    if status == 401:
        return AuthenticationError(
            f"Graph rejected the credentials for {where} ({detail}){ref}. Check the tenant id"
            " (--tenant-id / AZURE_TENANT_ID), the client id (--client-id / AZURE_CLIENT_ID) and the"
            " secret or certificate (AZURE_CLIENT_SECRET / AZURE_CLIENT_CERTIFICATE_PATH), and that"
            " --authority and --graph-url point at the same cloud.",
            status=status,
            code=code,
            request_id=request_id,
        )
    if status == 403:
        permission = required_permission(method, path)
        return PermissionDeniedError(
            f"Graph denied {where} ({detail}){ref}. The app needs the application permission"
            f" {permission} with admin consent: grant it under App registrations > API permissions"
            " in the Entra admin center, or run with an app that has it.",
            status=status,
            code=code,
            request_id=request_id,
        )
    if status == 404:
        return NotFoundError(
            f"not found: {_object_of(path)} ({where}: {detail}){ref}. Check the name or id; it may"
            " have been deleted or belong to another tenant.",
            status=status,
            code=code,
            request_id=request_id,
        )
    if status in RETRY_STATUSES:
        return ThrottledError(
            f"Graph answered {where} with {detail}{ref} after every retry; wait a few minutes and run again.",
            status=status,
            code=code,
            request_id=request_id,
        )
    return GraphError(
        f"Graph refused {where} ({detail}){ref}", status=status, code=code, request_id=request_id
    )


# --------------------------------------------------------------------------- auth


class _BearerAuth(httpx.Auth):
    def __init__(self, token_provider: TokenProvider) -> None:
        self._token_provider = token_provider

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer " + self._token_provider()
        response = yield request
        invalidate = getattr(self._token_provider, "invalidate", None)
        if response.status_code == 401 and callable(invalidate):
            # the token may have expired or been revoked in flight: one fresh token, one more try
            invalidate()
            request.headers["Authorization"] = "Bearer " + self._token_provider()
            yield request


# --------------------------------------------------------------------------- the client


@dataclass
class _Chunk:
    items: list[BatchRequest]
    waited: float = 0.0
    attempt: int = 0
    results: dict[str, BatchResponse] = field(default_factory=dict)


class GraphClient:
    """Synchronous Graph client. Thread-safe; use as a context manager or call ``close()``."""

    def __init__(
        self,
        base_url: str = DEFAULT_GRAPH_URL,
        *,
        token_provider: TokenProvider | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: Any = True,
        read_only: bool = False,
        retry: RetryPolicy | None = None,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float | httpx.Timeout = 60.0,
        on_write: WriteHook | None = None,
        page_size: int = PAGE_SIZE,
        user_agent: str | None = None,
    ) -> None:
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError("page_size must be between 1 and 999")
        self.base_url = base_url.rstrip("/")
        self.read_only = read_only
        self.retry = retry or RetryPolicy()
        self.max_concurrency = max(1, max_concurrency)
        self.page_size = page_size
        self.on_write = on_write
        self.stats = RequestStats()
        self._token_provider = token_provider
        self._closers: list[Callable[[], None]] = []
        self.emulator: Any = None  # set by connect() when it started the built-in emulator
        inner = transport or EnvironmentProxyTransport(
            verify=verify,
            limits=httpx.Limits(
                max_connections=self.max_concurrency + 2, max_keepalive_connections=self.max_concurrency + 2
            ),
        )
        stack: httpx.BaseTransport = RetryingTransport(
            CountingTransport(inner, self.stats), self.retry, self.stats
        )
        if read_only:
            stack = ReadOnlyTransport(stack)
        if isinstance(timeout, httpx.Timeout):
            timeouts = timeout
        else:
            timeouts = httpx.Timeout(timeout, connect=min(15.0, timeout), pool=max(120.0, timeout))
        from reconciler import __version__

        self._http = httpx.Client(
            base_url=self.base_url + "/",
            transport=stack,
            auth=_BearerAuth(token_provider) if token_provider else None,
            timeout=timeouts,
            headers={"User-Agent": user_agent or f"reconciler/{__version__}", "Accept": "application/json"},
            follow_redirects=False,
        )
        self._lock = threading.Lock()

    # -- lifecycle
    def close(self) -> None:
        self._http.close()
        close_tokens = getattr(self._token_provider, "close", None)
        if callable(close_tokens):
            close_tokens()
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            closer()

    def add_closer(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` when the client is closed (connect() stops its emulator this way)."""
        self._closers.append(closer)

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- url helpers
    def relative(self, url: str) -> str:
        """``url`` relative to the version root (for $batch), from an absolute URL or a path."""
        if url.startswith(self.base_url):
            url = url[len(self.base_url) :]
        elif "://" in url:
            parsed = httpx.URL(url)
            base = httpx.URL(self.base_url)
            if (parsed.scheme, parsed.host, parsed.port) != (base.scheme, base.host, base.port):
                raise GraphError(f"refusing to follow a link to another host: {parsed.host}")
            raw = parsed.raw_path.decode("ascii")
            prefix = base.raw_path.decode("ascii").rstrip("/")
            url = raw[len(prefix) :] if raw.startswith(prefix) else raw
        return url if url.startswith("/") else "/" + url

    def _url(self, path: str) -> str:
        if "://" in path:
            # only ever follow links to the Graph host we were pointed at (never leak the token)
            self.relative(path)
            return path
        return path.lstrip("/")

    # -- low level
    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
    ) -> httpx.Response:
        try:
            return self._http.request(
                method,
                self._url(path),
                params=dict(params) if params else None,
                json=json_body,
                headers=dict(headers) if headers else None,
                extensions={EXT_IDEMPOTENT: True} if idempotent else None,
            )
        except httpx.TimeoutException as exc:
            raise TransportError(
                f"{method} {path.split('?', 1)[0]} timed out ({type(exc).__name__}); check the network"
                " or try again."
            ) from exc
        except httpx.HTTPError as exc:
            raise TransportError(
                f"{method} {path.split('?', 1)[0]} failed: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        if not response.content:
            return None
        try:
            # orjson: pages of 999 users decode in about 60% of the standard parser's time
            return orjson.loads(response.content)
        except ValueError:
            return response.text

    def _checked(self, method: str, path: str, response: httpx.Response) -> Any:
        body = self._json(response)
        if response.status_code >= 400:
            raise error_for(method, path, response.status_code, body, response.headers)
        return body

    # -- reads
    def get(
        self,
        path: str,
        *,
        select: Sequence[str],
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """GET one resource or one page. ``select`` is required: Graph charges less and sends less."""
        query = dict(params or {})
        if select:
            query["$select"] = ",".join(select)
        response = self._send("GET", path, params=query, headers=headers)
        return self._checked("GET", path, response)

    def iter_pages(
        self,
        path: str,
        *,
        select: Sequence[str],
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        top: int | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Every page of a collection, ``$top=999`` by default, following ``@odata.nextLink``."""
        query = dict(params or {})
        query["$top"] = str(top or self.page_size)
        if select:
            query["$select"] = ",".join(select)
        page = self._checked("GET", path, self._send("GET", path, params=query, headers=headers))
        while True:
            yield list(page.get("value") or [])
            link = page.get("@odata.nextLink")
            if not link:
                return
            page = self._checked("GET", path, self._send("GET", str(link), headers=headers))

    def iter_next_pages(
        self, next_link: str | None, *, headers: Mapping[str, str] | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """The pages after one already read, from its ``@odata.nextLink``."""
        while next_link:
            page = self._checked("GET", next_link, self._send("GET", next_link, headers=headers))
            yield list(page.get("value") or [])
            next_link = page.get("@odata.nextLink")

    def get_all(
        self,
        path: str,
        *,
        select: Sequence[str],
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        top: int | None = None,
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self.iter_pages(path, select=select, params=params, headers=headers, top=top):
            items.extend(page)
        return items

    def groups_named(self, name: str, select: Sequence[str]) -> list[dict[str, Any]]:
        """The groups whose displayName is ``name`` (Graph compares it without regard to case).

        Graph takes at most ``FILTER_EQ_MAX`` characters in an ``eq`` value, while a display name
        may have 256: a longer name is looked up by its first characters (``startswith``) and
        compared here."""
        fields = tuple(dict.fromkeys(("displayName", *select)))
        escaped = name.replace("'", "''")
        if len(escaped) <= FILTER_EQ_MAX:
            found = self.get_all("/groups", select=fields, params={"$filter": f"displayName eq '{escaped}'"})
        else:
            prefix = name[:FILTER_EQ_MAX]
            while len(prefix.replace("'", "''")) > FILTER_EQ_MAX:
                prefix = prefix[:-1]
            quoted = prefix.replace("'", "''")
            found = self.get_all("/groups", select=fields, params={"$filter": f"startswith(displayName,'{quoted}')"})
        wanted = name.casefold()
        return [g for g in found if str(g.get("displayName") or "").casefold() == wanted]

    def count(self, path: str, *, params: Mapping[str, str] | None = None) -> int:
        """``GET {path}/$count`` (an advanced query: ``ConsistencyLevel: eventual``)."""
        response = self._send(
            "GET", path.rstrip("/") + "/$count", params=params, headers={"ConsistencyLevel": "eventual"}
        )
        body = self._checked("GET", path, response)
        return int(str(body).strip())

    def get_raw(self, url: str) -> Any:
        """GET an absolute URL on the same host (control endpoints such as ``/_emulator/stats``)."""
        return self._checked("GET", url, self._send("GET", url))

    # -- writes
    def _write(self, method: str, path: str, body: Any = None, *, idempotent: bool = False) -> Any:
        response: httpx.Response | None = None
        try:
            response = self._send(method, path, json_body=body, idempotent=idempotent)
            result = self._checked(method, path, response)
        except GraphError as exc:
            self._record(
                WriteRecord(
                    method,
                    path,
                    body,
                    response.status_code if response is not None else exc.status,
                    None,
                    str(exc),
                    request_id=response.headers.get("request-id") if response is not None else exc.request_id,
                )
            )
            raise
        self._record(
            WriteRecord(
                method,
                path,
                body,
                response.status_code,
                result,
                request_id=response.headers.get("request-id"),
            )
        )
        return result

    def _record(self, record: WriteRecord) -> None:
        if self.on_write is not None:
            with self._lock:
                self.on_write(record)

    def post(self, path: str, json: Any = None, *, idempotent: bool = False) -> Any:
        """POST; ``idempotent=True`` lets a dropped connection be retried (e.g. assignLicense)."""
        return self._write("POST", path, json, idempotent=idempotent)

    def patch(self, path: str, json: Any) -> Any:
        return self._write("PATCH", path, json)

    def delete(self, path: str) -> Any:
        return self._write("DELETE", path)

    # -- $batch
    def batch(self, requests: Iterable[BatchRequest], *, idempotent: bool = False) -> list[BatchResponse]:
        """Send requests through ``$batch`` (20 per call, several calls in flight).

        Returns one response per request, in the order given. Items answered 429/503/504 are
        resent on their own after their ``Retry-After``; other failures are returned, not raised
        (use :meth:`check`). Requests linked by ``dependsOn`` travel in the same call.
        A GET-only batch is resent after a dropped connection; one with writes only when
        ``idempotent=True`` (e.g. assignLicense, reprocess: sending them twice is harmless).
        """
        reqs = list(requests)
        if not reqs:
            return []
        ids = [r.id for r in reqs]
        if len(set(ids)) != len(ids):
            raise ValueError("batch request ids must be unique")
        chunks = [_Chunk(items) for items in _pack(reqs)]
        self.stats.count_items([route_of(r.method, r.url) for r in reqs])
        if len(chunks) == 1:
            self._run_chunk(chunks[0], idempotent)
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(chunks))) as pool:
                for future in [pool.submit(self._run_chunk, c, idempotent) for c in chunks]:
                    future.result()
        results: dict[str, BatchResponse] = {}
        for chunk in chunks:
            results.update(chunk.results)
        return [results[r.id] for r in reqs]

    def _run_chunk(self, chunk: _Chunk, idempotent: bool) -> None:
        pending = list(chunk.items)
        by_id = {r.id: r for r in chunk.items}
        while pending:
            chunk.attempt += 1
            payload = {"requests": [_strip_done_deps(r, chunk.results).to_json() for r in pending]}
            response = self._send("POST", "/$batch", json_body=payload, idempotent=idempotent)
            body = self._checked("POST", "/$batch", response)
            answered: dict[str, BatchResponse] = {}
            for item in (body or {}).get("responses") or []:
                rid = str(item.get("id"))
                if rid in by_id:
                    answered[rid] = BatchResponse(
                        id=rid,
                        status=int(item.get("status") or 0),
                        headers={str(k): str(v) for k, v in (item.get("headers") or {}).items()},
                        body=item.get("body"),
                    )
            retry: list[BatchRequest] = []
            waits: list[float] = []
            for req in pending:
                res = answered.get(req.id)
                if res is None or res.status in RETRY_STATUSES:
                    retry.append(req)
                    if res is not None:
                        ra = parse_retry_after(_header(res.headers, "Retry-After"))
                        if ra is not None:
                            waits.append(ra)
                    continue
                chunk.results[req.id] = res
            # a 424 whose dependency is being retried is retried with it
            retry_ids = {r.id for r in retry}
            for req in pending:
                res = chunk.results.get(req.id)
                if res is not None and res.status == 424 and any(d in retry_ids for d in req.depends_on):
                    del chunk.results[req.id]
                    retry.append(req)
                    retry_ids.add(req.id)
            for req in pending:
                if req.id in chunk.results and req.method.upper() != "GET":
                    res = chunk.results[req.id]
                    self._record(
                        WriteRecord(
                            req.method.upper(),
                            req.url,
                            req.body,
                            res.status,
                            res.body,
                            None if res.ok else _message(res.body),
                            via_batch=True,
                            request_id=_header(res.headers, "request-id")
                            or response.headers.get("request-id"),
                        )
                    )
            if not retry:
                return
            wait = max(waits) if waits else self.retry.backoff(chunk.attempt)
            if chunk.attempt > self.retry.max_retries or chunk.waited + wait > self.retry.max_total_wait:
                first = retry[0]
                last = answered.get(first.id)
                raise ThrottledError(
                    f"Graph kept throttling {len(retry)} request(s) in a $batch (e.g. {first.method}"
                    f" {first.url.split('?', 1)[0]}, last status {last.status if last else 'missing'}):"
                    f" gave up after {chunk.attempt} attempts and {chunk.waited:.0f} s of waiting (cap"
                    f" {self.retry.max_total_wait:.0f} s). Wait a few minutes and run again.",
                    status=last.status if last else None,
                )
            self.stats.note_retry(status=429, wait=wait)
            self.retry.sleep(wait)
            chunk.waited += wait
            order = {r.id: i for i, r in enumerate(chunk.items)}
            pending = sorted(retry, key=lambda r: order[r.id])

    def check(self, request: BatchRequest, response: BatchResponse) -> Any:
        """The body of a batch response, or the typed exception for it."""
        if not response.ok:
            raise error_for(request.method, request.url, response.status, response.body, response.headers)
        return response.body

    def batch_get_all(self, requests: Iterable[BatchRequest]) -> dict[str, list[dict[str, Any]]]:
        """Collections through $batch: first pages batched, then every ``@odata.nextLink`` batched too."""
        reqs = list(requests)
        out: dict[str, list[dict[str, Any]]] = {r.id: [] for r in reqs}
        originals = {r.id: r for r in reqs}
        todo = reqs
        round_no = 0
        while todo:
            round_no += 1
            follow: list[BatchRequest] = []
            for req, res in zip(todo, self.batch(todo), strict=True):
                base_id = req.id.split("#", 1)[0]
                body = self.check(originals[base_id], res)
                out[base_id].extend(body.get("value") or [])
                link = body.get("@odata.nextLink")
                if link:
                    follow.append(
                        BatchRequest(
                            f"{base_id}#{round_no}",
                            "GET",
                            self.relative(str(link)),
                            headers=originals[base_id].headers,
                        )
                    )
            todo = follow
        return out


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lname = name.lower()
    for key, value in headers.items():
        if key.lower() == lname:
            return value
    return None


def _message(body: Any) -> str | None:
    code, message, _ = _graph_error_fields(body)
    if code or message:
        return f"{code}: {message}"
    return None if body is None else json.dumps(body)[:500]


def _strip_done_deps(req: BatchRequest, done: Mapping[str, BatchResponse]) -> BatchRequest:
    if not req.depends_on or not any(d in done for d in req.depends_on):
        return req
    return BatchRequest(
        req.id, req.method, req.url, req.body, req.headers, tuple(d for d in req.depends_on if d not in done)
    )


def _pack(reqs: list[BatchRequest]) -> list[list[BatchRequest]]:
    """Split into chunks of at most 20, keeping every dependsOn-linked set in one chunk."""
    parent = {r.id: r.id for r in reqs}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for r in reqs:
        for d in r.depends_on:
            if d not in parent:
                raise ValueError(f"batch request {r.id!r} depends on unknown id {d!r}")
            parent[find(r.id)] = find(d)
    components: dict[str, list[BatchRequest]] = {}
    for r in reqs:
        components.setdefault(find(r.id), []).append(r)
    chunks: list[list[BatchRequest]] = []
    current: list[BatchRequest] = []
    for comp in components.values():
        if len(comp) > BATCH_SIZE:
            raise ValueError(
                f"{len(comp)} requests linked by dependsOn exceed the batch limit of {BATCH_SIZE}"
            )
        if len(current) + len(comp) > BATCH_SIZE:
            chunks.append(current)
            current = []
        current.extend(comp)
    if current:
        chunks.append(current)
    return chunks
