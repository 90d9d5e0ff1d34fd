"""JSON-schema validation of one policy file, with each error mapped back to its YAML position.

Messages are rewritten for people (jsonschema's own are written for programmers), and each
names the dotted path of the value (`groups[0].licenses[1].sku`) so it stands on its own.
After validation the invalid parts are pruned from the tree, so that the semantic checks
that run next only see well-typed data and never report a consequence of a schema error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from reconciler.countries import is_country
from reconciler.errors import Problem
from reconciler.policy.schemas import load_schema
from reconciler.policy.yamlpos import YNode

# plain YAML 1.1 scalars that PyYAML reads as booleans: a frequent surprise (NO is Norway)
_BOOL_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false"}


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = load_schema("policy")
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out or "the policy"


def describe(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"a number ({value})"
    if isinstance(value, float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return f"a string ({text!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_TYPE_WORDS = {
    "object": "a mapping (key: value)",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "boolean": "true or false",
    "number": "a number",
}


def _suggest(word: str, choices: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not match:
        lowered = {c.lower(): c for c in choices}
        hit = lowered.get(word.lower())
        return f"; did you mean {hit}?" if hit else ""
    return f"; did you mean {match[0]}?"


def _subschema_is(error: ValidationError, ref: str) -> bool:
    """True when the failing schema is the `$defs` entry `ref` (e.g. countryCode)."""
    schema = _validator().schema
    defs = schema.get("$defs", {}) if isinstance(schema, dict) else {}
    return bool(error.schema is defs.get(ref))


def _messages(error: ValidationError, node: YNode | None) -> list[tuple[YNode | None, bool, str]]:
    """(node, point at its key?, message) for one schema error."""
    path = list(error.absolute_path)
    where = dotted(path)
    value = error.instance
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    if kind == "additionalProperties" and isinstance(value, dict):
        known = sorted(schema.get("properties", {}))
        out: list[tuple[YNode | None, bool, str]] = []
        for key in value:
            if key in known:
                continue
            child = node.child(key) if node is not None else None
            allowed = ", ".join(known)
            out.append(
                (
                    child or node,
                    True,
                    f"unknown key '{key}' in {where}{_suggest(key, known)} (allowed: {allowed})",
                )
            )
        return out
    if kind == "required":
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [k for k in required if isinstance(value, dict) and k not in value]
        name = missing[0] if missing else str(error.validator_value)
        if path == [] and name == "apiVersion":
            return [
                (node, False, "missing apiVersion: every policy file starts with apiVersion: reconciler/v1")
            ]
        return [(node, False, f"{where} needs the key '{name}'")]
    if kind == "type":
        expected = error.validator_value
        words = (
            " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in expected)
            if isinstance(expected, list)
            else _TYPE_WORDS.get(str(expected), str(expected))
        )
        hint = ""
        if (
            isinstance(value, bool)
            and node is not None
            and node.plain
            and (node.text or "").lower() in _BOOL_WORDS
            and expected == "string"
        ):
            text = node.text or ""
            quoted = text.upper() if is_country(text.upper()) else text
            hint = f' (YAML reads an unquoted {text} as a boolean: write "{quoted}")'
        elif value is None and expected in ("array", "object"):
            hint = " (remove the key, or give it a value)"
        if not path:
            return [
                (
                    node,
                    False,
                    f"a policy file must be {words} starting with apiVersion: reconciler/v1, "
                    f"not {describe(value)}",
                )
            ]
        return [(node, False, f"{where} must be {words}, not {describe(value)}{hint}")]
    if kind == "const":
        if path == ["apiVersion"]:
            return [(node, False, f"apiVersion must be reconciler/v1, not {describe(value)}")]
        return [(node, False, f"{where} must be {error.validator_value!r}, not {describe(value)}")]
    if kind == "enum":
        choices = [str(c) for c in error.validator_value] if isinstance(error.validator_value, list) else []
        suggestion = _suggest(value, choices) if isinstance(value, str) else ""
        return [
            (node, False, f"{where} must be one of {', '.join(choices)}, not {describe(value)}{suggestion}")
        ]
    if kind == "pattern" and _subschema_is(error, "countryCode") and isinstance(value, str):
        hint = f"; write {value.upper()}" if is_country(value.upper()) else ""
        return [
            (
                node,
                False,
                f"{where}: {value!r} is not an ISO 3166-1 alpha-2 country code "
                f"(two upper-case letters such as US, FR, DE){hint}",
            )
        ]
    if kind == "anyOf" and path and path[-1] == "maxRemovals":
        return [
            (
                node,
                False,
                f"{where} must be a non-negative whole number (25) or a percentage "
                f'such as "10%", not {describe(value)}',
            )
        ]
    if (
        kind == "not"
        and path
        and isinstance(value, dict)
        and "enabledPlans" in value
        and "disabledPlans" in value
    ):
        key_node = node.child("enabledPlans") if node is not None else None
        return [
            (
                key_node or node,
                True,
                f"{where} has both disabledPlans and enabledPlans: use one "
                "(enabledPlans lists the plans switched on, disabledPlans the ones switched off)",
            )
        ]
    if kind == "minLength":
        return [(node, False, f"{where} must not be empty")]
    if kind == "minItems":
        if len(path) >= 2 and path[-2] == "mutuallyExclusive":
            return [(node, False, f"{where} must name exactly two plans")]
        return [(node, False, f"{where} needs at least {error.validator_value} entry")]
    if kind == "maxItems":
        return [
            (
                node,
                False,
                f"{where} must name exactly two plans"
                if len(path) >= 2 and path[-2] == "mutuallyExclusive"
                else f"{where} has more than {error.validator_value} entries",
            )
        ]
    if kind == "minimum":
        return [(node, False, f"{where} must be at least {error.validator_value}, not {describe(value)}")]
    if kind == "propertyNames":
        return [(node, False, f"{where} has an empty key")]
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return [(node, False, f"{where}: {message}")]


def check_schema(root: YNode, path: str) -> list[Problem]:
    """Validate one file's tree against the policy schema; prune every invalid part from `root`.

    Returns the problems (sorted by position). After pruning, what is left of `root` is valid
    (when the root itself is invalid, it is emptied).
    """
    problems: list[Problem] = []
    doomed: list[tuple[YNode | None, str | int | None]] = []  # (parent, key) to remove; (None, None): root
    seen: set[tuple[int, int, str]] = set()
    data = root.to_plain()
    for error in _validator().iter_errors(data):
        epath = list(error.absolute_path)
        node, depth = root.walk(epath)
        exact = depth == len(epath)
        for target, at_key, message in _messages(error, node):
            anchor = target or root
            if at_key and anchor.key_line:
                line, column = anchor.key_line, anchor.key_column
            else:
                line, column = anchor.line, anchor.column
            key = (line, column, message)
            if key in seen:
                continue
            seen.add(key)
            problems.append(Problem(anchor.path or path, line, column, message))
        # prune
        if error.validator == "additionalProperties" and isinstance(error.instance, dict) and exact:
            known = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
            doomed.extend((node, k) for k in error.instance if k not in known)
        elif not epath:
            doomed.append((None, None))
        else:
            parent, pdepth = root.walk(epath[:-1])
            if pdepth == len(epath) - 1:
                doomed.append((parent, epath[-1]))
    _prune(root, doomed)
    return problems


def _prune(root: YNode, doomed: list[tuple[YNode | None, str | int | None]]) -> None:
    if any(parent is None for parent, _ in doomed):
        root.value = {}
        return
    drop_items: dict[int, tuple[YNode, set[int]]] = {}
    for parent, key in doomed:
        if parent is None:
            continue
        if isinstance(parent.value, dict) and isinstance(key, str):
            parent.value.pop(key, None)
        elif isinstance(parent.value, list) and isinstance(key, int):
            drop_items.setdefault(id(parent), (parent, set()))[1].add(key)
    for parent, indexes in drop_items.values():
        parent.value = [child for i, child in enumerate(parent.value) if i not in indexes]
