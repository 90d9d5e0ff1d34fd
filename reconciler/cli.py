"""Command line: parse, call, render, map exceptions to exit codes (SPEC section 3).

typer appears only here. Each command is a thin function that calls into the
package and renders the result; no business logic lives in this module.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from reconciler import __version__
from reconciler.errors import (
    EXIT_INTERRUPTED,
    EXIT_RUNTIME,
    EXIT_USAGE,
    ReconcilerError,
)

app = typer.Typer(
    name="reconciler",
    help="Entra ID group-based licensing as code: validate, plan, apply, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reconciler {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Entra ID group-based licensing as code."""


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"error: {message}\n" if message else "")
    sys.exit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the typer app and turn every failure into an exit code, never a traceback."""
    try:
        rv = app(args=argv, prog_name="reconciler", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("interrupted", EXIT_INTERRUPTED)
    except ReconcilerError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(EXIT_RUNTIME)
    except Exception as exc:
        # click's exceptions (typer vendors its own copy, so match by shape, not class)
        show = getattr(exc, "show", None)
        if show is None or not hasattr(exc, "exit_code"):
            raise
        show(file=sys.stderr)
        # click uses 2 for usage errors; SPEC reserves 2 for "plan found changes"
        code = int(exc.exit_code)
        sys.exit(EXIT_USAGE if code == 2 else code)
    sys.exit(rv if isinstance(rv, int) else 0)
