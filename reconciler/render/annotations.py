"""GitHub Actions workflow commands for violations (`--annotations github`).

    render_github_annotations(plan) -> str
    escape_data(text) -> str / escape_property(text) -> str

One line per violation that has a source location in the policy:
`::error file=PATH,line=N,col=C,title=CODE::message` (`::warning` for a warning), so GitHub shows
it on the policy file in the pull request. The message is followed by the resolution on a second
line (an escaped newline). Violations the plan fixes are left out. Escaping follows GitHub's
workflow-command rules: in the message `%`, CR and LF become %25, %0D, %0A; in the properties
`:` and `,` also become %3A and %2C.
"""

from __future__ import annotations

from reconciler.plan import FIXED, Plan, Violation
from reconciler.render.common import split_violations


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(v: Violation) -> str | None:
    """The workflow command for one violation, or None when it has no source location."""
    if v.source is None or v.status == FIXED:
        return None
    command = "error" if v.severity == "error" else "warning"
    props = [
        f"file={escape_property(v.source.path)}",
        f"line={v.source.line}",
        f"col={v.source.column}",
        f"title={escape_property(v.code)}",
    ]
    message = v.message
    if v.resolution:
        message += f"\nResolution: {v.resolution}"
    return f"::{command} {','.join(props)}::{escape_data(message)}"


def render_github_annotations(plan: Plan) -> str:
    """Workflow commands for every located violation, blocking ones first; empty when there are none."""
    ours, existing = split_violations(plan)
    lines = [line for v in (*ours, *existing) if (line := github_annotation(v)) is not None]
    return "".join(line + "\n" for line in lines)
