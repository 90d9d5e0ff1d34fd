"""Tenant seeds and snapshots: load, validate and normalise (SPEC section 6).

A seed is a tenant in Graph's own object shapes (schemas/tenant.schema.json):
`organization`, `subscribedSkus`, `users` (whose `assignedLicenses` are the
DIRECT assignments), `groups` (with `members`: object ids of users or groups),
`applications` and an `emulator` section. The emulator loads one to start a
tenant; `GET /_emulator/snapshot` writes the same format back.

`load_seed(path)` reads JSON or YAML, checks the schema and the references
between objects, and raises `SeedError` listing every problem with its JSON
path (`$.users[3].assignedLicenses[0].skuId: ...`). `validate_seed(dict)` does
the same checks on an in-memory document and returns the problems.
`licensing_input_from_seed(seed, rules)` builds the input of
reconciler.licensing.compute from a normalised seed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import SeedError
from reconciler.licensing import (
    AssignmentState,
    License,
    LicensingGroup,
    LicensingInput,
    LicensingUser,
    Rules,
    SkuCapacity,
)

MAX_PROBLEMS_SHOWN = 200
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class SeedProblems(SeedError):
    """A seed with mistakes; `problems` holds one `$.json.path: message` line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        lines = [
            f"{source}: invalid tenant seed ({len(problems)} problem{'s' if len(problems) != 1 else ''})"
        ]
        lines += [f"  {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more")
        lines.append("  fix each path above; the format is `reconciler schema --kind tenant`")
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------- schema


def tenant_schema() -> dict[str, Any]:
    """The seed/snapshot JSON schema (schemas/tenant.schema.json)."""
    from reconciler.policy.schemas import load_schema

    return load_schema("tenant")


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(tenant_schema())


def _json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", str(p)):
            out += f".{p}"
        else:
            out += "[" + json.dumps(str(p)) + "]"
    return out


def _schema_message(error: Any) -> str:
    validator = error.validator
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        names = ", ".join(repr(e) for e in extra)
        return f"unknown propert{'y' if len(extra) == 1 else 'ies'} {names} (allowed: {', '.join(allowed)})"
    if validator == "pattern" and error.schema.get("$comment") is None:
        desc = error.schema.get("description")
        return f"{error.instance!r} is not valid here" + (f": expected {desc}" if desc else "")
    if validator in ("anyOf", "oneOf") and isinstance(error.instance, str):
        # the nullable wrappers: report the inner string error
        for sub in error.context or ():
            if sub.validator == "pattern":
                return _schema_message(sub)
            if sub.validator == "enum":
                return f"{error.instance!r} is not one of {sub.validator_value}"
    if validator == "anyOf" and {"required": ["secret"]} in error.schema.get("anyOf", []):
        return "an application needs a `secret`, a `certificate` or `federatedIdentityCredentials`"
    return str(error.message)


# Large tenants (100,000 users) are checked item by item with a predicate compiled from the
# schema, which is much faster than jsonschema; jsonschema runs only on the items the predicate
# rejects (to word the problems) and on the rest of the document, which is small.
_ITEM_DEFS = {
    "subscribedSkus": "subscribedSku",
    "users": "user",
    "groups": "group",
    "applications": "application",
}
_ANNOTATIONS = frozenset({"description", "default", "title", "$comment", "examples", "$schema", "$id"})
Check = Callable[[Any], bool]


def _schema_problems(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    if not all(isinstance(doc.get(k, []), list) for k in _ITEM_DEFS):
        return [(_json_path(e.absolute_path), _schema_message(e)) for e in _validator().iter_errors(doc)]
    shell = {k: ([] if k in _ITEM_DEFS else v) for k, v in doc.items()}
    out = [(_json_path(e.absolute_path), _schema_message(e)) for e in _validator().iter_errors(shell)]
    for key, name in _ITEM_DEFS.items():
        check = _item_check(name)
        for i, item in enumerate(doc.get(key) or ()):
            if not check(item):
                for err in _item_validator(name).iter_errors(item):
                    out.append((_json_path([key, i, *err.absolute_path]), _schema_message(err)))
    return out


@cache
def _item_validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator({"$defs": tenant_schema()["$defs"], "$ref": f"#/$defs/{name}"})


@cache
def _item_check(name: str) -> Check:
    return _Compiler(tenant_schema()["$defs"]).compile({"$ref": f"#/$defs/{name}"})


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "object": (dict,),
    "array": (list,),
    "boolean": (bool,),
    "null": (type(None),),
    "integer": (int,),
    "number": (int, float),
}


def _reject(value: Any) -> bool:
    return False


def _accept(value: Any) -> bool:
    return True


def _all(checks: list[Check]) -> Check:
    if not checks:
        return _accept
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)
    if len(checks) == 3:
        c1, c2, c3 = checks
        return lambda v: c1(v) and c2(v) and c3(v)

    def every(v: Any) -> bool:
        for c in checks:  # noqa: SIM110 (a plain loop is faster than all() on this hot path)
            if not c(v):
                return False
        return True

    return every


class _Compiler:
    """Compiles the tenant schema into plain predicates (a value is valid or not; no messages).

    Equivalent to the schema for the keywords the tenant schema uses; a node with any other
    keyword compiles to a predicate that rejects, so jsonschema then decides and words it."""

    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs
        self.done: dict[str, Check] = {}
        self.busy: set[str] = set()

    def ref(self, name: str) -> Check:
        if name in self.done:
            return self.done[name]
        if name in self.busy:  # a recursive definition: resolve at call time
            return lambda v: self.done[name](v)
        self.busy.add(name)
        check = self.compile(self.defs[name])
        self.busy.discard(name)
        self.done[name] = check
        return check

    def compile(self, node: Mapping[str, Any]) -> Check:
        checks: list[Check] = []
        for key, arg in node.items():
            if key in _ANNOTATIONS:
                continue
            check = self.keyword(key, arg, node)
            if check is None:
                return _reject
            if check is not _accept:
                checks.append(check)
        return _all(checks)

    def keyword(self, key: str, arg: Any, node: Mapping[str, Any]) -> Check | None:
        if key == "$ref":
            return self.ref(str(arg).rsplit("/", 1)[-1])
        if key == "type":
            return _type_check((arg,) if isinstance(arg, str) else tuple(arg))
        if key == "enum":
            values = tuple(arg)
            strings = frozenset(x for x in values if isinstance(x, str))
            nullable = None in values
            if all(isinstance(x, str) or x is None for x in values):
                return lambda v: (v is None and nullable) or (type(v) is str and v in strings)
            return lambda v: any(v == x and type(v) is type(x) for x in values)
        if key == "pattern":
            search = re.compile(arg).search
            return lambda v: type(v) is not str or search(v) is not None
        if key == "minLength":
            n = int(arg)
            return lambda v: type(v) is not str or len(v) >= n
        if key == "minimum":
            low = arg
            return lambda v: type(v) not in (int, float) or v >= low
        if key == "minItems":
            n = int(arg)
            return lambda v: type(v) is not list or len(v) >= n
        if key == "maxItems":
            n = int(arg)
            return lambda v: type(v) is not list or len(v) <= n
        if key == "uniqueItems":
            if arg is not True:
                return _accept
            return lambda v: type(v) is not list or len({json.dumps(x, sort_keys=True) for x in v}) == len(v)
        if key == "items":
            each = self.compile(arg)

            def items(v: Any) -> bool:
                if type(v) is not list:
                    return True
                for x in v:  # noqa: SIM110 (hot path)
                    if not each(x):
                        return False
                return True

            return items
        if key == "required":
            names = tuple(arg)
            return lambda v: type(v) is not dict or all(n in v for n in names)
        if key == "properties":
            props = {k: self.compile(sub) for k, sub in arg.items()}
            additional = node.get("additionalProperties", True)
            closed = additional is False
            extra = None if isinstance(additional, bool) else self.compile(additional)

            def properties(v: Any) -> bool:
                if type(v) is not dict:
                    return True
                for k, x in v.items():
                    c = props.get(k)
                    if c is None:
                        if closed or (extra is not None and not extra(x)):
                            return False
                    elif not c(x):
                        return False
                return True

            return properties
        if key == "additionalProperties":
            if "properties" in node or arg is True:
                return _accept  # handled with `properties`
            if arg is False:
                return lambda v: type(v) is not dict or not v
            values_check = self.compile(arg)
            return lambda v: type(v) is not dict or all(values_check(x) for x in v.values())
        if key == "anyOf":
            options = [self.compile(sub) for sub in arg]
            if len(options) == 2:
                a, b = options
                return lambda v: a(v) or b(v)
            return lambda v: any(o(v) for o in options)
        return None


def _type_check(kinds: tuple[str, ...]) -> Check | None:
    if any(k not in _PY_TYPES for k in kinds):
        return None
    exact = frozenset(t for k in kinds for t in _PY_TYPES[k])
    integer_floats = "integer" in kinds and "number" not in kinds
    if integer_floats:
        # JSON Schema: 1.0 is an integer; True is never a number
        return lambda v: type(v) in exact or (type(v) is float and v.is_integer())
    return lambda v: type(v) in exact


# --------------------------------------------------------------------------- loading


class _SeedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses aliases (no "billion laughs": a seed never needs them) and
    duplicate keys (the standard loader silently keeps the last one)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                "aliases (*name) are not allowed in a tenant seed; write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SeedError(f"{path}: seed file not found") from None
    except IsADirectoryError:
        raise SeedError(f"{path}: is a directory; give the seed file (JSON or YAML)") from None
    except OSError as exc:
        raise SeedError(f"{path}: cannot read the seed file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeedError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the seed as UTF-8 JSON or YAML"
        ) from None
    if not text.strip():
        raise SeedError(f"{path}: the seed file is empty")
    suffix = path.suffix.lower()
    if suffix == ".json" or (suffix not in (".yaml", ".yml") and text.lstrip().startswith("{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SeedError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
        except RecursionError:
            raise SeedError(f"{path}: the JSON document is nested too deeply") from None
    try:
        return yaml.load(text, Loader=_SeedLoader)  # a SafeLoader (see _SeedLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise SeedError(f"{where}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise SeedError(f"{path}: invalid YAML: {exc}") from None
    except RecursionError:
        raise SeedError(f"{path}: the YAML document is nested too deeply") from None


def load_seed(path: str | Path) -> dict[str, Any]:
    """Read, validate and normalise a seed (JSON or YAML). Raises SeedError listing every problem."""
    p = Path(path)
    doc = _read(p)
    problems = validate_seed(doc)
    if problems:
        raise SeedProblems(str(p), problems)
    return normalise_seed(doc)


def validate_seed(doc: Any) -> list[str]:
    """Every problem of a seed or snapshot, each as `$.json.path: message`; [] when valid."""
    if not isinstance(doc, dict):
        return [
            f"$: a tenant seed is a JSON object with organization, subscribedSkus, users, groups; got {_kind(doc)}"
        ]
    problems = [f"{path}: {msg}" for path, msg in _schema_problems(doc)]
    if problems:
        # reference checks assume the shapes are right; report shapes first
        return problems
    return [f"{path}: {msg}" for path, msg in _reference_problems(doc)]


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "nothing"}.get(type(value), type(value).__name__)


def _low(value: Any) -> str:
    return str(value).lower()


def _reference_problems(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    from reconciler.countries import is_country

    out: list[tuple[str, str]] = []
    org = doc["organization"]

    # organization
    domains = org.get("verifiedDomains") or []
    initial = [i for i, d in enumerate(domains) if d.get("isInitial")]
    if len(initial) != 1:
        out.append(
            (
                "$.organization.verifiedDomains",
                f"exactly one domain must have isInitial: true (found {len(initial)})",
            )
        )
    defaults = [i for i, d in enumerate(domains) if d.get("isDefault")]
    if len(defaults) > 1:
        out.append(
            (
                "$.organization.verifiedDomains",
                f"at most one domain may have isDefault: true (found {len(defaults)})",
            )
        )
    domain_names = {_low(d["name"]) for d in domains}
    seen_domain: set[str] = set()
    for i, d in enumerate(domains):
        if _low(d["name"]) in seen_domain:
            out.append((f"$.organization.verifiedDomains[{i}].name", f"duplicate domain {d['name']!r}"))
        seen_domain.add(_low(d["name"]))
    for key in ("countryLetterCode", "defaultUsageLocation"):
        code = org.get(key)
        if code is not None and not is_country(code):
            out.append((f"$.organization.{key}", f"{code!r} is not an ISO 3166-1 alpha-2 country code"))

    # subscribed SKUs
    sku_plans: dict[str, set[str]] = {}
    plan_names: dict[str, str] = {}  # lower-case name -> id
    plan_ids: set[str] = set()
    for i, sku in enumerate(doc["subscribedSkus"]):
        sid = _low(sku["skuId"])
        if sid in sku_plans:
            out.append((f"$.subscribedSkus[{i}].skuId", f"SKU {sid} is listed twice"))
        plans: set[str] = set()
        seen_names: set[str] = set()
        for j, plan in enumerate(sku["servicePlans"]):
            pid = _low(plan["servicePlanId"])
            if pid in plans:
                out.append(
                    (
                        f"$.subscribedSkus[{i}].servicePlans[{j}].servicePlanId",
                        f"plan {pid} is listed twice in {sku['skuPartNumber']}",
                    )
                )
            if _low(plan["servicePlanName"]) in seen_names:
                out.append(
                    (
                        f"$.subscribedSkus[{i}].servicePlans[{j}].servicePlanName",
                        f"plan name {plan['servicePlanName']!r} is listed twice in {sku['skuPartNumber']}",
                    )
                )
            seen_names.add(_low(plan["servicePlanName"]))
            plans.add(pid)
            plan_ids.add(pid)
            plan_names.setdefault(_low(plan["servicePlanName"]), pid)
        sku_plans.setdefault(sid, plans)
    part_numbers: dict[str, int] = {}
    for i, sku in enumerate(doc["subscribedSkus"]):
        pn = _low(sku["skuPartNumber"])
        if pn in part_numbers:
            out.append(
                (
                    f"$.subscribedSkus[{i}].skuPartNumber",
                    f"{sku['skuPartNumber']!r} is also $.subscribedSkus[{part_numbers[pn]}]",
                )
            )
        part_numbers.setdefault(pn, i)

    # object ids (users and groups share one directory namespace; the tenant id is not an object)
    owners: dict[str, str] = {}

    def claim(oid: str, path: str) -> None:
        if oid in owners:
            out.append((path, f"object id {oid} is already used by {owners[oid]}"))
        else:
            owners[oid] = path.rsplit(".", 1)[0]

    users = doc["users"]
    groups = doc["groups"]
    for i, u in enumerate(users):
        claim(_low(u["id"]), f"$.users[{i}].id")
    for i, g in enumerate(groups):
        claim(_low(g["id"]), f"$.groups[{i}].id")
    group_ids = {_low(g["id"]) for g in groups}

    def check_licenses(items: list[Mapping[str, Any]], base: str) -> None:
        seen: set[str] = set()
        for k, lic in enumerate(items):
            sid = _low(lic["skuId"])
            if sid not in sku_plans:
                out.append(
                    (
                        f"{base}[{k}].skuId",
                        f"SKU {sid} is not subscribed in this tenant (not in subscribedSkus)",
                    )
                )
                continue
            if sid in seen:
                out.append((f"{base}[{k}].skuId", f"SKU {sid} is assigned twice"))
            seen.add(sid)
            for m, plan in enumerate(lic.get("disabledPlans") or ()):
                if _low(plan) not in sku_plans[sid]:
                    out.append(
                        (
                            f"{base}[{k}].disabledPlans[{m}]",
                            f"plan {_low(plan)} is not a service plan of SKU {sid}",
                        )
                    )

    upns: dict[str, int] = {}
    for i, u in enumerate(users):
        upn = _low(u["userPrincipalName"])
        if upn in upns:
            out.append(
                (
                    f"$.users[{i}].userPrincipalName",
                    f"{u['userPrincipalName']!r} is also $.users[{upns[upn]}]",
                )
            )
        upns.setdefault(upn, i)
        if domain_names and upn.rsplit("@", 1)[-1] not in domain_names:
            out.append(
                (
                    f"$.users[{i}].userPrincipalName",
                    f"the domain of {u['userPrincipalName']!r} is not a verified domain of the organization",
                )
            )
        loc = u.get("usageLocation")
        if loc is not None and not is_country(loc):
            out.append((f"$.users[{i}].usageLocation", f"{loc!r} is not an ISO 3166-1 alpha-2 country code"))
        check_licenses(u.get("assignedLicenses") or [], f"$.users[{i}].assignedLicenses")
        for k, st in enumerate(u.get("licenseAssignmentStates") or ()):
            sid = _low(st["skuId"])
            if sid not in sku_plans:
                out.append(
                    (
                        f"$.users[{i}].licenseAssignmentStates[{k}].skuId",
                        f"SKU {sid} is not subscribed in this tenant",
                    )
                )
            by = st.get("assignedByGroup")
            if by is not None and _low(by) not in group_ids:
                out.append(
                    (
                        f"$.users[{i}].licenseAssignmentStates[{k}].assignedByGroup",
                        f"no group has id {_low(by)}",
                    )
                )

    for i, g in enumerate(groups):
        gid = _low(g["id"])
        check_licenses(g.get("assignedLicenses") or [], f"$.groups[{i}].assignedLicenses")
        if g.get("assignedLicenses") and not g.get("securityEnabled", True):
            out.append(
                (
                    f"$.groups[{i}].assignedLicenses",
                    "licenses can only be assigned to security-enabled groups (securityEnabled: true)",
                )
            )
        seen_members: set[str] = set()
        for k, m in enumerate(g.get("members") or ()):
            mid = _low(m)
            if mid not in owners:
                out.append((f"$.groups[{i}].members[{k}]", f"no user or group has id {mid}"))
            elif mid == gid:
                out.append((f"$.groups[{i}].members[{k}]", "a group cannot be a member of itself"))
            if mid in seen_members:
                out.append((f"$.groups[{i}].members[{k}]", f"member {mid} is listed twice"))
            seen_members.add(mid)

    # applications
    app_ids: dict[str, int] = {}
    for i, app in enumerate(doc.get("applications") or ()):
        aid = _low(app["appId"])
        if aid in app_ids:
            out.append((f"$.applications[{i}].appId", f"appId {aid} is also $.applications[{app_ids[aid]}]"))
        app_ids.setdefault(aid, i)
        out.extend(_federation_problems(app, f"$.applications[{i}]"))

    # emulator rules: plans must be known (a plan of a subscribed SKU, the catalog, or a GUID)
    rules = (doc.get("emulator") or {}).get("rules")
    if rules:
        from reconciler.catalog import RuleTable

        extra = _tenant_plans(doc)
        for path, message in RuleTable(()).problems(rules, extra_plans=extra):
            out.append((_json_path(["emulator", "rules", *path]), message))
    return out


def _federation_problems(app: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    """Federated credentials: names unique per app (Graph's rule), and every issuer's keys in issuerKeys."""
    out: list[tuple[str, str]] = []
    keys = app.get("issuerKeys") or {}
    names: dict[str, int] = {}
    for k, fic in enumerate(app.get("federatedIdentityCredentials") or ()):
        name = str(fic.get("name", "")).lower()
        if name in names:
            out.append(
                (
                    f"{path}.federatedIdentityCredentials[{k}].name",
                    f"name {fic.get('name')!r} is also federatedIdentityCredentials[{names[name]}]",
                )
            )
        names.setdefault(name, k)
        if fic.get("issuer") not in keys:
            out.append(
                (
                    f"{path}.federatedIdentityCredentials[{k}].issuer",
                    f"no signing keys for issuer {fic.get('issuer')!r}: add its JWKS under issuerKeys "
                    "(the emulator never fetches keys)",
                )
            )
    return out


def _tenant_plans(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, id) of every service plan of the tenant's subscribed SKUs."""
    return sorted(
        {
            (str(p["servicePlanName"]), _low(p["servicePlanId"]))
            for s in doc["subscribedSkus"]
            for p in s["servicePlans"]
        }
    )


# --------------------------------------------------------------------------- normalising


def _norm_licenses(items: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    return [
        {"skuId": _low(x["skuId"]), "disabledPlans": sorted({_low(p) for p in x.get("disabledPlans") or ()})}
        for x in items or ()
    ]


def normalise_seed(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a valid seed with GUIDs in lower case and Graph's defaults filled in."""
    org = dict(doc["organization"])
    tenant_id = _low(org["id"])
    org["id"] = tenant_id
    org.setdefault("countryLetterCode", None)
    org.setdefault("defaultUsageLocation", None)

    skus = []
    for raw in doc["subscribedSkus"]:
        sku = dict(raw)
        sid = _low(sku["skuId"])
        sku["skuId"] = sid
        sku.setdefault("id", f"{tenant_id}_{sid}")
        sku.setdefault("appliesTo", "User")
        sku.setdefault("capabilityStatus", "Enabled")
        prepaid = {"enabled": 0, "suspended": 0, "warning": 0, "lockedOut": 0}
        prepaid.update(sku["prepaidUnits"])
        sku["prepaidUnits"] = prepaid
        sku["servicePlans"] = [
            {
                "servicePlanId": _low(p["servicePlanId"]),
                "servicePlanName": p["servicePlanName"],
                "provisioningStatus": p.get("provisioningStatus", "Success"),
                "appliesTo": p.get("appliesTo", "User"),
            }
            for p in sku["servicePlans"]
        ]
        skus.append(sku)

    users = []
    for raw in doc["users"]:
        u = dict(raw)
        u["id"] = _low(u["id"])
        u.setdefault("displayName", u["userPrincipalName"].split("@", 1)[0])
        u.setdefault("usageLocation", None)
        u.setdefault("mail", None)
        u.setdefault("proxyAddresses", [])
        u.setdefault("accountEnabled", True)
        u["assignedLicenses"] = _norm_licenses(u.get("assignedLicenses"))
        if "licenseAssignmentStates" in u:
            u["licenseAssignmentStates"] = [
                {
                    **st,
                    "skuId": _low(st["skuId"]),
                    "assignedByGroup": _low(st["assignedByGroup"]) if st.get("assignedByGroup") else None,
                    "disabledPlans": sorted({_low(p) for p in st.get("disabledPlans") or ()}),
                    "state": st.get("state", "Active"),
                    "error": st.get("error") or "None",
                }
                for st in u["licenseAssignmentStates"]
            ]
        users.append(u)

    groups = []
    for raw in doc["groups"]:
        g = dict(raw)
        g["id"] = _low(g["id"])
        g.setdefault("description", None)
        g.setdefault("securityEnabled", True)
        g.setdefault("mailEnabled", False)
        g.setdefault("groupTypes", [])
        g.setdefault("proxyAddresses", [])
        g["assignedLicenses"] = _norm_licenses(g.get("assignedLicenses"))
        g["members"] = [_low(m) for m in g.get("members") or ()]
        groups.append(g)

    apps = []
    for raw in doc.get("applications") or ():
        app = dict(raw)
        app["appId"] = _low(app["appId"])
        apps.append(app)

    out: dict[str, Any] = {k: v for k, v in doc.items() if k in ("$schema", "description")}
    emulator = dict(doc.get("emulator") or {})
    rules = emulator.get("rules")
    if rules is not None:
        emulator["rules"] = {
            "mutuallyExclusive": [
                [_low(p) if _GUID.match(p) else p for p in pair]
                for pair in rules.get("mutuallyExclusive") or ()
            ],
            "requires": {
                (_low(k) if _GUID.match(k) else k): [_low(p) if _GUID.match(p) else p for p in v]
                for k, v in (rules.get("requires") or {}).items()
            },
            "prohibitedLocations": {
                (_low(k) if _GUID.match(k) else k): list(v)
                for k, v in (rules.get("prohibitedLocations") or {}).items()
            },
        }
        if rules.get("mailboxPlans"):
            emulator["rules"]["mailboxPlans"] = [
                _low(p) if _GUID.match(p) else p for p in rules["mailboxPlans"]
            ]
    out.update(
        organization=org,
        subscribedSkus=skus,
        users=users,
        groups=groups,
        applications=apps,
        emulator=emulator,
    )
    return out


# --------------------------------------------------------------------------- licensing adapter


def smtp_addresses(proxy_addresses: Iterable[str]) -> frozenset[str]:
    """The SMTP addresses among `type:address` proxy addresses, lower case and without the prefix."""
    out = set()
    for p in proxy_addresses:
        kind, _, address = str(p).partition(":")
        if kind.lower() == "smtp" and address:
            out.add(address.lower())
    return frozenset(out)


def _licenses(items: Iterable[Mapping[str, Any]] | None) -> tuple[License, ...]:
    return tuple(
        sorted(
            License(_low(x["skuId"]), frozenset(_low(p) for p in x.get("disabledPlans") or ()))
            for x in items or ()
        )
    )


def tenant_location(seed: Mapping[str, Any]) -> str | None:
    """Where group licensing places users without a usage location (facts 1.7)."""
    org = seed["organization"]
    loc = org.get("defaultUsageLocation") or org.get("countryLetterCode")
    return str(loc) if loc else None


def licensing_input_from_seed(seed: Mapping[str, Any], rules: Rules) -> LicensingInput:
    """The input of reconciler.licensing.compute for a (normalised) seed or snapshot.

    Users' `assignedLicenses` are the direct assignments; their optional
    `licenseAssignmentStates` become `previous` (who held a seat or a plan first).
    Non-user objects' SMTP proxy addresses (groups') go to `other_proxy_addresses`.
    """
    skus = {
        _low(s["skuId"]): SkuCapacity(
            sku_id=_low(s["skuId"]),
            plan_ids=tuple(_low(p["servicePlanId"]) for p in s["servicePlans"]),
            enabled_units=int((s.get("prepaidUnits") or {}).get("enabled") or 0),
        )
        for s in seed["subscribedSkus"]
    }
    users: dict[str, LicensingUser] = {}
    previous: dict[str, tuple[AssignmentState, ...]] = {}
    for u in seed["users"]:
        uid = _low(u["id"])
        users[uid] = LicensingUser(
            id=uid,
            usage_location=u.get("usageLocation") or None,
            proxy_addresses=smtp_addresses(u.get("proxyAddresses") or ()),
            direct=_licenses(u.get("assignedLicenses")),
        )
        states = u.get("licenseAssignmentStates")
        if states:
            previous[uid] = tuple(
                AssignmentState(
                    sku_id=_low(st["skuId"]),
                    assigned_by_group=_low(st["assignedByGroup"]) if st.get("assignedByGroup") else None,
                    disabled_plans=frozenset(_low(p) for p in st.get("disabledPlans") or ()),
                    state=str(st.get("state") or "Active"),
                    error=str(st.get("error") or "None"),
                )
                for st in states
            )
    groups: dict[str, LicensingGroup] = {}
    others: dict[str, str] = {}
    for g in seed["groups"]:
        gid = _low(g["id"])
        groups[gid] = LicensingGroup(
            id=gid,
            security_enabled=bool(g.get("securityEnabled", True)),
            licenses=_licenses(g.get("assignedLicenses")),
            member_ids=tuple(_low(m) for m in g.get("members") or ()),
        )
        addresses = set(smtp_addresses(g.get("proxyAddresses") or ()))
        if g.get("mailEnabled") and g.get("mail"):
            addresses.add(str(g["mail"]).lower())
        for a in sorted(addresses):
            others.setdefault(a, gid)
    return LicensingInput(
        tenant_location=tenant_location(seed),
        skus=skus,
        users=users,
        groups=groups,
        rules=rules,
        other_proxy_addresses=others,
        previous=previous,
    )


def seed_rules(seed: Mapping[str, Any]) -> Rules:
    """The rules Entra enforces in this tenant: the seed's `emulator.rules` when present (the whole
    table; only the mailbox plans come from the bundled table unless the seed lists its own),
    else the bundled table."""
    from reconciler.catalog import RuleTable, bundled_rules, load_catalog

    bundled = bundled_rules()
    raw = (seed.get("emulator") or {}).get("rules")
    extra = _tenant_plans(seed)
    if raw is None:
        table = bundled
    else:
        base = RuleTable((), () if raw.get("mailboxPlans") else bundled.mailbox_plans)
        try:
            table = base.extend(raw, "seed emulator.rules", extra_plans=extra)
        except ValueError as exc:
            raise SeedError(f"emulator.rules: {exc}") from None
    return table.to_rules(load_catalog(), extra_plans=extra)


def bundled_rules_section() -> dict[str, Any]:
    """The bundled rule table's enabled rules in the shape of a seed's `emulator.rules` (a policy's
    `catalog`), for seeds whose Entra enforces exactly what reconciler knows."""
    from reconciler.catalog import bundled_rules

    exclusive: list[list[str]] = []
    requires: dict[str, list[str]] = {}
    prohibited: dict[str, list[str]] = {}
    for rule in bundled_rules().rules:
        if not rule.enabled:
            continue
        if rule.kind == "mutuallyExclusive":
            exclusive.extend([rule.plan, other] for other in rule.others)
        elif rule.kind == "requires":
            requires[rule.plan] = list(rule.others)
        elif rule.kind == "prohibitedLocations":
            prohibited.setdefault(rule.plan, []).extend(
                c for c in rule.others if c not in prohibited.get(rule.plan, [])
            )
    return {"mutuallyExclusive": exclusive, "requires": requires, "prohibitedLocations": prohibited}
