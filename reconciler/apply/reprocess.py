"""`reconciler reprocess`: ask Entra to evaluate users' group licenses again (facts 1.6).

    reprocess_users(client, group=None, user=None, errors=False, wait=False, ...) -> ReprocessResult

Graph has no group-level reprocess, so:
- ``--group G`` fans out over ALL the group's direct user members (nested groups are not licensed
  by group licensing, so their members are left out), not only those in error: a member whose
  license is missing without any error (the silent proxy-address case) needs it too;
- ``--user U`` is one user (UPN or id);
- ``--errors`` is every user in error: the groups with ``hasMembersWithLicenseErrors eq true``,
  then each one's ``membersWithLicenseErrors``.

The calls (``POST /users/{id}/reprocessLicenseAssignment``) go through ``$batch``, 20 per call.
Graph answers a reprocess with the real business error when the user's licensing still fails
(``400 Request_BadRequest``, e.g. a missing prerequisite or no seat left): such a user is listed
as still in error with Graph's reason, not as a failed call. ``--wait`` then polls the users'
states until they stop changing and reports who is still in error.

Exit code: 0 when every call was delivered, whether or not users are still in error (their state is
the tenant's, shown in the output); 1 when a call failed or the wait timed out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from reconciler.apply.audit import AuditLog
from reconciler.apply.refusal import licensing_refusal, with_names
from reconciler.apply.wait import Poller, wait_for_processing
from reconciler.catalog import is_guid
from reconciler.errors import GraphError, NotFoundError, UsageError
from reconciler.graph.client import BatchRequest, GraphClient
from reconciler.graph.observe import ProgressCallback
from reconciler.licensing import NO_ERROR


@dataclass
class ReprocessResult:
    scope: str
    users: dict[str, str] = field(default_factory=dict)  # id -> UPN
    done: list[str] = field(default_factory=list)  # UPNs
    failed: list[tuple[str, str]] = field(default_factory=list)  # (UPN, why)
    still_in_error: list[tuple[str, list[str]]] = field(default_factory=list)  # (UPN, ["SKU: code"])
    refused: list[tuple[str, str]] = field(default_factory=list)  # (UPN, Graph's licensing reason)
    waited: bool = False
    timed_out: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.timed_out else 0

    def render(self) -> str:
        lines = []
        for upn, why in self.failed:
            lines.append(f"  x {upn}: {why}")
        shown = {upn for upn, _ in self.still_in_error}
        for upn, errors in self.still_in_error:
            lines.append(f"  ! {upn} still in error: {', '.join(errors)}")
        for upn, why in self.refused:
            if upn not in shown:
                lines.append(f"  ! {upn} still in error: {why}")
        for upn in self.timed_out:
            lines.append(f"  ... {upn}: still changing when the wait timed out")
        head = f"Reprocessed {len(self.done) + len(self.refused)} of {len(self.users)} users ({self.scope})"
        if self.refused and not self.waited:
            head += f", {len(self.refused)} still in error"
        if self.failed:
            head += f", {len(self.failed)} failed"
        if self.waited:
            head += f"; after processing {len(self.still_in_error)} still in error"
        return "\n".join([head + ".", *lines]) + "\n"


def _one_group(client: GraphClient, ref: str) -> tuple[str, str]:
    """(id, displayName) of a group given by id or display name (exactly one)."""
    ref = ref.strip()
    if is_guid(ref):
        try:
            raw = client.get(f"/groups/{ref.lower()}", select=("id", "displayName"))
            return str(raw["id"]).lower(), str(raw.get("displayName") or ref)
        except NotFoundError:
            pass  # a display name that looks like an id
    found = client.groups_named(ref, ("id", "displayName"))
    if not found:
        raise UsageError(f"--group {ref}: no such group (give its display name or object id)")
    if len(found) > 1:
        ids = ", ".join(str(g["id"]) for g in found)
        raise UsageError(f"--group {ref}: {len(found)} groups have this name ({ids}); give the object id")
    return str(found[0]["id"]).lower(), str(found[0].get("displayName") or ref)


def select_users(
    client: GraphClient, *, group: str | None, user: str | None, errors: bool
) -> tuple[str, dict[str, str], list[str]]:
    """(scope description, user id -> UPN, group ids involved)."""
    if (group is not None) + (user is not None) + bool(errors) != 1:
        raise UsageError("give exactly one of --group G, --user U or --errors")
    if user is not None:
        try:
            raw = client.get(f"/users/{quote(user.strip(), safe='@')}", select=("id", "userPrincipalName"))
        except NotFoundError:
            raise UsageError(f"--user {user}: no such user (give the UPN or object id)") from None
        return f"user {raw.get('userPrincipalName')}", {str(raw["id"]).lower(): str(raw.get("userPrincipalName"))}, []
    if group is not None:
        gid, name = _one_group(client, group)
        members = client.get_all(f"/groups/{gid}/members/microsoft.graph.user", select=("id", "userPrincipalName"))
        users = {str(m["id"]).lower(): str(m.get("userPrincipalName") or m["id"]) for m in members}
        return f"all {len(users)} direct user members of {name}", users, [gid]
    groups = client.get_all(
        "/groups", select=("id", "displayName"), params={"$filter": "hasMembersWithLicenseErrors eq true"}
    )
    gids = sorted(str(g["id"]).lower() for g in groups)
    got = client.batch_get_all(
        BatchRequest(f"e{i}", "GET", f"/groups/{gid}/membersWithLicenseErrors?$select=id,userPrincipalName&$top=999")
        for i, gid in enumerate(gids)
    )
    users = {}
    for values in got.values():
        for m in values:
            users[str(m["id"]).lower()] = str(m.get("userPrincipalName") or m["id"])
    return f"every user in error, in {len(gids)} groups", users, gids


def reprocess_users(
    client: GraphClient,
    *,
    group: str | None = None,
    user: str | None = None,
    errors: bool = False,
    wait: bool = False,
    timeout: float = 1800.0,
    poller: Poller | None = None,
    audit: AuditLog | None = None,
    progress: ProgressCallback | None = None,
    say: Callable[[str], None] | None = None,
) -> ReprocessResult:
    scope, users, _groups = select_users(client, group=group, user=user, errors=errors)
    result = ReprocessResult(scope=scope, users=users)
    if not users:
        return result
    ids = sorted(users)
    reqs = []
    for i, uid in enumerate(ids):
        url = f"/users/{uid}/reprocessLicenseAssignment"
        if audit is not None:
            audit.expect("POST", url, "reprocess", f"user {users[uid]} ({uid})")
        reqs.append(BatchRequest(f"p{i}", "POST", url))
    if say is not None:
        say(f"reprocessing {len(reqs)} users ({scope})")
    responses = client.batch(reqs, idempotent=True)
    names: Mapping[str, str] | None = None
    for uid, req, res in zip(ids, reqs, responses, strict=True):
        refusal = None if res.ok else licensing_refusal(res.status, res.body)
        if res.ok:
            result.done.append(users[uid])
        elif refusal is not None:
            if names is None:
                names = _id_names(client)
            result.refused.append((users[uid], with_names(refusal, names)))
        else:
            try:
                client.check(req, res)
                why = f"status {res.status}"
            except GraphError as exc:
                why = str(exc)
            result.failed.append((users[uid], why))
    if not wait:
        return result
    outcome = wait_for_processing(
        client,
        (),
        ids,
        deadline=time.monotonic() + timeout,
        poller=poller,
        progress=progress,
    )
    result.waited = True
    result.timed_out = sorted(users[u] for u in outcome.pending_users)
    skus = _sku_names(client)
    for uid in ids:
        u = outcome.users.get(uid)
        if u is None:
            continue
        errs = sorted({f"{skus.get(s.sku_id, s.sku_id)}: {s.error}" for s in u.license_states if s.error != NO_ERROR})
        if errs:
            result.still_in_error.append((users[uid], errs))
    result.still_in_error.sort(key=lambda item: item[0].casefold())
    return result


def _id_names(client: GraphClient) -> dict[str, str]:
    """SKU and service plan id -> name, to make Graph's licensing messages readable."""
    try:
        body = client.get("/subscribedSkus", select=("skuId", "skuPartNumber", "servicePlans"))
    except GraphError:
        return {}
    out: dict[str, str] = {}
    for s in (body.get("value") or []) if isinstance(body, Mapping) else []:
        out[str(s.get("skuId", "")).lower()] = str(s.get("skuPartNumber") or "")
        for p in s.get("servicePlans") or ():
            out[str(p.get("servicePlanId", "")).lower()] = str(p.get("servicePlanName") or "")
    return {k: v for k, v in out.items() if k and v}


def _sku_names(client: GraphClient) -> Mapping[str, str]:
    try:
        body = client.get("/subscribedSkus", select=("skuId", "skuPartNumber"))
    except GraphError:
        return {}
    skus = body.get("value") or [] if isinstance(body, Mapping) else []
    return {str(s["skuId"]).lower(): str(s.get("skuPartNumber") or s["skuId"]) for s in skus}
