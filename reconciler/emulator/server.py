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
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from reconciler.emulator.tls import TlsMaterial, prepare_tls
from reconciler.errors import ReconcilerError

DEFAULT_HOST = "127.0.0.1"

__all__ = [
    "DEFAULT_HOST",
    "RunningServer",
    "ServerInfo",
    "ServerStartError",
    "bind_socket",
    "serve",
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
