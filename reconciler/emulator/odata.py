"""The OData query options the emulator understands, with Graph's errors.

`$select`, `$top` (1..999), `$skiptoken` (opaque; the next link keeps the rest
of the query), `$count=true` (needs `ConsistencyLevel: eventual`), and a
`$filter` subset: `eq`/`ne` on scalar properties, `startswith`/`endswith`,
`in`, lambda `any` on collections (`assignedLicenses/any(x:x/skuId eq {guid})`,
`proxyAddresses/any(x:x eq 'smtp:..')`), combined with `and`, `or`, `not` and
parentheses. `ne`, `not` and `endswith` are advanced queries (facts 3.4): they
need `ConsistencyLevel: eventual` and `$count=true`.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from reconciler.emulator.graph_types import PROPERTIES

MAX_TOP = 999
DEFAULT_PAGE = 100


class ODataError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def unsupported(message: str = "Unsupported Query.") -> ODataError:
    return ODataError(400, "Request_UnsupportedQuery", message)


# ----------------------------------------------------------------------------- filter AST


@dataclass(frozen=True)
class Compare:
    path: tuple[str, ...]
    op: str  # eq ne startswith endswith in
    value: Any


@dataclass(frozen=True)
class AnyOf:
    path: tuple[str, ...]
    inner: Compare  # path relative to the lambda variable ("" for the element itself)


@dataclass(frozen=True)
class BoolOp:
    op: str  # and / or
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Compare | AnyOf | BoolOp | Not

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')"
    r"|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?![\w-])"
    r"|(?P<num>-?\d+(?:\.\d+)?)(?![\w-])"
    r"|(?P<name>[A-Za-z_@$][\w.@$]*(?:/[A-Za-z_][\w.]*)*)"
    r"|(?P<punct>[(),:/]))"
)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ODataError(400, "BadRequest", f"Invalid filter clause: syntax error at position {pos} in '{text}'.")
        pos = m.end()
        kind = m.lastgroup or ""
        raw = m.group(kind)
        if kind == "str":
            out.append(("lit", raw[1:-1].replace("''", "'")))
        elif kind == "guid":
            out.append(("lit", raw.lower()))
        elif kind == "num":
            out.append(("lit", float(raw) if "." in raw else int(raw)))
        elif kind == "name":
            low = raw.lower()
            if low in ("true", "false"):
                out.append(("lit", low == "true"))
            elif low == "null":
                out.append(("lit", None))
            else:
                out.append(("name", raw))
        else:
            out.append(("punct", raw))
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def error(self) -> ODataError:
        return ODataError(400, "BadRequest", f"Invalid filter clause: syntax error in '{self.text}'.")

    def peek(self, offset: int = 0) -> tuple[str, Any] | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise self.error()
        self.i += 1
        return tok

    def expect(self, kind: str, value: str | None = None) -> Any:
        k, v = self.take()
        if k != kind or (value is not None and str(v).lower() != value):
            raise self.error()
        return v

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "name" and str(tok[1]).lower() == word

    def parse(self) -> Node:
        node = self.or_expr()
        if self.peek() is not None:
            raise self.error()
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.is_word("or"):
            self.i += 1
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self.is_word("and"):
            self.i += 1
            items.append(self.unary())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def unary(self) -> Node:
        if self.is_word("not"):
            self.i += 1
            return Not(self.unary())
        tok = self.peek()
        if tok == ("punct", "("):
            self.i += 1
            node = self.or_expr()
            self.expect("punct", ")")
            return node
        return self.primary(None)

    def primary(self, var: str | None) -> Node:
        kind, name = self.take()
        if kind != "name":
            raise self.error()
        low = str(name).lower()
        if low in ("startswith", "endswith") and self.peek() == ("punct", "("):
            self.i += 1
            path = self.path(var)
            self.expect("punct", ",")
            value = self.expect("lit")
            self.expect("punct", ")")
            return Compare(path, low, value)
        head, _, last = str(name).rpartition("/")
        if head and last.lower() in ("any", "all") and self.peek() == ("punct", "("):
            # collection/any(x: ...)
            if last.lower() != "any":
                raise unsupported(f"Unsupported lambda operator '{last}'.")
            self.i += 1
            inner_var = str(self.expect("name"))
            self.expect("punct", ":")
            inner = self.primary(inner_var)
            self.expect("punct", ")")
            if not isinstance(inner, Compare):
                raise self.error()
            return AnyOf(self._split(head, var), inner)
        path = self._split(str(name), var)
        op = str(self.expect("name")).lower()
        if op == "in":
            self.expect("punct", "(")
            values = [self.expect("lit")]
            while self.peek() == ("punct", ","):
                self.i += 1
                values.append(self.expect("lit"))
            self.expect("punct", ")")
            return Compare(path, "in", tuple(values))
        if op not in ("eq", "ne"):
            if op in ("gt", "ge", "lt", "le"):
                raise unsupported(f"Operator '{op}' is not supported on this property.")
            raise self.error()
        return Compare(path, op, self.expect("lit"))

    def path(self, var: str | None) -> tuple[str, ...]:
        return self._split(str(self.expect("name")), var)

    def _split(self, name: str, var: str | None) -> tuple[str, ...]:
        parts = name.split("/")
        if var is not None:
            if parts[0] != var:
                raise self.error()
            parts = parts[1:]
        return tuple(parts)


def parse_filter(text: str) -> Node:
    return _Parser(text).parse()


def is_advanced(node: Node) -> bool:
    """Whether a filter needs ConsistencyLevel: eventual and $count=true."""
    if isinstance(node, Compare):
        return node.op in ("ne", "endswith")
    if isinstance(node, AnyOf):
        return is_advanced(node.inner)
    if isinstance(node, Not):
        return True
    return any(is_advanced(i) for i in node.items)


# Properties that can be filtered, per entity type (Graph's documented filter support).
FILTERABLE: dict[str, frozenset[str]] = {
    "user": frozenset(
        {
            "id",
            "displayName",
            "userPrincipalName",
            "mail",
            "givenName",
            "surname",
            "usageLocation",
            "accountEnabled",
            "department",
            "jobTitle",
            "userType",
            "companyName",
            "country",
            "city",
            "employeeId",
            "mailNickname",
            "onPremisesSyncEnabled",
            "assignedLicenses",
            "proxyAddresses",
            "otherMails",
        }
    ),
    "group": frozenset(
        {
            "id",
            "displayName",
            "mail",
            "mailEnabled",
            "mailNickname",
            "securityEnabled",
            "groupTypes",
            "assignedLicenses",
            "proxyAddresses",
            "hasMembersWithLicenseErrors",
            "onPremisesSyncEnabled",
            "isAssignableToRole",
            "membershipRuleProcessingState",
        }
    ),
}


def check_filter(node: Node, entity: str) -> None:
    """400 for properties the entity does not have or that cannot be filtered."""
    allowed = FILTERABLE.get(entity, frozenset())
    known = PROPERTIES.get(entity, {})
    kind = "User" if entity == "user" else entity[:1].upper() + entity[1:]

    def visit(n: Node) -> None:
        if isinstance(n, BoolOp):
            for i in n.items:
                visit(i)
            return
        if isinstance(n, Not):
            visit(n.item)
            return
        prop = n.path[0] if n.path else ""
        if prop not in known:
            raise ODataError(
                400, "BadRequest", f"Could not find a property named '{prop}' on type 'microsoft.graph.{entity}'."
            )
        if prop not in allowed:
            raise unsupported(
                f"Unsupported or invalid query filter clause specified for property '{prop}' of resource '{kind}'."
            )
        if prop == "hasMembersWithLicenseErrors" and not (
            isinstance(n, Compare) and n.op == "eq" and n.value is True
        ):
            raise unsupported("Only 'hasMembersWithLicenseErrors eq true' is supported.")

    visit(node)


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _compare(value: Any, op: str, expected: Any) -> bool:
    if op == "startswith":
        return isinstance(value, str) and value.lower().startswith(str(expected).lower())
    if op == "endswith":
        return isinstance(value, str) and value.lower().endswith(str(expected).lower())
    if op == "in":
        return _norm(value) in {_norm(v) for v in expected}
    equal = _norm(value) == _norm(expected)
    return equal if op == "eq" else not equal


def _get(obj: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part)
    return obj


def evaluate(node: Node, getter: Callable[[str], Any]) -> bool:
    """Evaluate a filter against an object; `getter(property)` returns a property's value."""
    if isinstance(node, BoolOp):
        if node.op == "and":
            return all(evaluate(i, getter) for i in node.items)
        return any(evaluate(i, getter) for i in node.items)
    if isinstance(node, Not):
        return not evaluate(node.item, getter)
    if isinstance(node, AnyOf):
        items = getter(node.path[0]) or []
        inner = node.inner
        return any(_compare(_get(item, inner.path), inner.op, inner.value) for item in items)
    value = getter(node.path[0])
    if len(node.path) > 1:
        value = _get(value, node.path[1:])
    return _compare(value, node.op, node.value)


def equality_lookup(node: Node) -> tuple[str, str] | None:
    """(property, value) when the filter is or starts with `id|userPrincipalName eq 'x'` (index lookups)."""
    if (
        isinstance(node, Compare)
        and node.op == "eq"
        and len(node.path) == 1
        and isinstance(node.value, str)
        and node.path[0] in ("id", "userPrincipalName")
    ):
        return node.path[0], node.value
    if isinstance(node, BoolOp) and node.op == "and":
        for item in node.items:
            found = equality_lookup(item)
            if found:
                return found
    return None


def prefix_lookup(node: Node, prop: str) -> tuple[str, ...] | None:
    """The prefixes of a filter that is `startswith(prop,'x')` or an `or` of such (lower case),
    so that a sorted index can answer it; None for any other filter."""
    items = node.items if isinstance(node, BoolOp) and node.op == "or" else (node,)
    prefixes: list[str] = []
    for item in items:
        if not (
            isinstance(item, Compare)
            and item.op == "startswith"
            and item.path == (prop,)
            and isinstance(item.value, str)
        ):
            return None
        prefixes.append(item.value.lower())
    return tuple(prefixes)


# ----------------------------------------------------------------------------- query options


@dataclass
class Query:
    select: list[str] | None = None
    top: int | None = None
    filter: Node | None = None
    count: bool = False
    skiptoken: str | None = None
    eventual: bool = False
    params: list[tuple[str, str]] = field(default_factory=list)  # the original query, minus $skiptoken

    @property
    def page_size(self) -> int:
        return self.top if self.top is not None else DEFAULT_PAGE

    def next_link(self, base_url: str, position: str) -> str:
        token = base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode().rstrip("=")
        return f"{base_url}?{urlencode([*self.params, ('$skiptoken', token)], safe='$')}"

    def after(self) -> str | None:
        if self.skiptoken is None:
            return None
        try:
            padded = self.skiptoken + "=" * (-len(self.skiptoken) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
            return str(data["after"])
        except (ValueError, KeyError, TypeError):
            raise ODataError(400, "Request_BadRequest", "The specified page token value has expired or is invalid.") from None


_OPTION_NAMES = ("select", "top", "filter", "count", "skiptoken", "orderby", "expand", "search", "skip")


def parse_query(
    params: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    *,
    entity: str | None,
    collection: bool,
    filterable: bool = True,
) -> Query:
    """Read the OData options of a request (`entity`: user, group, ... for $select/$filter checks)."""
    q = Query()
    q.eventual = headers.get("consistencylevel", "").lower() == "eventual"
    seen: dict[str, str] = {}
    for key, value in params:
        lk = key.lower()
        if lk.lstrip("$") in _OPTION_NAMES:
            lk = "$" + lk.lstrip("$")
            if lk in seen:
                raise ODataError(400, "BadRequest", f"Query option '{lk}' was specified more than once, but it must be specified at most once.")
            seen[lk] = value
        if lk != "$skiptoken":
            q.params.append((key, value))
    if "$select" in seen:
        names = [s.strip() for s in seen["$select"].split(",") if s.strip()]
        if entity is not None:
            known = set(PROPERTIES.get(entity, {}))
            if entity == "directoryObject":
                known = set(PROPERTIES["user"]) | set(PROPERTIES["group"])
            for n in names:
                if n not in known and n != "*":
                    raise ODataError(
                        400,
                        "BadRequest",
                        f"Could not find a property named '{n}' on type 'microsoft.graph.{entity}'.",
                    )
        q.select = names
    if "$expand" in seen:
        raise unsupported("$expand is not supported by the emulator.")
    if "$orderby" in seen:
        raise unsupported("$orderby is not supported by the emulator.")
    if "$search" in seen:
        raise ODataError(400, "Request_UnsupportedQuery", "$search is not supported by the emulator.")
    if "$skip" in seen:
        raise ODataError(400, "Request_BadRequest", "'$skip' is not supported by the service.")
    if "$top" in seen:
        raw = seen["$top"]
        try:
            top = int(raw)
        except ValueError:
            raise ODataError(
                400, "BadRequest", f"Invalid value '{raw}' for $top query option found. The $top query option requires a non-negative integer value."
            ) from None
        if not 1 <= top <= MAX_TOP:
            raise ODataError(
                400,
                "Request_BadRequest",
                f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_TOP} inclusive.",
            )
        if collection:
            q.top = top
    if "$count" in seen:
        value = seen["$count"].lower()
        if value not in ("true", "false"):
            raise ODataError(400, "BadRequest", f"'{seen['$count']}' is not a valid count option.")
        q.count = value == "true"
        if q.count and not q.eventual:
            raise ODataError(400, "Request_BadRequest", "$count is not currently supported.")
    if "$filter" in seen:
        if not filterable:
            raise unsupported("Filter is not supported on this resource.")
        node = parse_filter(seen["$filter"])
        if entity in FILTERABLE:
            check_filter(node, entity)
        if is_advanced(node) and not (q.eventual and q.count):
            raise unsupported(
                "Operator not supported because the required parameters might be missing. "
                "Try adding $count with a value of true and ConsistencyLevel header with a value of eventual."
            )
        q.filter = node
    if "$skiptoken" in seen:
        q.skiptoken = seen["$skiptoken"]
    return q


def select(obj: Mapping[str, Any], names: Sequence[str] | None, default: Sequence[str], entity: str) -> dict[str, Any]:
    """The properties of `obj` a response carries: `$select`ed ones, else the default set."""
    wanted = list(default) if not names else (list(obj) if "*" in names else list(names))
    types = PROPERTIES.get(entity, {})
    out: dict[str, Any] = {}
    for name in wanted:
        if name in obj:
            out[name] = obj[name]
        elif name in types:
            t = types[name]
            if t.startswith("Collection("):
                out[name] = []
            elif name != "hasMembersWithLicenseErrors":
                out[name] = None
    out.pop("hasMembersWithLicenseErrors", None)
    return out
