"""Renderings of a Plan. Every renderer is a pure function of the plan (same plan, same bytes).

    render_text(plan, *, color=False, max_users=20) -> str       Terraform-style text
    render_markdown(plan, *, budget=60_000, ...) -> str          pull-request comment / job summary
    render_json(plan) -> str                                     the plan file (schemas/plan.schema.json)
    render_github_annotations(plan) -> str                       `::error file=...` workflow commands
    render(plan, fmt, *, color=False) -> str                     by --format name (text|markdown|json)
    append_step_summary(plan, path=None) -> Path | None          GITHUB_STEP_SUMMARY (1 MiB per step)
    color_wanted(stream) -> bool                                 colours only on a terminal, never with NO_COLOR

Where the output goes is the CLI's business: the rendering on stdout; the annotations on stderr
(the GitHub runner reads workflow commands from both streams, and stdout stays clean for
`--format json | jq`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO

from reconciler.plan import Plan
from reconciler.render.annotations import render_github_annotations
from reconciler.render.common import summary_line
from reconciler.render.jsonout import render_json
from reconciler.render.markdown import MARKER, render_markdown
from reconciler.render.summary import append_step_summary, step_summary_text
from reconciler.render.text import render_text

FORMATS = ("text", "markdown", "json")

__all__ = [
    "FORMATS",
    "MARKER",
    "append_step_summary",
    "color_wanted",
    "render",
    "render_github_annotations",
    "render_json",
    "render_markdown",
    "render_text",
    "step_summary_text",
    "summary_line",
]


def render(plan: Plan, fmt: str, *, color: bool = False, hint: str = "reconciler show PLANFILE") -> str:
    """The plan in the --format `fmt` (text, markdown or json); ValueError for another name."""
    if fmt == "text":
        return render_text(plan, color=color)
    if fmt == "markdown":
        return render_markdown(plan, hint=hint)
    if fmt == "json":
        return render_json(plan)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def color_wanted(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Colours for the text rendering: only when `stream` is a terminal and NO_COLOR is not set."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
