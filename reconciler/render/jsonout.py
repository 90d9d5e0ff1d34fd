"""JSON rendering: exactly the plan file (reconciler.planfile), valid against schemas/plan.schema.json.

    render_json(plan) -> str
"""

from __future__ import annotations

from reconciler.plan import Plan
from reconciler.planfile import dumps


def render_json(plan: Plan) -> str:
    """The plan file's JSON text (deterministic, ending with a newline)."""
    return dumps(plan)
