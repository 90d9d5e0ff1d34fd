"""`apply` and `reprocess`: carry out a plan in a safe order, wait for Entra, verify, audit (issue 6).

    from reconciler.apply import apply_plan, check_plan, observe_scope, ApplyOptions, ApplyResult
    from reconciler.apply import AuditLog, audit_path
    from reconciler.apply.reprocess import reprocess_users

Names are imported on first use, so that `reconciler apply --help` and usage errors do not load
the Graph stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.apply.audit import AuditLog, audit_path
    from reconciler.apply.executor import ApplyOptions, ApplyResult, apply_plan, check_plan, observe_scope

_WHERE = {
    "AuditLog": "reconciler.apply.audit",
    "audit_path": "reconciler.apply.audit",
    "ApplyOptions": "reconciler.apply.executor",
    "ApplyResult": "reconciler.apply.executor",
    "apply_plan": "reconciler.apply.executor",
    "check_plan": "reconciler.apply.executor",
    "observe_scope": "reconciler.apply.executor",
}

__all__ = ["ApplyOptions", "ApplyResult", "AuditLog", "apply_plan", "audit_path", "check_plan", "observe_scope"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'reconciler.apply' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
