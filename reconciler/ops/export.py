"""`reconciler export`: the live group licensing as a readable policy.

    read_export_state(client) -> TenantState             (organization, SKUs, groups; no members)
    export_policy(state, groups=(), *, now, source, catalog) -> str   (pure: the YAML text)

The policy names SKUs by skuPartNumber and plans by servicePlanName when the bundled catalog
resolves that name to the same id (otherwise the GUID, with the name in a comment, so that
`reconciler validate` accepts it); plans are written as Entra stores them (`disabledPlans`), each
license with a comment listing the plans it enables; groups in display-name order; a group whose
display name another group shares is written by object id with a comment. Only group licensing is
exported: no members, usage locations, direct licenses or safety settings, so planning the export
against the same tenant shows no changes.
"""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence

from reconciler import __version__
from reconciler.catalog import Catalog, load_catalog, name_key
from reconciler.errors import UsageError
from reconciler.graph.client import BatchRequest, GraphClient
from reconciler.licensing import License
from reconciler.state import Group, SubscribedSku, TenantState

COMMENT_WIDTH = 100
_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@/+ -]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def scalar(text: str) -> str:
    """A YAML scalar for `text`: plain when that reads back as the same string, else double-quoted."""
    import json

    if (
        _PLAIN.match(text)
        and text == text.strip()
        and text.lower() not in _YAML_WORDS
        and not re.match(r"^[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?$", text)
        and not re.match(r"^0[xob]", text)
        and " #" not in text
        and ": " not in text
    ):
        return text
    return json.dumps(text, ensure_ascii=False)


def comment_text(text: str) -> str:
    """Text safe inside a one-line YAML comment."""
    return " ".join(str(text).split())


def comment_block(text: str, indent: str, width: int = COMMENT_WIDTH) -> list[str]:
    return textwrap.wrap(
        comment_text(text),
        width=width,
        initial_indent=indent + "# ",
        subsequent_indent=indent + "#   ",
        break_long_words=False,
        break_on_hyphens=False,
    )


class Namer:
    """Names for SKUs and plans that `validate` and `plan` resolve back to the same ids."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def sku(self, sku: SubscribedSku | None, sku_id: str) -> tuple[str, str | None]:
        """(what to write, a comment or None)."""
        if sku is not None and sku.part_number:
            entry = self.catalog.sku(sku.part_number)
            if entry is not None and entry.sku_id == sku_id:
                return sku.part_number, None
            return sku_id, f"{sku.part_number} (the bundled catalog does not know this name for this id)"
        return sku_id, "not a subscribed SKU of this tenant"

    def plan(self, sku: SubscribedSku | None, plan_id: str) -> tuple[str, bool]:
        """(what to write, whether it is a name). The name when it names this plan and no other of
        the SKU, for the planner (tenant's plan names) and for `validate` (the bundled catalog)."""
        if sku is None:
            return plan_id, False
        name = next((p.name for p in sku.service_plans if p.plan_id == plan_id), "")
        if not name:
            return plan_id, False
        key = name_key(name)
        first = next((p.plan_id for p in sku.service_plans if name_key(p.name) == key), None)
        ids = self.catalog.plan_ids(name)
        if first != plan_id or not ids or any(i != plan_id and i in sku.plan_ids for i in ids):
            return plan_id, False
        return name, True

    def plan_label(self, sku: SubscribedSku | None, plan_id: str) -> str:
        if sku is not None:
            for p in sku.service_plans:
                if p.plan_id == plan_id:
                    return p.name or plan_id
        entry = self.catalog.plans.get(plan_id)
        return entry.name if entry is not None else plan_id


def select_groups(state: TenantState, refs: Sequence[str]) -> list[Group]:
    """The licensed groups, or the groups `refs` name (display name or object id; every match)."""
    if not refs:
        return [g for g in state.groups.values() if g.licenses]
    out: dict[str, Group] = {}
    for ref in refs:
        text = ref.strip()
        hit = state.groups.get(text.lower())
        found = [hit] if hit is not None else [g for g in state.groups.values() if g.display_name.casefold() == text.casefold()]
        if not found:
            raise UsageError(f"--group {ref}: no group with this display name or id in the tenant")
        for g in found:
            out[g.id] = g
    return list(out.values())


def license_lines(state: TenantState, lic: License, namer: Namer, indent: str) -> list[str]:
    sku = state.skus.get(lic.sku_id)
    sku_text, sku_note = namer.sku(sku, lic.sku_id)
    lines = [f"{indent}- sku: {scalar(sku_text)}" + (f"  # {comment_text(sku_note)}" if sku_note else "")]
    inner = indent + "  "
    plan_ids = list(sku.plan_ids) if sku is not None else []
    disabled = [p for p in plan_ids if p in lic.disabled_plans] + sorted(
        p for p in lic.disabled_plans if p not in plan_ids
    )
    enabled = [p for p in plan_ids if p not in lic.disabled_plans]
    if sku is not None:
        labels = [namer.plan_label(sku, p) for p in enabled]
        if not disabled:
            head = "enabled: the only plan: " if len(plan_ids) == 1 else f"enabled: all {len(plan_ids)} plans: "
        else:
            head = f"enabled ({len(enabled)} of {len(plan_ids)}): "
        lines += comment_block(head + (", ".join(labels) or "none"), inner)
    written = []
    notes = []
    for pid in disabled:
        text, is_name = namer.plan(sku, pid)
        written.append(scalar(text))
        if not is_name:
            notes.append(f"{pid} = {namer.plan_label(sku, pid)}")
    if notes:
        lines += comment_block("plans by id: " + "; ".join(notes), inner)
    lines.append(f"{inner}disabledPlans: [{', '.join(written)}]")
    return lines


def export_policy(
    state: TenantState,
    groups: Sequence[str] = (),
    *,
    now: dt.datetime | None = None,
    source: str | None = None,
    catalog: Catalog | None = None,
) -> str:
    """The YAML text of a policy reproducing the live licensing of the (selected) groups."""
    namer = Namer(catalog or load_catalog())
    chosen = sorted(select_groups(state, groups), key=lambda g: (g.display_name.casefold(), g.display_name, g.id))
    names = Counter(g.display_name.casefold() for g in state.groups.values())
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    org = state.organization
    tenant = org.initial_domain or org.id
    out = [
        f"# Exported by reconciler {__version__} on {when}",
        f"# from tenant {comment_text(org.display_name or tenant)} ({org.id})"
        + (f" through {comment_text(source)}" if source else ""),
        "#",
        "# The live group licensing as a policy: planning it against the same tenant shows no changes.",
        "# Plans are written as Entra stores them (disabledPlans: new plans Microsoft adds are switched",
        "# on); each license lists in a comment the plans it enables. Members, usage locations and",
        "# direct licenses are not managed here.",
        "apiVersion: reconciler/v1",
        f"tenant: {scalar(tenant)}",
        "",
    ]
    if not chosen:
        out.append("groups: []")
        return "\n".join(out) + "\n"
    out.append("groups:")
    for g in chosen:
        out.append("")
        notes = []
        shared = names[g.display_name.casefold()] > 1
        if shared:
            notes.append(
                f"{g.display_name!r} is the display name of {names[g.display_name.casefold()]} groups: "
                "this one is named by its object id"
            )
        if not g.security_enabled:
            notes.append("not security-enabled: Entra licenses none of its members")
        if g.member_group_ids:
            notes.append(f"has {len(g.member_group_ids)} nested group(s): their members get nothing from it")
        for note in notes:
            out += comment_block(note, "  ")
        ref = g.id if shared else g.display_name
        out.append(f"  - group: {scalar(ref)}" + (f"  # {comment_text(g.display_name)}" if shared else ""))
        if not g.licenses:
            out.append("    licenses: []")
            continue
        out.append("    licenses:")
        for lic in sorted(g.licenses, key=lambda lic: _sku_order(state, lic)):
            out += license_lines(state, lic, namer, "      ")
    return "\n".join(out) + "\n"


def _sku_order(state: TenantState, lic: License) -> tuple[str, str]:
    sku = state.skus.get(lic.sku_id)
    return ((sku.part_number if sku is not None else lic.sku_id).casefold(), lic.sku_id)


def read_export_state(client: GraphClient) -> TenantState:
    """Organization, subscribed SKUs and every group (licenses, no members): three reads in one
    $batch plus the further group pages."""
    from reconciler.graph.observe import GROUP_SELECT, ORG_SELECT, SKU_SELECT, organization_from_graph
    from reconciler.state import group_from_graph, sku_from_graph

    reqs = [
        BatchRequest("org", "GET", f"/organization?$select={','.join(ORG_SELECT)}"),
        BatchRequest("skus", "GET", f"/subscribedSkus?$select={','.join(SKU_SELECT)}"),
        BatchRequest("groups", "GET", f"/groups?$select={','.join(GROUP_SELECT)}&$top=999"),
    ]
    got = client.batch_get_all(reqs)
    if not got["org"]:
        from reconciler.errors import GraphError

        raise GraphError("GET /organization returned no organization")
    organization = organization_from_graph(got["org"][0])
    skus = [sku_from_graph(s) for s in got["skus"]]
    groups = [group_from_graph(raw, (), frozenset()) for raw in got["groups"]]
    return TenantState.build(organization, skus, (), groups)


def write_export(text: str, out: str | None) -> None:
    """Write to `out` (a file) or stdout."""
    import sys
    from pathlib import Path

    if out is None:
        sys.stdout.write(text)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        from reconciler.errors import ReconcilerError

        raise ReconcilerError(f"{out}: cannot write: {exc.strerror or exc}") from exc


def group_refs(values: Iterable[str] | None) -> list[str]:
    return [v for v in (values or ()) if v.strip()]
