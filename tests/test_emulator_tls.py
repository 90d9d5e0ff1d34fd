"""The emulator's local CA, its server certificate, and the uvicorn server over real HTTPS."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.emulator.server import ServerStartError, bind_socket, start_background
from reconciler.emulator.tls import CA_BUNDLE_NAME, CA_CERT_NAME, load_or_create_ca, prepare_tls


async def hello(request: Request) -> Response:
    return JSONResponse({"scheme": request.url.scheme})


def tiny_app() -> Starlette:
    return Starlette(routes=[Route("/hello", hello)])


def trusting(ca: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def test_ca_is_created_once_and_reused(tmp_path: Path) -> None:
    first = prepare_tls(tmp_path)
    ca_pem = first.ca_cert_path.read_bytes()
    bundle = (tmp_path / CA_BUNDLE_NAME).read_bytes()
    second = prepare_tls(tmp_path)
    assert second.ca_cert_path.read_bytes() == ca_pem
    assert (tmp_path / CA_BUNDLE_NAME).read_bytes() == bundle
    assert (tmp_path / CA_BUNDLE_NAME).stat().st_mode & 0o077 == 0, "the CA key must be private"
    # a fresh server certificate each start, signed by the same CA
    assert first.server_bundle_path.read_bytes() != b""
    ca = x509.load_pem_x509_certificate(ca_pem)
    leaf = x509.load_pem_x509_certificates(second.server_bundle_path.read_bytes())[0]
    leaf.verify_directly_issued_by(ca)


def test_server_certificate_names_loopback_addresses_and_localhost(tmp_path: Path) -> None:
    material = prepare_tls(tmp_path, hosts=["0.0.0.0", "emulator.test"])
    leaf = x509.load_pem_x509_certificates(material.server_bundle_path.read_bytes())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "emulator.test"}
    ca = x509.load_pem_x509_certificate(material.ca_cert_path.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_ca_out_writes_the_ca_certificate_where_asked(tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "ca.pem"
    material = prepare_tls(tmp_path / "state", ca_out=out)
    assert material.ca_out_path == out
    assert out.read_bytes() == (tmp_path / "state" / CA_CERT_NAME).read_bytes()
    assert b"PRIVATE KEY" not in out.read_bytes()


def test_expired_ca_is_replaced(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    now = dt.datetime.now(dt.UTC)
    old = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + old.public_bytes(serialization.Encoding.PEM)
    (tmp_path / CA_BUNDLE_NAME).write_bytes(pem)
    _, cert = load_or_create_ca(tmp_path)
    assert cert.serial_number != 1
    assert cert.not_valid_after_utc > now


def test_concurrent_starts_agree_on_one_ca(tmp_path: Path) -> None:
    results: list[bytes] = []
    lock = threading.Lock()

    def run() -> None:
        _, cert = load_or_create_ca(tmp_path)
        with lock:
            results.append(cert.public_bytes(serialization.Encoding.PEM))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 8
    assert len(set(results)) == 1


def test_https_server_is_trusted_through_the_ca_and_only_through_it(tmp_path: Path) -> None:
    with start_background(tiny_app(), state_dir=tmp_path) as server:
        assert server.base_url.startswith("https://127.0.0.1:")
        assert server.graph_url == server.base_url + "/v1.0"
        assert server.ca_path == tmp_path / CA_CERT_NAME
        with httpx.Client(verify=trusting(server.ca_path), trust_env=False) as client:
            assert client.get(server.base_url + "/hello").json() == {"scheme": "https"}
            localhost = server.base_url.replace("127.0.0.1", "localhost")
            assert client.get(localhost + "/hello").status_code == 200
        with (
            httpx.Client(verify=ssl.create_default_context(), trust_env=False) as client,
            pytest.raises(httpx.ConnectError),
        ):
            client.get(server.base_url + "/hello")


def test_restart_keeps_the_same_ca_so_clients_keep_trusting_it(tmp_path: Path) -> None:
    with start_background(tiny_app(), state_dir=tmp_path) as first:
        trusted = trusting(first.ca_path)
    with (
        start_background(tiny_app(), state_dir=tmp_path) as second,
        httpx.Client(verify=trusted, trust_env=False) as c,
    ):
        assert c.get(second.base_url + "/hello").status_code == 200


def test_plain_http_when_asked() -> None:
    with start_background(tiny_app(), tls=False) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.ca_path is None
        assert httpx.get(server.base_url + "/hello", trust_env=False).json() == {"scheme": "http"}


def test_stop_closes_the_port(tmp_path: Path) -> None:
    server = start_background(tiny_app(), state_dir=tmp_path)
    port = server.port
    server.stop()
    assert not server.running
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ServerStartError, match=f"cannot listen on 127.0.0.1:{port}"):
            start_background(tiny_app(), port=port, state_dir=tmp_path)


def test_bind_socket_picks_a_free_port() -> None:
    with bind_socket("127.0.0.1", 0) as sock:
        assert sock.getsockname()[1] > 0


def test_app_startup_failure_is_reported(tmp_path: Path) -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("boom")
        yield

    broken = Starlette(routes=[], lifespan=lifespan)
    with pytest.raises(ServerStartError, match="did not start"):
        start_background(broken, state_dir=tmp_path, ready_timeout=10)


def test_session_fixture_serves_https(serve_app: object) -> None:
    server = serve_app(tiny_app())  # type: ignore[operator]
    with httpx.Client(verify=trusting(server.ca_path), trust_env=False) as client:
        assert client.get(server.base_url + "/hello").status_code == 200
