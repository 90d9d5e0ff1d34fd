"""The audit log of `apply` and `reprocess`: one JSON line per Graph write.

    log = AuditLog(path)                      # appends; the directory is created when needed
    client = connect(options, on_write=log.hook)
    log.expect("POST", "/groups/{id}/assignLicense", "assignLicense", "group LIC-E3 (id)")

Each line: ``time`` (UTC, ISO 8601), ``action`` (the plan's action kind, or the command's),
``target``, ``method``, ``url``, ``body`` (the request body), ``status``, ``requestId`` (Graph's
``request-id``), ``error`` (Graph's message when the write failed) and ``viaBatch``.

Nothing else goes in: no header, so never a bearer token; the request bodies the reconciler
sends hold ids, SKUs and usage locations only. As a last guard, any string that looks like a JWT
or a ``Bearer`` credential is replaced by ``[redacted]`` before a line is written.

The default file is ``.reconciler/audit.jsonl``; ``--audit-log FILE`` or ``RECONCILER_AUDIT_LOG``
change it. Lines are written (and flushed) as the writes happen, so a killed apply leaves a log of
everything it sent.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from reconciler.errors import ReconcilerError

if TYPE_CHECKING:
    from reconciler.graph.client import WriteRecord

DEFAULT_AUDIT_LOG = Path(".reconciler") / "audit.jsonl"
AUDIT_ENV = "RECONCILER_AUDIT_LOG"

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+")


def audit_path(flag: str | None, env: Mapping[str, str] | None = None) -> Path:
    """The audit log file: the flag, else RECONCILER_AUDIT_LOG, else .reconciler/audit.jsonl."""
    environ = os.environ if env is None else env
    if flag:
        return Path(flag)
    value = environ.get(AUDIT_ENV, "").strip()
    return Path(value) if value else DEFAULT_AUDIT_LOG


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _BEARER.sub("[redacted]", _JWT.sub("[redacted]", value))
    if isinstance(value, Mapping):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _key(method: str, url: str) -> tuple[str, str]:
    path = url.split("?", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].split("/", 1)[-1]
    path = re.sub(r"^/(v1\.0|beta)(?=/)", "", path)
    return method.upper(), path.rstrip("/").lower()


class AuditLog:
    """Appends one JSON line per write; use ``hook`` as the GraphClient's ``on_write``."""

    def __init__(self, path: str | os.PathLike[str], *, command: str = "apply") -> None:
        self.path = Path(path)
        self.command = command
        self.count = 0
        self._labels: dict[tuple[str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None

    def _open(self) -> IO[str]:
        if self._fh is None:
            try:
                if str(self.path.parent):
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
            except OSError as exc:
                raise ReconcilerError(
                    f"{self.path}: cannot open the audit log: {exc.strerror or exc} (change it with --audit-log"
                    f" or {AUDIT_ENV})"
                ) from exc
        return self._fh

    def check_writable(self) -> None:
        """Open the file now, so an unwritable log stops apply before its first write."""
        with self._lock:
            self._open()

    def expect(self, method: str, url: str, action: str, target: str) -> None:
        """Label the write that will be sent as ``method url`` (the action kind and its target)."""
        with self._lock:
            self._labels[_key(method, url)] = (action, target)

    def hook(self, record: WriteRecord) -> None:
        action, target = self._labels.get(_key(record.method, record.url), (self.command, ""))
        line = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "action": action,
            "target": target,
            "method": record.method.upper(),
            "url": record.url,
            "body": record.body,
            "status": record.status,
            "requestId": record.request_id,
            "error": record.error,
            "viaBatch": record.via_batch,
        }
        text = json.dumps(_scrub(line), ensure_ascii=False, sort_keys=False, default=str)
        with self._lock:
            fh = self._open()
            fh.write(text + "\n")
            fh.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
