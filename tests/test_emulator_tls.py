"""The emulator's local CA, its server certificate, and the uvicorn server over real HTTPS."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.emulator.auth import TokenService
from reconciler.emulator.server import (
    ServerInfo,
    ServerStartError,
    bind_socket,
    connection_help,
    start_background,
)
from reconciler.emulator.tls import (
    CA_BUNDLE_NAME,
    CA_CERT_NAME,
    load_or_create_ca,
    load_or_create_key_file,
    prepare_tls,
)


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


# --------------------------------------------------------------------------- `reconciler emulator serve`

SAMPLE_SEED = Path(__file__).resolve().parent.parent / "examples" / "sample-tenant.json"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], capture_output=True, text=True, timeout=120
    )


def test_serve_with_a_missing_seed_exits_3_naming_the_file(tmp_path: Path) -> None:
    result = run_cli(
        "emulator", "serve", "--seed", str(tmp_path / "nope.json"), "--db", str(tmp_path / "e.db")
    )
    assert result.returncode == 3
    assert "nope.json" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--port", "70000", "--port"),
        ("--fail-rate", "1.5", "--fail-rate"),
        ("--latency-ms", "-1", "--latency-ms"),
    ],
)
def test_serve_rejects_out_of_range_flags_with_exit_64(
    tmp_path: Path, flag: str, value: str, needle: str
) -> None:
    result = run_cli(
        "emulator", "serve", "--seed", str(SAMPLE_SEED), "--db", str(tmp_path / "e.db"), flag, value
    )
    assert result.returncode == 64
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_connection_help_gives_the_flags_and_never_a_secret(tmp_path: Path) -> None:
    tokens = TokenService(
        [
            {
                "appId": "11111111-2222-3333-4444-555555555555",
                "displayName": "demo",
                "secret": "s3cr3t-value-42",
                "permissions": ["Directory.Read.All"],
            }
        ],
        tenant_id="6e3e2c1a-0b7d-4f5e-9a61-3c1f2d7b8e90",
        initial_domain="contoso.onmicrosoft.com",
    )
    info = ServerInfo(
        base_url="https://127.0.0.1:8443", host="127.0.0.1", port=8443, tls=True, ca_path=tmp_path / "ca.pem"
    )
    text = connection_help(info, tokens, db=tmp_path / "e.db")
    assert "s3cr3t-value-42" not in text
    assert "--authority https://127.0.0.1:8443" in text
    assert "--graph-url https://127.0.0.1:8443/v1.0" in text
    assert f"--ca-bundle {tmp_path / 'ca.pem'}" in text
    assert "--tenant-id 6e3e2c1a-0b7d-4f5e-9a61-3c1f2d7b8e90" in text
    assert "--client-id 11111111-2222-3333-4444-555555555555" in text


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """stderr of `proc` up to the line containing `marker` (reading in a thread, with a deadline)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if marker in line:
            # the rest of the help follows immediately
            time.sleep(0.2)
            while not lines.empty():
                more = lines.get()
                if more is not None:
                    seen.append(more)
            return "".join(seen)
    raise AssertionError("emulator did not report ready:\n" + "".join(seen))


def test_serve_end_to_end_msal_then_graph(tmp_path: Path) -> None:
    seed = json.loads(SAMPLE_SEED.read_text())
    app = next(a for a in seed["applications"] if "secret" in a)
    tenant = seed["organization"]["id"]
    ca_out = tmp_path / "out" / "ca.pem"
    db = tmp_path / "state" / "emulator.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "emulator",
            "serve",
            "--seed",
            str(SAMPLE_SEED),
            "--db",
            str(db),
            "--ca-out",
            str(ca_out),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        text = _read_until(proc, "connect with:", timeout=60)
        assert app["secret"] not in text
        authority = re.search(r"--authority (\S+)", text)
        assert authority is not None
        base = authority.group(1)
        assert base.startswith("https://127.0.0.1:")
        assert ca_out.exists() and (db.parent / CA_CERT_NAME).exists()
        session = requests.Session()
        session.trust_env = False
        session.verify = str(ca_out)
        client = msal.ConfidentialClientApplication(
            app["appId"],
            client_credential=app["secret"],
            authority=f"{base}/{tenant}",
            instance_discovery=False,
            http_client=session,
        )
        result = client.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
        assert "access_token" in result, result
        with httpx.Client(verify=trusting(ca_out), trust_env=False) as http:
            org = http.get(
                f"{base}/v1.0/organization", headers={"Authorization": f"Bearer {result['access_token']}"}
            )
            assert org.status_code == 200, org.text
            assert http.get(f"{base}/v1.0/organization").status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_start_emulator_fixture_serves_the_sample_tenant(start_emulator: Any) -> None:
    emu = start_emulator()
    app = next(a for a in emu.seed["applications"] if "secret" in a)
    token = emu.tokens.issue_access_token(app["appId"])
    with httpx.Client(verify=trusting(emu.server.ca_path), trust_env=False) as http:
        reply = http.get(f"{emu.server.graph_url}/organization", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200
    assert reply.json()["value"][0]["id"] == emu.seed["organization"]["id"]


def test_token_signing_key_is_kept_so_tokens_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "emulator-token-key"
    key = load_or_create_key_file(path)
    assert len(key) == 32
    assert load_or_create_key_file(path) == key
    assert path.stat().st_mode & 0o077 == 0
    apps = [
        {
            "appId": "11111111-2222-3333-4444-555555555555",
            "displayName": "d",
            "secret": "x" * 12,
            "permissions": [],
        }
    ]
    before = TokenService(
        apps, tenant_id="6e3e2c1a-0b7d-4f5e-9a61-3c1f2d7b8e90", initial_domain="c.test", signing_key=key
    )
    after = TokenService(
        apps, tenant_id="6e3e2c1a-0b7d-4f5e-9a61-3c1f2d7b8e90", initial_domain="c.test", signing_key=key
    )
    token = before.issue_access_token(apps[0]["appId"])
    assert after.authenticate(f"Bearer {token}").app_id == apps[0]["appId"]
