"""Build a GraphClient from command-line flags and the environment (SPEC section 3).

Flags win over the environment. ``--emulator SEED`` starts the built-in emulator over HTTPS in a
background thread (state under ``.reconciler/emulator/<seed-name>-<digest>/``, so it persists between
commands; the seed file is only read) and then connects through the real path: msal against the
emulator's token endpoint with an application of the seed, Graph calls over TLS checked against the
emulator's CA. Nothing ever falls back to the emulator: it runs only when asked for.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from reconciler.errors import UsageError
from reconciler.graph.client import DEFAULT_CONCURRENCY, DEFAULT_GRAPH_URL, GraphClient, WriteHook
from reconciler.graph.credentials import (
    DEFAULT_AUTHORITY,
    Credential,
    CredentialSettings,
    MsalTokenProvider,
    ssl_context,
    token_provider,
)
from reconciler.graph.transport import RetryPolicy

DEFAULT_STATE_ROOT = Path(".reconciler") / "emulator"

# permissions that let an app change the tenant (a seed app without any of them is read-only)
WRITE_PERMISSIONS = frozenset(
    {
        "LicenseAssignment.ReadWrite.All",
        "User.ReadWrite.All",
        "Group.ReadWrite.All",
        "GroupMember.ReadWrite.All",
        "Directory.ReadWrite.All",
    }
)


@dataclass(frozen=True)
class ConnectionOptions:
    """Where and how to connect. Build with :meth:`resolve` (flags, then environment)."""

    emulator: Path | None = None
    graph_url: str = DEFAULT_GRAPH_URL
    ca_bundle: str | None = None
    authority: str = DEFAULT_AUTHORITY
    tenant_id: str | None = None
    client_id: str | None = None
    device_code: bool = False
    read_only: bool = False
    app: str | None = None  # emulator only: the seed application to sign in as (displayName or appId)
    max_wait: float = 300.0
    max_concurrency: int = DEFAULT_CONCURRENCY
    state_root: Path = DEFAULT_STATE_ROOT
    # which values came from flags (an explicit --graph-url contradicts --emulator)
    explicit: frozenset[str] = field(default=frozenset(), compare=False)

    @classmethod
    def resolve(
        cls,
        *,
        emulator: str | os.PathLike[str] | None = None,
        graph_url: str | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        authority: str | None = None,
        tenant_id: str | None = None,
        client_id: str | None = None,
        device_code: bool = False,
        read_only: bool = False,
        app: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ConnectionOptions:
        environ = os.environ if env is None else env
        explicit = frozenset(
            name
            for name, value in (
                ("emulator", emulator),
                ("graph_url", graph_url),
                ("ca_bundle", ca_bundle),
                ("authority", authority),
                ("tenant_id", tenant_id),
                ("client_id", client_id),
            )
            if value
        )

        def pick(flag: Any, var: str) -> str | None:
            if flag:
                return str(flag)
            value = environ.get(var, "").strip()
            return value or None

        emulator_seed = pick(emulator, "RECONCILER_EMULATOR")
        max_wait_text = environ.get("RECONCILER_MAX_WAIT", "").strip()
        try:
            max_wait = float(max_wait_text) if max_wait_text else 300.0
        except ValueError:
            raise UsageError(f"RECONCILER_MAX_WAIT={max_wait_text!r}: give a number of seconds") from None
        options = cls(
            emulator=Path(emulator_seed) if emulator_seed else None,
            graph_url=(pick(graph_url, "RECONCILER_GRAPH_URL") or DEFAULT_GRAPH_URL).rstrip("/"),
            ca_bundle=pick(ca_bundle, "RECONCILER_CA_BUNDLE"),
            authority=(pick(authority, "RECONCILER_AUTHORITY") or DEFAULT_AUTHORITY).rstrip("/"),
            tenant_id=pick(tenant_id, "AZURE_TENANT_ID"),
            client_id=pick(client_id, "AZURE_CLIENT_ID"),
            device_code=device_code,
            read_only=read_only,
            app=app,
            max_wait=max_wait,
            explicit=explicit,
        )
        options.check()
        return options

    def check(self) -> None:
        if self.emulator is not None:
            clash = sorted(self.explicit & {"graph_url", "authority", "ca_bundle"})
            if clash:
                flags = ", ".join("--" + c.replace("_", "-") for c in clash)
                raise UsageError(f"--emulator runs its own Graph and sign-in; drop {flags}")
            if self.device_code:
                raise UsageError("--device-code cannot be used with --emulator (the emulator signs in apps)")
            return
        for name, url in (("--graph-url", self.graph_url), ("--authority", self.authority)):
            if not url.startswith("https://") and not url.startswith("http://"):
                raise UsageError(f"{name} {url}: give an https:// URL")
        if not self.authority.startswith("https://"):
            raise UsageError(f"--authority {self.authority}: sign-in needs https:// (msal refuses http)")


@dataclass
class EmulatorHandle:
    """A running built-in emulator (stopped when the client closes)."""

    server: Any
    store: Any
    seed: dict[str, Any]
    state_dir: Path

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            close = getattr(self.store, "close", None)
            if close is not None:
                close()


def emulator_state_dir(seed_path: Path, state_root: Path = DEFAULT_STATE_ROOT) -> Path:
    """``.reconciler/emulator/<seed-name>-<digest of its absolute path>``: one state per seed file."""
    digest = hashlib.sha256(str(seed_path.resolve()).encode()).hexdigest()[:12]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in seed_path.stem) or "seed"
    return state_root / f"{name}-{digest}"


def start_emulator(seed_path: Path, *, state_root: Path = DEFAULT_STATE_ROOT) -> EmulatorHandle:
    """Start the emulator for ``seed_path`` on 127.0.0.1 (random port) over HTTPS.

    The tenant database is ``<state dir>/tenant.db``: reused while it came from this seed (so changes
    made by ``apply`` persist between commands), loaded afresh when the seed changed.
    """
    import sqlite3

    from reconciler.emulator.auth import TokenService
    from reconciler.emulator.seed import load_seed
    from reconciler.emulator.server import ServerStartError, start_background
    from reconciler.emulator.store import Store

    if not seed_path.is_file():
        raise UsageError(f"--emulator {seed_path}: seed file not found")
    seed = load_seed(seed_path)  # SeedError names the file and every problem
    try:
        module: Any = importlib.import_module("reconciler.emulator.app")
    except ImportError as exc:
        raise ServerStartError(f"this build of reconciler has no emulator ({exc})") from exc
    state_dir = emulator_state_dir(seed_path, state_root)
    db = state_dir / "tenant.db"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        store = None
        if db.exists():
            store = Store.open(db)
            if not (store.has_tenant and store.same_seed(seed)):
                store.close()
                store = None
        if store is None:
            store = Store.create(db, seed)
    except (OSError, sqlite3.Error) as exc:
        raise ServerStartError(f"{db}: cannot open the emulator database: {exc}") from exc
    try:
        tokens = TokenService.from_seed(
            {"organization": store.organization, "applications": store.applications()}
        )
        app = module.create_app(store, token_service=tokens, options=module.EmulatorOptions())
        server = start_background(app, tls=True, state_dir=state_dir)
    except BaseException:
        store.close()
        raise
    return EmulatorHandle(server=server, store=store, seed=seed, state_dir=state_dir)


def _seed_app(seed: Mapping[str, Any], options: ConnectionOptions, env: Mapping[str, str]) -> dict[str, Any]:
    apps = [a for a in seed.get("applications") or [] if isinstance(a, Mapping)]
    if not apps:
        raise UsageError(f"--emulator {options.emulator}: the seed has no applications to sign in with")

    def matches(app: Mapping[str, Any], ref: str) -> bool:
        ref = ref.strip().lower()
        return ref in (str(app.get("appId", "")).lower(), str(app.get("displayName", "")).lower())

    names = ", ".join(f"{a.get('displayName')} ({a.get('appId')})" for a in apps)
    wanted = options.app or (options.client_id if "client_id" in options.explicit else None)
    if wanted:
        found = [a for a in apps if matches(a, wanted)]
        if not found:
            raise UsageError(f"no application {wanted!r} in the emulator seed; it has: {names}")
        return dict(found[0])
    env_id = env.get("AZURE_CLIENT_ID", "").strip()
    if env_id:
        found = [a for a in apps if matches(a, env_id)]
        if found:
            return dict(found[0])

    def is_writer(app: Mapping[str, Any]) -> bool:
        return bool(set(app.get("permissions") or ()) & WRITE_PERMISSIONS)

    preferred = "reconciler-plan" if options.read_only else "reconciler-apply"
    for app in apps:
        if str(app.get("displayName", "")).lower() == preferred and app.get("secret"):
            return dict(app)
    candidates = [a for a in apps if a.get("secret") and is_writer(a) != options.read_only]
    if not candidates:
        candidates = [a for a in apps if a.get("secret")]
    if not candidates:
        raise UsageError(
            f"no application with a secret in the emulator seed to sign in with; it has: {names}"
        )
    return dict(candidates[0])


def connect(
    options: ConnectionOptions,
    *,
    read_only: bool | None = None,
    on_write: WriteHook | None = None,
    env: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    stderr: TextIO | None = None,
) -> GraphClient:
    """A GraphClient for ``options``; ``read_only=True`` (plan) refuses every write before sending."""
    environ = os.environ if env is None else env
    if read_only is not None:
        options = replace(options, read_only=read_only)
    retry = retry or RetryPolicy(max_total_wait=options.max_wait)
    if options.emulator is not None:
        return _connect_emulator(options, environ, on_write=on_write, retry=retry, stderr=stderr)
    settings = CredentialSettings(
        tenant_id=options.tenant_id,
        client_id=options.client_id,
        authority=options.authority,
        device_code=options.device_code,
        ca_bundle=options.ca_bundle,
    )
    tokens = token_provider(settings, environ, stderr=stderr)
    return GraphClient(
        options.graph_url,
        token_provider=tokens,
        verify=ssl_context(options.ca_bundle),
        read_only=options.read_only,
        retry=retry,
        max_concurrency=options.max_concurrency,
        on_write=on_write,
    )


def _connect_emulator(
    options: ConnectionOptions,
    env: Mapping[str, str],
    *,
    on_write: WriteHook | None,
    retry: RetryPolicy,
    stderr: TextIO | None,
) -> GraphClient:
    assert options.emulator is not None
    handle = start_emulator(options.emulator, state_root=options.state_root)
    try:
        app = _seed_app(handle.seed, options, env)
        org = handle.seed.get("organization") or {}
        ca = str(handle.server.ca_path)
        settings = CredentialSettings(
            tenant_id=str(org.get("id") or ""),
            client_id=str(app["appId"]),
            authority=handle.server.base_url,
            ca_bundle=ca,
        )
        secret = app.get("secret")
        secret = secret[0] if isinstance(secret, list) else secret
        credential = Credential("secret", f"emulator application {app.get('displayName')}", str(secret))
        tokens = MsalTokenProvider(settings, credential, stderr=stderr or sys.stderr)
        client = GraphClient(
            handle.server.graph_url,
            token_provider=tokens,
            verify=ssl_context(ca),
            read_only=options.read_only,
            retry=retry,
            max_concurrency=options.max_concurrency,
            on_write=on_write,
        )
    except BaseException:
        handle.stop()
        raise
    client.add_closer(handle.stop)
    client.emulator = handle
    return client
