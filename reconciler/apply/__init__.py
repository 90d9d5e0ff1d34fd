"""`apply` and `reprocess`: carry out a plan in a safe order, wait for Entra, verify, audit (issue 6).

    from reconciler.apply import apply_plan, check_plan, observe_scope, ApplyOptions, ApplyResult
    from reconciler.apply import AuditLog, reprocess_users
"""

from reconciler.apply.audit import AuditLog, audit_path
from reconciler.apply.executor import ApplyOptions, ApplyResult, apply_plan, check_plan, observe_scope

__all__ = ["ApplyOptions", "ApplyResult", "AuditLog", "apply_plan", "audit_path", "check_plan", "observe_scope"]
