"""wait_for_processing's user stage: a user that differs from the prediction is read again until
its states settle, unless the caller takes it over as it is (apply reprocesses such users next
and waits for them after that)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from reconciler.apply import wait as wait_mod
from reconciler.apply.wait import Poller, StateKey, wait_for_processing
from reconciler.licensing import AssignmentState
from reconciler.state import User

SKU = "6fd2c87f-b296-42f0-b197-1e91e994b900"
GROUP = "00000000-0000-4000-9000-000000000001"
OK_USER = "00000000-0000-4000-8000-000000000001"
ERR_USER = "00000000-0000-4000-8000-000000000002"


def _user(uid: str, error: str) -> User:
    state = AssignmentState(SKU, GROUP, frozenset(), "Error" if error != "None" else "Active", error)
    return User(id=uid, user_principal_name=f"{uid[-1]}@contoso.com", license_states=(state,))


EXPECTED: dict[str, frozenset[StateKey]] = {
    OK_USER: frozenset({(SKU, GROUP, "Active", "None")}),
    ERR_USER: frozenset({(SKU, GROUP, "Active", "None")}),  # Entra keeps an error the plan resolves
}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    log: list[list[str]] = []

    def read_users(client: Any, user_ids: Iterable[str], **_: Any) -> dict[str, User]:
        ids = sorted(user_ids)
        log.append(ids)
        users = {OK_USER: _user(OK_USER, "None"), ERR_USER: _user(ERR_USER, "UniquenessViolation")}
        return {u: users[u] for u in ids}

    monkeypatch.setattr(wait_mod, "read_users", read_users)
    return log


def _poller(sleeps: list[float]) -> Poller:
    return Poller(first=1.0, sleep=sleeps.append, clock=lambda: 0.0)


def test_a_user_unlike_the_prediction_is_read_until_it_settles(reads: list[list[str]]) -> None:
    sleeps: list[float] = []
    out = wait_for_processing(
        None,  # type: ignore[arg-type]  # read_users is replaced
        (), [OK_USER, ERR_USER], deadline=10.0, expected=EXPECTED, poller=_poller(sleeps),
    )
    assert out.complete and reads == [[OK_USER, ERR_USER], [ERR_USER]] and sleeps == [1.0]


def test_a_user_handed_over_is_not_waited_for(reads: list[list[str]]) -> None:
    sleeps: list[float] = []
    out = wait_for_processing(
        None,  # type: ignore[arg-type]
        (), [OK_USER, ERR_USER], deadline=10.0, expected=EXPECTED, poller=_poller(sleeps),
        handed_over=lambda u: u.id == ERR_USER,
    )
    assert out.complete and reads == [[OK_USER, ERR_USER]] and sleeps == []
    assert out.users[ERR_USER].license_states[0].error == "UniquenessViolation"
