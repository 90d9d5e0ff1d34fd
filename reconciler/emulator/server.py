"""Run an ASGI app under uvicorn on 127.0.0.1, over HTTPS from the emulator's local CA (or plain HTTP).

Two ways to run:

- `serve(app, ...)`: in the foreground until Ctrl-C / SIGTERM (the `emulator serve` command).
- `start_background(app, ...)`: in a daemon thread; returns a `RunningServer` once the server
  accepts connections. Use it as a context manager, or call `.stop()`.

The listening socket is bound here before uvicorn starts, so port 0 means "any free port" with no
race, and the real port is known before the first request. Any ASGI app works; the Graph app comes
from `reconciler.emulator.app.create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import shlex
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.types import ASGIApp

from reconciler.emulator.tls import TlsMaterial, prepare_tls
from reconciler.errors import ReconcilerError

if TYPE_CHECKING:
    from reconciler.emulator.auth import TokenService
    from reconciler.emulator.store import Store

DEFAULT_HOST = "127.0.0.1"

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_HOST",
    "EmulatorSettings",
    "RunningServer",
    "ServerInfo",
    "ServerStartError",
    "bind_socket",
    "connection_help",
    "serve",
    "serve_emulator",
    "start_background",
]


class ServerStartError(ReconcilerError):
    """The server could not listen or did not start (exit code 1)."""


@dataclass(frozen=True)
class ServerInfo:
    """What a client needs to reach a running emulator."""

    base_url: str
    """`https://127.0.0.1:PORT` (or http:// with plain HTTP); the authority URL for msal."""
    host: str
    port: int
    tls: bool
    ca_path: Path | None
    """The CA certificate clients must trust (`--ca-bundle`); None with plain HTTP."""

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port). ServerStartError if impossible."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerStartError(f"cannot listen on {host}:{port}: unknown host ({exc.strerror})") from exc
    last: OSError | None = None
    for family, kind, proto, _name, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(2048)
            sock.set_inheritable(True)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    reason = last.strerror if last is not None and last.strerror else str(last)
    raise ServerStartError(f"cannot listen on {host}:{port}: {reason}")


def _client_host(host: str, family: int) -> str:
    """The host a local client should use for a server bound to `host`."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    if addr.is_unspecified:
        return "::1" if family == socket.AF_INET6 else "127.0.0.1"
    return str(addr)


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


@dataclass
class _Prepared:
    config: uvicorn.Config
    sock: socket.socket
    info: ServerInfo


def _prepare(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    tls: bool,
    state_dir: Path | str | None,
    ca_out: Path | str | None,
    log_level: str,
    access_log: bool,
    quiet_logging: bool,
) -> _Prepared:
    material: TlsMaterial | None = None
    if tls:
        if state_dir is None:
            raise ValueError("state_dir is required with tls=True (the CA is kept there)")
        try:
            material = prepare_tls(state_dir, hosts=[host], ca_out=ca_out)
        except OSError as exc:
            raise ServerStartError(f"cannot prepare the emulator's TLS certificates: {exc}") from exc
    sock = bind_socket(host, port)
    try:
        bound_port = int(sock.getsockname()[1])
        client_host = _client_host(host, sock.family)
        scheme = "https" if tls else "http"
        info = ServerInfo(
            base_url=f"{scheme}://{_url_host(client_host)}:{bound_port}",
            host=client_host,
            port=bound_port,
            tls=tls,
            ca_path=material.ca_out_path if material is not None else None,
        )
        config = uvicorn.Config(
            app,
            host=host,
            port=bound_port,
            ssl_certfile=str(material.server_bundle_path) if material is not None else None,
            log_level=log_level,
            access_log=access_log,
            log_config=None if quiet_logging else uvicorn.config.LOGGING_CONFIG,
            lifespan="auto",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
    except BaseException:
        sock.close()
        raise
    return _Prepared(config=config, sock=sock, info=info)


class _Server(uvicorn.Server):
    """uvicorn's server, telling us when it is ready."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self._on_ready is not None:
            self._on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn closes idle keep-alive connections at shutdown; over TLS a close waits for the
        # client's close_notify, which an idle client never sends, so shutdown would stall for
        # timeout_graceful_shutdown. Abort connections uvicorn is closing once their output is flushed.
        async def reap() -> None:
            while True:
                await asyncio.sleep(0.05)
                for conn in list(self.server_state.connections):
                    transport = getattr(conn, "transport", None)
                    if (
                        isinstance(transport, asyncio.WriteTransport)
                        and transport.is_closing()
                        and transport.get_write_buffer_size() == 0
                    ):
                        transport.abort()

        reaper = asyncio.create_task(reap())
        try:
            await super().shutdown(sockets=sockets)
        finally:
            reaper.cancel()


def serve(
    app: ASGIApp,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    tls: bool = True,
    state_dir: Path | str | None = None,
    ca_out: Path | str | None = None,
    on_ready: Callable[[ServerInfo], None] | None = None,
    log_level: str = "warning",
    access_log: bool = False,
) -> None:
    """Serve `app` in the foreground until interrupted; `on_ready(info)` runs once it accepts connections."""
    prepared = _prepare(
        app,
        host=host,
        port=port,
        tls=tls,
        state_dir=state_dir,
        ca_out=ca_out,
        log_level=log_level,
        access_log=access_log,
        quiet_logging=False,
    )
    info = prepared.info
    server = _Server(prepared.config, on_ready=(lambda: on_ready(info)) if on_ready is not None else None)
    try:
        server.run(sockets=[prepared.sock])
    except SystemExit as exc:
        raise ServerStartError(f"the emulator failed to start (uvicorn exit {exc.code})") from exc
    finally:
        prepared.sock.close()


class RunningServer:
    """A server running in a background thread. `stop()` (or leaving the `with` block) shuts it down."""

    def __init__(
        self, server: _Server, thread: threading.Thread, sock: socket.socket, info: ServerInfo
    ) -> None:
        self._server = server
        self._thread = thread
        self._sock = sock
        self.info = info

    @property
    def base_url(self) -> str:
        return self.info.base_url

    @property
    def graph_url(self) -> str:
        return self.info.graph_url

    @property
    def ca_path(self) -> Path | None:
        return self.info.ca_path

    @property
    def port(self) -> int:
        return self.info.port

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down gracefully (in-flight requests finish), forcing it after `timeout` seconds."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningServer({self.base_url!r}, running={self.running})"


def start_background(
    app: ASGIApp,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    tls: bool = True,
    state_dir: Path | str | None = None,
    ca_out: Path | str | None = None,
    ready_timeout: float = 30.0,
    log_level: str = "warning",
) -> RunningServer:
    """Start `app` in a daemon thread and return once it accepts connections.

    Raises ServerStartError when it cannot listen, when the app's startup fails, or when it is not
    ready within `ready_timeout` seconds.
    """
    prepared = _prepare(
        app,
        host=host,
        port=port,
        tls=tls,
        state_dir=state_dir,
        ca_out=ca_out,
        log_level=log_level,
        access_log=False,
        quiet_logging=True,
    )
    ready = threading.Event()
    failure: list[BaseException] = []
    server = _Server(prepared.config, on_ready=ready.set)

    def run() -> None:
        try:
            server.run(sockets=[prepared.sock])
        except BaseException as exc:  # reported to the starting thread
            failure.append(exc)
            logging.getLogger(__name__).debug("emulator server thread ended", exc_info=True)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name=f"emulator-server-{prepared.info.port}", daemon=True)
    thread.start()
    running = RunningServer(server, thread, prepared.sock, prepared.info)
    deadline = time.monotonic() + ready_timeout
    if not ready.wait(ready_timeout) or failure or not thread.is_alive():
        running.stop(timeout=2.0)
        reason = f": {failure[0]!r}" if failure else ""
        raise ServerStartError(f"the emulator did not start on {prepared.info.base_url}{reason}")
    # the listener is open once uvicorn reports started; make sure a connection gets through
    while True:
        try:
            with socket.create_connection(
                (prepared.info.host, prepared.info.port), timeout=max(0.1, deadline - time.monotonic())
            ):
                break
        except OSError as exc:
            if time.monotonic() >= deadline:
                running.stop(timeout=2.0)
                raise ServerStartError(
                    f"the emulator on {prepared.info.base_url} accepts no connection"
                ) from exc
            time.sleep(0.02)
    return running


# --------------------------------------------------------------------------- the emulator itself

DEFAULT_DB = Path(".reconciler") / "emulator.db"


@dataclass(frozen=True)
class EmulatorSettings:
    """What `reconciler emulator serve` was asked for."""

    seed: Path
    db: Path = DEFAULT_DB
    host: str = DEFAULT_HOST
    port: int = 0
    ca_out: Path | None = None
    tls: bool = True
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    throttle: bool = False
    processing_delay: float | None = None

    def check(self) -> None:
        """UsageError (exit 64) for values out of range."""
        from reconciler.errors import UsageError

        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port must be between 0 (any free port) and 65535, not {self.port}")
        if self.latency_ms < 0:
            raise UsageError(f"--latency-ms must be 0 or more, not {self.latency_ms:g}")
        if not 0 <= self.fail_rate <= 1:
            raise UsageError(
                f"--fail-rate must be between 0 and 1 (a fraction of requests), not {self.fail_rate:g}"
            )
        if self.processing_delay is not None and self.processing_delay < 0:
            raise UsageError(f"--processing-delay must be 0 or more seconds, not {self.processing_delay:g}")


def _open_tenant(settings: EmulatorSettings, seed: Mapping[str, Any], say: Callable[[str], None]) -> Store:
    """The tenant database: reused when it came from this seed, (re)created from the seed otherwise."""
    from reconciler.emulator.store import Store

    db = settings.db
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        if db.exists():
            store = Store.open(db)
            if store.has_tenant and store.same_seed(seed):
                say(f"reusing the tenant state in {db}")
                return store
            store.close()
            say(f"{db} came from another seed (or is empty): loading {settings.seed} afresh")
        else:
            say(f"loading {settings.seed} into {db}")
        return Store.create(db, seed)
    except (OSError, sqlite3.Error) as exc:
        raise ServerStartError(f"{db}: cannot open the emulator database: {exc}") from exc


def _signing_key(db: Path) -> bytes:
    """The access-token signing key kept beside the database (so tokens survive a restart)."""
    from reconciler.emulator.tls import load_or_create_key_file

    path = db.parent / "emulator-token-key"
    try:
        return load_or_create_key_file(path)
    except OSError as exc:
        raise ServerStartError(f"{path}: cannot keep the token signing key: {exc}") from exc


def serve_emulator(settings: EmulatorSettings, *, say: Callable[[str], None]) -> None:
    """Load the tenant, build the Graph app and serve it in the foreground until interrupted.

    `say` receives progress and, once the server accepts connections, the connection help
    (never a secret).
    """
    from reconciler.emulator.auth import TokenService
    from reconciler.emulator.seed import load_seed

    settings.check()
    seed = load_seed(settings.seed)  # SeedError (exit 3) names the file and every problem
    from reconciler.emulator.app import EmulatorOptions, create_app

    store = _open_tenant(settings, seed, say)
    try:
        tokens = TokenService.from_seed(
            {"organization": store.organization, "applications": store.applications()},
            signing_key=_signing_key(settings.db),
        )
        options = EmulatorOptions(
            latency_ms=settings.latency_ms,
            fail_rate=settings.fail_rate,
            throttle=settings.throttle,
            processing_delay=settings.processing_delay,
        )
        asgi = create_app(store, token_service=tokens, options=options)
        # The loaded tenant lives as long as this process: out of the collector's sight, so that
        # the full collections that serving triggers do not walk millions of records each time
        # (half the time of a cold 100,000-user listing went to those walks).
        gc.freeze()
        state_dir = settings.db.parent if settings.db.parent != Path() else Path.cwd()

        def ready(info: ServerInfo) -> None:
            say(connection_help(info, tokens, db=settings.db))

        serve(
            asgi,
            host=settings.host,
            port=settings.port,
            tls=settings.tls,
            state_dir=state_dir,
            ca_out=settings.ca_out,
            on_ready=ready,
        )
    finally:
        store.close()


def connection_help(info: ServerInfo, tokens: TokenService, *, db: Path | None = None) -> str:
    """What a client needs to reach the emulator: URLs, CA path, flags and app ids (no secrets)."""
    lines = [f"emulator: tenant {tokens.tenant_name} ({tokens.tenant_id}) at {info.base_url}"]
    lines.append(f"  graph:      {info.graph_url}")
    lines.append(
        f"  authority:  {info.base_url}  (token endpoint {info.base_url}/{tokens.tenant_id}/oauth2/v2.0/token)"
    )
    ca_path = info.ca_path.absolute() if info.ca_path is not None else None
    if ca_path is not None:
        lines.append(f"  CA:         {ca_path}")
    if db is not None:
        lines.append(f"  database:   {db}")
    flags = [f"--authority {info.base_url}", f"--graph-url {info.graph_url}"]
    if ca_path is not None:
        flags.append(f"--ca-bundle {shlex.quote(str(ca_path))}")
    flags.append(f"--tenant-id {tokens.tenant_id}")
    apps = tokens.applications
    if apps:
        flags.append(f"--client-id {apps[0].app_id}")
    lines.append("connect with:")
    lines.append("  " + " ".join(flags))
    lines.append("  and the application's secret from the seed file in AZURE_CLIENT_SECRET")
    lines.append("  (or a certificate registered on it in AZURE_CLIENT_CERTIFICATE_PATH)")
    if apps:
        lines.append("applications:")
        for a in apps:
            creds = "+".join(
                x for x, present in (("secret", a.secrets), ("certificate", a.certificates)) if present
            )
            perms = ", ".join(sorted(a.permissions)) or "no permissions"
            lines.append(f"  {a.app_id}  {a.display_name}  [{creds}]  {perms}")
    if not info.tls:
        lines.append("warning: plain HTTP; msal signs in only over https, so the CLI cannot use this server")
    lines.append("Ctrl-C stops the emulator; its state stays in the database.")
    return "\n".join(lines)
