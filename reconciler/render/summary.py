"""GitHub Actions job summary: append the markdown plan to the file GITHUB_STEP_SUMMARY names.

    step_summary_text(plan, used_bytes=0, *, limit=STEP_SUMMARY_LIMIT, hint=...) -> str   (pure)
    append_step_summary(plan, path=None, *, environ=None, hint=...) -> Path | None          (I/O)

GitHub accepts at most 1 MiB of summary per step (STEP_SUMMARY_LIMIT, in bytes, counting what the
step already wrote to the file). The markdown is rendered to fit what is left (the markdown
renderer's own cutting rules: change details first, then user lists; summary and violations kept);
if even that is too large, it is cut at a line boundary and a note says so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from reconciler.errors import ReconcilerError
from reconciler.plan import Plan
from reconciler.render.markdown import render_markdown

STEP_SUMMARY_LIMIT = 1024 * 1024  # bytes per step (GitHub)
ENV_VAR = "GITHUB_STEP_SUMMARY"
_TRUNCATED = "\n\n> **Truncated at GitHub's 1 MiB job-summary limit.** Run `{hint}` for the whole plan.\n"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def step_summary_text(
    plan: Plan,
    used_bytes: int = 0,
    *,
    limit: int = STEP_SUMMARY_LIMIT,
    hint: str = "reconciler show PLANFILE",
) -> str:
    """The markdown to append when the step's summary already holds `used_bytes` (may be "")."""
    room = limit - used_bytes - 2  # two newlines separating it from what is there
    if room <= 0:
        return ""
    budget = room
    text = render_markdown(plan, budget=budget, hint=hint)
    for _ in range(4):
        size = _size(text)
        if size <= room:
            return text
        # multi-byte characters: shrink the character budget in proportion and render again
        budget = max(1, int(budget * room / size) - 64)
        text = render_markdown(plan, budget=budget, hint=hint)
    if _size(text) <= room:
        return text
    # the summary and violations alone exceed the room: cut at a line boundary, with a note
    note = _TRUNCATED.format(hint=hint)
    keep = room - _size(note)
    if keep <= 0:
        return note if _size(note) <= room else ""
    cut = text.encode("utf-8")[:keep].decode("utf-8", errors="ignore")
    if "\n" in cut:
        cut = cut[: cut.rindex("\n")]
    return cut + note


def append_step_summary(
    plan: Plan,
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    hint: str = "reconciler show PLANFILE",
) -> Path | None:
    """Append the plan's markdown to the job summary; returns the file, or None when
    GITHUB_STEP_SUMMARY is not set (not running in GitHub Actions). Raises ReconcilerError
    (exit 1) when the file cannot be written."""
    if path is None:
        env = os.environ if environ is None else environ
        value = env.get(ENV_VAR, "")
        if not value:
            return None
        path = value
    target = Path(path)
    try:
        used = target.stat().st_size if target.exists() else 0
    except OSError:
        used = 0
    text = step_summary_text(plan, used, hint=hint)
    if not text:
        return target
    try:
        with target.open("a", encoding="utf-8", newline="\n") as fh:
            if used:
                fh.write("\n\n")
            fh.write(text)
    except OSError as exc:
        raise ReconcilerError(f"{target}: cannot write the job summary ({ENV_VAR}): {exc.strerror or exc}") from exc
    return target
