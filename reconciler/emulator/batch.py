"""JSON batching (`POST /v1.0/$batch`, facts 3.3).

At most 20 requests, unique ids, relative URLs, `dependsOn` (a request whose
dependency failed gets 424 Failed Dependency), and a per-item `status`,
`headers` and `body`. Each item is executed (and authorised and throttled) on
its own by the caller's `execute` function, in an order that honours
`dependsOn`; independent items run in the order given.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_REQUESTS = 20
_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


class BatchError(Exception):
    """The whole batch is refused (400)."""

    def __init__(self, message: str, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class BatchItem:
    id: str
    method: str
    path: str  # relative to /v1.0, decoded, starting with "/"
    params: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    depends_on: list[str] = field(default_factory=list)


@dataclass
class ItemResult:
    status: int
    headers: dict[str, str]
    body: Any = None


def parse_batch(raw: bytes) -> list[BatchItem]:
    try:
        doc = json.loads(raw or b"null")
    except ValueError:
        raise BatchError("Invalid batch payload format.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("requests"), list):
        raise BatchError("Invalid batch payload format.")
    requests = doc["requests"]
    if not requests:
        raise BatchError("Invalid batch payload format: the requests collection is empty.")
    if len(requests) > MAX_REQUESTS:
        raise BatchError(f"The number of requests in a batch cannot exceed {MAX_REQUESTS}.")
    items: list[BatchItem] = []
    seen: set[str] = set()
    for req in requests:
        if not isinstance(req, dict):
            raise BatchError("Invalid batch payload format.")
        rid = req.get("id")
        method = str(req.get("method") or "").upper()
        url = req.get("url")
        if rid is None or str(rid) == "":
            raise BatchError("Each request in a batch must have an id.")
        rid = str(rid)
        if rid in seen:
            raise BatchError(f"Request id '{rid}' is duplicated in the batch. Batch request ids must be unique.")
        seen.add(rid)
        if method not in _METHODS:
            raise BatchError(f"Invalid method '{req.get('method')}' for request id : {rid}.")
        if not isinstance(url, str) or not url:
            raise BatchError(f"Invalid url for request id : {rid}.")
        parts = urlsplit(url)
        if parts.scheme or parts.netloc:
            raise BatchError(f"Invalid url '{url}' for request id : {rid}. Batch request urls must be relative.")
        path = unquote(parts.path)
        if not path.startswith("/"):
            path = "/" + path
        if path.lower().startswith("/v1.0/"):
            path = path[len("/v1.0") :]
        headers = req.get("headers") or {}
        if not isinstance(headers, dict):
            raise BatchError(f"Invalid headers for request id : {rid}.")
        headers = {str(k): str(v) for k, v in headers.items()}
        body: bytes = b""
        if "body" in req and req["body"] is not None:
            if not any(k.lower() == "content-type" for k in headers):
                raise BatchError(f"Write request id : {rid} does not contain Content-Type header or body.")
            raw_body = req["body"]
            body = raw_body.encode() if isinstance(raw_body, str) else json.dumps(raw_body).encode()
        depends = req.get("dependsOn") or []
        if not isinstance(depends, list):
            raise BatchError(f"Invalid dependsOn for request id : {rid}.")
        items.append(
            BatchItem(
                id=rid,
                method=method,
                path=path,
                params=parse_qsl(parts.query, keep_blank_values=True),
                headers=headers,
                body=body,
                depends_on=[str(d) for d in depends],
            )
        )
    ids = {i.id for i in items}
    for item in items:
        for dep in item.depends_on:
            if dep not in ids or dep == item.id:
                raise BatchError(f"Request id '{item.id}' depends on '{dep}', which is not a request of this batch.")
    _order(items)  # refuses cycles
    return items


def _order(items: list[BatchItem]) -> list[BatchItem]:
    by_id = {i.id: i for i in items}
    done: set[str] = set()
    visiting: set[str] = set()
    out: list[BatchItem] = []

    def visit(item: BatchItem) -> None:
        if item.id in done:
            return
        if item.id in visiting:
            raise BatchError(f"The dependsOn of request id '{item.id}' form a cycle.")
        visiting.add(item.id)
        for dep in item.depends_on:
            visit(by_id[dep])
        visiting.discard(item.id)
        done.add(item.id)
        out.append(item)

    for item in items:
        visit(item)
    return out


def run_batch(raw: bytes, execute: Callable[[BatchItem], ItemResult]) -> dict[str, Any]:
    """Run a batch; returns the response body `{"responses": [...]}` in request order."""
    items = parse_batch(raw)
    results: dict[str, ItemResult] = {}
    for item in _order(items):
        failed = [d for d in item.depends_on if results[d].status >= 400]
        if failed:
            results[item.id] = ItemResult(
                424,
                {"Content-Type": "application/json"},
                {
                    "error": {
                        "code": "FailedDependency",
                        "message": f"Failed dependency: request {', '.join(failed)} did not succeed.",
                    }
                },
            )
            continue
        results[item.id] = execute(item)
    responses = []
    for item in items:
        res = results[item.id]
        entry: dict[str, Any] = {"id": item.id, "status": res.status, "headers": res.headers}
        if res.body is not None:
            entry["body"] = res.body
        responses.append(entry)
    return {"responses": responses}
