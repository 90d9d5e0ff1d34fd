"""Ordered execution of a plan against the tenant (issue 6).

    check_plan(plan, state, force=False)        tenant, fingerprint and blocking checks
    observe_scope(client, plan) -> TenantState   read the tenant as `plan` read it
    apply_plan(client, plan, state, options) -> ApplyResult

The order never leaves a user without service mid-way:

1. ``createGroup`` (one by one; the new ids replace the ``{new:NAME}`` placeholders in every later
   request), then ``setUsageLocation`` and then ``addMember`` (a licensed group starts processing a
   new member at once, so the location must be there first), each through ``$batch``;
2. every group ``assignLicense`` request that adds or changes a license (a group's adds, updates
   and removals stay ONE request, as the plan has it: a swap is atomic in Entra). Right before
   they are written, the groups' ``assignedLicenses`` are read again: a group whose licenses
   differ from what the plan was made from is skipped (no lost update) and apply ends with exit 4.
   The reads go out as one ``$batch``, then the writes as another, so that Entra queues the
   groups together and processes them side by side rather than one after the other;
3. wait for group processing (``reconciler.apply.wait``);
4. ``removeDirectLicense``, only for users whose inherited assignment of the SKU is now ``Active``
   without error and enables at least the plans of the direct one (the users are read again
   first; others are skipped and reported), through ``$batch``;
5. group requests that only remove licenses, and ``removeMember`` (after the new assignments are
   in place; a removal for users whose new assignment or membership was not written, because it
   failed or its group changed meanwhile, is skipped and left to the next plan), then wait again;
6. ``reprocessLicenseAssignment`` for the plan's reprocess actions and for users whose errors this
   apply resolved (the prediction has no error where Entra still shows one), then wait until their
   states settle (the wait of step 5 does not wait for these users to settle first);
7. verify every affected user's states against the prediction (``reconciler.apply.verify``).

A failing request does not stop the others: the result lists what was done, what failed and
why. Exit codes (``ApplyResult.exit_code``): 0 done (differences from the prediction are
reported, they are not failures), 1 a write failed or the wait timed out, 4 a group was skipped
because it changed since the plan (and nothing failed). ``--no-wait`` returns after the writes of
steps 1, 2, 5 and the plan's reprocess actions, and skips the direct-license removals (they need
processing done), the removals of step 5 for users who get a new assignment in the same apply, and
verification.

Running plan and apply again after a failure, or after apply was killed, converges: every write
is idempotent or checked (a member already added, a direct license already gone, a group
created by the killed run are all taken as done), and nothing the policy keeps is ever removed
before its replacement is in place.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reconciler.apply.audit import AuditLog
from reconciler.apply.refusal import licensing_refusal, with_names
from reconciler.apply.verify import Difference, expected_keys, verify
from reconciler.apply.wait import Poller, WaitResult, read_users, wait_for_processing
from reconciler.errors import (
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_STALE,
    BlockedPlanError,
    GraphError,
    StalePlanError,
    WrongTenantError,
)
from reconciler.graph.client import BatchRequest, BatchResponse, GraphClient
from reconciler.graph.observe import ProgressCallback
from reconciler.licensing import ACTIVE, NO_ERROR, License
from reconciler.plan import POLICY_CODES, Action, Plan
from reconciler.state import TenantState, User, group_from_graph

LICENSE_KINDS = ("assignLicense", "updateLicense", "removeLicense")
ADDING_KINDS = ("assignLicense", "updateLicense")
USER_KINDS = ("addMember", "removeMember", "setUsageLocation", "removeDirectLicense", "reprocess")
DEFAULT_TIMEOUT = 1800.0


# --------------------------------------------------------------------------- checks


def observe_scope(client: GraphClient, plan: Plan, *, progress: ProgressCallback | bool | None = False) -> TenantState:
    """Read the tenant as the planner read it for ``plan`` (same groups and users), so that an
    unchanged tenant gives the plan's state_fingerprint."""
    from reconciler.graph.observe import observe
    from reconciler.planner.run import supplement

    scope = plan.scope
    state = observe(
        client,
        group_refs=scope.groups if scope else (),
        user_refs=scope.users if scope else (),
        direct_licenses=True,
        progress=progress,
    )
    return supplement(client, state)


def check_plan(plan: Plan, state: TenantState, *, force: bool = False, source: str = "the plan") -> None:
    """Refuse a plan of another tenant, a stale plan, or a blocked one (policy errors always)."""
    if plan.tenant_id.lower() != state.organization.id.lower():
        raise WrongTenantError(
            f"{source} was made for tenant {plan.tenant_id}, but this connection is to tenant "
            f"{state.organization.id} ({state.organization.display_name}); connect to the right tenant"
        )
    fingerprint = state.fingerprint()
    if fingerprint != plan.state_fingerprint:
        hint = "" if plan.scope is not None else " (it records no observe scope: make it with this version)"
        busy = sorted(
            g.display_name for g in state.groups.values() if g.processing_state not in (None, "ProcessingComplete")
        )
        wait = (
            f"; Entra is still processing {', '.join(busy[:5])}{' and more' if len(busy) > 5 else ''}: "
            "plan again once it is done"
            if busy
            else " (a plan made while Entra was still processing a group change is stale once processing ends)"
        )
        raise StalePlanError(
            f"{source} is stale: the tenant changed since it was made (state fingerprint "
            f"{plan.state_fingerprint[:19]}... is now {fingerprint[:19]}...){hint}. Run `reconciler plan` "
            f"again, review the new plan and apply that one{wait}"
        )
    check_blocked(plan, force=force, source=source)


def check_blocked(plan: Plan, *, force: bool = False, source: str = "the plan") -> None:
    """Refuse a plan with blocking violations unless forced (by plan --force or apply --force);
    policy errors block always."""
    blocking = plan.blocking_violations
    policy_errors = [v for v in blocking if v.code in POLICY_CODES]
    if policy_errors:
        codes = ", ".join(sorted({v.code for v in policy_errors}))
        raise BlockedPlanError(
            f"{source} has policy errors ({codes}) that block even with --force; fix the policy and plan again"
        )
    if blocking and not (plan.forced or force):
        codes = ", ".join(sorted({v.code for v in blocking}))
        raise BlockedPlanError(
            f"{source} has {len(blocking)} blocking violation{'s' if len(blocking) != 1 else ''} ({codes}); "
            "fix them, or accept them with --force"
        )


# --------------------------------------------------------------------------- results


@dataclass
class ApplyResult:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # groups changed since the plan (lost update)
    pending: list[str] = field(default_factory=list)  # still processing when the wait timed out
    notes: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # placeholder -> new group id
    reprocessed: int = 0
    # users whose reprocess Graph answered with a licensing error: delivered, the cause not fixed
    still_in_error: list[str] = field(default_factory=list)
    waited: bool = False
    verified: bool = False

    @property
    def exit_code(self) -> int:
        if self.failed or self.pending:
            return EXIT_RUNTIME
        if self.conflicts:
            return EXIT_STALE
        return EXIT_OK

    def render(self) -> str:
        lines: list[str] = []
        if self.done:
            lines.append("Done:")
            by_kind: dict[str, list[str]] = {}
            for item in self.done:
                by_kind.setdefault(item.split(" ", 1)[0], []).append(item)
            for kind, items in by_kind.items():
                if kind in USER_KINDS and len(items) > 5:
                    # one line per kind for user-level writes (there may be thousands)
                    shown = ", ".join(i.rsplit(" ", 1)[-1] for i in items[:3])
                    lines.append(f"  + {kind}: {len(items)} users ({shown}, ...)")
                else:
                    lines += [f"  + {i}" for i in items]
        if self.conflicts:
            lines.append("Changed since the plan (not written, plan again):")
            lines += [f"  ! {c}" for c in self.conflicts]
        if self.failed:
            lines.append("Failed:")
            lines += [f"  x {f}" for f in self.failed]
        if self.skipped:
            lines.append("Skipped:")
            lines += [f"  - {s}" for s in self.skipped]
        if self.pending:
            lines.append("Still processing when the wait timed out:")
            lines += [f"  ... {p}" for p in self.pending]
        if self.still_in_error:
            lines.append("Reprocessed, still in error (Entra's reason):")
            lines += [f"  ! {s}" for s in self.still_in_error]
        if self.differences:
            lines.append(f"Differences from the prediction ({len(self.differences)} users):")
            for d in self.differences:
                lines += ["  " + line for line in d.render().splitlines()]
        for note in self.notes:
            lines.append(note)
        verdict = "Apply complete" if self.exit_code == EXIT_OK else "Apply finished with problems"
        extra = f", {len(self.conflicts)} group{'s' if len(self.conflicts) != 1 else ''} changed" if self.conflicts else ""
        lines.append(
            f"{verdict}: {len(self.done)} done, {len(self.failed)} failed, {len(self.skipped)} skipped{extra}"
            + (f", {self.reprocessed} users reprocessed" if self.reprocessed else "")
            + (
                f"; verified: {'matches the prediction' if not self.differences else f'{len(self.differences)} differences'}"
                if self.verified
                else ""
            )
            + "."
        )
        return "\n".join(lines) + "\n"


@dataclass
class ApplyOptions:
    wait: bool = True
    timeout: float = DEFAULT_TIMEOUT
    poller: Poller | None = None
    progress: ProgressCallback | bool | None = None  # None: rich on a terminal
    say: Callable[[str], None] | None = None  # progress lines (stderr by default)
    audit: AuditLog | None = None  # labels writes with their action kind and target
    # test hook: called with the group id right before its licenses are re-read and written
    before_group_write: Callable[[str], None] | None = None


def _stderr(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- the executor


def _licenses(raw: Any) -> frozenset[License]:
    return frozenset(group_from_graph({"id": "x", "assignedLicenses": raw}, (), set()).licenses)


class _Executor:
    def __init__(self, client: GraphClient, plan: Plan, state: TenantState, options: ApplyOptions) -> None:
        self.client = client
        self.plan = plan
        self.state = state
        self.opt = options
        self.say = options.say or _stderr
        self.result = ApplyResult()
        self.ids: dict[str, str] = {}  # placeholder -> created group id
        self.failed_groups: set[str] = set()  # placeholders whose creation failed
        self.touched_groups: set[str] = set()  # group ids whose processing this apply triggered
        self.unsettled = False  # groups were touched since the last wait
        self.last_read: dict[str, Any] = {}  # users as the last wait read them
        # UPNs (casefolded) whose new assignment or membership of this apply was not written
        self.unwritten: set[str] = set()
        self.poller = options.poller or Poller()
        self.deadline: float | None = None
        self.reprocess_targets = {
            a.user.id for a in plan.actions if a.kind == "reprocess" and a.user is not None and a.user.id
        }

    # -- helpers
    def resolve(self, text: str) -> str:
        if "{new:" not in text:
            return text
        for placeholder, gid in self.ids.items():
            text = text.replace(placeholder, gid)
        return text

    def blocked_by_creation(self, a: Action) -> str | None:
        for placeholder in self.failed_groups:
            if placeholder in a.request.url:
                return placeholder[len("{new:") : -1]
        return None

    @staticmethod
    def describe(a: Action) -> str:
        parts = [a.kind]
        if a.group is not None:
            parts.append(a.group.name)
        if a.sku:
            parts.append(a.sku)
        if a.user is not None:
            parts.append(a.user.name)
        return " ".join(parts)

    @staticmethod
    def target(a: Action) -> str:
        if a.user is not None:
            return f"user {a.user.name} ({a.user.id})"
        if a.group is not None:
            return f"group {a.group.name}" + (f" ({a.group.id})" if a.group.id else "")
        return ""

    def label(self, method: str, url: str, kind: str, target: str) -> None:
        if self.opt.audit is not None:
            self.opt.audit.expect(method, url, kind, target)

    def group_id_of(self, a: Action) -> str:
        # /groups/{id}/assignLicense or /groups/{id}/members/...
        url = self.resolve(a.request.url)
        return url.split("/")[2].lower()

    def deadline_left(self) -> float:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.opt.timeout
        return self.deadline

    def progress_cm(self) -> AbstractContextManager[ProgressCallback | None]:
        if self.opt.progress is None:
            from reconciler.graph.observe import rich_progress

            return rich_progress()
        if callable(self.opt.progress):
            return nullcontext(self.opt.progress)
        return nullcontext(None)

    # -- steps
    def run(self) -> ApplyResult:
        actions = self.plan.actions
        creates = [a for a in actions if a.kind == "createGroup"]
        locations = [a for a in actions if a.kind == "setUsageLocation"]
        members_in = [a for a in actions if a.kind == "addMember"]
        license_requests = self.license_requests(actions)
        adding = [(k, acts) for k, acts in license_requests if any(a.kind in ADDING_KINDS for a in acts)]
        removing = [(k, acts) for k, acts in license_requests if not any(a.kind in ADDING_KINDS for a in acts)]
        direct = [a for a in actions if a.kind == "removeDirectLicense"]
        members_out = [a for a in actions if a.kind == "removeMember"]
        reprocess = [a for a in actions if a.kind == "reprocess"]

        for a in creates:
            self.create_group(a)
        # usage locations first: adding a member to a licensed group starts its processing at once
        self.send_small(locations, "Setting usage locations")
        self.send_small(members_in, "Adding members")
        self.group_requests(adding)
        needs_wait = self.opt.wait and self.unsettled and (direct or removing or members_out)
        # mid-way, only the users about to lose something need their new assignments settled
        at_risk = {a.user.id for a in [*direct, *members_out] if a.user is not None and a.user.id}
        if removing:
            at_risk |= self.user_ids({u for _, acts in removing for a in acts for u in a.users})
        if needs_wait and not self.wait("the new assignments", users=at_risk):
            self.skip_rest(direct, removing, members_out, reprocess, reason="the wait for processing timed out")
            return self.result
        if direct:
            if self.opt.wait:
                self.remove_direct(direct)
            else:
                for a in direct:
                    self.result.skipped.append(f"{self.describe(a)}: --no-wait (a direct license is removed only "
                                               "after group processing shows the inherited one Active)")
        removing, members_out = self.defer_risky_removals(adding, removing, members_out)
        self.group_requests(removing)
        self.send_small(members_out, "Removing members")
        if not self.opt.wait:
            self.send_reprocess(reprocess, [])
            if self.touched_groups:
                self.result.notes.append(
                    "--no-wait: Entra is still processing the groups; run `reconciler plan` later to check the outcome."
                )
            return self.result
        if self.unsettled and not self.wait("the changes", users=self.affected_users(), final=True):
            self.skip_rest(reprocess, reason="the wait for processing timed out")
            return self.result
        affected = self.affected_users()
        # the final wait has just read them (each user once more only if it had to)
        users = {uid: u for uid, u in self.last_read.items() if uid in affected}
        missing = affected - set(users)
        if missing:
            users.update(read_users(self.client, missing, sample_upns=self.sample_upns))
        resolved = self.resolved_errors(users)
        if reprocess or resolved:
            self.send_reprocess(reprocess, resolved)
            again = {a.user.id for a in reprocess if a.user is not None and a.user.id} | set(resolved)
            outcome = self.wait_users(again)
            users.update(outcome.users)
        self.result.differences = verify(self.plan, users, self.state, self.ids)
        self.result.verified = True
        self.result.waited = True
        return self.result

    def skip_rest(self, *groups: Sequence[Any], reason: str) -> None:
        """Report every action of ``groups`` (actions, or (key, actions) pairs) as skipped."""
        for group in groups:
            for item in group:
                acts = item[1] if isinstance(item, tuple) else [item]
                for a in acts:
                    self.result.skipped.append(f"{self.describe(a)}: {reason}")

    def defer_risky_removals(
        self,
        adding: list[tuple[str, list[Action]]],
        removing: list[tuple[str, list[Action]]],
        members_out: list[Action],
    ) -> tuple[list[tuple[str, list[Action]]], list[Action]]:
        """Removals (groups losing licenses, members leaving) for users whose new assignment in this
        apply is not in place are left to the next plan: with --no-wait every user who gets one
        (Entra could process the removal first); otherwise those whose new assignment or membership
        was not written (failed, skipped, changed meanwhile)."""
        if self.opt.wait:
            risky = self.unwritten
            reason = "its users' new assignment in this apply was not written; kept so nobody loses service"
        else:
            risky = {u.casefold() for _, acts in adding for a in acts for u in a.users}
            risky |= {a.user.name.casefold() for a in self.plan.actions if a.kind == "addMember" and a.user}
            reason = (
                "--no-wait: its users get a new assignment in this apply, and a removal is made only once "
                "that is processed (apply with --wait, or plan and apply again later)"
            )
        if not risky:
            return removing, members_out
        kept: list[tuple[str, list[Action]]] = []
        for key, acts in removing:
            if any(u.casefold() in risky for a in acts for u in a.users):
                self.result.skipped.extend(f"{self.describe(a)}: {reason}" for a in acts)
            else:
                kept.append((key, acts))
        out: list[Action] = []
        for a in members_out:
            if a.user is not None and a.user.name.casefold() in risky:
                self.result.skipped.append(f"{self.describe(a)}: {reason}")
            else:
                out.append(a)
        return kept, out

    def license_requests(self, actions: Sequence[Action]) -> list[tuple[str, list[Action]]]:
        out: dict[str, list[Action]] = {}
        for i, a in enumerate(actions):
            if a.kind in LICENSE_KINDS:
                out.setdefault(a.request_key or f"#{i}", []).append(a)
        return list(out.items())

    def create_group(self, a: Action) -> None:
        body = dict(a.request.body or {})
        name = str(body.get("displayName") or (a.group.name if a.group else ""))
        placeholder = "{new:" + name + "}"
        self.label("POST", a.request.url, a.kind, f"group {name}")
        gid: str | None = None
        for attempt in range(3):
            try:
                created = self.client.post(a.request.url, json=body)
                gid = str(created["id"]).lower()
                break
            except GraphError as exc:
                # the answer may be lost after the group was created (a dropped connection, a 5xx):
                # look for it before creating it again, never create it twice
                lost = exc.status is None or exc.status >= 500
                gid = self.find_group(name) if lost else None
                if gid is not None:
                    break
                if not lost or attempt == 2:
                    self.failed_groups.add(placeholder)
                    self.result.failed.append(f"{self.describe(a)}: {exc}")
                    return
        assert gid is not None
        self.ids[placeholder] = gid
        self.result.created[placeholder] = gid
        self.result.done.append(f"{self.describe(a)} (id {gid})")
        self.say(f"created group {name} ({gid})")

    def find_group(self, name: str) -> str | None:
        """The id of the group named ``name`` if exactly one exists (a create whose answer was lost)."""
        try:
            found = self.client.groups_named(name, ("id",))
        except GraphError:
            return None
        return str(found[0]["id"]).lower() if len(found) == 1 else None

    def send_small(self, actions: Sequence[Action], stage: str) -> None:
        """addMember / setUsageLocation / removeMember through $batch (idempotent: a member already
        there, or already gone, counts as done)."""
        todo: list[tuple[Action, BatchRequest]] = []
        for a in actions:
            blocked = self.blocked_by_creation(a)
            if blocked is not None:
                self.result.skipped.append(f"{self.describe(a)}: group {blocked} was not created")
                self.note_unwritten(a)
                continue
            url = self.resolve(a.request.url)
            body = a.request.body
            if a.kind == "addMember" and body is not None:
                body = {k: self.resolve(str(v)) for k, v in body.items()}
            self.label(a.request.method, url, a.kind, self.target(a))
            todo.append((a, BatchRequest(f"r{len(todo)}", a.request.method, url, body=body)))
        if not todo:
            return
        self.say(f"{stage}: {len(todo)} requests")
        try:
            responses = self.client.batch([r for _, r in todo], idempotent=True)
        except GraphError as exc:
            for a, _ in todo:
                self.result.failed.append(f"{self.describe(a)}: {exc}")
                self.note_unwritten(a)
            return
        for (a, req), res in zip(todo, responses, strict=True):
            if res.ok or self.already_done(a, res):
                self.result.done.append(self.describe(a))
                if a.kind in ("addMember", "removeMember"):
                    self.touched_groups.add(self.group_id_of(a))
                    self.unsettled = True
            else:
                self.result.failed.append(f"{self.describe(a)}: {self.error_text(req, res)}")
                self.note_unwritten(a)

    def note_unwritten(self, a: Action) -> None:
        if a.kind == "addMember" and a.user is not None:
            self.unwritten.add(a.user.name.casefold())

    @staticmethod
    def already_done(a: Action, res: BatchResponse) -> bool:
        text = str(res.body)
        if a.kind == "addMember":
            return res.status == 400 and "already exist" in text
        if a.kind == "removeMember":
            return res.status == 404
        return False

    def error_text(self, req: BatchRequest, res: BatchResponse) -> str:
        try:
            self.client.check(req, res)
        except GraphError as exc:
            return str(exc)
        return f"status {res.status}"

    def group_requests(self, requests: Sequence[tuple[str, list[Action]]]) -> None:
        """Group ``assignLicense`` requests: every group's licenses are read again (one $batch),
        a group whose licenses changed since the plan is skipped (no lost update), and the others
        are written (one $batch: Entra queues each group on its own, so writing them together
        lets its processing of them overlap instead of one group after the other)."""
        todo: list[tuple[list[Action], str, str, frozenset[License]]] = []  # acts, group id, url, expected
        for _key, acts in requests:
            a0 = acts[0]
            blocked = self.blocked_by_creation(a0)
            if blocked is not None:
                for a in acts:
                    self.result.skipped.append(f"{self.describe(a)}: group {blocked} was not created")
                self.note_unwritten_group(acts)
                continue
            gid = self.group_id_of(a0)
            live = self.state.groups.get(gid)
            todo.append((acts, gid, self.resolve(a0.request.url), frozenset(live.licenses) if live else frozenset()))
        if not todo:
            return
        if self.opt.before_group_write is not None:
            for _acts, gid, _url, _expected in todo:
                self.opt.before_group_write(gid)
        # right before the writes, the licenses as they are now
        reads = [BatchRequest(f"g{i}", "GET", f"/groups/{gid}?$select=id,assignedLicenses") for i, (_, gid, _, _) in enumerate(todo)]
        try:
            answers = self.client.batch(reads)
        except GraphError as exc:
            for acts, _gid, _url, _expected in todo:
                self.result.failed.extend(f"{self.describe(a)}: cannot read the group's licenses first: {exc}" for a in acts)
                self.note_unwritten_group(acts)
            return
        writes: list[tuple[list[Action], str, BatchRequest]] = []
        expected_of = {gid: expected for _acts, gid, _url, expected in todo}
        for (acts, gid, url, expected), req, res in zip(todo, reads, answers, strict=True):
            what = ", ".join(f"{a.kind} {a.sku}" for a in acts)
            gname = acts[0].group.name if acts[0].group else "?"
            if not res.ok:
                why = self.error_text(req, res)
                self.result.failed.extend(f"{self.describe(a)}: cannot read the group's licenses first: {why}" for a in acts)
                self.note_unwritten_group(acts)
                continue
            now = _licenses(res.body.get("assignedLicenses") if isinstance(res.body, Mapping) else None)
            if now != expected:
                self.result.conflicts.append(
                    f"{gname} ({gid}): its licenses changed since the plan was made "
                    f"({self.describe_licenses(expected)} -> {self.describe_licenses(now)}); not changed ({what}). "
                    "Plan again to see the change against the current licenses"
                )
                self.say(f"skipped {gname}: its licenses changed since the plan")
                self.note_unwritten_group(acts)
                continue
            self.label("POST", url, "+".join(dict.fromkeys(a.kind for a in acts)), f"group {gname} ({gid})")
            writes.append((acts, gid, BatchRequest(f"w{len(writes)}", "POST", url, body=dict(acts[0].request.body or {}))))
        if not writes:
            return
        try:
            results = self.client.batch([req for _, _, req in writes], idempotent=True)
        except GraphError as exc:
            for acts, _gid, _req in writes:
                self.result.failed.extend(f"{self.describe(a)}: {exc}" for a in acts)
                self.note_unwritten_group(acts)
            return
        refused = [(acts, gid, req, res) for (acts, gid, req), res in zip(writes, results, strict=True) if not res.ok]
        landed = self.landed_group_writes([(gid, req, expected_of[gid]) for _acts, gid, req, _res in refused])
        for (acts, gid, req), res in zip(writes, results, strict=True):
            if not res.ok and gid not in landed:
                why = self.error_text(req, res)
                self.result.failed.extend(f"{self.describe(a)}: {why}" for a in acts)
                self.note_unwritten_group(acts)
                continue
            self.touched_groups.add(gid)
            self.unsettled = True
            self.result.done.extend(self.describe(a) for a in acts)
            gname = acts[0].group.name if acts[0].group else "?"
            self.say(f"{gname}: {', '.join(f'{a.kind} {a.sku}' for a in acts)} (queued for processing)")

    def landed_group_writes(self, refused: Sequence[tuple[str, BatchRequest, frozenset[License]]]) -> set[str]:
        """Groups whose refused write is in fact done: a write re-sent after its answer was lost
        is refused the second time (a removal: "User does not have a corresponding license."), so
        the group is read again and counts as written when it holds what the write asked for."""
        if not refused:
            return set()
        reads = [BatchRequest(f"a{i}", "GET", f"/groups/{gid}?$select=id,assignedLicenses") for i, (gid, _, _) in enumerate(refused)]
        try:
            answers = self.client.batch(reads)
        except GraphError:
            return set()
        landed = set()
        for (gid, req, before), res in zip(refused, answers, strict=True):
            if not res.ok or not isinstance(res.body, Mapping):
                continue
            body = req.body if isinstance(req.body, Mapping) else {}
            removed = {str(s).lower() for s in body.get("removeLicenses") or ()}
            wanted = {lic.sku_id: lic for lic in before if lic.sku_id not in removed}
            for lic in _licenses(body.get("addLicenses") or []):
                wanted[lic.sku_id] = lic
            if _licenses(res.body.get("assignedLicenses")) == frozenset(wanted.values()) and frozenset(wanted.values()) != before:
                landed.add(gid)
        return landed

    def note_unwritten_group(self, acts: Sequence[Action]) -> None:
        """A group request that adds or changes licenses was not written: its users' removals wait."""
        if any(a.kind in ADDING_KINDS for a in acts):
            self.unwritten.update(u.casefold() for a in acts for u in a.users)

    def describe_licenses(self, lics: Iterable[License]) -> str:
        parts = []
        for lic in sorted(lics):
            sku = self.state.skus.get(lic.sku_id)
            name = sku.part_number if sku is not None else lic.sku_id
            parts.append(name + (f" ({len(lic.disabled_plans)} plans off)" if lic.disabled_plans else ""))
        return ", ".join(parts) or "none"

    def affected_users(self) -> set[str]:
        out = set(self.plan.prediction)
        for a in self.plan.actions:
            if a.user is not None and a.user.id:
                out.add(a.user.id)
        return out

    def user_ids(self, upns: set[str]) -> set[str]:
        by_upn = {u.user_principal_name.lower(): u.id for u in self.state.users.values()}
        return {by_upn[x.lower()] for x in upns if x.lower() in by_upn}

    def wait(self, what: str, *, users: set[str], final: bool = False) -> bool:
        deadline = self.deadline_left()
        self.say(f"waiting for Entra to process {what} ({len(self.touched_groups)} groups, {len(users)} users)")
        with self.progress_cm() as progress:
            outcome: WaitResult = wait_for_processing(
                self.client,
                self.touched_groups,
                users,
                deadline=deadline,
                # mid-way the users are not yet as predicted: wait until they stop changing
                expected=expected_keys(self.plan, self.ids) if final else None,
                poller=self.poller,
                progress=progress,
                sample_upns=self.sample_upns,
                # no need to see these settle first: they are reprocessed, then waited for again
                handed_over=self.reprocessed_next if final else None,
            )
        self.unsettled = False
        # only the final wait's reads are current at verification (no write comes after it)
        self.last_read = dict(outcome.users) if final and outcome.complete else {}
        for gid in outcome.failed_groups:
            self.result.failed.append(f"group {self.group_name(gid)}: licenseProcessingState ProcessingFailed")
        if outcome.complete:
            return True
        for gid in outcome.pending_groups:
            self.result.pending.append(f"group {self.group_name(gid)} ({gid}): still processing")
        for uid in outcome.pending_users:
            self.result.pending.append(f"user {self.upn(uid)}: license states still changing")
        return False

    def wait_users(self, user_ids: set[str]) -> WaitResult:
        with self.progress_cm() as progress:
            return wait_for_processing(
                self.client,
                (),
                user_ids,
                deadline=self.deadline_left(),
                expected=expected_keys(self.plan, self.ids),
                poller=self.poller,
                progress=progress,
                sample_upns=self.sample_upns,
            )

    @cached_property
    def sample_upns(self) -> list[str]:
        """The observed users' UPNs: they balance the parallel listings of a large user read."""
        return [u.user_principal_name for u in self.state.users.values()]

    def group_name(self, gid: str) -> str:
        g = self.state.groups.get(gid)
        if g is not None:
            return g.display_name
        for placeholder, new in self.ids.items():
            if new == gid:
                return placeholder[len("{new:") : -1]
        return gid

    def upn(self, uid: str) -> str:
        u = self.state.users.get(uid)
        return u.user_principal_name if u is not None else uid

    def remove_direct(self, actions: Sequence[Action]) -> None:
        """Remove direct licenses only where the inherited assignment is now Active without error
        and enables at least the same plans (users read again first)."""
        uids = {a.user.id for a in actions if a.user is not None and a.user.id}
        users = read_users(self.client, uids, sample_upns=self.sample_upns)
        todo: list[tuple[Action, BatchRequest]] = []
        for a in actions:
            uid = a.user.id if a.user is not None else None
            body = a.request.body or {}
            removes = list(body.get("removeLicenses") or [])
            user = users.get(uid or "")
            if uid is None or user is None or len(removes) != 1:
                self.result.skipped.append(f"{self.describe(a)}: the user no longer exists")
                continue
            sku_id = str(removes[0]).lower()
            direct = [s for s in user.license_states if s.sku_id == sku_id and s.assigned_by_group is None]
            if not direct:
                self.result.done.append(f"{self.describe(a)} (already gone)")
                continue
            sku = self.state.skus.get(sku_id)
            plan_ids = frozenset(sku.plan_ids) if sku is not None else frozenset()
            direct_on = plan_ids - direct[0].disabled_plans
            covering = [
                s
                for s in user.license_states
                if s.sku_id == sku_id
                and s.assigned_by_group is not None
                and s.state == ACTIVE
                and s.error == NO_ERROR
                and direct_on <= plan_ids - s.disabled_plans
            ]
            if not covering:
                self.result.skipped.append(
                    f"{self.describe(a)}: no group gives {a.sku} Active without error with at least the same plans "
                    "yet; kept (plan again later)"
                )
                continue
            self.label("POST", a.request.url, a.kind, self.target(a))
            todo.append((a, BatchRequest(f"d{len(todo)}", "POST", a.request.url, body=dict(body))))
        if not todo:
            return
        self.say(f"Removing {len(todo)} redundant direct licenses")
        try:
            responses = self.client.batch([r for _, r in todo], idempotent=True)
        except GraphError as exc:
            for a, _ in todo:
                self.result.failed.append(f"{self.describe(a)}: {exc}")
            return
        retry_check: list[tuple[Action, BatchRequest, BatchResponse]] = []
        for (a, req), res in zip(todo, responses, strict=True):
            if res.ok:
                self.result.done.append(self.describe(a))
            else:
                retry_check.append((a, req, res))
        if retry_check:
            # a removal sent twice (its first answer lost) fails the second time: check the user
            again = read_users(
                self.client,
                {a.user.id for a, _, _ in retry_check if a.user and a.user.id},
                sample_upns=self.sample_upns,
            )
            for a, req, res in retry_check:
                sku_id = str((req.body or {}).get("removeLicenses", [""])[0]).lower()
                user = again.get(a.user.id if a.user and a.user.id else "")
                if user is not None and not any(
                    s.sku_id == sku_id and s.assigned_by_group is None for s in user.license_states
                ):
                    self.result.done.append(f"{self.describe(a)} (already gone)")
                else:
                    self.result.failed.append(f"{self.describe(a)}: {self.error_text(req, res)}")

    def resolved_errors(self, users: Mapping[str, User]) -> list[str]:
        """Users whose errors the plan says are gone but Entra still records: reprocess them."""
        return sorted(uid for uid, user in users.items() if self.has_resolved_error(user))

    def has_resolved_error(self, user: User) -> bool:
        predicted = {
            (p.sku_id, self.ids.get(p.assigned_by_group, p.assigned_by_group) if p.assigned_by_group else None): p
            for p in self.plan.prediction.get(user.id, ())
        }
        for s in user.license_states:
            p = predicted.get((s.sku_id, s.assigned_by_group))
            if s.error != NO_ERROR and p is not None and p.error == NO_ERROR:
                return True
        return False

    def reprocessed_next(self, user: User) -> bool:
        """A user the final wait hands over as it is: reprocessed right after it (a plan's reprocess
        action, or an error the plan resolves), then waited for again until its states settle."""
        return user.id in self.reprocess_targets or self.has_resolved_error(user)

    def send_reprocess(self, actions: Sequence[Action], resolved: Sequence[str]) -> None:
        targets: dict[str, str] = {}
        for a in actions:
            if a.user is not None and a.user.id:
                targets[a.user.id] = a.reason
        for uid in resolved:
            targets.setdefault(uid, "its errors are resolved by this apply; Entra re-evaluates them when asked")
        if not targets:
            return
        reqs = []
        for i, uid in enumerate(sorted(targets)):
            url = f"/users/{uid}/reprocessLicenseAssignment"
            self.label("POST", url, "reprocess", f"user {self.upn(uid)} ({uid})")
            reqs.append(BatchRequest(f"p{i}", "POST", url))
        self.say(f"Reprocessing {len(reqs)} users")
        try:
            responses = self.client.batch(reqs, idempotent=True)
        except GraphError as exc:
            self.result.failed.extend(f"reprocess {self.upn(uid)}: {exc}" for uid in sorted(targets))
            return
        for uid, req, res in zip(sorted(targets), reqs, responses, strict=True):
            refusal = None if res.ok else licensing_refusal(res.status, res.body)
            if res.ok:
                self.result.reprocessed += 1
                self.result.done.append(f"reprocess {self.upn(uid)}")
            elif refusal is not None:
                # delivered and evaluated, but the cause is not fixed: the verification reports the
                # user's states; it is not a failed write
                self.result.reprocessed += 1
                self.result.still_in_error.append(f"{self.upn(uid)}: {with_names(refusal, self.id_names())}")
            else:
                self.result.failed.append(f"reprocess {self.upn(uid)}: {self.error_text(req, res)}")

    def id_names(self) -> dict[str, str]:
        """SKU and plan id -> name, from the tenant the plan was checked against."""
        out: dict[str, str] = {}
        for sku in self.state.skus.values():
            out[sku.sku_id] = sku.part_number
            for p in sku.service_plans:
                if p.name:
                    out[p.plan_id] = p.name
        return out


def apply_plan(client: GraphClient, plan: Plan, state: TenantState, options: ApplyOptions | None = None) -> ApplyResult:
    """Carry out ``plan`` (already checked against ``state`` with check_plan) in the safe order."""
    return _Executor(client, plan, state, options or ApplyOptions()).run()
