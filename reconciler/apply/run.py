"""The `apply` command's work, outside the CLI.

    is_plan_file(path) -> bool
    apply_planfile(path, options, settings) -> ApplyResult     a saved plan: it is the approval
    apply_policy(paths, options, settings, confirm) -> ApplyResult | None
                                                                plan, show, approve, apply in one go

Both connect with the writer client (the audit log as its write hook). A saved plan is checked
against the re-observed tenant first (tenant, state fingerprint, blocking violations).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from reconciler.apply.audit import AuditLog
from reconciler.apply.detect import is_plan_file as is_plan_file
from reconciler.apply.executor import (
    DEFAULT_TIMEOUT,
    ApplyOptions,
    ApplyResult,
    apply_plan,
    check_blocked,
    check_plan,
    observe_scope,
)
from reconciler.apply.wait import Poller
from reconciler.graph.connect import ConnectionOptions, connect
from reconciler.plan import Plan


@dataclass
class ApplySettings:
    audit_log: Path
    wait: bool = True
    timeout: float = DEFAULT_TIMEOUT
    force: bool = False
    poller: Poller | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)


def _options(settings: ApplySettings, audit: AuditLog) -> ApplyOptions:
    # SPEC section 3: progress and logs go to stderr only when it is a terminal; the summary on
    # stdout says everything that was done, failed or skipped
    tty = settings.err.isatty()

    def say(text: str) -> None:
        if tty:
            settings.err.write(text + "\n")
            settings.err.flush()

    return ApplyOptions(
        wait=settings.wait,
        timeout=settings.timeout,
        poller=settings.poller,
        say=say,
        audit=audit,
    )


def apply_planfile(path: str, options: ConnectionOptions, settings: ApplySettings) -> ApplyResult | None:
    """Apply a saved plan; None when it has no changes (nothing is read or written then)."""
    from reconciler.planfile import read_plan

    plan = read_plan(path)
    if not plan.has_changes:
        return None
    check_blocked(plan, force=settings.force, source=f"plan {path}")
    with AuditLog(settings.audit_log) as audit:
        audit.check_writable()
        with connect(options, read_only=False, on_write=audit.hook) as client:
            state = observe_scope(client, plan, progress=None)
            check_plan(plan, state, force=settings.force, source=f"plan {path}")
            return apply_plan(client, plan, state, _options(settings, audit))


def apply_policy(
    paths: Sequence[str],
    options: ConnectionOptions,
    settings: ApplySettings,
    *,
    render: Callable[[Plan], str],
    approve: Callable[[Plan], bool],
) -> tuple[Plan, ApplyResult | None]:
    """Plan ``paths`` against the tenant with the writer client, print the plan, ask ``approve``,
    and apply it. Returns the plan and the result (None when nothing was applied)."""
    from reconciler.planner import make_plan
    from reconciler.planner.run import observe_for
    from reconciler.policy import load_policy

    policy = load_policy(paths)
    with AuditLog(settings.audit_log) as audit, connect(options, read_only=False, on_write=audit.hook) as client:
        state = observe_for(client, policy)
        plan = make_plan(policy, state, force=settings.force)
        settings.out.write(render(plan))
        settings.out.flush()
        if not plan.has_changes:
            return plan, None
        check_plan(plan, state, force=settings.force, source="the plan")
        if not approve(plan):
            return plan, None
        audit.check_writable()
        return plan, apply_plan(client, plan, state, _options(settings, audit))
