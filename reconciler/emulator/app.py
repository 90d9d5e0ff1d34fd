"""The emulator's Graph-compatible HTTP app (SPEC section 6).

``create_app(store, token_service=..., options=...)`` returns a Starlette app
with the token and discovery endpoints of ``token_service``, Microsoft Graph
under ``/v1.0`` (Graph's JSON shapes, error envelope, ``request-id`` headers,
OData paging/select/filter/count, ``$batch``) and the control endpoints under
``/_emulator`` (drain, stats, snapshot, reset-stats), all behind the same
bearer tokens.

Every request is dispatched by ``GraphApi.handle`` (also used for each
``$batch`` item), which runs in a worker thread because the store is
synchronous. Licensing outcomes come from ``reconciler.licensing`` through the
store and ``reconciler.emulator.processing``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from reconciler import countries
from reconciler.emulator import batch as batch_mod
from reconciler.emulator import odata
from reconciler.emulator.auth import GraphAuthError, Operation, Principal, require_permission
from reconciler.emulator.faults import Fault, FaultInjector
from reconciler.emulator.graph_types import PROPERTIES
from reconciler.emulator.processing import ProcessingWorker
from reconciler.emulator.store import GroupRecord, Store, StoreError, UserRecord, license_view
from reconciler.emulator.throttle import Throttler, Verdict, request_cost, ru_limit_for
from reconciler.licensing import HELD_STATES, License

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MSG_GUID = "Cannot convert a primitive value to the expected type 'Edm.Guid'. See the inner exception for more details."
MSG_JSON = "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format."
MSG_MEMBER_EXISTS = (
    "One or more added object references already exist for the following modified properties: 'members'."
)

USER_DEFAULT = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
GROUP_DEFAULT = (
    "id",
    "deletedDateTime",
    "classification",
    "createdDateTime",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesDomainName",
    "onPremisesLastSyncDateTime",
    "onPremisesNetBiosName",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "preferredDataLocation",
    "preferredLanguage",
    "proxyAddresses",
    "renewedDateTime",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "securityEnabled",
    "securityIdentifier",
    "theme",
    "visibility",
    "onPremisesProvisioningErrors",
    "serviceProvisioningErrors",
)

_SERVICES = (
    ("EXCHANGE", "exchange"),
    ("SHAREPOINT", "SharePoint"),
    ("ONEDRIVE", "SharePoint"),
    ("MCO", "MicrosoftCommunicationsOnline"),
    ("TEAMS", "TeamspaceAPI"),
    ("INTUNE", "SCO"),
    ("AAD", "AADPremiumService"),
    ("RMS", "RMSOnline"),
    ("YAMMER", "YammerEnterprise"),
    ("OFFICESUBSCRIPTION", "MicrosoftOffice"),
    ("PROJECT", "ProjectWorkManagement"),
    ("SWAY", "Sway"),
    ("FORMS", "OfficeForms"),
    ("POWERAPPS", "PowerAppsService"),
    ("FLOW", "ProcessSimple"),
    ("BI", "PowerBI"),
)


def service_name(plan_name: str) -> str:
    """assignedPlan.service for a service plan (by the plan name's family)."""
    upper = plan_name.upper()
    for prefix, service in _SERVICES:
        if upper.startswith(prefix):
            return service
    return plan_name or "Unknown"


@dataclass(frozen=True)
class EmulatorOptions:
    """Realism switches (SPEC section 6). `processing_delay` None: the seed's processingDelaySeconds."""

    latency_ms: float = 0.0
    fail_rate: float = 0.0
    throttle: bool = False
    processing_delay: float | None = None
    seed: int = 0
    ru_limit: int | None = None  # RU per 10 s; default by tenant size (facts 3.1)
    write_limit: int | None = None  # writes per 150 s; default 3,000
    start_worker: bool = True


class GraphHTTPError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class Result:
    status: int
    body: Any = None  # JSON value, or None for no content
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None  # a text/plain body instead (GET .../$count)


@dataclass
class Call:
    """One Graph request (from HTTP or from a $batch item)."""

    method: str
    path: str  # relative to /v1.0, decoded, starting with "/"
    params: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    principal: Principal
    base_url: str  # e.g. https://127.0.0.1:8443/v1.0
    route: str = ""


def graph_date(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S")


class GraphJSONResponse(JSONResponse):
    """JSONResponse encoded with orjson: the same compact UTF-8 text, a tenth of the time (the
    standard encoder was a third of the emulator's time serving large user listings)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


_PLAIN, _LICENSES, _STATES, _PLANS = range(4)
_OMIT, _EMPTY_LIST, _NULL = object(), object(), object()
_USER_SELECT_PLANS: dict[tuple[str, ...], tuple[tuple[str, int, object], ...]] = {}


def _user_select_plan(names: tuple[str, ...]) -> tuple[tuple[str, int, object], ...]:
    """How each `$select`ed user property is rendered, worked out once per `$select`: a page of
    999 users asks the same question 999 times (odata.select per property was a third of the
    emulator's time serving a 100,000-user listing)."""
    plan = _USER_SELECT_PLANS.get(names)
    if plan is None:
        types = PROPERTIES.get("user", {})
        steps: list[tuple[str, int, object]] = []
        for name in names:
            if name == "hasMembersWithLicenseErrors":
                continue
            if name == "assignedLicenses":
                steps.append((name, _LICENSES, _OMIT))
            elif name == "licenseAssignmentStates":
                steps.append((name, _STATES, _OMIT))
            elif name == "assignedPlans":
                steps.append((name, _PLANS, _OMIT))
            elif name not in types:
                steps.append((name, _PLAIN, _OMIT))
            else:
                steps.append((name, _PLAIN, _EMPTY_LIST if types[name].startswith("Collection(") else _NULL))
        plan = tuple(steps)
        if len(_USER_SELECT_PLANS) < 1_000:
            _USER_SELECT_PLANS[names] = plan
    return plan


def error_body(code: str, message: str, request_id: str, client_request_id: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": graph_date(),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }


class TokenServiceLike(Protocol):
    def routes(self) -> list[BaseRoute]: ...

    def authenticate(self, authorization_header: str | None) -> Principal: ...


Handler = Callable[["GraphApi", Call, re.Match[str]], Result]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    template: str
    operation: str
    handler: Handler


_ROUTES: list[_Route] = []


def route(method: str, template: str, operation: str, *, first: bool = False) -> Callable[[Handler], Handler]:
    """Register a Graph route; `{name}` in the template matches one path segment. `first`: try it
    before the routes registered so far (a literal segment that `{id}` would also match)."""
    regex = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "/?$"

    def deco(fn: Handler) -> Handler:
        entry = _Route(method, re.compile(regex, re.IGNORECASE), template, operation, fn)
        if first:
            _ROUTES.insert(0, entry)
        else:
            _ROUTES.append(entry)
        return fn

    return deco


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self.total = 0
            self.by_route: Counter[str] = Counter()
            self.by_status: Counter[str] = Counter()
            self.batch_items = 0
            self.batch_by_route: Counter[str] = Counter()
            self.resource_units = 0
            self.writes = 0
            self.throttled = 0
            self.faults: Counter[str] = Counter()
            self.by_app: Counter[str] = Counter()

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def record(self, route: str, status: int, units: int, *, batch_item: bool, app_id: str | None) -> None:
        with self._lock:
            if batch_item:
                self.batch_items += 1
                self.batch_by_route[route] += 1
            else:
                self.total += 1
                self.by_route[route] += 1
            self.by_status[str(status)] += 1
            self.resource_units += units
            if app_id:
                self.by_app[app_id] += 1
            if status == 429:
                self.throttled += 1

    def to_json(self, store: Store, worker_errors: int) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": {
                    "total": self.total,
                    "byRoute": dict(sorted(self.by_route.items())),
                    "byStatus": dict(sorted(self.by_status.items())),
                    "byApp": dict(sorted(self.by_app.items())),
                },
                "batchItems": {"total": self.batch_items, "byRoute": dict(sorted(self.batch_by_route.items()))},
                "resourceUnits": self.resource_units,
                "throttled": self.throttled,
                "faults": dict(sorted(self.faults.items())),
                "processing": {
                    "pending": len(store.pending()),
                    "workerErrors": worker_errors,
                },
                "tenant": {"users": len(store.users), "groups": len(store.groups)},
            }


class GraphApi:
    """Graph's endpoints over a Store. `handle(call)` returns a Result or raises GraphHTTPError."""

    def __init__(self, store: Store, options: EmulatorOptions) -> None:
        self.store = store
        self.options = options
        self.stats = Stats()
        limit = options.ru_limit or ru_limit_for(len(store.users))
        self.throttler = Throttler(ru_limit=limit, write_limit=options.write_limit or 3000) if options.throttle else None

    # ------------------------------------------------------------------ dispatch

    def match(self, method: str, path: str) -> tuple[_Route, re.Match[str]]:
        if re.match(r"^/me(/|$)", path, re.IGNORECASE):
            raise GraphHTTPError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
        allowed = False
        for r in _ROUTES:
            m = r.pattern.match(path)
            if m is None:
                continue
            if r.method == method:
                return r, m
            allowed = True
        if allowed:
            raise GraphHTTPError(405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed on this resource.")
        segment = next((s for s in path.split("/") if s), "")
        raise GraphHTTPError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")

    def throttle(self, call: Call) -> tuple[int, Verdict | None]:
        """Charge the request's resource units; 429 when over the quota."""
        cost, is_write = request_cost(call.method, call.path, dict(call.params))
        if self.throttler is None:
            return cost, None
        verdict = self.throttler.charge(call.principal.app_id, cost, is_write)
        if not verdict.allowed:
            raise GraphHTTPError(
                429,
                "TooManyRequests",
                "Please retry again later.",
                {
                    "Retry-After": str(verdict.retry_after),
                    "x-ms-throttle-scope": f"Tenant_Application/{verdict.limit}/{call.principal.app_id}/{self.store.tenant_id}",
                    "x-ms-throttle-information": verdict.information,
                    "x-ms-resource-unit": str(cost),
                },
            )
        return cost, verdict

    def handle(self, call: Call) -> Result:
        units = request_cost(call.method, call.path, dict(call.params))[0]
        try:
            result = self._handle(call)
        except GraphHTTPError as exc:
            exc.headers.setdefault("x-ms-resource-unit", str(units))
            raise
        result.headers.setdefault("x-ms-resource-unit", str(units))
        return result

    def _handle(self, call: Call) -> Result:
        r, m = self.match(call.method, call.path)
        call.route = f"{call.method} /v1.0{r.template}"
        try:
            require_permission(call.principal, r.operation)
        except GraphAuthError as exc:
            raise GraphHTTPError(exc.status, exc.code, exc.message, exc.headers) from None
        _cost, verdict = self.throttle(call)
        try:
            result = r.handler(self, call, m)
        except StoreError as exc:
            raise GraphHTTPError(exc.status, exc.code, exc.message) from None
        except odata.ODataError as exc:
            raise GraphHTTPError(exc.status, exc.code, exc.message) from None
        if verdict is not None and verdict.usage >= 0.8:
            result.headers["x-ms-throttle-limit-percentage"] = f"{min(1.8, verdict.usage):.1f}"
        return result

    # ------------------------------------------------------------------ helpers

    def context(self, call: Call, fragment: str, select: Sequence[str] | None = None) -> str:
        sel = f"({','.join(select)})" if select else ""
        if fragment.endswith("/$entity") and sel:
            fragment = fragment[: -len("/$entity")] + sel + "/$entity"
        elif sel:
            fragment += sel
        return f"{call.base_url}/$metadata#{fragment}"

    def query(self, call: Call, entity: str | None, *, collection: bool, filterable: bool = True) -> odata.Query:
        return odata.parse_query(call.params, call.headers, entity=entity, collection=collection, filterable=filterable)

    def json_body(self, call: Call) -> dict[str, Any]:
        if not call.body.strip():
            return {}
        try:
            data = json.loads(call.body)
        except ValueError:
            raise GraphHTTPError(400, "BadRequest", MSG_JSON) from None
        if not isinstance(data, dict):
            raise GraphHTTPError(400, "BadRequest", MSG_JSON)
        return data

    def page(
        self,
        call: Call,
        q: odata.Query,
        ids: Sequence[str],
        matches: Callable[[str], bool],
        render: Callable[[str], dict[str, Any]],
        context: str,
    ) -> Result:
        """A page of a collection: `ids` sorted, keyset paging with an opaque $skiptoken."""
        start = 0
        after = q.after()
        if after is not None:
            from bisect import bisect_right

            start = bisect_right(ids, after)
        size = q.page_size
        items: list[dict[str, Any]] = []
        last = None
        more = False
        for i in range(start, len(ids)):
            oid = ids[i]
            if not matches(oid):
                continue
            if len(items) == size:
                more = True
                break
            items.append(render(oid))
            last = oid
        body: dict[str, Any] = {"@odata.context": context}
        if q.count:
            body["@odata.count"] = sum(1 for oid in ids if matches(oid))
        if more and last is not None:
            body["@odata.nextLink"] = q.next_link(call.base_url + call.path, last)
        body["value"] = items
        return Result(200, body)

    # ------------------------------------------------------------------ representations

    def user_json(self, u: UserRecord) -> dict[str, Any]:
        """Every property the emulator has for a user (before $select / default set)."""
        known = PROPERTIES["user"]
        out = {k: v for k, v in u.data.items() if k in known}
        out.setdefault("businessPhones", [])
        out.setdefault("proxyAddresses", [])
        out["assignedLicenses"] = [
            {"disabledPlans": sorted(x.disabled_plans), "skuId": x.sku_id} for x in u.assigned
        ]
        out["licenseAssignmentStates"] = [s.to_graph() for s in u.states]
        out["assignedPlans"] = self.assigned_plans(u)
        return out

    def assigned_plans(self, u: UserRecord) -> list[dict[str, Any]]:
        plans = []
        for lic in u.assigned:
            sku = self.store.skus.get(lic.sku_id)
            if sku is None:
                continue
            since = min(
                (s.last_updated for s in u.states if s.state.sku_id == lic.sku_id and s.state.state in HELD_STATES),
                default=None,
            )
            for p in sku.get("servicePlans") or []:
                pid = str(p["servicePlanId"]).lower()
                if pid in lic.disabled_plans:
                    continue
                plans.append(
                    {
                        "assignedDateTime": since,
                        "capabilityStatus": "Enabled",
                        "service": service_name(str(p.get("servicePlanName") or "")),
                        "servicePlanId": pid,
                    }
                )
        return plans

    def user_prop(self, u: UserRecord, name: str) -> Any:
        if name == "assignedLicenses":
            return [{"skuId": x.sku_id, "disabledPlans": sorted(x.disabled_plans)} for x in u.assigned]
        if name == "id":
            return u.id
        return u.data.get(name)

    def group_json(self, g: GroupRecord) -> dict[str, Any]:
        known = PROPERTIES["group"]
        out = {k: v for k, v in g.data.items() if k in known}
        out.setdefault("groupTypes", [])
        out.setdefault("proxyAddresses", [])
        out.setdefault("resourceBehaviorOptions", [])
        out.setdefault("resourceProvisioningOptions", [])
        out["assignedLicenses"] = [
            {"disabledPlans": sorted(x.disabled_plans), "skuId": x.sku_id} for x in g.licenses.values()
        ]
        out["licenseProcessingState"] = {"state": g.processing_state}
        return out

    def group_prop(self, g: GroupRecord, name: str, with_errors: Callable[[], set[str]]) -> Any:
        if name == "assignedLicenses":
            return [{"skuId": x.sku_id, "disabledPlans": sorted(x.disabled_plans)} for x in g.licenses.values()]
        if name == "hasMembersWithLicenseErrors":
            return g.id in with_errors()
        if name == "id":
            return g.id
        return g.data.get(name)

    def render_user(self, u: UserRecord, q: odata.Query, *, typed: bool = False) -> dict[str, Any]:
        names = q.select or USER_DEFAULT
        if "*" in names:
            obj = odata.select(self.user_json(u), q.select, USER_DEFAULT, "user")
        else:
            obj = {}
            data = u.data
            for name, kind, absent in _user_select_plan(tuple(names)):
                if kind == _PLAIN:
                    if name in data:
                        obj[name] = data[name]
                    elif absent is not _OMIT:
                        obj[name] = [] if absent is _EMPTY_LIST else None
                elif kind == _LICENSES:
                    obj[name] = [license_view(x) for x in u.assigned]
                elif kind == _STATES:
                    obj[name] = [s.graph_view() for s in u.states]
                else:
                    obj[name] = self.assigned_plans(u)
        return {"@odata.type": "#microsoft.graph.user", **obj} if typed else obj

    def render_group(self, g: GroupRecord, q: odata.Query, *, typed: bool = False) -> dict[str, Any]:
        obj = odata.select(self.group_json(g), q.select, GROUP_DEFAULT, "group")
        return {"@odata.type": "#microsoft.graph.group", **obj} if typed else obj

    def render_object(self, oid: str, q: odata.Query) -> dict[str, Any]:
        u = self.store.users.get(oid)
        if u is not None:
            return self.render_user(u, q, typed=True)
        return self.render_group(self.store.groups[oid], q, typed=True)

    # ------------------------------------------------------------------ license bodies

    @staticmethod
    def _guid(value: Any) -> str:
        if not isinstance(value, str) or not GUID.match(value):
            raise GraphHTTPError(400, "Request_BadRequest", MSG_GUID)
        return value.lower()

    def license_changes(self, call: Call) -> tuple[list[License], list[str]]:
        body = self.json_body(call)
        missing = [k for k in ("addLicenses", "removeLicenses") if body.get(k) is None]
        if missing:
            raise GraphHTTPError(
                400,
                "Request_BadRequest",
                "One or more parameters of the operation 'assignLicense' are missing from the request payload. "
                f"The missing parameters are: {', '.join(missing)}.",
            )
        add_raw, remove_raw = body["addLicenses"], body["removeLicenses"]
        if not isinstance(add_raw, list) or not isinstance(remove_raw, list):
            raise GraphHTTPError(400, "BadRequest", MSG_JSON)
        add: list[License] = []
        for item in add_raw:
            if not isinstance(item, dict):
                raise GraphHTTPError(400, "BadRequest", MSG_JSON)
            sku = self._guid(item.get("skuId"))
            disabled = item.get("disabledPlans") or []
            if not isinstance(disabled, list):
                raise GraphHTTPError(400, "BadRequest", MSG_JSON)
            add.append(License(sku, frozenset(self._guid(p) for p in disabled)))
        remove = [self._guid(s) for s in remove_raw]
        return add, remove


def _not_found(oid: str) -> GraphHTTPError:
    return GraphHTTPError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{oid}' does not exist or one of its queried reference-property objects are not present.",
    )


# ---------------------------------------------------------------------------- organization, SKUs


@route("GET", "/organization", Operation.ORGANIZATION_READ)
def _organization(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    q = api.query(call, "organization", collection=True, filterable=False)
    known = PROPERTIES["organization"]
    org = {k: v for k, v in api.store.organization.items() if k in known}
    for name, t in known.items():
        if t.startswith("Collection(") and name not in org:
            org[name] = []
    item = odata.select(org, q.select, list(org), "organization")
    return Result(200, {"@odata.context": api.context(call, "organization", q.select), "value": [item]})


@route("GET", "/organization/{id}", Operation.ORGANIZATION_READ)
def _organization_one(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    if m["id"].lower() != api.store.tenant_id:
        raise _not_found(m["id"])
    res = _organization(api, call, m)
    item = res.body["value"][0]
    return Result(200, {"@odata.context": api.context(call, "organization/$entity"), **item})


def _sku_graph(api: GraphApi, sku_id: str) -> dict[str, Any]:
    """A subscribedSku as Graph returns it: the seed's object with Graph's defaults filled in."""
    item = api.store.sku_json(sku_id)
    tenant = api.store.tenant_id
    domains = api.store.organization.get("verifiedDomains") or []
    initial = next((str(d.get("name", "")) for d in domains if d.get("isInitial")), "")
    item.setdefault("id", f"{tenant}_{sku_id}")
    item.setdefault("accountId", tenant)
    item.setdefault("accountName", initial.split(".", 1)[0] or None)
    item.setdefault("appliesTo", "User")
    item.setdefault("capabilityStatus", "Enabled")
    item.setdefault("subscriptionIds", [])
    prepaid = item.get("prepaidUnits") or {}
    item["prepaidUnits"] = {"enabled": 0, "suspended": 0, "warning": 0, "lockedOut": 0, **prepaid}
    return item


@route("GET", "/subscribedSkus", Operation.SUBSCRIBED_SKUS_READ)
def _skus(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    q = api.query(call, "subscribedSku", collection=True, filterable=False)
    with api.store.lock:
        items = [_sku_graph(api, s) for s in api.store.skus]
    items = [odata.select(i, q.select, list(i), "subscribedSku") for i in items]
    return Result(200, {"@odata.context": api.context(call, "subscribedSkus", q.select), "value": items})


@route("GET", "/subscribedSkus/{id}", Operation.SUBSCRIBED_SKUS_READ)
def _sku(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    q = api.query(call, "subscribedSku", collection=False, filterable=False)
    key = m["id"].lower()
    with api.store.lock:
        found = next(
            (s for s in api.store.skus if str(_sku_graph(api, s)["id"]).lower() == key or s == key), None
        )
        if found is None:
            raise _not_found(m["id"])
        item = _sku_graph(api, found)
    item = odata.select(item, q.select, list(item), "subscribedSku")
    return Result(200, {"@odata.context": api.context(call, "subscribedSkus/$entity", q.select), **item})


# ---------------------------------------------------------------------------- users


def _every(oid: str) -> bool:
    return True


def _user_filter(api: GraphApi, q: odata.Query) -> Callable[[str], bool]:
    node = q.filter
    if node is None:
        return lambda oid: True
    users = api.store.users

    def matches(oid: str) -> bool:
        u = users.get(oid)
        return u is not None and odata.evaluate(node, lambda name: api.user_prop(u, name))

    return matches


def _smtp_address_lookup(node: odata.Node) -> str | None:
    """The address of a `proxyAddresses/any(x:x eq 'smtp:...')` filter (alone or in an `and`)."""
    if isinstance(node, odata.AnyOf):
        inner = node.inner
        if (
            node.path == ("proxyAddresses",)
            and inner.op == "eq"
            and inner.path in ((), ("",))
            and isinstance(inner.value, str)
        ):
            kind, _, address = inner.value.partition(":")
            return address.lower() if kind.lower() == "smtp" and address else None
        return None
    if isinstance(node, odata.BoolOp) and node.op == "and":
        for item in node.items:
            found = _smtp_address_lookup(item)
            if found is not None:
                return found
    return None


@route("GET", "/users", Operation.USERS_READ)
def _users(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    q = api.query(call, "user", collection=True)
    with api.store.lock:
        ids: Sequence[str] = api.store.user_order
        lookup = odata.equality_lookup(q.filter) if q.filter is not None else None
        if lookup is not None:
            u = api.store.find_user(lookup[1]) if lookup[0] == "userPrincipalName" else api.store.users.get(lookup[1].lower())
            if lookup[0] == "userPrincipalName" and u is not None and u.upn.lower() != lookup[1].lower():
                u = None
            ids = [u.id] if u is not None else []
        elif q.filter is not None and (address := _smtp_address_lookup(q.filter)) is not None:
            # the address index narrows the scan; the filter itself still decides below
            ids = sorted(o for o in api.store.address_owners(address) if o in api.store.users)
        matches = _user_filter(api, q)
        if q.filter is not None and lookup is None and (prefixes := odata.prefix_lookup(q.filter, "userPrincipalName")):
            ids = api.store.users_with_upn_prefix(prefixes)
            matches = _every  # the index answers the filter exactly (case-insensitive prefixes)
        users = api.store.users
        return api.page(
            call,
            q,
            ids,
            matches,
            lambda oid: api.render_user(users[oid], q),
            api.context(call, "users", q.select),
        )


@route("GET", "/users/{id}", Operation.USERS_READ)
def _user(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    q = api.query(call, "user", collection=False, filterable=False)
    with api.store.lock:
        u = api.store.user(m["id"])
        return Result(200, {"@odata.context": api.context(call, "users/$entity", q.select), **api.render_user(u, q)})


def _check_usage_location(value: Any) -> None:
    if value is not None and not (isinstance(value, str) and countries.is_country(value.upper())):
        raise GraphHTTPError(
            400, "Request_BadRequest", "Invalid value specified for property 'usageLocation' of resource 'User'."
        )


def _check_properties(body: Mapping[str, Any], entity: str, read_only: Iterable[str]) -> None:
    known = PROPERTIES[entity]
    kind = "User" if entity == "user" else "Group"
    for key in body:
        if key.endswith("@odata.bind") or key.startswith("@odata"):
            continue
        if key not in known:
            raise GraphHTTPError(
                400, "Request_BadRequest", f"Property '{key}' does not exist as a declared property or extension property."
            )
        if key in read_only:
            raise GraphHTTPError(
                400, "Request_BadRequest", f"Property '{key}' is read-only and cannot be set on resource '{kind}'."
            )


_USER_READ_ONLY = ("id", "assignedLicenses", "assignedPlans", "licenseAssignmentStates", "provisionedPlans", "proxyAddresses")
_GROUP_READ_ONLY = ("id", "assignedLicenses", "licenseProcessingState", "hasMembersWithLicenseErrors", "proxyAddresses")


@route("POST", "/users", Operation.USERS_WRITE)
def _create_user(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    body = api.json_body(call)
    _check_properties(body, "user", _USER_READ_ONLY)
    for key in ("accountEnabled", "displayName", "mailNickname", "passwordProfile", "userPrincipalName"):
        if body.get(key) in (None, ""):
            raise GraphHTTPError(
                400, "Request_BadRequest", f"Invalid value specified for property '{key}' of resource 'User'."
            )
    upn = str(body["userPrincipalName"])
    domains = {str(d.get("name", "")).lower() for d in api.store.organization.get("verifiedDomains") or []}
    if "@" not in upn or (domains and upn.rsplit("@", 1)[1].lower() not in domains):
        raise GraphHTTPError(
            400,
            "Request_BadRequest",
            "The domain portion of the userPrincipalName property is invalid. "
            "You must use one of the verified domain names in your organization.",
        )
    _check_usage_location(body.get("usageLocation"))
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = {k: v for k, v in body.items() if k != "passwordProfile"}
    data.setdefault("createdDateTime", now)
    data.setdefault("mail", None)
    data.setdefault("usageLocation", None)
    data.setdefault("proxyAddresses", [])
    u = api.store.create_user(data)
    q = odata.Query()
    with api.store.lock:
        return Result(201, {"@odata.context": api.context(call, "users/$entity"), **api.render_user(u, q)})


@route("PATCH", "/users/{id}", Operation.USERS_WRITE)
def _patch_user(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    body = api.json_body(call)
    _check_properties(body, "user", _USER_READ_ONLY)
    if "usageLocation" in body:
        _check_usage_location(body["usageLocation"])
        if isinstance(body["usageLocation"], str):
            body["usageLocation"] = body["usageLocation"].upper()
    api.store.update_user(m["id"], body)
    return Result(204)


@route("POST", "/users/{id}/assignLicense", Operation.USERS_ASSIGN_LICENSE)
def _user_assign(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    api.store.user(m["id"])  # 404 before body errors
    add, remove = api.license_changes(call)
    u = api.store.assign_user_licenses(m["id"], add, remove)
    with api.store.lock:
        return Result(200, {"@odata.context": api.context(call, "users/$entity"), **api.render_user(u, odata.Query())})


@route("POST", "/users/{id}/reprocessLicenseAssignment", Operation.USERS_REPROCESS)
def _user_reprocess(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    u = api.store.reprocess_user(m["id"])
    with api.store.lock:
        return Result(200, {"@odata.context": api.context(call, "users/$entity"), **api.render_user(u, odata.Query())})


@route("GET", "/users/{id}/licenseDetails", Operation.USERS_LICENSE_DETAILS_READ)
def _license_details(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    q = api.query(call, "licenseDetails", collection=True, filterable=False)
    with api.store.lock:
        u = api.store.user(m["id"])
        items = []
        for lic in u.assigned:
            sku = api.store.skus.get(lic.sku_id) or {}
            detail = {
                "id": base64.urlsafe_b64encode(f"{u.id}_{lic.sku_id}".encode()).decode().rstrip("="),
                "skuId": lic.sku_id,
                "skuPartNumber": sku.get("skuPartNumber"),
                "servicePlans": [
                    {
                        "servicePlanId": str(p["servicePlanId"]).lower(),
                        "servicePlanName": p.get("servicePlanName"),
                        "provisioningStatus": "Disabled"
                        if str(p["servicePlanId"]).lower() in lic.disabled_plans
                        else p.get("provisioningStatus", "Success"),
                        "appliesTo": p.get("appliesTo", "User"),
                    }
                    for p in sku.get("servicePlans") or []
                ],
            }
            items.append(odata.select(detail, q.select, list(detail), "licenseDetails"))
        return Result(
            200, {"@odata.context": api.context(call, f"users('{u.id}')/licenseDetails", q.select), "value": items}
        )


def _member_of(api: GraphApi, call: Call, m: re.Match[str], cast: str | None) -> Result:
    q = api.query(call, "group", collection=True)
    with api.store.lock:
        u = api.store.find_user(m["id"])
        oid = u.id if u is not None else m["id"].lower()
        if u is None and oid not in api.store.groups:
            raise _not_found(m["id"])
        ids = sorted(api.store.member_of.get(oid, {}))
        groups = api.store.groups
        errors: set[str] | None = None

        def with_errors() -> set[str]:
            nonlocal errors
            if errors is None:
                errors = api.store.groups_with_errors()
            return errors

        node = q.filter

        def matches(gid: str) -> bool:
            return node is None or odata.evaluate(node, lambda n: api.group_prop(groups[gid], n, with_errors))

        typed = cast is None
        return api.page(
            call,
            q,
            ids,
            matches,
            lambda gid: api.render_group(groups[gid], q, typed=typed),
            api.context(call, "groups" if cast else "directoryObjects", q.select),
        )


@route("GET", "/users/{id}/memberOf", Operation.USERS_MEMBER_OF_READ)
def _user_member_of(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    return _member_of(api, call, m, None)


@route("GET", "/users/{id}/memberOf/microsoft.graph.group", Operation.USERS_MEMBER_OF_READ)
def _user_member_of_groups(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    return _member_of(api, call, m, "group")


# ---------------------------------------------------------------------------- groups


@route("GET", "/groups", Operation.GROUPS_READ)
def _groups(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    q = api.query(call, "group", collection=True)
    with api.store.lock:
        groups = api.store.groups
        errors: set[str] | None = None

        def with_errors() -> set[str]:
            nonlocal errors
            if errors is None:
                errors = api.store.groups_with_errors()
            return errors

        node = q.filter

        def matches(gid: str) -> bool:
            return node is None or odata.evaluate(node, lambda n: api.group_prop(groups[gid], n, with_errors))

        return api.page(
            call,
            q,
            api.store.group_order,
            matches,
            lambda gid: api.render_group(groups[gid], q),
            api.context(call, "groups", q.select),
        )


@route("GET", "/groups/{id}", Operation.GROUPS_READ)
def _group(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    q = api.query(call, "group", collection=False, filterable=False)
    with api.store.lock:
        g = api.store.group(m["id"])
        return Result(200, {"@odata.context": api.context(call, "groups/$entity", q.select), **api.render_group(g, q)})


@route("POST", "/groups", Operation.GROUPS_CREATE)
def _create_group(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    body = api.json_body(call)
    _check_properties(body, "group", _GROUP_READ_ONLY)
    for key in ("displayName", "mailEnabled", "mailNickname", "securityEnabled"):
        if body.get(key) in (None, ""):
            raise GraphHTTPError(
                400, "Request_BadRequest", f"Invalid value specified for property '{key}' of resource 'Group'."
            )
    data = dict(body)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data.setdefault("createdDateTime", now)
    data.setdefault("renewedDateTime", now)
    data.setdefault("description", None)
    data.setdefault("groupTypes", [])
    data.setdefault("mail", None)
    data.setdefault("proxyAddresses", [])
    g = api.store.create_group(data)
    with api.store.lock:
        return Result(201, {"@odata.context": api.context(call, "groups/$entity"), **api.render_group(g, odata.Query())})


@route("PATCH", "/groups/{id}", Operation.GROUPS_WRITE)
def _patch_group(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    body = api.json_body(call)
    _check_properties(body, "group", _GROUP_READ_ONLY)
    api.store.update_group(m["id"], body)
    return Result(204)


@route("DELETE", "/groups/{id}", Operation.GROUPS_WRITE)
def _delete_group(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    api.store.delete_group(m["id"])
    return Result(204)


@route("POST", "/groups/{id}/assignLicense", Operation.GROUPS_ASSIGN_LICENSE)
def _group_assign(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    api.store.group(m["id"])
    add, remove = api.license_changes(call)
    g = api.store.assign_group_licenses(m["id"], add, remove)
    with api.store.lock:
        body = {"@odata.context": api.context(call, "groups/$entity"), **api.render_group(g, odata.Query())}
    location = (
        f"https://graph.microsoft.com/v2/{api.store.tenant_id}/directoryObjects/{g.id}/Microsoft.DirectoryServices.Group"
    )
    return Result(202, body, {"Location": location})


def _members(api: GraphApi, call: Call, m: re.Match[str], cast: str | None) -> Result:
    entity = cast or "directoryObject"
    q = api.query(call, entity, collection=True)
    with api.store.lock:
        g = api.store.group(m["id"])
        users, groups = api.store.users, api.store.groups
        ids = sorted(g.members)
        if cast == "user":
            ids = [i for i in ids if i in users]
        elif cast == "group":
            ids = [i for i in ids if i in groups]
        node = q.filter
        errors: set[str] | None = None

        def with_errors() -> set[str]:
            nonlocal errors
            if errors is None:
                errors = api.store.groups_with_errors()
            return errors

        def prop(oid: str, name: str) -> Any:
            if oid in users:
                return api.user_prop(users[oid], name)
            return api.group_prop(groups[oid], name, with_errors)

        def matches(oid: str) -> bool:
            return node is None or odata.evaluate(node, lambda n: prop(oid, n))

        def render(oid: str) -> dict[str, Any]:
            if cast == "user":
                return api.render_user(users[oid], q)
            if cast == "group":
                return api.render_group(groups[oid], q)
            return api.render_object(oid, q)

        fragment = {"user": "users", "group": "groups"}.get(cast or "", "directoryObjects")
        return api.page(call, q, ids, matches, render, api.context(call, fragment, q.select))


@route("GET", "/groups/{id}/members", Operation.GROUPS_MEMBERS_READ)
def _group_members(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    return _members(api, call, m, None)


@route("GET", "/groups/{id}/members/microsoft.graph.user", Operation.GROUPS_MEMBERS_READ)
def _group_members_users(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    return _members(api, call, m, "user")


@route("GET", "/groups/{id}/members/microsoft.graph.group", Operation.GROUPS_MEMBERS_READ)
def _group_members_groups(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    return _members(api, call, m, "group")


_REF = re.compile(r"/directoryObjects/([^/?]+)$|/users/([^/?]+)$|/groups/([^/?]+)$", re.IGNORECASE)


def _check_membership_editable(g: GroupRecord) -> None:
    """Graph refuses membership changes on dynamic, synced and Exchange-mastered groups."""
    types = [str(t) for t in g.data.get("groupTypes") or []]
    if "DynamicMembership" in types:
        raise GraphHTTPError(
            400, "Request_BadRequest", "Insufficient privileges to complete the operation. The group has dynamic membership."
        )
    if g.data.get("onPremisesSyncEnabled"):
        raise GraphHTTPError(
            400,
            "Request_BadRequest",
            "Unable to update the specified properties for on-premises mastered Directory Sync objects "
            "or objects currently undergoing migration.",
        )
    if g.data.get("mailEnabled") and "Unified" not in types:
        raise GraphHTTPError(
            400, "Request_BadRequest", "Cannot Update a mail-enabled security groups and or distribution list."
        )


@route("POST", "/groups/{id}/members/$ref", Operation.GROUPS_MEMBERS_WRITE)
def _add_member(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    _check_membership_editable(api.store.group(m["id"]))
    body = api.json_body(call)
    ref = body.get("@odata.id")
    found = _REF.search(str(ref or "").rstrip("/"))
    if not isinstance(ref, str) or found is None:
        raise GraphHTTPError(
            400, "Request_BadRequest", "Invalid object identifier '{}'.".format(ref if isinstance(ref, str) else "")
        )
    member = unquote(next(g for g in found.groups() if g))
    if not GUID.match(member):
        raise GraphHTTPError(400, "Request_BadRequest", f"Invalid object identifier '{member}'.")
    api.store.add_member(m["id"], member)
    return Result(204)


@route("DELETE", "/groups/{id}/members/{member}/$ref", Operation.GROUPS_MEMBERS_WRITE)
def _remove_member(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    _check_membership_editable(api.store.group(m["id"]))
    api.store.remove_member(m["id"], m["member"])
    return Result(204)


@route("GET", "/groups/{id}/membersWithLicenseErrors", Operation.GROUPS_LICENSE_ERRORS_READ)
def _members_with_errors(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    q = api.query(call, "user", collection=True)
    with api.store.lock:
        ids = sorted(api.store.members_with_errors(m["id"]))
        users = api.store.users
        return api.page(
            call,
            q,
            ids,
            _user_filter(api, q),
            lambda oid: api.render_user(users[oid], q, typed=True),
            api.context(call, "directoryObjects", q.select),
        )


# ---------------------------------------------------------------------------- $count


def _count(api: GraphApi, call: Call, entity: str) -> Result:
    if not call.headers.get("consistencylevel", "").lower() == "eventual":
        raise GraphHTTPError(400, "Request_BadRequest", "$count is not currently supported.")
    params = [(k, v) for k, v in call.params if k.lower().lstrip("$") != "count"]
    q = odata.parse_query([*params, ("$count", "true")], call.headers, entity=entity, collection=True)
    with api.store.lock:
        if entity == "user":
            ids: Sequence[str] = api.store.user_order
            matches = _user_filter(api, q)
        else:
            groups = api.store.groups
            errors: set[str] | None = None

            def with_errors() -> set[str]:
                nonlocal errors
                if errors is None:
                    errors = api.store.groups_with_errors()
                return errors

            node = q.filter
            ids = api.store.group_order

            def matches(gid: str) -> bool:
                return node is None or odata.evaluate(node, lambda n: api.group_prop(groups[gid], n, with_errors))

        total = sum(1 for oid in ids if matches(oid))
    return Result(200, None, {}, str(total))


@route("GET", "/users/$count", Operation.USERS_READ, first=True)
def _users_count(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    return _count(api, call, "user")


@route("GET", "/groups/$count", Operation.GROUPS_READ, first=True)
def _groups_count(api: GraphApi, call: Call, m: re.Match[str]) -> Result:
    return _count(api, call, "group")


# ---------------------------------------------------------------------------- the ASGI app


class _DropConnection(Exception):
    pass


def create_app(
    store: Store, *, token_service: TokenServiceLike, options: EmulatorOptions | None = None
) -> Starlette:
    """The emulator's ASGI app over `store`; `token_service` signs clients in and checks tokens."""
    opts = options or EmulatorOptions()
    if opts.processing_delay is not None:
        store.delay_override = opts.processing_delay
    api = GraphApi(store, opts)
    faults = FaultInjector(opts.fail_rate, opts.seed) if opts.fail_rate > 0 else None
    worker: list[ProcessingWorker] = []

    def ids(request: Request) -> tuple[str, str]:
        request_id = str(uuid.uuid4())
        return request_id, request.headers.get("client-request-id") or request_id

    def error_response(
        exc: GraphHTTPError | GraphAuthError, request_id: str, client_id: str, extra: Mapping[str, str] | None = None
    ) -> Response:
        headers = {"request-id": request_id, "client-request-id": client_id, **exc.headers, **(extra or {})}
        return JSONResponse(
            error_body(exc.code, exc.message, request_id, client_id), status_code=exc.status, headers=headers
        )

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def graph(request: Request) -> Response:
        request_id, client_id = ids(request)
        if opts.latency_ms > 0:
            await asyncio.sleep(opts.latency_ms / 1000)
        path = "/" + request.path_params.get("path", "")
        method = request.method.upper()
        if faults is not None:
            fault = faults.draw()
            if fault is not None:
                api.stats.fault(fault.value)
                api.stats.record("fault", 0 if fault is Fault.DROP else int(fault.value), 0, batch_item=False, app_id=None)
                if fault is Fault.DROP:
                    raise _DropConnection()
                if fault is Fault.UNAVAILABLE:
                    down = GraphHTTPError(503, "serviceNotAvailable", "The service is temporarily unavailable.")
                    return error_response(down, request_id, client_id, {"Retry-After": "1"})
                busy = GraphHTTPError(429, "TooManyRequests", "Please retry again later.")
                return error_response(busy, request_id, client_id, {"Retry-After": str(faults.retry_after())})
        try:
            principal = token_service.authenticate(request.headers.get("authorization"))
        except GraphAuthError as exc:
            api.stats.record(f"{method} /v1.0 (unauthenticated)", exc.status, 0, batch_item=False, app_id=None)
            units = request_cost(method, path, dict(parse_qsl(request.url.query)))[0]
            return error_response(exc, request_id, client_id, {"x-ms-resource-unit": str(units)})
        body = await request.body()
        call = Call(
            method=method,
            path=path,
            params=parse_qsl(request.url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            principal=principal,
            base_url=base_url(request) + "/v1.0",
        )
        if path.lower() in ("/$batch", "/$batch/"):
            if method != "POST":
                wrong = GraphHTTPError(405, "Request_BadRequest", "The HTTP method is not allowed on $batch.")
                return error_response(wrong, request_id, client_id)
            result = await run_in_threadpool(_run_batch, api, call)
            api.stats.record("POST /v1.0/$batch", result.status, 0, batch_item=False, app_id=principal.app_id)
        else:
            result = await run_in_threadpool(_run_one, api, call)
            units = _charged(result)
            api.stats.record(call.route or f"{method} /v1.0{path}", result.status, units, batch_item=False, app_id=principal.app_id)
        headers = {"request-id": request_id, "client-request-id": client_id, **result.headers}
        if isinstance(result.body, dict) and "error" in result.body:
            result.body["error"]["innerError"] = {
                "date": graph_date(),
                "request-id": request_id,
                "client-request-id": client_id,
            }
        if result.text is not None:
            return Response(result.text, status_code=result.status, headers=headers, media_type="text/plain")
        if result.body is None:
            return Response(status_code=result.status, headers=headers)
        return GraphJSONResponse(result.body, status_code=result.status, headers=headers)

    async def control(request: Request, action: Callable[[], Any], status: int = 200) -> Response:
        request_id, client_id = ids(request)
        try:
            principal = token_service.authenticate(request.headers.get("authorization"))
            require_permission(principal, Operation.EMULATOR_CONTROL)
        except GraphAuthError as exc:
            return error_response(exc, request_id, client_id)
        body = await run_in_threadpool(action)
        return JSONResponse(body, status_code=status, headers={"request-id": request_id, "client-request-id": client_id})

    async def drain(request: Request) -> Response:
        return await control(request, lambda: {"processed": store.drain()})

    async def stats(request: Request) -> Response:
        return await control(request, lambda: api.stats.to_json(store, sum(len(w.errors) for w in worker)))

    async def snapshot(request: Request) -> Response:
        return await control(request, store.snapshot)

    async def reset_stats(request: Request) -> Response:
        def reset() -> dict[str, Any]:
            api.stats.reset()
            return {"reset": True}

        return await control(request, reset)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # processing that fell due while no emulator ran (a previous CLI command) is finished
        # before the first request, so every command starts from a settled tenant
        await run_in_threadpool(store.process_due)
        if opts.start_worker:
            worker.append(ProcessingWorker(store).start())
        try:
            yield
        finally:
            for w in worker:
                w.stop()
            worker.clear()

    routes: list[BaseRoute] = [
        *token_service.routes(),
        Route("/v1.0/{path:path}", graph, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
        Route("/_emulator/drain", drain, methods=["POST"]),
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/snapshot", snapshot, methods=["GET"]),
        Route("/_emulator/reset-stats", reset_stats, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.store = store
    app.state.api = api
    app.state.workers = worker
    app.add_middleware(_DropMiddleware)
    return app


class _DropMiddleware:
    """Turns _DropConnection into a connection closed mid-response (the client sees no complete reply)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except _DropConnection:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"1024")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"value": [', "more_body": True})
            # returning without completing the response makes the server close the connection


def _run_one(api: GraphApi, call: Call) -> Result:
    try:
        return api.handle(call)
    except GraphHTTPError as exc:
        return Result(exc.status, error_body(exc.code, exc.message, "", ""), dict(exc.headers))


def _charged(result: Result) -> int:
    """Resource units a response counts for in the stats (refused requests cost nothing)."""
    if result.status in (401, 403, 429):
        return 0
    return int(result.headers.get("x-ms-resource-unit", "0") or 0)


def _run_batch(api: GraphApi, call: Call) -> Result:
    total_units = [0]

    def execute(item: batch_mod.BatchItem) -> batch_mod.ItemResult:
        sub = Call(
            method=item.method,
            path=item.path,
            params=item.params,
            headers={k.lower(): v for k, v in item.headers.items()},
            body=item.body,
            principal=call.principal,
            base_url=call.base_url,
        )
        sub.headers.setdefault("consistencylevel", call.headers.get("consistencylevel", ""))
        request_id = str(uuid.uuid4())
        result = _run_one(api, sub)
        units = _charged(result)
        total_units[0] += units
        api.stats.record(sub.route or f"{sub.method} /v1.0{sub.path}", result.status, units, batch_item=True, app_id=call.principal.app_id)
        body: Any = result.body if result.text is None else result.text
        if isinstance(body, dict) and "error" in body:
            body["error"]["innerError"] = {"date": graph_date(), "request-id": request_id, "client-request-id": request_id}
        headers = {"request-id": request_id, **result.headers}
        if body is not None:
            headers.setdefault("Content-Type", "text/plain" if result.text is not None else "application/json")
        return batch_mod.ItemResult(result.status, headers, body)

    try:
        body = batch_mod.run_batch(call.body, execute)
    except batch_mod.BatchError as exc:
        return Result(400, error_body(exc.code, exc.message, "", ""), {"x-ms-resource-unit": "0"})
    return Result(200, body, {"x-ms-resource-unit": str(total_units[0])})
