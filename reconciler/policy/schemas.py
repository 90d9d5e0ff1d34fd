"""The JSON schemas shipped with the package (policy, plan, tenant).

`schemas/` at the repository root is installed inside the wheel as `reconciler/schemas/`
(pyproject.toml, force-include). An installed package reads its own copy through
importlib.resources; an editable install (where `reconciler/schemas/` does not exist)
falls back to the repository's `schemas/` directory beside the package.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

KINDS = ("policy", "plan", "tenant")


class SchemaNotFound(Exception):
    """The schema file is not installed (or not written yet)."""


def schema_file(kind: str) -> Traversable:
    """The schema file for `kind` ('policy', 'plan' or 'tenant'); raises SchemaNotFound."""
    if kind not in KINDS:
        raise SchemaNotFound(f"unknown schema kind {kind!r}; choose one of {', '.join(KINDS)}")
    name = f"{kind}.schema.json"
    installed = resources.files("reconciler").joinpath("schemas", name)
    if installed.is_file():
        return installed
    repo = Path(str(resources.files("reconciler"))).parent / "schemas" / name
    if repo.is_file():
        return repo
    raise SchemaNotFound(f"the {kind} schema ({name}) is not installed with this copy of reconciler")


def schema_bytes(kind: str) -> bytes:
    """The schema file's exact bytes."""
    return schema_file(kind).read_bytes()


@cache
def load_schema(kind: str) -> dict[str, Any]:
    """The schema as a dict (cached; do not modify it)."""
    data = json.loads(schema_bytes(kind).decode("utf-8"))
    if not isinstance(data, dict):
        raise SchemaNotFound(f"the {kind} schema is not a JSON object")
    return data
