"""What a license error means and how to resolve it, for one user, from the planner's texts.

The per-code resolutions (Microsoft's article "Identify and resolve license assignment problems
for a group", facts 1.3 and 2) live in the planner's predictor (reconciler.planner.predict), which
explains the errors a plan would leave; this module runs that predictor on the tenant as it is
(an empty policy, no changes) and asks it to explain the errors Graph recorded, so `plan` and
`errors` always give the same resolution for the same error.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler import licensing
from reconciler.catalog import Catalog, load_catalog
from reconciler.plan import EXISTING
from reconciler.planner.diff import Changes
from reconciler.planner.predict import SILENT, Predictor
from reconciler.planner.resolve import resolve
from reconciler.policy.model import Policy
from reconciler.state import TenantState

# What each error code means (Graph's licenseAssignmentState.error; facts 1.3, PR
# microsoft-graph-docs#3167, facts 2.6 and 2.16).
MEANINGS = {
    licensing.COUNT_VIOLATION: "not enough seats: every purchased seat of the product is in use",
    licensing.MUTUALLY_EXCLUSIVE_VIOLATION: (
        "a service plan of the product conflicts with a plan the user already has from another license"
    ),
    licensing.DEPENDENCY_VIOLATION: (
        "a service plan needs another plan that the user does not have (or would lose)"
    ),
    licensing.PROHIBITED_IN_USAGE_LOCATION_VIOLATION: (
        "a service plan of the product is not available in the user's usage location"
    ),
    licensing.UNIQUENESS_VIOLATION: (
        "a proxy address of the user is already taken by another object in the tenant"
    ),
    licensing.OTHER: (
        "the group assigns all its products or none, and another product of the same group failed"
    ),
}
SILENT_MEANING = (
    "a proxy address of the user belongs to another object (a group or contact): Entra assigns "
    "nothing and records no error"
)
UNKNOWN_MEANING = "an error Graph reports that this version of reconciler does not know"


def meaning(code: str) -> str:
    return MEANINGS.get(code, UNKNOWN_MEANING)


@dataclass(frozen=True)
class Explanation:
    detail: str  # what happened to this user, with the plans and objects involved
    resolution: str  # what to do


class Explainer:
    """Explains recorded errors with the planner's texts (one predictor run over `state`)."""

    def __init__(self, state: TenantState, catalog: Catalog | None = None) -> None:
        catalog = catalog or load_catalog()
        res = resolve(Policy(files=(), document={}, digest=""), state, catalog)
        self._predictor = Predictor(state, res, Changes(), catalog, set())
        self._predictor.run()

    def error(self, code: str, sku_id: str, group_id: str | None, user_id: str) -> Explanation:
        p = self._predictor
        detail, resolution = p.explain(code, sku_id, group_id, [user_id], p.part(sku_id), p.gname(group_id))
        # the predictor speaks about the tenant "after the plan"; here there is no plan
        detail = detail.replace(" after the plan", "")
        return Explanation(detail=detail, resolution=resolution)

    def silent(self, group_id: str, user_id: str) -> Explanation:
        v = self._predictor.violation(EXISTING, SILENT, "", group_id, [user_id])
        return Explanation(detail=v.message, resolution=v.resolution)
