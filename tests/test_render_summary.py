"""GITHUB_STEP_SUMMARY: the markdown plan appended, within GitHub's 1 MiB per step."""

from __future__ import annotations

from pathlib import Path

import plan_samples

from reconciler.plan import Plan, Violation
from reconciler.render import MARKER, append_step_summary, render_markdown, step_summary_text
from reconciler.render.summary import STEP_SUMMARY_LIMIT


def test_not_in_github_actions_does_nothing(tmp_path: Path) -> None:
    assert append_step_summary(plan_samples.swap(), environ={}) is None
    assert append_step_summary(plan_samples.swap(), environ={"GITHUB_STEP_SUMMARY": ""}) is None
    assert list(tmp_path.iterdir()) == []


def test_appends_the_markdown(tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    target.write_text("# earlier step output\n", encoding="utf-8")
    plan = plan_samples.blocking()
    assert append_step_summary(plan, environ={"GITHUB_STEP_SUMMARY": str(target)}) == target
    text = target.read_text(encoding="utf-8")
    assert text.startswith("# earlier step output\n\n\n" + MARKER)
    assert text.endswith(render_markdown(plan, budget=STEP_SUMMARY_LIMIT))


def test_respects_the_one_mebibyte_limit(tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    target.write_bytes(b"x" * (STEP_SUMMARY_LIMIT - 20_000))
    plan = plan_samples.many_users(5_000)
    append_step_summary(plan, target)
    assert target.stat().st_size <= STEP_SUMMARY_LIMIT
    added = target.read_bytes()[STEP_SUMMARY_LIMIT - 20_000 :].decode("utf-8")
    assert "**Plan: 10,002 to assign" in added
    assert "Cut to fit" in added


def test_multibyte_text_is_measured_in_bytes() -> None:
    v = Violation(
        code="CountViolation",
        severity="error",
        message="Überbuchung: zu wenige Lizenzen für „LIC-Küche“",
        resolution="Kaufen Sie weitere Lizenzen.",
        sku="STANDARDPACK",
        group="LIC-Küche",
        users=plan_samples.users(3_000, "ñandú-ß-😀"),
    )
    base = plan_samples.no_changes()
    plan = Plan(**{**base.__dict__, "violations": (v,)})
    text = step_summary_text(plan, used_bytes=STEP_SUMMARY_LIMIT - 20_000)
    size = len(text.encode("utf-8"))
    assert len(text) < size <= 20_000 - 2
    assert "LIC-Küche" in text and "ñandú-ß-😀00001@contoso.com" in text


def test_no_room_left_writes_nothing(tmp_path: Path) -> None:
    assert step_summary_text(plan_samples.swap(), used_bytes=STEP_SUMMARY_LIMIT) == ""
    target = tmp_path / "s.md"
    target.write_bytes(b"x" * STEP_SUMMARY_LIMIT)
    append_step_summary(plan_samples.swap(), target)
    assert target.stat().st_size == STEP_SUMMARY_LIMIT


def test_hard_cut_when_even_the_violations_do_not_fit() -> None:
    text = step_summary_text(plan_samples.blocking(), used_bytes=STEP_SUMMARY_LIMIT - 700)
    assert len(text.encode("utf-8")) <= 698
    assert "Truncated at GitHub's 1 MiB job-summary limit" in text
