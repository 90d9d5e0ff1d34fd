"""Turn a merged, schema-pruned YAML tree into the typed Policy.

The tree has already been validated and pruned, but this module still checks every type
it reads, and skips what does not fit, so that it can never fail on odd input.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from reconciler.catalog import Catalog, SkuEntry
from reconciler.policy.model import (
    API_VERSION,
    CatalogRules,
    DirectLicenses,
    GroupSpec,
    LicenseSpec,
    Location,
    MaxRemovals,
    Policy,
    Ref,
    Safety,
    UsageLocations,
    UserLocation,
)
from reconciler.policy.yamlpos import YNode

PERCENT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)%$")


def loc(node: YNode) -> Location:
    return Location(node.path, node.line, node.column)


def key_loc(node: YNode) -> Location:
    if node.key_line:
        return Location(node.path, node.key_line, node.key_column)
    return loc(node)


def digest(document: Any) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _mapping(node: YNode | None) -> dict[str, YNode]:
    if node is not None and isinstance(node.value, dict):
        return node.value
    return {}


def _items(node: YNode | None) -> list[YNode]:
    if node is not None and isinstance(node.value, list):
        return node.value
    return []


def _str(node: YNode | None) -> str | None:
    if node is not None and isinstance(node.value, str):
        return node.value
    return None


def _ref(node: YNode | None) -> Ref | None:
    text = _str(node)
    if text is None or node is None:
        return None
    return Ref(text, loc(node))


def _refs(node: YNode | None) -> tuple[Ref, ...]:
    return tuple(r for r in (_ref(item) for item in _items(node)) if r is not None)


def _sku_ref(node: YNode | None, catalog: Catalog) -> Ref | None:
    ref = _ref(node)
    if ref is None:
        return None
    entry = catalog.sku(ref.value)
    return Ref(ref.value, ref.loc, entry.sku_id if entry else None)


def _plan_refs(node: YNode | None, catalog: Catalog, sku: SkuEntry | None = None) -> tuple[Ref, ...]:
    out = []
    for ref in _refs(node):
        entry = catalog.plan_in_sku(sku, ref.value) if sku is not None else None
        entry = entry or catalog.plan(ref.value)
        out.append(Ref(ref.value, ref.loc, entry.plan_id if entry else None))
    return tuple(out)


def _key_plan_ref(name: str, node: YNode, catalog: Catalog) -> Ref:
    entry = catalog.plan(name)
    return Ref(name, key_loc(node), entry.plan_id if entry else None)


def _license(node: YNode, catalog: Catalog) -> LicenseSpec | None:
    fields = _mapping(node)
    sku = _sku_ref(fields.get("sku"), catalog)
    if sku is None:
        return None
    entry = catalog.sku(sku.value)
    disabled = _plan_refs(fields["disabledPlans"], catalog, entry) if "disabledPlans" in fields else None
    enabled = _plan_refs(fields["enabledPlans"], catalog, entry) if "enabledPlans" in fields else None
    return LicenseSpec(sku=sku, loc=loc(node), disabled_plans=disabled, enabled_plans=enabled)


def _group(node: YNode, catalog: Catalog) -> GroupSpec | None:
    fields = _mapping(node)
    name_node = fields.get("group")
    name = _str(name_node)
    if name is None or name_node is None:
        return None
    create = fields.get("create")
    licenses: tuple[LicenseSpec, ...] | None = None
    if "licenses" in fields:
        licenses = tuple(x for x in (_license(item, catalog) for item in _items(fields["licenses"])) if x)
    return GroupSpec(
        group=name,
        loc=loc(node),
        name_loc=loc(name_node),
        create=bool(create.value) if create is not None and isinstance(create.value, bool) else False,
        members=_refs(fields["members"]) if "members" in fields else None,
        licenses=licenses,
        usage_location=_ref(fields.get("usageLocation")),
    )


def _catalog_rules(node: YNode | None, catalog: Catalog) -> CatalogRules:
    fields = _mapping(node)
    pairs: list[tuple[Ref, Ref]] = []
    for item in _items(fields.get("mutuallyExclusive")):
        plans = _plan_refs(item, catalog)
        if len(plans) == 2:
            pairs.append((plans[0], plans[1]))
    requires = tuple(
        (_key_plan_ref(name, value, catalog), _plan_refs(value, catalog))
        for name, value in _mapping(fields.get("requires")).items()
    )
    prohibited = tuple(
        (_key_plan_ref(name, value, catalog), _refs(value))
        for name, value in _mapping(fields.get("prohibitedLocations")).items()
    )
    raw = node.to_plain() if node is not None and isinstance(node.value, dict) else {}
    return CatalogRules(tuple(pairs), requires, prohibited, raw)


def _max_removals(node: YNode | None) -> MaxRemovals | None:
    if node is None:
        return None
    value = node.value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return MaxRemovals(text=str(value), loc=loc(node), count=value)
    if isinstance(value, str):
        match = PERCENT.match(value)
        if match:
            return MaxRemovals(text=value, loc=loc(node), percent=float(match.group(1)))
    return None


def build_policy(root: YNode, files: tuple[str, ...], catalog: Catalog) -> Policy:
    """The typed policy from a merged tree (bad parts are skipped; checks report them)."""
    fields = _mapping(root)
    document = root.to_plain() if isinstance(root.value, dict) else {}
    usage = _mapping(fields.get("usageLocations"))
    users = tuple(
        UserLocation(user=name, country=value.value, loc=key_loc(value), country_loc=loc(value))
        for name, value in _mapping(usage.get("users")).items()
        if isinstance(value.value, str)
    )
    direct_node = fields.get("directLicenses")
    direct = _mapping(direct_node)
    mode = _str(direct.get("mode")) or "keep"
    wave = direct.get("waveSize")
    wave_size = wave.value if wave is not None and type(wave.value) is int else None
    skus: tuple[Ref, ...] | None = None
    if "skus" in direct:
        skus = tuple(r for r in (_sku_ref(item, catalog) for item in _items(direct["skus"])) if r)
    safety = _mapping(fields.get("safety"))
    groups = tuple(g for g in (_group(item, catalog) for item in _items(fields.get("groups"))) if g)
    return Policy(
        files=files,
        document=document,
        digest=digest(document),
        api_version=_str(fields.get("apiVersion")) or API_VERSION,
        tenant=_ref(fields.get("tenant")),
        catalog=_catalog_rules(fields.get("catalog"), catalog),
        groups=groups,
        usage_locations=UsageLocations(default=_ref(usage.get("default")), users=users),
        direct_licenses=DirectLicenses(
            mode=mode,
            skus=skus,
            wave_size=wave_size,
            loc=loc(direct_node) if direct_node is not None else None,
        ),
        unmanaged_groups=_str(fields.get("unmanagedGroups")) or "report",
        safety=Safety(
            max_removals=_max_removals(safety.get("maxRemovals")), protected=_refs(safety.get("protected"))
        ),
    )
