"""The planner: policy + observed tenant -> Plan (issue 5).

    from reconciler.planner import make_plan
    plan = make_plan(policy, state, force=False, now=None)

Steps, one module each: resolve (names against the tenant), diff (actions), predict (the
licensing model on the state before and after the plan), safety (removal limits, protected
groups); build assembles the Plan.
"""

from reconciler.planner.build import make_plan
from reconciler.planner.resolve import is_new_group_key, new_group_key

__all__ = ["is_new_group_key", "make_plan", "new_group_key"]
