"""Graph's synchronous answer to a reprocess whose cause is not fixed.

``POST /users/{id}/reprocessLicenseAssignment`` for a user whose group licensing still fails is
answered ``400 Request_BadRequest`` with the licensing error's text (for example "License
assignment failed because service plan ... depends on the service plan(s) ..."), not with 200: the
request was delivered and Entra evaluated the user again, so the user is "still in error", not a
failed write (Microsoft Graph docs, api-reference/v1.0/api/user-reprocesslicenseassignment.md
documents the action; the 400 is what real tenants answer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# the beginnings of Entra's licensing messages (the same texts as a direct assignLicense)
_LICENSING_TEXTS = (
    "license assignment failed because",
    "subscription with sku",
    "license assignment cannot be done",
    "proxy address is already being used",
)
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def licensing_refusal(status: int, body: Any) -> str | None:
    """The licensing message of a refused reprocess, or None when the answer is anything else."""
    if status != 400 or not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if not isinstance(error, Mapping):
        return None
    message = str(error.get("message") or "")
    if str(error.get("code") or "") != "Request_BadRequest":
        return None
    if not message.lower().startswith(_LICENSING_TEXTS):
        return None
    return message


def with_names(message: str, names: Mapping[str, str]) -> str:
    """``message`` with every SKU or service plan id that ``names`` knows followed by its name."""

    def name(m: re.Match[str]) -> str:
        known = names.get(m.group(0).lower())
        return f"{m.group(0)} ({known})" if known else m.group(0)

    return _GUID.sub(name, message)
