"""The plan file (SPEC section 5): a Plan written as versioned JSON and read back.

    dumps(plan) -> str            the JSON text (`plan --out`, `plan --format json`, `show --format json`)
    write_plan(plan, path)        write it atomically
    loads(text, source) -> Plan   parse, check format_version, validate against schemas/plan.schema.json
    read_plan(path) -> Plan       read a file; every failure is a PlanFileError (exit 3) naming the file
    plan_to_dict / plan_from_dict the same, one level down

Round trip is exact: `loads(dumps(plan)) == plan` for any plan whose `details`, request bodies
and other free-form values are JSON values (dicts with string keys, lists, strings, numbers,
booleans, None); tuples inside `details` come back as lists.

The output is deterministic: the same plan gives byte-identical JSON (fields in a fixed order,
free-form mappings with sorted keys, UTF-8, two-space indent, a final newline).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reconciler.errors import PlanFileError
from reconciler.plan import (
    FORMAT_VERSION,
    Action,
    GraphRequest,
    Location,
    ObjectRef,
    ObserveScope,
    Plan,
    PredictedState,
    Violation,
)
from reconciler.policy.schemas import load_schema

SUPPORTED_FORMAT_VERSIONS = (FORMAT_VERSION,)


# ---------------------------------------------------------------- Plan -> JSON


def _json_value(value: Any) -> Any:
    """A free-form value as plain JSON data: mappings with sorted keys, sequences as lists."""
    if isinstance(value, Mapping):
        return {str(k): _json_value(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


def _location(loc: Location | None) -> dict[str, Any] | None:
    if loc is None:
        return None
    return {"path": loc.path, "line": loc.line, "column": loc.column}


def _ref(ref: ObjectRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {"name": ref.name, "id": ref.id}


def _action(a: Action) -> dict[str, Any]:
    return {
        "kind": a.kind,
        "reason": a.reason,
        "group": _ref(a.group),
        "user": _ref(a.user),
        "sku": a.sku,
        "users": list(a.users),
        "request": {
            "method": a.request.method,
            "url": a.request.url,
            "body": None if a.request.body is None else _json_value(a.request.body),
        },
        "details": _json_value(a.details),
        "source": _location(a.source),
        "request_key": a.request_key,
    }


def _violation(v: Violation) -> dict[str, Any]:
    return {
        "code": v.code,
        "severity": v.severity,
        "status": v.status,
        "sku": v.sku,
        "group": v.group,
        "message": v.message,
        "resolution": v.resolution,
        "users": list(v.users),
        "source": _location(v.source),
    }


def _predicted(p: PredictedState) -> dict[str, Any]:
    return {"sku_id": p.sku_id, "assigned_by_group": p.assigned_by_group, "state": p.state, "error": p.error}


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan file's JSON document as Python data (fields in the documented order)."""
    doc = {
        "format_version": plan.format_version,
        "tool_version": plan.tool_version,
        "tenant_id": plan.tenant_id,
        "created_at": plan.created_at,
        "policy_digest": plan.policy_digest,
        "state_fingerprint": plan.state_fingerprint,
        "forced": plan.forced,
        "summary": plan.summary,
        "actions": [_action(a) for a in plan.actions],
        "violations": [_violation(v) for v in plan.violations],
        "prediction": {
            user: [_predicted(p) for p in plan.prediction[user]] for user in sorted(plan.prediction)
        },
    }
    if plan.scope is not None:
        doc["scope"] = {"groups": list(plan.scope.groups), "users": list(plan.scope.users)}
    return doc


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(", ", ": "))


def _compact(value: Any) -> str:
    return _ENCODER.encode(value)


def dumps(plan: Plan) -> str:
    """The plan file text: deterministic, UTF-8, one action / violation / user's prediction per line
    (readable, diffable, and fast to write for plans with 100,000 actions), ending with a newline."""
    doc = plan_to_dict(plan)
    out = ["{"]
    items = list(doc.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if key in ("actions", "violations") and value:
            rows = [f"    {_compact(v)}" for v in value]
            out.append(f'  "{key}": [\n' + ",\n".join(rows) + f"\n  ]{comma}")
        elif key == "prediction" and value:
            rows = [f"    {_compact(k)}: {_compact(v)}" for k, v in value.items()]
            out.append(f'  "{key}": {{\n' + ",\n".join(rows) + f"\n  }}{comma}")
        else:
            out.append(f'  "{key}": {_compact(value)}{comma}')
    out.append("}")
    return "\n".join(out) + "\n"


def write_plan(plan: Plan, path: str | os.PathLike[str]) -> None:
    """Write the plan file atomically (a reader never sees half a plan)."""
    target = Path(path)
    text = dumps(plan)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise PlanFileError(f"{target}: cannot write the plan file: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise PlanFileError(f"{target}: cannot write the plan file: {exc.strerror or exc}") from exc


# ---------------------------------------------------------------- JSON -> Plan


def _json_path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


# A small compiler for the subset of JSON Schema that plan.schema.json uses. jsonschema validates a
# 100,000-action plan in minutes; these closures do it in about a second. They read the schema file
# itself (no second copy of the rules), refuse any keyword they do not implement, and a test checks
# that they agree with jsonschema on valid and broken plan files.

Check = Callable[[Any, tuple[str | int, ...], list[tuple[tuple[str | int, ...], str]]], None]
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "examples", "default", "format"}
)
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}
_MAX_ERRORS = 50


def _same(a: Any, b: Any) -> bool:
    """JSON equality (true is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _show(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False) if not isinstance(v, dict | list) else type(v).__name__
    return text if len(text) <= 80 else text[:77] + "..."


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.defs: Mapping[str, Any] = root.get("$defs", {})
        self.compiled: dict[str, Check] = {}

    def ref(self, ref: str) -> Check:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in self.defs:
            raise ValueError(f"unsupported $ref {ref!r} in plan.schema.json")
        name = ref[len(prefix) :]
        if name not in self.compiled:
            holder: list[Check] = []
            self.compiled[name] = lambda v, path, errs: holder[0](v, path, errs)
            holder.append(self.compile(self.defs[name]))
        return self.compiled[name]

    def compile(self, schema: Mapping[str, Any]) -> Check:
        checks: list[Check] = []
        for key in schema:
            if key in _ANNOTATIONS or key in ("properties", "additionalProperties", "required"):
                continue
            if key not in ("type", "enum", "const", "$ref", "anyOf", "items", "minLength", "minimum",
                           "propertyNames"):
                raise ValueError(f"plan.schema.json uses {key!r}, which planfile's validator does not implement")
        if "$ref" in schema:
            checks.append(self.ref(schema["$ref"]))
        if "type" in schema:
            names = [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
            for n in names:
                if n not in _TYPES:
                    raise ValueError(f"unknown type {n!r} in plan.schema.json")
            shown = repr(names[0]) if len(names) == 1 else str(names)
            plain_types: dict[str, type] = {"object": dict, "array": list, "string": str, "null": type(None)}
            plain = tuple(plain_types[n] for n in names if n in plain_types)
            allow_bool = "boolean" in names
            allow_int = "integer" in names or "number" in names
            allow_float = "number" in names
            allow_whole_float = "integer" in names

            def type_check(v: Any, path: Any, errs: Any, shown: str = shown) -> None:
                t = v.__class__
                if t is bool:
                    ok = allow_bool
                elif t is int:
                    ok = allow_int
                elif t is float:
                    ok = allow_float or (allow_whole_float and v.is_integer())
                else:
                    ok = isinstance(v, plain)
                if not ok:
                    errs.append((path, f"{_show(v)} is not of type {shown}"))

            checks.append(type_check)
        if "const" in schema:
            const = schema["const"]

            def const_check(v: Any, path: Any, errs: Any) -> None:
                if not _same(v, const):
                    errs.append((path, f"{_show(const)} was expected"))

            checks.append(const_check)
        if "enum" in schema:
            allowed = list(schema["enum"])
            strings = frozenset(a for a in allowed if isinstance(a, str))

            def enum_check(v: Any, path: Any, errs: Any) -> None:
                if isinstance(v, str) and v in strings:
                    return
                if not any(_same(v, a) for a in allowed):
                    errs.append((path, f"{_show(v)} is not one of {allowed}"))

            checks.append(enum_check)
        if "minLength" in schema:
            n = schema["minLength"]

            def min_length(v: Any, path: Any, errs: Any) -> None:
                if isinstance(v, str) and len(v) < n:
                    errs.append((path, f"{_show(v)} should be non-empty" if n == 1 else f"{_show(v)} is too short"))

            checks.append(min_length)
        if "minimum" in schema:
            low = schema["minimum"]

            def minimum(v: Any, path: Any, errs: Any) -> None:
                if _TYPES["number"](v) and v < low:
                    errs.append((path, f"{v} is less than the minimum of {low}"))

            checks.append(minimum)
        if "anyOf" in schema:
            # the cheap {"type": "null"} branch first: most optional values are null
            ordered = sorted(schema["anyOf"], key=lambda b: 0 if b == {"type": "null"} else 1)
            branches = [self.compile(b) for b in ordered]

            def any_of(v: Any, path: Any, errs: Any) -> None:
                first: list[tuple[Any, str]] | None = None
                for branch in branches:
                    mine: list[tuple[Any, str]] = []
                    branch(v, path, mine)
                    if not mine:
                        return
                    # report the branch that failed deepest (the object branch for an object)
                    if first is None or max(len(p) for p, _ in mine) > max(len(p) for p, _ in first):
                        first = mine
                if first is not None and any(len(p) > len(path) for p, _ in first):
                    errs.extend(first)
                else:
                    errs.append((path, f"{_show(v)} is not valid under any of the given schemas"))

            checks.append(any_of)
        if "items" in schema:
            item = self.compile(schema["items"])

            def items(v: Any, path: Any, errs: Any) -> None:
                if isinstance(v, list):
                    for i, x in enumerate(v):
                        item(x, (*path, i), errs)
                        if len(errs) >= _MAX_ERRORS:
                            return

            checks.append(items)
        if any(k in schema for k in ("properties", "additionalProperties", "required", "propertyNames")):
            checks.append(self.object(schema))
        if len(checks) == 1:
            return checks[0]

        def all_of(v: Any, path: Any, errs: Any) -> None:
            for c in checks:
                c(v, path, errs)

        return all_of

    def object(self, schema: Mapping[str, Any]) -> Check:
        props = {k: self.compile(v) for k, v in schema.get("properties", {}).items()}
        required = list(schema.get("required", ()))
        extra = schema.get("additionalProperties", True)
        extra_check = self.compile(extra) if isinstance(extra, dict) else None
        names = self.compile(schema["propertyNames"]) if "propertyNames" in schema else None

        def obj(v: Any, path: Any, errs: Any) -> None:
            if not isinstance(v, dict):
                return
            for key in required:
                if key not in v:
                    errs.append((path, f"{key!r} is a required property"))
            unexpected = []
            for key, value in v.items():
                if names is not None:
                    names(key, path, errs)
                check = props.get(key)
                if check is not None:
                    check(value, (*path, key), errs)
                elif extra is False:
                    unexpected.append(key)
                elif extra_check is not None:
                    extra_check(value, (*path, key), errs)
            if unexpected:
                listed = ", ".join(repr(k) for k in unexpected)
                were = "was" if len(unexpected) == 1 else "were"
                errs.append((path, f"Additional properties are not allowed ({listed} {were} unexpected)"))

        return obj


_validator: Check | None = None


def _schema_check() -> Check:
    global _validator
    if _validator is None:
        schema = load_schema("plan")
        _validator = _Compiler(schema).compile(schema)
    return _validator


def schema_errors(data: Any) -> list[tuple[str, str]]:
    """(JSON path, message) for each way `data` breaks plan.schema.json (at most about 50); [] when valid."""
    errs: list[tuple[tuple[str | int, ...], str]] = []
    _schema_check()(data, (), errs)
    return [(_json_path(p), m) for p, m in errs]


def _check(data: Any, source: str) -> dict[str, Any]:
    hint = "(was it written by `reconciler plan --out`?)"
    if not isinstance(data, dict):
        raise PlanFileError(f"{source}: not a reconciler plan file: the top level is not a JSON object {hint}")
    if "format_version" not in data:
        raise PlanFileError(f"{source}: not a reconciler plan file: it has no format_version {hint}")
    version = data["format_version"]
    if isinstance(version, bool) or version not in SUPPORTED_FORMAT_VERSIONS:
        from reconciler import __version__

        supported = ", ".join(str(v) for v in SUPPORTED_FORMAT_VERSIONS)
        raise PlanFileError(
            f"{source}: plan file format_version {_short(json.dumps(version), 40)} is not supported by reconciler "
            f"{__version__} (it reads format_version {supported}); make the plan again with this version"
        )
    errors = schema_errors(data)
    if errors:
        shown = [f"  {where}: {_short(message)}" for where, message in errors[:5]]
        more = f"\n  ... and {len(errors) - 5} more problems" if len(errors) > 5 else ""
        raise PlanFileError(
            f"{source}: invalid plan file (does not match plan.schema.json format_version {version}):\n"
            + "\n".join(shown)
            + more
        )
    return data


def _short(message: str, limit: int = 300) -> str:
    """A message quoting file content: control characters escaped, at most `limit` characters."""
    message = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _location_from(d: Mapping[str, Any] | None) -> Location | None:
    if d is None:
        return None
    return Location(path=d["path"], line=d["line"], column=d["column"])


def _ref_from(d: Mapping[str, Any] | None) -> ObjectRef | None:
    if d is None:
        return None
    return ObjectRef(name=d["name"], id=d["id"])


def _action_from(d: Mapping[str, Any]) -> Action:
    req = d["request"]
    return Action(
        kind=d["kind"],
        reason=d["reason"],
        request=GraphRequest(method=req["method"], url=req["url"], body=req["body"]),
        group=_ref_from(d["group"]),
        user=_ref_from(d["user"]),
        sku=d["sku"],
        users=tuple(d["users"]),
        details=d["details"],
        source=_location_from(d["source"]),
        request_key=d["request_key"],
    )


def _violation_from(d: Mapping[str, Any]) -> Violation:
    return Violation(
        code=d["code"],
        severity=d["severity"],
        message=d["message"],
        resolution=d["resolution"],
        sku=d["sku"],
        group=d["group"],
        users=tuple(d["users"]),
        status=d["status"],
        source=_location_from(d["source"]),
    )


def plan_from_dict(data: Any, source: str = "<plan>") -> Plan:
    """A Plan from the plan file's JSON document; PlanFileError (naming `source`) when it is not one."""
    doc = _check(data, source)
    plan = Plan(
        format_version=doc["format_version"],
        tool_version=doc["tool_version"],
        tenant_id=doc["tenant_id"],
        created_at=doc["created_at"],
        policy_digest=doc["policy_digest"],
        state_fingerprint=doc["state_fingerprint"],
        forced=doc["forced"],
        actions=tuple(_action_from(a) for a in doc["actions"]),
        violations=tuple(_violation_from(v) for v in doc["violations"]),
        prediction={
            user: tuple(
                PredictedState(
                    sku_id=p["sku_id"], assigned_by_group=p["assigned_by_group"], state=p["state"], error=p["error"]
                )
                for p in states
            )
            for user, states in doc["prediction"].items()
        },
        scope=(
            ObserveScope(groups=tuple(doc["scope"]["groups"]), users=tuple(doc["scope"]["users"]))
            if doc.get("scope") is not None
            else None
        ),
    )
    if plan.summary != doc["summary"]:
        raise PlanFileError(
            f"{source}: invalid plan file: its summary {json.dumps(doc['summary'], sort_keys=True)} does not "
            f"match its actions {json.dumps(plan.summary, sort_keys=True)} (was the file edited by hand?)"
        )
    return plan


def loads(text: str, source: str = "<plan>") -> Plan:
    """Parse plan file text; PlanFileError naming `source` (and the line) when it is not a valid plan."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFileError(
            f"{source}:{exc.lineno}:{exc.colno}: not a reconciler plan file: invalid JSON ({_short(exc.msg)})"
        ) from exc
    except RecursionError as exc:
        raise PlanFileError(f"{source}: not a reconciler plan file: JSON nested too deeply") from exc
    return plan_from_dict(data, source)


def read_plan(path: str | os.PathLike[str]) -> Plan:
    """Read and validate a plan file; every failure is a PlanFileError (exit 3) naming the file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError as exc:
        raise PlanFileError(f"{p}: no such plan file") from exc
    except IsADirectoryError as exc:
        raise PlanFileError(f"{p}: is a directory, not a plan file") from exc
    except OSError as exc:
        raise PlanFileError(f"{p}: cannot read the plan file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlanFileError(f"{p}: not a reconciler plan file: not UTF-8 text (byte {exc.start})") from exc
    return loads(text, str(p))
