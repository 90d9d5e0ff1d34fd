"""The emulated tenant's durable state: SQLite (WAL) with an in-memory cache.

The database is the source of truth: every write goes to SQLite inside one
``BEGIN IMMEDIATE`` transaction while the store's lock is held, and the
in-memory model (used for fast reads, filters and licensing computations) is
rebuilt from the database when an existing file is opened. One process owns a
database at a time; within it any number of threads may read and write.

Licensing decisions are never made here: ``reconciler.emulator.processing``
turns the model into a ``licensing.LicensingInput`` and runs
``licensing.compute`` / the ``check_*`` functions.

Group processing follows Entra: a group's license or membership change marks
the group ``QueuedForProcessing``; the users see the change only when the
group is processed (``process_due`` / ``drain``), which records the group's
*applied* licenses and members. Every computation uses the applied view of
every group, so the result always equals a full recompute of that view.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.licensing import AssignmentState, License, Rules

FORMAT_VERSION = "1"
QUEUED = "QueuedForProcessing"
IN_PROGRESS = "ProcessingInProgress"
COMPLETE = "ProcessingComplete"
GRAPH_DATE = "%Y-%m-%dT%H:%M:%SZ"

# Properties computed by the emulator or kept in their own tables, never in the raw object.
_USER_COMPUTED = ("assignedLicenses", "licenseAssignmentStates", "assignedPlans", "@odata.type")
_GROUP_COMPUTED = (
    "assignedLicenses",
    "members",
    "licenseProcessingState",
    "hasMembersWithLicenseErrors",
    "@odata.type",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS skus (sku_id TEXT PRIMARY KEY, pos INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, upn TEXT NOT NULL, pos INTEGER NOT NULL, data TEXT NOT NULL,
    assigned TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS direct_licenses (
    user_id TEXT NOT NULL, sku_id TEXT NOT NULL, disabled_plans TEXT NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (user_id, sku_id));
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY, pos INTEGER NOT NULL, data TEXT NOT NULL, processing_state TEXT NOT NULL,
    due_at REAL, applied TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS group_licenses (
    group_id TEXT NOT NULL, sku_id TEXT NOT NULL, disabled_plans TEXT NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (group_id, sku_id));
CREATE TABLE IF NOT EXISTS members (
    group_id TEXT NOT NULL, member_id TEXT NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (group_id, member_id));
CREATE TABLE IF NOT EXISTS license_states (
    user_id TEXT NOT NULL, sku_id TEXT NOT NULL, assigned_by_group TEXT NOT NULL,
    disabled_plans TEXT NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL, last_updated TEXT NOT NULL,
    PRIMARY KEY (user_id, sku_id, assigned_by_group));
CREATE TABLE IF NOT EXISTS applications (app_id TEXT PRIMARY KEY, pos INTEGER NOT NULL, data TEXT NOT NULL);
"""


class StoreError(Exception):
    """A request the tenant refuses; carries Graph's status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class StoreBusyError(ReconcilerError):
    """The database is held by another process (or another open Store): one owner at a time."""


def _claim(path: str) -> int | None:
    """An exclusive lock on `<path>.lock` for as long as the store is open (POSIX)."""
    if path == ":memory:":
        return None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreBusyError(
            f"{path}: the emulator database is in use by another process; stop that emulator (or command) first"
        ) from None
    return fd


def _release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor drops its flock


def not_found(object_id: str) -> StoreError:
    return StoreError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
    )


def bad_request(message: str) -> StoreError:
    return StoreError(400, "Request_BadRequest", message)


def seed_digest(seed: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of a seed: tells whether a database came from this seed."""
    text = json.dumps(seed, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def graph_now(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime(GRAPH_DATE)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _plans_text(plans: Iterable[str]) -> str:
    return ",".join(sorted(plans))


_PLAN_SETS: dict[str, frozenset[str]] = {}
_LICENSES: dict[str, License] = {}


def _plans_parse(text: str) -> frozenset[str]:
    """Parse a comma-joined plan list; equal lists share one frozenset (big tenants repeat them)."""
    found = _PLAN_SETS.get(text)
    if found is None:
        found = frozenset(text.split(",")) if text else frozenset()
        if len(_PLAN_SETS) < 100_000:
            _PLAN_SETS[text] = found
    return found


def _assigned_text(lics: Iterable[License]) -> str:
    return ";".join(f"{x.sku_id}|{_plans_text(x.disabled_plans)}" for x in lics)


def _assigned_parse(text: str) -> tuple[License, ...]:
    out = []
    for item in text.split(";") if text else ():
        lic = _LICENSES.get(item)
        if lic is None:
            sku, _, plans = item.partition("|")
            lic = License(sku, _plans_parse(plans))
            if len(_LICENSES) < 100_000:
                _LICENSES[item] = lic
        out.append(lic)
    return tuple(out)


def _lic_json(lic: License) -> dict[str, Any]:
    return {"disabledPlans": sorted(lic.disabled_plans), "skuId": lic.sku_id}


def _license_from_json(item: Mapping[str, Any]) -> License:
    return License(
        sku_id=str(item["skuId"]).lower(),
        disabled_plans=frozenset(str(p).lower() for p in item.get("disabledPlans") or ()),
    )


_SORTED_PLANS: dict[frozenset[str], tuple[str, ...]] = {}


_LICENSE_VIEWS: dict[License, dict[str, Any]] = {}


def license_view(lic: License) -> dict[str, Any]:
    """A license as Graph's `assignedLicense`, made once per distinct license and shared: for
    responses only, never to be changed (a tenant holds a few hundred distinct licenses)."""
    view = _LICENSE_VIEWS.get(lic)
    if view is None:
        if len(_LICENSE_VIEWS) >= 20_000:
            _LICENSE_VIEWS.clear()
        view = _LICENSE_VIEWS[lic] = {"disabledPlans": sorted_plans(lic.disabled_plans), "skuId": lic.sku_id}
    return view


def sorted_plans(plans: frozenset[str]) -> list[str]:
    """`sorted(plans)`, each distinct set sorted once (users share a few hundred sets; pages render
    thousands of them)."""
    got = _SORTED_PLANS.get(plans)
    if got is None:
        if len(_SORTED_PLANS) >= 20_000:
            _SORTED_PLANS.clear()
        got = _SORTED_PLANS[plans] = tuple(sorted(plans))
    return list(got)


@dataclass(frozen=True)
class StateRecord:
    """A computed licenseAssignmentState with the time it last changed."""

    state: AssignmentState
    last_updated: str

    def graph_view(self) -> dict[str, Any]:
        """`to_graph()` made once per record and shared: for responses only, never to be changed
        (a listing of 100,000 users renders each record's state once per page it is on)."""
        view: dict[str, Any] | None = self.__dict__.get("_view")
        if view is None:
            view = self.to_graph()
            self.__dict__["_view"] = view  # frozen dataclass: the cache goes around __setattr__
        return view

    def to_graph(self) -> dict[str, Any]:
        s = self.state
        return {
            "assignedByGroup": s.assigned_by_group,
            "disabledPlans": sorted_plans(s.disabled_plans),
            "error": s.error,
            "lastUpdatedDateTime": self.last_updated,
            "skuId": s.sku_id,
            "state": s.state,
        }


@dataclass
class UserRecord:
    id: str
    data: dict[str, Any]  # Graph properties as given (id, userPrincipalName, usageLocation, ...)
    direct: dict[str, License] = field(default_factory=dict)  # sku id -> direct assignment
    states: tuple[StateRecord, ...] = ()
    assigned: tuple[License, ...] = ()  # effective licenses (from the last computation)
    licensing: Any = None  # processing's cached licensing.LicensingUser; None after any change

    @property
    def upn(self) -> str:
        return str(self.data.get("userPrincipalName") or "")


@dataclass
class GroupRecord:
    id: str
    data: dict[str, Any]
    licenses: dict[str, License] = field(default_factory=dict)
    members: dict[str, None] = field(default_factory=dict)  # ordered set of member ids
    processing_state: str = COMPLETE
    due_at: float | None = None
    applied_licenses: tuple[License, ...] = ()
    applied_members: tuple[str, ...] = ()
    applied_security: bool = True

    @property
    def security_enabled(self) -> bool:
        return bool(self.data.get("securityEnabled", True))

    @property
    def display_name(self) -> str:
        return str(self.data.get("displayName") or "")


@dataclass
class Counters:
    positions: int = 0


class Store:
    """The tenant. Use ``Store.create``, ``Store.open`` or ``Store.open_or_create``."""

    def __init__(
        self, conn: sqlite3.Connection, path: str, clock: Callable[[], float], lock_fd: int | None = None
    ) -> None:
        self._conn = conn
        self._lock_fd = lock_fd
        self.path = path
        self.clock = clock
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified when processing is queued
        self.rules: Rules = Rules()
        self._digest = ""
        self.organization: dict[str, Any] = {}
        self.emulator: dict[str, Any] = {}
        self.skus: dict[str, dict[str, Any]] = {}
        self.consumed: dict[str, int] = {}
        self.users: dict[str, UserRecord] = {}
        self.upn_index: dict[str, str] = {}
        self.user_order: list[str] = []  # sorted ids, for keyset paging
        self.groups: dict[str, GroupRecord] = {}
        self.group_order: list[str] = []
        self.member_of: dict[str, dict[str, None]] = {}
        self.applications_: list[dict[str, Any]] = []
        self._pos = 0
        self.version = 0  # bumped on every committed write
        self._upn_sorted: tuple[int, list[tuple[str, str]]] | None = None
        self._prefix_cache: dict[tuple[str, ...], tuple[int, list[str]]] = {}
        self.delay_override: float | None = None
        # False: every recomputation covers the whole tenant (tests compare both ways)
        self.partial_recompute = True
        # SMTP proxy address -> objects holding it (built on first use, then kept up to date)
        self._addr_owners: dict[str, set[str]] | None = None
        self._addr_of: dict[str, frozenset[str]] = {}
        self._dup_addrs: set[str] = set()
        # users with at least one license error (kept up to date by processing.recompute)
        self.error_users: set[str] = set()
        self._errors_cache: tuple[int, frozenset[str]] | None = None

    # ------------------------------------------------------------------ opening

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MB: big tenants insert into text-keyed indexes
        conn.execute("PRAGMA foreign_keys=OFF")
        return conn

    @classmethod
    def create(
        cls,
        path: str | Path,
        seed: Mapping[str, Any],
        *,
        rules: Rules | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Store:
        """A new database at `path` (replaced if it exists), loaded from a validated seed dict."""
        spath = str(path)
        fd = _claim(spath)
        try:
            if spath != ":memory:":
                for suffix in ("", "-wal", "-shm"):
                    Path(spath + suffix).unlink(missing_ok=True)
            store = cls(cls._connect(spath), spath, clock, fd)
            store._conn.executescript(_SCHEMA)
            store._load_seed(seed, rules)
        except BaseException:
            _release(fd)
            raise
        return store

    @classmethod
    def open(
        cls, path: str | Path, *, rules: Rules | None = None, clock: Callable[[], float] = time.time
    ) -> Store:
        """Open an existing database without re-seeding it."""
        spath = str(path)
        if not Path(spath).exists():
            raise FileNotFoundError(spath)
        fd = _claim(spath)
        try:
            store = cls(cls._connect(spath), spath, clock, fd)
            store._conn.executescript(_SCHEMA)
            store._read_db(rules)
        except BaseException:
            _release(fd)
            raise
        return store

    @classmethod
    def open_or_create(
        cls,
        path: str | Path,
        seed: Mapping[str, Any],
        *,
        rules: Rules | None = None,
        reseed_if_changed: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> Store:
        """Open `path` if it holds a tenant, else create it from `seed`. With
        `reseed_if_changed`, a database that came from a different seed is replaced."""
        spath = str(path)
        if spath != ":memory:" and Path(spath).exists():
            store = cls.open(spath, rules=rules, clock=clock)
            if store.has_tenant and (store.same_seed(seed) or not reseed_if_changed):
                return store
            store.close()
        return cls.create(spath, seed, rules=rules, clock=clock)

    @property
    def has_tenant(self) -> bool:
        return bool(self._digest)

    @property
    def seed_digest(self) -> str:
        return self._digest

    def same_seed(self, seed: Mapping[str, Any]) -> bool:
        return self._digest == seed_digest(seed)

    def close(self) -> None:
        with self.lock:
            self._conn.close()
            _release(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and run one BEGIN IMMEDIATE transaction (rolled back on error)."""
        with self.lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except StoreError:
                # refusals are raised before anything changes
                self._conn.execute("ROLLBACK")
                raise
            except BaseException:
                # an unexpected failure may have left the cache half-changed: the database decides
                self._conn.execute("ROLLBACK")
                if self._digest:
                    self._reload()
                raise
            self._conn.execute("COMMIT")
            self.version += 1

    def _reload(self) -> None:
        """Rebuild the in-memory model from the database."""
        self.skus, self.users, self.upn_index, self.user_order = {}, {}, {}, []
        self.groups, self.group_order, self.member_of = {}, [], {}
        self._addr_owners = None
        self._addr_of = {}
        self._dup_addrs = set()
        self.error_users = set()
        self._errors_cache = None
        self.version += 1
        self._read_db(self.rules)

    def _next_pos(self) -> int:
        self._pos += 1
        return self._pos

    # ------------------------------------------------------------------ loading

    def _load_seed(self, seed: Mapping[str, Any], rules: Rules | None) -> None:
        from reconciler.emulator import processing

        with self.transaction() as db:
            self._digest = seed_digest(seed)
            self.organization = copy.deepcopy(dict(seed.get("organization") or {}))
            if "id" in self.organization:
                self.organization["id"] = str(self.organization["id"]).lower()
            self.emulator = copy.deepcopy(dict(seed.get("emulator") or {}))
            for sku in seed.get("subscribedSkus") or []:
                item = {k: copy.deepcopy(v) for k, v in dict(sku).items() if k != "consumedUnits"}
                item["skuId"] = str(item["skuId"]).lower()
                self.skus[item["skuId"]] = item
            for raw in seed.get("users") or []:
                # shallow: nested values are never changed in place (writes replace them)
                data = {k: v for k, v in raw.items() if k not in _USER_COMPUTED}
                uid = str(data.get("id") or uuid.uuid5(uuid.NAMESPACE_URL, data["userPrincipalName"])).lower()
                data["id"] = uid
                rec = UserRecord(id=uid, data=data)
                for item in raw.get("assignedLicenses") or []:
                    lic = _license_from_json(item)
                    rec.direct[lic.sku_id] = lic
                rec.states = tuple(
                    _state_from_graph(s, graph_now(self.clock)) for s in raw.get("licenseAssignmentStates") or []
                )
                self._index_user(rec, loading=True)
            self.user_order = sorted(self.users)
            for raw in seed.get("groups") or []:
                data = {k: v for k, v in raw.items() if k not in _GROUP_COMPUTED}
                gid = str(data["id"]).lower()
                data["id"] = gid
                grp = GroupRecord(id=gid, data=data)
                for item in raw.get("assignedLicenses") or []:
                    lic = _license_from_json(item)
                    grp.licenses[lic.sku_id] = lic
                for m in raw.get("members") or []:
                    grp.members[str(m).lower()] = None
                self.groups[gid] = grp
            self.group_order = sorted(self.groups)
            for grp in self.groups.values():
                for m in grp.members:
                    self.member_of.setdefault(m, {})[grp.id] = None
                grp.applied_licenses = tuple(grp.licenses.values())
                grp.applied_members = tuple(grp.members)
                grp.applied_security = grp.security_enabled
            self.applications_ = copy.deepcopy([dict(a) for a in seed.get("applications") or []])
            self.rules = rules if rules is not None else processing.rules_for_tenant(self)

            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("format", FORMAT_VERSION),
                    ("seed_digest", self._digest),
                    ("organization", _dumps(self.organization)),
                    ("emulator", _dumps(self.emulator)),
                ],
            )
            db.executemany(
                "INSERT INTO skus (sku_id, pos, data) VALUES (?, ?, ?)",
                [(sid, i, _dumps(s)) for i, (sid, s) in enumerate(self.skus.items())],
            )
            db.executemany(
                "INSERT INTO users (id, upn, pos, data) VALUES (?, ?, ?, ?)",
                sorted((u.id, u.upn.lower(), self._next_pos(), _dumps(u.data)) for u in self.users.values()),
            )
            db.executemany(
                "INSERT INTO direct_licenses (user_id, sku_id, disabled_plans, pos) VALUES (?, ?, ?, ?)",
                sorted(
                    (u.id, lic.sku_id, _plans_text(lic.disabled_plans), self._next_pos())
                    for u in self.users.values()
                    for lic in u.direct.values()
                ),
            )
            db.executemany(
                "INSERT INTO groups (id, pos, data, processing_state, due_at, applied) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (g.id, self._next_pos(), _dumps(g.data), COMPLETE, None, self._applied_json(g))
                    for g in self.groups.values()
                ],
            )
            db.executemany(
                "INSERT INTO group_licenses (group_id, sku_id, disabled_plans, pos) VALUES (?, ?, ?, ?)",
                [
                    (g.id, lic.sku_id, _plans_text(lic.disabled_plans), self._next_pos())
                    for g in self.groups.values()
                    for lic in g.licenses.values()
                ],
            )
            db.executemany(
                "INSERT INTO members (group_id, member_id, pos) VALUES (?, ?, ?)",
                sorted((g.id, m, self._next_pos()) for g in self.groups.values() for m in g.members),
            )
            db.executemany(
                "INSERT INTO applications (app_id, pos, data) VALUES (?, ?, ?)",
                [(str(a.get("appId", i)), i, _dumps(a)) for i, a in enumerate(self.applications_)],
            )
            processing.recompute(self, db, write_all=True)

    def _index_user(self, rec: UserRecord, *, loading: bool = False) -> None:
        if rec.upn.lower() in self.upn_index:
            raise bad_request("Another object with the same value for property userPrincipalName already exists.")
        self.users[rec.id] = rec
        self.upn_index[rec.upn.lower()] = rec.id
        if loading:
            return  # user_order is sorted once at the end of the load
        if not self.user_order or rec.id > self.user_order[-1]:
            self.user_order.append(rec.id)
        else:
            insort(self.user_order, rec.id)

    def _read_db(self, rules: Rules | None) -> None:
        from reconciler.emulator import processing

        with self.lock:
            db = self._conn
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                return
            self._digest = meta.get("seed_digest", "")
            self.organization = json.loads(meta.get("organization", "{}"))
            self.emulator = json.loads(meta.get("emulator", "{}"))
            for sid, data in db.execute("SELECT sku_id, data FROM skus ORDER BY pos"):
                self.skus[sid] = json.loads(data)
            self.consumed = json.loads(meta.get("consumed", "{}"))
            for uid, data, assigned in db.execute("SELECT id, data, assigned FROM users ORDER BY pos"):
                rec = UserRecord(
                    id=uid, data=json.loads(data), assigned=_assigned_parse(assigned)
                )
                self.users[uid] = rec
                self.upn_index[rec.upn.lower()] = uid
            self.user_order = sorted(self.users)
            for uid, sid, dis in db.execute(
                "SELECT user_id, sku_id, disabled_plans FROM direct_licenses ORDER BY pos"
            ):
                self.users[uid].direct[sid] = License(sid, _plans_parse(dis))
            for gid, data, pstate, due, applied in db.execute(
                "SELECT id, data, processing_state, due_at, applied FROM groups ORDER BY pos"
            ):
                a = json.loads(applied)
                self.groups[gid] = GroupRecord(
                    id=gid,
                    data=json.loads(data),
                    processing_state=pstate,
                    due_at=due,
                    applied_licenses=tuple(_license_from_json(x) for x in a["licenses"]),
                    applied_members=tuple(a["members"]),
                    applied_security=bool(a.get("securityEnabled", True)),
                )
            self.group_order = sorted(self.groups)
            for gid, sid, dis in db.execute(
                "SELECT group_id, sku_id, disabled_plans FROM group_licenses ORDER BY pos"
            ):
                self.groups[gid].licenses[sid] = License(sid, _plans_parse(dis))
            for gid, mid in db.execute("SELECT group_id, member_id FROM members ORDER BY pos"):
                self.groups[gid].members[mid] = None
                self.member_of.setdefault(mid, {})[gid] = None
            states: dict[str, list[StateRecord]] = {}
            for row in db.execute("SELECT * FROM license_states ORDER BY user_id, sku_id, assigned_by_group"):
                states.setdefault(row[0], []).append(_state_from_row(row))
            for uid, recs in states.items():
                if uid in self.users:
                    self.users[uid].states = tuple(recs)
                    if any(r.state.error != "None" for r in recs):
                        self.error_users.add(uid)
            self.applications_ = [json.loads(d) for (d,) in db.execute("SELECT data FROM applications ORDER BY pos")]
            self._pos = int(
                db.execute(
                    "SELECT MAX(m) FROM (SELECT MAX(pos) AS m FROM users UNION ALL SELECT MAX(pos) FROM groups "
                    "UNION ALL SELECT MAX(pos) FROM members UNION ALL SELECT MAX(pos) FROM direct_licenses "
                    "UNION ALL SELECT MAX(pos) FROM group_licenses)"
                ).fetchone()[0]
                or 0
            )
            self.rules = rules if rules is not None else processing.rules_for_tenant(self)

    @staticmethod
    def _applied_json(g: GroupRecord) -> str:
        return _dumps(
            {
                "licenses": [_lic_json(x) for x in g.applied_licenses],
                "members": list(g.applied_members),
                "securityEnabled": g.applied_security,
            }
        )

    # ------------------------------------------------------------------ simple reads

    @property
    def tenant_id(self) -> str:
        return str(self.organization.get("id") or "")

    @property
    def tenant_location(self) -> str | None:
        loc = self.organization.get("defaultUsageLocation") or self.organization.get("countryLetterCode")
        return str(loc) if loc else None

    @property
    def processing_delay(self) -> float:
        if self.delay_override is not None:
            return self.delay_override
        return float(self.emulator.get("processingDelaySeconds") or 0)

    def applications(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.applications_)

    def find_user(self, id_or_upn: str) -> UserRecord | None:
        key = id_or_upn.lower()
        rec = self.users.get(key)
        if rec is None:
            uid = self.upn_index.get(key)
            rec = self.users.get(uid) if uid else None
        return rec

    def users_with_upn_prefix(self, prefixes: Sequence[str]) -> list[str]:
        """Sorted ids of the users whose userPrincipalName starts with one of `prefixes` (lower
        case). Each page of a `startswith` listing asks again, so the answer is kept until the
        next write; without it, every page scanned the whole tenant."""
        key = tuple(sorted(set(prefixes)))
        with self.lock:
            cached = self._prefix_cache.get(key)
            if cached is not None and cached[0] == self.version:
                return cached[1]
            if self._upn_sorted is None or self._upn_sorted[0] != self.version:
                self._upn_sorted = (self.version, sorted(self.upn_index.items()))
            upns = self._upn_sorted[1]
            found: list[str] = []
            for prefix in key:
                i = bisect_left(upns, (prefix, ""))
                while i < len(upns) and upns[i][0].startswith(prefix):
                    found.append(upns[i][1])
                    i += 1
            ids = sorted(set(found))
            if len(self._prefix_cache) >= 64:
                self._prefix_cache.clear()
            self._prefix_cache[key] = (self.version, ids)
            return ids

    def user(self, id_or_upn: str) -> UserRecord:
        rec = self.find_user(id_or_upn)
        if rec is None:
            raise not_found(id_or_upn)
        return rec

    def group(self, group_id: str) -> GroupRecord:
        rec = self.groups.get(group_id.lower())
        if rec is None:
            raise not_found(group_id)
        return rec

    def sku_json(self, sku_id: str) -> dict[str, Any]:
        """subscribedSku with its computed consumedUnits (no @odata keys)."""
        item = copy.deepcopy(self.skus[sku_id])
        item["consumedUnits"] = self.consumed.get(sku_id, 0)
        return item

    def sku_plan_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for sku in self.skus.values():
            for p in sku.get("servicePlans") or []:
                names[str(p["servicePlanId"]).lower()] = str(p.get("servicePlanName") or "")
        return names

    def groups_with_errors(self) -> set[str]:
        """Groups that have at least one member with a license error from that group."""
        with self.lock:
            cached = self._errors_cache
            if cached is not None and cached[0] == self.version:
                return set(cached[1])
            out: set[str] = set()
            for u in self.users.values():
                for s in u.states:
                    if s.state.assigned_by_group and s.state.error != "None":
                        out.add(s.state.assigned_by_group)
            self._errors_cache = (self.version, frozenset(out))
            return out

    def members_with_errors(self, group_id: str) -> list[str]:
        g = self.group(group_id)
        out = []
        for m in g.members:
            u = self.users.get(m)
            if u and any(s.state.assigned_by_group == g.id and s.state.error != "None" for s in u.states):
                out.append(m)
        return out

    # ------------------------------------------------------------------ proxy addresses

    def addresses_of(self, oid: str) -> frozenset[str]:
        """The SMTP addresses an object holds (licensing's form: lower case, no prefix)."""
        from reconciler.emulator.seed import smtp_addresses

        u = self.users.get(oid)
        if u is not None:
            return smtp_addresses(u.data.get("proxyAddresses") or ())
        g = self.groups.get(oid)
        if g is None:
            return frozenset()
        out = set(smtp_addresses(g.data.get("proxyAddresses") or ()))
        if g.data.get("mailEnabled") and g.data.get("mail"):
            out.add(str(g.data["mail"]).lower())
        return frozenset(out)

    def _touch_addresses(self, oid: str) -> None:
        """Re-index one object's addresses after it was created, changed or deleted."""
        owners = self._addr_owners
        if owners is None:
            return
        old = self._addr_of.get(oid, frozenset())
        new = self.addresses_of(oid)
        for a in old - new:
            holders = owners.get(a, set())
            holders.discard(oid)
            if len(holders) <= 1:
                self._dup_addrs.discard(a)
            if not holders:
                owners.pop(a, None)
        for a in new - old:
            holders = owners.setdefault(a, set())
            holders.add(oid)
            if len(holders) > 1:
                self._dup_addrs.add(a)
        if new:
            self._addr_of[oid] = new
        else:
            self._addr_of.pop(oid, None)

    def _address_index(self) -> dict[str, set[str]]:
        if self._addr_owners is None:
            self._addr_owners = {}
            for oid in [*self.users, *self.groups]:
                self._touch_addresses(oid)
        return self._addr_owners

    def shared_address_users(self) -> set[str]:
        """Users holding an SMTP address that another user or a group also holds."""
        with self.lock:
            owners = self._address_index()
            return {o for a in self._dup_addrs for o in owners[a] if o in self.users}

    def address_owners(self, address: str) -> frozenset[str]:
        """Objects holding an SMTP address (lower case, no prefix): a superset of what
        `proxyAddresses/any(x:x eq 'smtp:...')` matches, so such filters need not scan every user."""
        with self.lock:
            return frozenset(self._address_index().get(address.lower(), ()))

    # ------------------------------------------------------------------ user writes

    def create_user(self, data: Mapping[str, Any]) -> UserRecord:
        from reconciler.emulator import processing

        raw = {k: v for k, v in dict(data).items() if k not in _USER_COMPUTED and k != "passwordProfile"}
        with self.transaction() as db:
            uid = str(raw.get("id") or uuid.uuid4()).lower()
            raw["id"] = uid
            if uid in self.users or uid in self.groups:
                raise bad_request("Another object with the same value for property id already exists.")
            raw.setdefault("proxyAddresses", [])
            rec = UserRecord(id=uid, data=raw)
            self._index_user(rec)
            db.execute(
                "INSERT INTO users (id, upn, pos, data) VALUES (?, ?, ?, ?)",
                (uid, rec.upn.lower(), self._next_pos(), _dumps(raw)),
            )
            for item in data.get("assignedLicenses") or []:
                lic = _license_from_json(item)
                rec.direct[lic.sku_id] = lic
                db.execute(
                    "INSERT INTO direct_licenses VALUES (?, ?, ?, ?)",
                    (uid, lic.sku_id, _plans_text(lic.disabled_plans), self._next_pos()),
                )
            self._touch_addresses(uid)
            if rec.direct:
                processing.recompute(self, db, {uid})
            return rec

    def update_user(self, id_or_upn: str, patch: Mapping[str, Any]) -> UserRecord:
        with self.transaction() as db:
            rec = self.user(id_or_upn)
            for key in patch:
                if key in ("id", *_USER_COMPUTED):
                    raise bad_request(f"Property '{key}' is read-only and cannot be set.")
            new_upn = patch.get("userPrincipalName")
            if new_upn is not None and str(new_upn).lower() != rec.upn.lower():
                if str(new_upn).lower() in self.upn_index:
                    raise bad_request(
                        "Another object with the same value for property userPrincipalName already exists."
                    )
                del self.upn_index[rec.upn.lower()]
                self.upn_index[str(new_upn).lower()] = rec.id
            for key, value in patch.items():
                if key == "passwordProfile":
                    continue
                rec.data[key] = value
            rec.licensing = None
            db.execute(
                "UPDATE users SET upn = ?, data = ? WHERE id = ?", (rec.upn.lower(), _dumps(rec.data), rec.id)
            )
            self._touch_addresses(rec.id)
            return rec

    def assign_user_licenses(
        self, id_or_upn: str, add: Sequence[License], remove: Sequence[str]
    ) -> UserRecord:
        """Direct assignLicense: validated atomically by licensing, then applied synchronously."""
        from reconciler.emulator import processing

        with self.transaction() as db:
            rec = self.user(id_or_upn)
            message = processing.check_direct(self, rec.id, add, remove)
            if message:
                raise bad_request(message)
            rec.licensing = None
            for sku in remove:
                if rec.direct.pop(sku, None) is not None:
                    db.execute("DELETE FROM direct_licenses WHERE user_id = ? AND sku_id = ?", (rec.id, sku))
            for lic in add:
                rec.direct[lic.sku_id] = lic
                db.execute(
                    "INSERT OR REPLACE INTO direct_licenses VALUES (?, ?, ?, ?)",
                    (rec.id, lic.sku_id, _plans_text(lic.disabled_plans), self._next_pos()),
                )
            processing.recompute(self, db, {rec.id})
            return rec

    def reprocess_user(self, id_or_upn: str) -> UserRecord:
        """reprocessLicenseAssignment: re-evaluate the user's group assignments now."""
        from reconciler.emulator import processing

        with self.transaction() as db:
            rec = self.user(id_or_upn)
            # the user's groups are taken as they are now (membership and licenses)
            for gid in self.member_of.get(rec.id, {}):
                g = self.groups[gid]
                if rec.id not in g.applied_members:
                    g.applied_members = (*g.applied_members, rec.id)
                    db.execute("UPDATE groups SET applied = ? WHERE id = ?", (self._applied_json(g), gid))
            for g in self.groups.values():
                if rec.id in g.applied_members and rec.id not in g.members:
                    g.applied_members = tuple(m for m in g.applied_members if m != rec.id)
                    db.execute("UPDATE groups SET applied = ? WHERE id = ?", (self._applied_json(g), g.id))
            processing.recompute(self, db, {rec.id})
            return rec

    # ------------------------------------------------------------------ group writes

    def create_group(self, data: Mapping[str, Any]) -> GroupRecord:
        raw = {k: v for k, v in dict(data).items() if k not in _GROUP_COMPUTED and not k.endswith("@odata.bind")}
        with self.transaction() as db:
            gid = str(raw.get("id") or uuid.uuid4()).lower()
            if gid in self.groups or gid in self.users:
                raise bad_request("Another object with the same value for property id already exists.")
            raw["id"] = gid
            raw.setdefault("groupTypes", [])
            raw.setdefault("proxyAddresses", [])
            refs = [str(ref).rstrip("/").rsplit("/", 1)[-1].lower() for ref in data.get("members@odata.bind") or []]
            for ref in refs:
                if ref not in self.users and ref not in self.groups:
                    raise not_found(ref)
            g = GroupRecord(id=gid, data=raw)
            g.applied_security = g.security_enabled
            self.groups[gid] = g
            insort(self.group_order, gid)
            db.execute(
                "INSERT INTO groups VALUES (?, ?, ?, ?, ?, ?)",
                (gid, self._next_pos(), _dumps(raw), COMPLETE, None, self._applied_json(g)),
            )
            for ref in dict.fromkeys(refs):
                self._add_member(db, g, ref)
            self._touch_addresses(gid)
            return g

    def update_group(self, group_id: str, patch: Mapping[str, Any]) -> GroupRecord:
        with self.transaction() as db:
            g = self.group(group_id)
            for key in patch:
                if key in ("id", *_GROUP_COMPUTED):
                    raise bad_request(f"Property '{key}' is read-only and cannot be set.")
            g.data.update(patch)
            db.execute("UPDATE groups SET data = ? WHERE id = ?", (_dumps(g.data), g.id))
            self._touch_addresses(g.id)
            if "securityEnabled" in patch and g.licenses:
                self._queue(db, g)
            return g

    def delete_group(self, group_id: str) -> None:
        from reconciler.emulator import processing

        with self.transaction() as db:
            g = self.group(group_id)
            if g.licenses or g.applied_licenses:
                raise bad_request(
                    "The group cannot be deleted because it has licenses assigned. "
                    "Remove all licenses from the group before deleting it."
                )
            for m in g.members:
                self.member_of.get(m, {}).pop(g.id, None)
            for other in self.groups.values():
                if g.id in other.members:
                    del other.members[g.id]
                    db.execute("DELETE FROM members WHERE group_id = ? AND member_id = ?", (other.id, g.id))
            self.member_of.pop(g.id, None)
            del self.groups[g.id]
            self.group_order.remove(g.id)
            db.execute("DELETE FROM groups WHERE id = ?", (g.id,))
            db.execute("DELETE FROM members WHERE group_id = ?", (g.id,))
            db.execute("DELETE FROM group_licenses WHERE group_id = ?", (g.id,))
            self._touch_addresses(g.id)
            processing.recompute(self, db, set(g.applied_members))

    def assign_group_licenses(self, group_id: str, add: Sequence[License], remove: Sequence[str]) -> GroupRecord:
        """Group assignLicense: validated synchronously, processed in the background."""
        from reconciler.emulator import processing

        with self.transaction() as db:
            g = self.group(group_id)
            message = processing.check_group(self, g.id, add, remove)
            if message:
                raise bad_request(message)
            for sku in remove:
                if g.licenses.pop(sku, None) is not None:
                    db.execute("DELETE FROM group_licenses WHERE group_id = ? AND sku_id = ?", (g.id, sku))
            for lic in add:
                g.licenses[lic.sku_id] = lic
                db.execute(
                    "INSERT OR REPLACE INTO group_licenses VALUES (?, ?, ?, ?)",
                    (g.id, lic.sku_id, _plans_text(lic.disabled_plans), self._next_pos()),
                )
            self._queue(db, g)
            return g

    def add_member(self, group_id: str, member_id: str) -> None:
        with self.transaction() as db:
            g = self.group(group_id)
            self._add_member(db, g, member_id.lower())

    def _add_member(self, db: sqlite3.Connection, g: GroupRecord, member_id: str) -> None:
        if member_id not in self.users and member_id not in self.groups:
            raise not_found(member_id)
        if member_id in g.members:
            raise bad_request(
                "One or more added object references already exist for the following modified properties: 'members'."
            )
        if member_id == g.id:
            raise bad_request("A group cannot be a member of itself.")
        g.members[member_id] = None
        self.member_of.setdefault(member_id, {})[g.id] = None
        db.execute("INSERT INTO members VALUES (?, ?, ?)", (g.id, member_id, self._next_pos()))
        if g.licenses or g.applied_licenses:
            self._queue(db, g)

    def remove_member(self, group_id: str, member_id: str) -> None:
        with self.transaction() as db:
            g = self.group(group_id)
            mid = member_id.lower()
            if mid not in g.members:
                raise not_found(member_id)
            del g.members[mid]
            self.member_of.get(mid, {}).pop(g.id, None)
            db.execute("DELETE FROM members WHERE group_id = ? AND member_id = ?", (g.id, mid))
            if g.licenses or g.applied_licenses:
                self._queue(db, g)

    def _queue(self, db: sqlite3.Connection, g: GroupRecord) -> None:
        if g.processing_state != QUEUED:
            g.processing_state = QUEUED
            g.due_at = self.clock() + self.processing_delay
            db.execute(
                "UPDATE groups SET processing_state = ?, due_at = ? WHERE id = ?", (QUEUED, g.due_at, g.id)
            )
        self.changed.notify_all()

    # ------------------------------------------------------------------ processing

    def pending(self) -> list[tuple[str, float]]:
        with self.lock:
            return [(g.id, g.due_at or 0.0) for g in self.groups.values() if g.processing_state == QUEUED]

    def next_due(self) -> float | None:
        with self.lock:
            dues = [g.due_at or 0.0 for g in self.groups.values() if g.processing_state == QUEUED]
            return min(dues) if dues else None

    def process_due(self, now: float | None = None) -> int:
        """Process every queued group whose time has come; returns how many."""
        at = self.clock() if now is None else now
        return self._process(lambda g: (g.due_at or 0.0) <= at)

    def drain(self) -> int:
        """Finish all pending group processing now (POST /_emulator/drain)."""
        return self._process(lambda g: True)

    def _process(self, due: Callable[[GroupRecord], bool]) -> int:
        from reconciler.emulator import processing

        with self.lock:
            if not any(g.processing_state == QUEUED and due(g) for g in self.groups.values()):
                # no transaction: a commit counts as a write and would drop every cache keyed
                # by `version` on each tick of the processing worker
                return 0
            return self._process_locked(due, processing)

    def _process_locked(self, due: Callable[[GroupRecord], bool], processing: Any) -> int:
        with self.transaction() as db:
            todo = [g for g in self.groups.values() if g.processing_state == QUEUED and due(g)]
            if not todo:
                return 0
            affected: set[str] = set()
            for g in todo:
                if set(g.applied_licenses) == set(g.licenses.values()) and g.applied_security == g.security_enabled:
                    # only the membership changed: only the users who joined or left
                    affected.update(set(g.applied_members).symmetric_difference(g.members))
                else:
                    affected.update(g.applied_members)
                    affected.update(g.members)
                g.applied_licenses = tuple(g.licenses.values())
                g.applied_members = tuple(g.members)
                g.applied_security = g.security_enabled
                g.processing_state = COMPLETE
                g.due_at = None
                db.execute(
                    "UPDATE groups SET processing_state = ?, due_at = NULL, applied = ? WHERE id = ?",
                    (COMPLETE, self._applied_json(g), g.id),
                )
            processing.recompute(self, db, affected)
            return len(todo)

    def recompute_all(self) -> None:
        """Recompute every user's licensing now (the current states are the history)."""
        from reconciler.emulator import processing

        with self.transaction() as db:
            processing.recompute(self, db)

    def write_states(self, db: sqlite3.Connection, changed: Iterable[UserRecord], *, fresh: bool = False) -> None:
        """Persist the computed states of the given users (replacing their rows; `fresh`: none yet)."""
        recs = sorted(changed, key=lambda u: u.id)
        if not fresh:
            db.executemany("DELETE FROM license_states WHERE user_id = ?", [(u.id,) for u in recs])
        db.executemany(
            "INSERT INTO license_states VALUES (?, ?, ?, ?, ?, ?, ?)",
            sorted(_state_row(u.id, s) for u in recs for s in u.states),
        )
        db.executemany(
            "UPDATE users SET assigned = ? WHERE id = ?",
            [(_assigned_text(u.assigned), u.id) for u in recs if u.assigned or not fresh],
        )

    def write_consumed(self, db: sqlite3.Connection, consumed: Mapping[str, int]) -> None:
        self.consumed = dict(consumed)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('consumed', ?)", (_dumps(self.consumed),))

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> dict[str, Any]:
        """The tenant in the seed format; ``Store.create(p, snapshot).snapshot()`` gives it back."""
        with self.lock:
            users = []
            for uid in self.user_order:
                u = self.users[uid]
                item = copy.deepcopy(u.data)
                item["assignedLicenses"] = [_lic_json(x) for x in sorted(u.direct.values())]
                if u.states:
                    item["licenseAssignmentStates"] = [s.to_graph() for s in u.states]
                users.append(item)
            groups = []
            for gid in self.group_order:
                g = self.groups[gid]
                item = copy.deepcopy(g.data)
                item["assignedLicenses"] = [_lic_json(x) for x in sorted(g.licenses.values())]
                item["members"] = sorted(g.members)
                groups.append(item)
            out: dict[str, Any] = {
                "organization": copy.deepcopy(self.organization),
                "subscribedSkus": [self.sku_json(s) for s in self.skus],
                "users": users,
                "groups": groups,
                "applications": copy.deepcopy(self.applications_),
            }
            if self.emulator:
                out["emulator"] = copy.deepcopy(self.emulator)
            return out


def _state_from_graph(item: Mapping[str, Any], default_time: str) -> StateRecord:
    group = item.get("assignedByGroup")
    error = item.get("error")
    return StateRecord(
        AssignmentState(
            sku_id=str(item["skuId"]).lower(),
            assigned_by_group=str(group).lower() if group else None,
            disabled_plans=frozenset(str(p).lower() for p in item.get("disabledPlans") or ()),
            state=str(item.get("state") or "Active"),
            error=str(error) if error not in (None, "") else "None",
        ),
        str(item.get("lastUpdatedDateTime") or default_time),
    )


def _state_row(user_id: str, rec: StateRecord) -> tuple[str, str, str, str, str, str, str]:
    s = rec.state
    return (
        user_id,
        s.sku_id,
        s.assigned_by_group or "",
        _plans_text(s.disabled_plans),
        s.state,
        s.error,
        rec.last_updated,
    )


def _state_from_row(row: Sequence[Any]) -> StateRecord:
    return StateRecord(
        AssignmentState(
            sku_id=row[1],
            assigned_by_group=row[2] or None,
            disabled_plans=_plans_parse(row[3]),
            state=row[4],
            error=row[5],
        ),
        row[6],
    )


def keyset_page(order: list[str], after: str | None) -> int:
    """Index of the first id after `after` in a sorted id list."""
    if after is None:
        return 0
    i = bisect_left(order, after)
    if i < len(order) and order[i] == after:
        i += 1
    return i
