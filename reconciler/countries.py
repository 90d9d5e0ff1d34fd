"""ISO 3166-1 alpha-2 country codes, the form Graph uses for `usageLocation`.

The list (all 249 officially assigned codes, with their short English names) is package data:
reconciler/data/countries.json. Codes are upper-case, as Graph returns them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType


def _load() -> Mapping[str, str]:
    text = (resources.files("reconciler") / "data" / "countries.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return MappingProxyType({str(code): str(name) for code, name in data.items()})


ISO_COUNTRIES: Mapping[str, str] = _load()


def is_country(code: object) -> bool:
    """True when `code` is an assigned ISO 3166-1 alpha-2 code, written in upper case ("FR", not "fr")."""
    return isinstance(code, str) and code in ISO_COUNTRIES


def country_name(code: str) -> str | None:
    """The country's name for a code (case-insensitive), or None."""
    return ISO_COUNTRIES.get(code.upper()) if isinstance(code, str) else None
