"""Is this argument of `apply` a plan file or a policy path? (light: no Graph imports)"""

from __future__ import annotations

import json
from pathlib import Path


def is_plan_file(path: str | Path) -> bool:
    """A plan file is a JSON object with format_version (a policy is YAML)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with p.open("rb") as fh:
            head = fh.read(1 << 20)
        text = head.decode("utf-8-sig", errors="replace").lstrip()
    except OSError:
        return False
    if not text.startswith("{"):
        return False
    if '"format_version"' in text[:4096]:
        return True
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "format_version" in data
