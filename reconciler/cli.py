"""Command line: parse, call, render, map exceptions to exit codes (SPEC section 3).

typer appears only here. Each command is a thin function that calls into the
package and renders the result; no business logic lives in this module.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

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


def _printable(text: str, stream: object) -> str:
    """`text` with control characters escaped and unencodable ones backslash-replaced (file content is hostile)."""
    cleaned = "".join(ch if ch.isprintable() or ch == "\t" else repr(ch)[1:-1] for ch in text)
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return cleaned.encode(encoding, "backslashreplace").decode(encoding, "replace")


@app.command("validate")
def validate_command(
    paths: list[str] = typer.Argument(..., metavar="PATH...", help="Policy files or directories (merged)."),
) -> None:
    """Check a policy offline: YAML, schema, SKU and plan names, duplicates and contradictions.

    Prints every problem as path:line:column: message on stderr. Exit 0 valid, 3 invalid,
    64 when a path does not exist.
    """
    from reconciler.errors import EXIT_INVALID
    from reconciler.policy import validate_paths

    policy, problems = validate_paths(paths)
    if policy is None:
        for problem in problems:
            sys.stderr.write(_printable(str(problem), sys.stderr) + "\n")
        files = len({p.path for p in problems})
        sys.stderr.write(
            f"invalid: {len(problems)} problem{'s' if len(problems) != 1 else ''} "
            f"in {files} file{'s' if files != 1 else ''}\n"
        )
        raise typer.Exit(EXIT_INVALID)
    licenses = sum(len(g.licenses or ()) for g in policy.groups)
    sys.stdout.write(
        f"valid: {len(policy.files)} file{'s' if len(policy.files) != 1 else ''}, "
        f"{len(policy.groups)} group{'s' if len(policy.groups) != 1 else ''}, "
        f"{licenses} license{'s' if licenses != 1 else ''}\n"
    )


@app.command("schema")
def schema_command(
    kind: str = typer.Option("policy", "--kind", help="Which schema: policy, plan or tenant."),
) -> None:
    """Print a JSON schema (2020-12) to stdout, e.g. for editors and CI."""
    from reconciler.errors import UsageError
    from reconciler.policy.schemas import KINDS, SchemaNotFound, schema_bytes

    if kind not in KINDS:
        raise UsageError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    try:
        text = schema_bytes(kind).decode("utf-8")
    except (SchemaNotFound, OSError, UnicodeDecodeError) as exc:
        _fail(str(exc), EXIT_RUNTIME)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command("show")
def show_command(
    planfile: str = typer.Argument(..., metavar="PLANFILE", help="A plan file written by `plan --out`."),
    fmt: str = typer.Option("text", "--format", help="Output format: text, markdown or json."),
) -> None:
    """Show a saved plan: text (Terraform style), markdown (pull-request comment) or json (the plan file).

    Exit 0; 3 when the file is missing, corrupt or of an unsupported format_version; 64 for a bad flag.
    """
    from reconciler.errors import UsageError
    from reconciler.planfile import read_plan
    from reconciler.render import FORMATS, color_wanted, render

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    plan = read_plan(planfile)
    color = fmt == "text" and color_wanted(sys.stdout)
    sys.stdout.write(render(plan, fmt, color=color, hint=f"reconciler show {planfile}"))


emulator_app = typer.Typer(
    name="emulator",
    help="A Graph-compatible local tenant (HTTPS, Entra-like sign-in) for demos, tests and trying policies.",
    no_args_is_help=True,
)
app.add_typer(emulator_app, name="emulator")


@emulator_app.command("serve")
def emulator_serve_command(
    seed: str = typer.Option(..., "--seed", metavar="FILE", help="Tenant seed or snapshot (JSON or YAML)."),
    db: str = typer.Option(
        ".reconciler/emulator.db", "--db", metavar="FILE", help="SQLite state; kept across restarts."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(0, "--port", metavar="N", help="Port; 0 picks a free one."),
    ca_out: str | None = typer.Option(
        None, "--ca-out", metavar="FILE", help="Also write the CA certificate here (default: beside the database)."
    ),
    plain_http: bool = typer.Option(False, "--plain-http", help="Serve without TLS (msal cannot sign in then)."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", metavar="N", help="Added latency per request."),
    fail_rate: float = typer.Option(
        0.0, "--fail-rate", metavar="R", help="Fraction of requests failing (503, 429, dropped)."
    ),
    throttle: bool = typer.Option(False, "--throttle", help="Enforce Graph's resource-unit throttling."),
    processing_delay: float | None = typer.Option(
        None, "--processing-delay", metavar="SECONDS", help="Group license processing delay (default: the seed's)."
    ),
) -> None:
    """Serve the tenant of a seed over HTTPS on 127.0.0.1 until Ctrl-C.

    Prints on stderr the base URL, the CA certificate path and the client flags
    (--authority, --graph-url, --ca-bundle, --tenant-id, --client-id), never a secret.
    """
    from pathlib import Path

    from reconciler.emulator.server import EmulatorSettings, serve_emulator

    settings = EmulatorSettings(
        seed=Path(seed),
        db=Path(db),
        host=host,
        port=port,
        ca_out=Path(ca_out) if ca_out else None,
        tls=not plain_http,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        throttle=throttle,
        processing_delay=processing_delay,
    )

    def say(text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    try:
        serve_emulator(settings, say=say)
    except KeyboardInterrupt:
        say("emulator stopped")


@emulator_app.command("generate")
def emulator_generate_command(
    users: int = typer.Option(..., "--users", metavar="N", min=0, help="Number of users."),
    groups: int = typer.Option(..., "--groups", metavar="N", min=0, help="Number of groups (about 15% licensed)."),
    skus: int = typer.Option(10, "--skus", metavar="N", min=1, max=300, help="Number of subscribed SKUs."),
    seed: int = typer.Option(0, "--seed", metavar="S", help="Random seed; the same seed gives the same file."),
    out: str | None = typer.Option(None, "--out", metavar="FILE", help="Write here instead of stdout."),
) -> None:
    """Write a synthetic tenant seed of realistic shape (deterministic for a given --seed)."""
    from reconciler.emulator.generate import generate_to

    written = generate_to(out, users=users, groups=groups, skus=skus, seed=seed)
    if out:
        sys.stderr.write(f"wrote {written}\n")


@app.command("plan")
def plan_command(
    paths: list[str] = typer.Argument(..., metavar="PATH...", help="Policy files or directories (merged)."),
    out: str | None = typer.Option(None, "--out", metavar="PLANFILE", help="Also write the plan file (even when blocked)."),
    fmt: str = typer.Option("text", "--format", help="Output format: text, markdown or json."),
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 2 when the plan has changes (0: none)."
    ),
    force: bool = typer.Option(False, "--force", help="Record that blocking violations are accepted (not policy errors)."),
    annotations: str | None = typer.Option(
        None, "--annotations", metavar="github", help="Also print GitHub Actions annotations for violations."
    ),
    emulator: str | None = typer.Option(None, "--emulator", metavar="SEED", help="Plan against the built-in emulator."),
    graph_url: str | None = typer.Option(None, "--graph-url", metavar="URL", help="Graph base URL."),
    ca_bundle: str | None = typer.Option(None, "--ca-bundle", metavar="FILE", help="Extra CA certificate to trust."),
    authority: str | None = typer.Option(None, "--authority", metavar="URL", help="Sign-in authority."),
    tenant_id: str | None = typer.Option(None, "--tenant-id", help="Tenant id (AZURE_TENANT_ID)."),
    client_id: str | None = typer.Option(None, "--client-id", help="Application id (AZURE_CLIENT_ID)."),
    device_code: bool = typer.Option(False, "--device-code", help="Interactive sign-in at a terminal."),
    processing_wait: float = typer.Option(
        120.0,
        "--processing-wait",
        metavar="SECONDS",
        min=0,
        help="Longest wait for groups Entra is still processing before planning (0: don't wait; "
        "a plan made while groups are processing carries a ProcessingPending warning).",
    ),
) -> None:
    """Plan the changes that make the tenant match the policy, with the license errors Entra would record.

    Reads the tenant read-only. Prints the plan on stdout (--format); --out writes the plan file.
    Exit 0 no changes (or changes without --detailed-exitcode), 2 changes with --detailed-exitcode,
    3 invalid policy or a plan that blocks (printed first), 4 another tenant, 1 Graph/sign-in error.
    """
    from reconciler.errors import EXIT_CHANGES, EXIT_INVALID, UsageError
    from reconciler.planfile import write_plan
    from reconciler.planner.run import plan_tenant
    from reconciler.policy import load_policy
    from reconciler.render import (
        FORMATS,
        append_step_summary,
        color_wanted,
        render,
        render_github_annotations,
    )

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if annotations not in (None, "github"):
        raise UsageError(f"--annotations must be github, not {annotations!r}")
    options = _connection_options(
        emulator, graph_url, ca_bundle, authority, tenant_id, client_id, device_code, read_only=True
    )
    policy = load_policy(paths)
    plan = plan_tenant(policy, options, force=force, processing_wait=processing_wait)
    hint = f"reconciler show {out}" if out else "reconciler plan " + " ".join(paths)
    if out:
        write_plan(plan, out)
    color = fmt == "text" and color_wanted(sys.stdout)
    sys.stdout.write(render(plan, fmt, color=color, hint=hint))
    sys.stdout.flush()
    if annotations == "github":  # stderr: the runner reads workflow commands there; stdout stays the rendering
        sys.stderr.write(render_github_annotations(plan))
        sys.stderr.flush()
    append_step_summary(plan, hint=hint)
    if out:
        sys.stderr.write(f"plan written to {out}\n")
    if plan.blocked:
        raise typer.Exit(EXIT_INVALID)
    if detailed_exitcode and plan.has_changes:
        raise typer.Exit(EXIT_CHANGES)



# --------------------------------------------------------------------------- operate (issue 7)
# errors, report, export, migrate: read-only, with the connection options of `plan`.

_EMULATOR_OPT = typer.Option(None, "--emulator", metavar="SEED", help="Use the built-in emulator seeded from SEED.")
_GRAPH_URL_OPT = typer.Option(None, "--graph-url", metavar="URL", help="Graph base URL.")
_CA_BUNDLE_OPT = typer.Option(None, "--ca-bundle", metavar="FILE", help="Extra CA certificate to trust.")
_AUTHORITY_OPT = typer.Option(None, "--authority", metavar="URL", help="Sign-in authority.")
_TENANT_ID_OPT = typer.Option(None, "--tenant-id", help="Tenant id (AZURE_TENANT_ID).")
_CLIENT_ID_OPT = typer.Option(None, "--client-id", help="Application id (AZURE_CLIENT_ID).")
_DEVICE_CODE_OPT = typer.Option(False, "--device-code", help="Interactive sign-in at a terminal.")


def _connection_options(
    emulator: str | None,
    graph_url: str | None,
    ca_bundle: str | None,
    authority: str | None,
    tenant_id: str | None,
    client_id: str | None,
    device_code: bool,
    *,
    read_only: bool = False,
) -> Any:
    """The connection flags of SPEC section 3, completed from the environment."""
    from reconciler.graph.connect import ConnectionOptions

    return ConnectionOptions.resolve(
        emulator=emulator,
        graph_url=graph_url,
        ca_bundle=ca_bundle,
        authority=authority,
        tenant_id=tenant_id,
        client_id=client_id,
        device_code=device_code,
        read_only=read_only,
    )


def _read_only_client(
    emulator: str | None,
    graph_url: str | None,
    ca_bundle: str | None,
    authority: str | None,
    tenant_id: str | None,
    client_id: str | None,
    device_code: bool,
) -> Any:
    """A read-only GraphClient from the connection flags (then the environment), like `plan`."""
    from reconciler.graph.connect import connect

    options = _connection_options(
        emulator, graph_url, ca_bundle, authority, tenant_id, client_id, device_code, read_only=True
    )
    return connect(options, read_only=True)


@app.command("errors")
def errors_command(
    group: str | None = typer.Option(None, "--group", metavar="G", help="Only this group (display name or id)."),
    fmt: str = typer.Option("text", "--format", help="Output format: text, markdown, json or csv."),
    emulator: str | None = _EMULATOR_OPT,
    graph_url: str | None = _GRAPH_URL_OPT,
    ca_bundle: str | None = _CA_BUNDLE_OPT,
    authority: str | None = _AUTHORITY_OPT,
    tenant_id: str | None = _TENANT_ID_OPT,
    client_id: str | None = _CLIENT_ID_OPT,
    device_code: bool = _DEVICE_CODE_OPT,
) -> None:
    """List every user in license error (code, SKU, group, meaning, what to do) and the silent failures.

    Silent failures: members of a licensed group holding neither its license nor an error, with the
    other object that holds the same proxy address. Read-only. Exit 0 none, 3 some, 1 Graph error.
    """
    from reconciler.errors import EXIT_INVALID
    from reconciler.ops.errors import find_errors, render_errors
    from reconciler.ops.output import check_format

    check_format(fmt)
    with _read_only_client(emulator, graph_url, ca_bundle, authority, tenant_id, client_id, device_code) as client:
        report = find_errors(client, group)
    sys.stdout.write(render_errors(report, fmt))
    sys.stdout.flush()
    if report.found:
        raise typer.Exit(EXIT_INVALID)


@app.command("report")
def report_command(
    fmt: str = typer.Option("text", "--format", help="Output format: text, markdown, json or csv (one row per user x SKU)."),
    emulator: str | None = _EMULATOR_OPT,
    graph_url: str | None = _GRAPH_URL_OPT,
    ca_bundle: str | None = _CA_BUNDLE_OPT,
    authority: str | None = _AUTHORITY_OPT,
    tenant_id: str | None = _TENANT_ID_OPT,
    client_id: str | None = _CLIENT_ID_OPT,
    device_code: bool = _DEVICE_CODE_OPT,
) -> None:
    """Seats per SKU (purchased, consumed, free; licensed groups) and each user's license sources and plans.

    Read-only. Exit 0; 1 Graph error.
    """
    from reconciler.ops.output import check_format
    from reconciler.ops.report import read_report, write_report

    check_format(fmt)
    with _read_only_client(emulator, graph_url, ca_bundle, authority, tenant_id, client_id, device_code) as client:
        report = read_report(client)
    write_report(report, fmt, sys.stdout)  # in pieces: a big tenant's json is hundreds of MB


@app.command("export")
def export_command(
    group: list[str] | None = typer.Option(None, "--group", metavar="G", help="Only this group (repeatable)."),
    out: str | None = typer.Option(None, "--out", metavar="FILE", help="Write the policy here instead of stdout."),
    emulator: str | None = _EMULATOR_OPT,
    graph_url: str | None = _GRAPH_URL_OPT,
    ca_bundle: str | None = _CA_BUNDLE_OPT,
    authority: str | None = _AUTHORITY_OPT,
    tenant_id: str | None = _TENANT_ID_OPT,
    client_id: str | None = _CLIENT_ID_OPT,
    device_code: bool = _DEVICE_CODE_OPT,
) -> None:
    """Write the live group licensing as a policy (names, disabledPlans, comments); planning it shows no changes.

    Read-only. Exit 0; 64 for an unknown --group; 1 Graph or I/O error.
    """
    from reconciler.ops.export import export_policy, group_refs, read_export_state, write_export

    with _read_only_client(emulator, graph_url, ca_bundle, authority, tenant_id, client_id, device_code) as client:
        state = read_export_state(client)
        source = "the built-in emulator" if emulator or client.emulator is not None else client.base_url
    write_export(export_policy(state, group_refs(group), source=source), out)
    if out:
        sys.stderr.write(f"policy written to {out}\n")


@app.command("migrate")
def migrate_command(
    sku: list[str] | None = typer.Option(None, "--sku", metavar="SKU", help="Only direct licenses of this SKU (repeatable)."),
    out: str | None = typer.Option(None, "--out", metavar="FILE", help="Write the policy here (else stdout, summary on stderr)."),
    name_pattern: str = typer.Option(
        "LIC-{sku}-{n}", "--name-pattern", metavar="PATTERN", help="Mirror group names: {sku} part numbers, {n} a number."
    ),
    wave_size: int | None = typer.Option(None, "--wave-size", metavar="N", min=1, help="directLicenses.waveSize."),
    emulator: str | None = _EMULATOR_OPT,
    graph_url: str | None = _GRAPH_URL_OPT,
    ca_bundle: str | None = _CA_BUNDLE_OPT,
    authority: str | None = _AUTHORITY_OPT,
    tenant_id: str | None = _TENANT_ID_OPT,
    client_id: str | None = _CLIENT_ID_OPT,
    device_code: bool = _DEVICE_CODE_OPT,
) -> None:
    """Propose mirror groups and a policy moving direct licenses to group-based licensing safely.

    One group per distinct (SKUs, enabled plans) combination, members and licenses as the users have
    them, directLicenses: removeRedundant. Prints the mirror groups, seats needed, direct removals
    and the users skipped and why. Read-only. Exit 0; 64 bad flag; 1 Graph or I/O error.
    """
    from reconciler.ops.export import write_export
    from reconciler.ops.migrate import (
        check_pattern,
        migration_policy,
        propose_migration,
        read_migration_state,
        render_summary,
    )

    check_pattern(name_pattern)
    with _read_only_client(emulator, graph_url, ca_bundle, authority, tenant_id, client_id, device_code) as client:
        state = read_migration_state(client)
    migration = propose_migration(state, sku or (), name_pattern)
    write_export(migration_policy(migration, state, wave_size=wave_size), out)
    summary = render_summary(migration, state)
    if out:
        sys.stdout.write(summary + f"policy written to {out}\n")
    else:
        sys.stderr.write(summary)

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


@app.command("apply")
def apply_command(
    targets: list[str] = typer.Argument(
        ..., metavar="PLANFILE | PATH...", help="A plan file from `plan --out`, or policy files/directories."
    ),
    auto_approve: bool = typer.Option(
        False, "--auto-approve", help="Apply policy paths without asking (a saved plan never asks)."
    ),
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="Wait for Entra's group processing, then remove direct licenses and verify."
    ),
    timeout: float = typer.Option(1800.0, "--timeout", metavar="SECONDS", min=0, help="Longest wait for processing."),
    force: bool = typer.Option(False, "--force", help="Apply despite blocking violations (never policy errors)."),
    audit_log: str | None = typer.Option(
        None, "--audit-log", metavar="FILE", help="Append one JSON line per Graph write (default .reconciler/audit.jsonl)."
    ),
    emulator: str | None = _EMULATOR_OPT,
    graph_url: str | None = _GRAPH_URL_OPT,
    ca_bundle: str | None = _CA_BUNDLE_OPT,
    authority: str | None = _AUTHORITY_OPT,
    tenant_id: str | None = _TENANT_ID_OPT,
    client_id: str | None = _CLIENT_ID_OPT,
    device_code: bool = _DEVICE_CODE_OPT,
) -> None:
    """Make the changes of a saved plan (it is the approval), or plan policy paths and apply after `yes`.

    Order: create groups, add members, set usage locations; group licenses; wait for processing;
    remove redundant direct licenses; remove licenses and members; reprocess; verify against the
    prediction. Differences from the prediction are reported, not failures. Exit 0 done (or no
    changes), 1 a write failed or the wait timed out, 3 blocking violations (policy errors even with
    --force) or a bad plan file, 4 the plan is stale, of another tenant, or a group changed meanwhile,
    64 policy paths without a terminal and without --auto-approve.
    """
    from reconciler.apply.detect import is_plan_file
    from reconciler.errors import EXIT_RUNTIME, UsageError

    plan_files = [t for t in targets if is_plan_file(t)]
    if plan_files and len(targets) > 1:
        raise UsageError(f"give either one plan file or policy paths, not both ({plan_files[0]} is a plan file)")
    if not plan_files and not auto_approve and not sys.stdin.isatty():
        raise UsageError(
            "apply of policy paths needs approval, and there is no terminal to ask on: pass --auto-approve, "
            "or save a plan with `reconciler plan --out PLANFILE`, review it, and `reconciler apply PLANFILE`"
        )
    from reconciler.apply.audit import audit_path
    from reconciler.apply.run import ApplySettings, apply_planfile, apply_policy
    from reconciler.render import color_wanted, render

    options = _connection_options(emulator, graph_url, ca_bundle, authority, tenant_id, client_id, device_code)
    settings = ApplySettings(audit_log=audit_path(audit_log), wait=wait, timeout=timeout, force=force)
    if plan_files:
        result = apply_planfile(plan_files[0], options, settings)
        if result is None:
            sys.stdout.write("No changes.\n")
            return
    else:
        hint = "reconciler apply " + " ".join(targets)

        def approve(plan: object) -> bool:
            if auto_approve:
                return True
            sys.stderr.write(
                "\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
            )
            sys.stderr.flush()
            answer = sys.stdin.readline().strip()
            if answer != "yes":
                sys.stderr.write("Apply cancelled.\n")
                return False
            return True

        plan, maybe = apply_policy(
            targets,
            options,
            settings,
            render=lambda p: render(p, "text", color=color_wanted(sys.stdout), hint=hint),
            approve=approve,
        )
        if maybe is None:
            if plan.has_changes:
                raise typer.Exit(EXIT_RUNTIME)
            return
        result = maybe
        sys.stdout.write("\n")  # after the plan
    sys.stdout.write(result.render())
    sys.stdout.flush()
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command("reprocess")
def reprocess_command(
    group: str | None = typer.Option(
        None, "--group", metavar="G", help="All direct user members of this group (display name or id)."
    ),
    user: str | None = typer.Option(None, "--user", metavar="U", help="One user (UPN or id)."),
    errors: bool = typer.Option(False, "--errors", help="Every user in license error (groups with members in error)."),
    wait: bool = typer.Option(False, "--wait", help="Wait until the users' license states stop changing."),
    timeout: float = typer.Option(1800.0, "--timeout", metavar="SECONDS", min=0, help="Longest wait with --wait."),
    audit_log: str | None = typer.Option(
        None, "--audit-log", metavar="FILE", help="Append one JSON line per Graph write (default .reconciler/audit.jsonl)."
    ),
    emulator: str | None = _EMULATOR_OPT,
    graph_url: str | None = _GRAPH_URL_OPT,
    ca_bundle: str | None = _CA_BUNDLE_OPT,
    authority: str | None = _AUTHORITY_OPT,
    tenant_id: str | None = _TENANT_ID_OPT,
    client_id: str | None = _CLIENT_ID_OPT,
    device_code: bool = _DEVICE_CODE_OPT,
) -> None:
    """Ask Entra to evaluate users' group licenses again (after fixing a cause, e.g. a proxy address).

    Graph has no group-level reprocess: --group reprocesses every direct user member of the group.
    Calls go through $batch. A user whose cause is not fixed yet is listed as still in error with
    Entra's reason (Graph refuses such a reprocess with the licensing error). Exit 0 every call
    delivered (users still in error are listed), 1 some calls failed or the wait timed out, 64 not
    exactly one of --group/--user/--errors.
    """
    from reconciler.errors import UsageError

    if (group is not None) + (user is not None) + errors != 1:
        raise UsageError("give exactly one of --group G, --user U or --errors")
    from reconciler.apply.audit import AuditLog, audit_path
    from reconciler.apply.reprocess import reprocess_users
    from reconciler.graph.connect import connect
    from reconciler.graph.observe import rich_progress
    options = _connection_options(emulator, graph_url, ca_bundle, authority, tenant_id, client_id, device_code)

    def say(text: str) -> None:
        if sys.stderr.isatty():  # logs only on a terminal (SPEC section 3); the summary is on stdout
            sys.stderr.write(text + "\n")

    with (
        AuditLog(audit_path(audit_log), command="reprocess") as audit,
        connect(options, read_only=False, on_write=audit.hook) as client,
        rich_progress() as progress,
    ):
        result = reprocess_users(
            client, group=group, user=user, errors=errors, wait=wait, timeout=timeout,
            audit=audit, progress=progress, say=say,
        )
    sys.stdout.write(result.render())
    if result.exit_code:
        raise typer.Exit(result.exit_code)
