"""Sign-in through msal over real HTTPS (the emulator's token service under uvicorn, its own CA):
secret and certificate credentials, --ca-bundle pinned against REQUESTS_CA_BUNDLE, connect()."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.emulator.auth import GraphAuthError, TokenService
from reconciler.emulator.server import RunningServer
from reconciler.errors import AuthenticationError, PermissionDeniedError, TransportError
from reconciler.graph.connect import ConnectionOptions, connect
from reconciler.graph.credentials import (
    Credential,
    CredentialSettings,
    MsalTokenProvider,
    certificate_credential,
)

TENANT_ID = "5b0a3c2e-7d14-4c8e-9f21-6a3b8c0d1e2f"
DOMAIN = "fabrikam.onmicrosoft.com"
APP = "12121212-3434-5656-7878-909090909090"
SECRET = "graph-test-secret-0123456789"
CERT_APP = "abababab-cdcd-efef-0101-232323232323"


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "graph test app")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("cert") / "app.pem"
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    path.write_text(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        + cert_pem
    )
    return path, cert_pem


@pytest.fixture(scope="module")
def server(serve_app: Callable[..., RunningServer], cert_files: tuple[Path, str]) -> RunningServer:
    service = TokenService.from_seed(
        {
            "organization": {
                "id": TENANT_ID,
                "displayName": "Fabrikam",
                "verifiedDomains": [{"name": DOMAIN, "isInitial": True}],
            },
            "applications": [
                {
                    "appId": APP,
                    "displayName": "reader",
                    "secret": SECRET,
                    "permissions": ["Organization.Read.All"],
                },
                {
                    "appId": CERT_APP,
                    "displayName": "cert",
                    "certificate": cert_files[1],
                    "permissions": ["Organization.Read.All"],
                },
            ],
        }
    )

    def guarded(handler: Callable[[Any], dict[str, Any]], permission: str) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                who = service.authenticate(request.headers.get("authorization"))
            except GraphAuthError as exc:
                return JSONResponse(
                    {
                        "error": {
                            "code": exc.code,
                            "message": exc.message,
                            "innerError": {"request-id": str(uuid.uuid4())},
                        }
                    },
                    status_code=exc.status,
                )
            if permission not in who.permissions:
                return JSONResponse(
                    {
                        "error": {
                            "code": "Authorization_RequestDenied",
                            "message": "Insufficient privileges to complete the operation.",
                        }
                    },
                    status_code=403,
                )
            return JSONResponse(handler(who))

        return endpoint

    org = guarded(
        lambda who: {"value": [{"id": TENANT_ID, "displayName": who.display_name}]}, "Organization.Read.All"
    )
    write = guarded(lambda who: {}, "LicenseAssignment.ReadWrite.All")
    app = Starlette(
        routes=[
            *service.routes(),
            Route("/v1.0/organization", org, methods=["GET"]),
            Route("/v1.0/groups/{gid}/assignLicense", write, methods=["POST"]),
        ]
    )
    return serve_app(app)


def settings(server: RunningServer, client_id: str = APP) -> CredentialSettings:
    return CredentialSettings(
        tenant_id=TENANT_ID, client_id=client_id, authority=server.base_url, ca_bundle=str(server.ca_path)
    )


def bogus_requests_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bogus = tmp_path / "bogus-ca.pem"
    bogus.write_text("this is not a CA bundle\n")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bogus))


def test_secret_sign_in_over_https_with_pinned_ca_despite_requests_ca_bundle(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bogus_requests_bundle(tmp_path, monkeypatch)
    provider = MsalTokenProvider(settings(server), Credential("secret", "test", SECRET))
    token = provider()
    assert token.count(".") == 2
    assert provider() == token  # kept in memory


def test_without_pinning_requests_ca_bundle_would_break_msal(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trap the pinned session avoids: requests lets the environment replace `verify`."""
    bogus_requests_bundle(tmp_path, monkeypatch)
    session = requests.Session()
    session.verify = str(server.ca_path)
    with pytest.raises((OSError, requests.exceptions.RequestException)):
        msal.ConfidentialClientApplication(
            APP,
            client_credential=SECRET,
            authority=f"{server.base_url}/{TENANT_ID}",
            http_client=session,
            instance_discovery=False,
        ).acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])


def test_certificate_sign_in_over_https(server: RunningServer, cert_files: tuple[Path, str]) -> None:
    credential = Credential("certificate", "test", certificate_credential(cert_files[0]))
    assert MsalTokenProvider(settings(server, CERT_APP), credential)().count(".") == 2


def test_wrong_secret_is_an_authentication_error_naming_what_to_check(server: RunningServer) -> None:
    provider = MsalTokenProvider(settings(server), Credential("secret", "AZURE_CLIENT_SECRET", "wrong"))
    with pytest.raises(AuthenticationError) as info:
        provider()
    message = str(info.value)
    assert "invalid_client" in message and "AZURE_CLIENT_SECRET" in message
    assert "wrong" not in message


def test_unknown_tenant_is_an_authentication_error(server: RunningServer) -> None:
    bad = CredentialSettings(
        tenant_id="00000000-0000-0000-0000-000000000000",
        client_id=APP,
        authority=server.base_url,
        ca_bundle=str(server.ca_path),
    )
    with pytest.raises(AuthenticationError, match="tenant"):
        MsalTokenProvider(bad, Credential("secret", "test", SECRET))()


def test_untrusted_emulator_without_ca_bundle_is_a_tls_error(server: RunningServer) -> None:
    plain = CredentialSettings(tenant_id=TENANT_ID, client_id=APP, authority=server.base_url)
    with pytest.raises(TransportError, match="--ca-bundle"):
        MsalTokenProvider(plain, Credential("secret", "test", SECRET))()


def test_connect_from_flags_and_environment_reads_and_names_missing_permission(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bogus_requests_bundle(tmp_path, monkeypatch)
    env = {
        "AZURE_TENANT_ID": TENANT_ID,
        "AZURE_CLIENT_ID": APP,
        "AZURE_CLIENT_SECRET": SECRET,
        "RECONCILER_CA_BUNDLE": str(server.ca_path),
    }
    options = ConnectionOptions.resolve(
        graph_url=f"{server.base_url}/v1.0", authority=server.base_url, env=env
    )
    with connect(options, env=env) as client:
        org = client.get("/organization", select=["id", "displayName"])
        assert org["value"][0]["id"] == TENANT_ID
        with pytest.raises(PermissionDeniedError, match=r"LicenseAssignment\.ReadWrite\.All"):
            client.post("/groups/g1/assignLicense", {"addLicenses": [], "removeLicenses": []})
