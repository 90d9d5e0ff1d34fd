"""`reconciler reprocess`: --group fans out over the direct user members, --user, --errors, $batch, --wait."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_apply_support import Tenant, fast_poller

from reconciler.apply import AuditLog
from reconciler.apply.reprocess import reprocess_users
from reconciler.errors import UsageError

pytestmark = pytest.mark.timeout(120)


def test_group_reprocess_gives_a_freed_seat_to_a_member_in_count_violation(
    start_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    t = Tenant(start_emulator(processing_delay=0.2))
    visio = t.group_id("LIC-Visio")
    t.graph("DELETE", f"/groups/{visio}/members/{t.user_id('visio1@contoso.com')}/$ref")
    t.control("POST", "drain")  # test only: visio1's seat is free now, visio5 and visio6 still in error
    t.control("POST", "reset-stats")
    with AuditLog(tmp_path / "audit.jsonl", command="reprocess") as audit, t.client(on_write=audit.hook) as c:
        result = reprocess_users(c, group="LIC-Visio", wait=True, poller=fast_poller(), audit=audit)
    assert result.exit_code == 0, result.render()
    assert len(result.users) == len(result.done) == 5  # every direct user member, not only those in error
    assert "visio1@contoso.com" not in result.done
    assert len(result.still_in_error) == 1 and result.still_in_error[0][0] in ("visio5@contoso.com", "visio6@contoso.com")
    assert "VISIOCLIENT: CountViolation" in result.still_in_error[0][1]
    stats = t.stats()
    posts = {r: n for r, n in stats["batchItems"]["byRoute"].items() if not r.startswith("GET")}
    assert posts == {"POST /v1.0/users/{id}/reprocessLicenseAssignment": 5}, stats
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and {x["action"] for x in lines} == {"reprocess"}
    assert all(x["viaBatch"] and x["status"] == 200 for x in lines)


def test_errors_and_user_scopes(start_emulator: Callable[..., Any]) -> None:
    t = Tenant(start_emulator(processing_delay=0.2))
    with t.client() as c:
        errors = reprocess_users(c, errors=True)
        one = reprocess_users(c, user="dup2@contoso.com", wait=True, poller=fast_poller())
        with pytest.raises(UsageError):
            reprocess_users(c, user="nobody@contoso.com")
        with pytest.raises(UsageError):
            reprocess_users(c, group="No-Such-Group")
        with pytest.raises(UsageError):
            reprocess_users(c, group="LIC-Visio", errors=True)
    expected = {"analyst4", "brunei1", "dup2", "e1direct1", "e1direct2", "visio5", "visio6"}
    assert set(errors.done) == {f"{u}@contoso.com" for u in expected}
    assert one.done == ["dup2@contoso.com"]
    assert one.still_in_error == [("dup2@contoso.com", ["ENTERPRISEPACK: UniquenessViolation"])]


def test_cli_needs_exactly_one_scope(tmp_path: Path) -> None:
    for args in ([], ["--errors", "--user", "a@b.c"]):
        res = subprocess.run(
            [sys.executable, "-m", "reconciler", "reprocess", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        assert res.returncode == 64, res.stderr
        assert "exactly one of --group" in res.stderr


def test_cli_reprocess_group(start_emulator: Callable[..., Any], tmp_path: Path) -> None:
    t = Tenant(start_emulator(processing_delay=0.2))
    res = t.cli("reprocess", "--group", "LIC-Visio", "--wait", "--audit-log", "a.jsonl", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Reprocessed 6 of 6 users (all 6 direct user members of LIC-Visio)" in res.stdout
    assert "visio5@contoso.com still in error: VISIOCLIENT: CountViolation" in res.stdout
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 6


def test_reprocessing_one_user_recomputes_it_and_the_users_waiting_for_a_seat_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the emulator: a user in an error of its own (exclusive plans) keeps its states until its own
    # inputs change; a user in CountViolation may get a freed seat on any processing
    from emulator_fixtures import E3, G_E3, G_SALES, RULES, seed, states, uid

    from reconciler import licensing
    from reconciler.emulator.store import Store
    from reconciler.licensing import License

    stores = []
    for name, partial in (("partial", True), ("full", False)):
        store = Store.create(tmp_path / f"{name}.db", seed(), rules=RULES)
        store.partial_recompute = partial
        store.add_member(G_E3, uid(4))  # dave's direct E1 has SharePoint Plan 1: E3's Plan 2 conflicts
        store.assign_group_licenses(G_SALES, [License(E3)], [])  # erin gets the last E3 seat, frank none
        store.drain()
        stores.append(store)
    partial_store, full_store = stores
    assert "MutuallyExclusiveViolation" in {s[3] for s in states(partial_store, uid(4))}
    assert states(partial_store, uid(6)) == [(E3, G_SALES, "Error", "CountViolation")]

    computed: list[set[str]] = []
    compute = licensing.compute
    monkeypatch.setattr(licensing, "compute", lambda inp: computed.append(set(inp.users)) or compute(inp))
    partial_store.reprocess_user(uid(1))
    assert computed == [{uid(1), uid(6)}]  # not dave
    full_store.reprocess_user(uid(1))
    assert {u: states(partial_store, u) for u in partial_store.users} == {
        u: states(full_store, u) for u in full_store.users
    }
    for store in stores:
        store.close()
