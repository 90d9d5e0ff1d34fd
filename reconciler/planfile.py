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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema

from reconciler.errors import PlanFileError
from reconciler.plan import (
    FORMAT_VERSION,
    Action,
    GraphRequest,
    Location,
    ObjectRef,
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
    return {
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


def dumps(plan: Plan) -> str:
    """The plan file text: deterministic, UTF-8 friendly, ending with a newline."""
    return json.dumps(plan_to_dict(plan), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


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


_validator: jsonschema.protocols.Validator | None = None


def _schema_validator() -> jsonschema.protocols.Validator:
    global _validator
    if _validator is None:
        schema = load_schema("plan")
        cls = jsonschema.validators.validator_for(schema)
        _validator = cls(schema)
    return _validator


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
    errors = sorted(_schema_validator().iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        shown = [f"  {_json_path(e.absolute_path)}: {_short(e.message)}" for e in errors[:5]]
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
