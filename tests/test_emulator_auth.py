"""Sign-in like Entra: msal against the emulator over real HTTPS, and Graph's bearer-token checks."""

from __future__ import annotations

import datetime as dt
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
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

from reconciler.emulator.auth import (
    INSUFFICIENT_PRIVILEGES,
    Application,
    GraphAuthError,
    Operation,
    Principal,
    TokenService,
    has_permission,
    implied_permissions,
    require_permission,
)
from reconciler.emulator.server import RunningServer
from reconciler.errors import SeedError

TENANT_ID = "6e3e2c1a-0b7d-4f5e-9a61-3c1f2d7b8e90"
DOMAIN = "contosolab.onmicrosoft.com"
RW_APP = "11111111-2222-3333-4444-555555555555"
RO_APP = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
CERT_APP = "99999999-8888-7777-6666-555555555555"
RW_SECRET = "rw-secret-value-0123456789"
RO_SECRET = "ro-secret-value-0123456789"
GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]


def make_certificate(name: str = "reconciler test app") -> tuple[str, str, str]:
    """A self-signed RSA certificate: (private key PEM, certificate PEM, SHA-1 thumbprint hex)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
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
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return key_pem, cert_pem, cert.fingerprint(hashes.SHA1()).hex()


@pytest.fixture(scope="module")
def app_cert() -> tuple[str, str, str]:
    return make_certificate()


@pytest.fixture(scope="module")
def token_service(app_cert: tuple[str, str, str]) -> TokenService:
    seed: dict[str, Any] = {
        "organization": {
            "id": TENANT_ID,
            "displayName": "Contoso Lab",
            "verifiedDomains": [
                {"name": DOMAIN, "isInitial": True},
                {"name": "contoso.com", "isDefault": True},
            ],
        },
        "applications": [
            {
                "appId": RW_APP,
                "displayName": "reconciler (read-write)",
                "secret": RW_SECRET,
                "permissions": ["LicenseAssignment.ReadWrite.All", "Group.ReadWrite.All", "User.Read.All"],
            },
            {
                "appId": RO_APP,
                "displayName": "reconciler (read-only)",
                "secret": RO_SECRET,
                "permissions": ["Directory.Read.All"],
            },
            {
                "appId": CERT_APP,
                "displayName": "reconciler (certificate)",
                "certificate": app_cert[1],
                "permissions": ["Directory.ReadWrite.All"],
            },
        ],
    }
    return TokenService.from_seed(seed)


def _graph_error(exc: GraphAuthError) -> Response:
    body = {
        "error": {"code": exc.code, "message": exc.message, "innerError": {"request-id": str(uuid.uuid4())}}
    }
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def probe_app(service: TokenService) -> Starlette:
    """Token endpoints plus two Graph-like routes guarded the way the Graph app guards them."""

    async def me(request: Request) -> Response:
        try:
            who = service.authenticate(request.headers.get("authorization"))
        except GraphAuthError as exc:
            return _graph_error(exc)
        return JSONResponse(
            {"appId": who.app_id, "displayName": who.display_name, "roles": sorted(who.permissions)}
        )

    async def write(request: Request) -> Response:
        try:
            who = service.authenticate(request.headers.get("authorization"))
            require_permission(who, Operation.GROUPS_ASSIGN_LICENSE)
        except GraphAuthError as exc:
            return _graph_error(exc)
        return JSONResponse({}, status_code=202)

    return Starlette(
        routes=[
            *service.routes(),
            Route("/v1.0/probe", me, methods=["GET"]),
            Route("/v1.0/groups/{gid}/assignLicense", write, methods=["POST"]),
        ]
    )


@pytest.fixture(scope="module")
def server(serve_app: Any, token_service: TokenService) -> RunningServer:
    running: RunningServer = serve_app(probe_app(token_service))
    return running


def tls_context(server: RunningServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_path))


def http_session(ca_path: Path | None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE would override verify
    session.verify = str(ca_path)
    return session


def confidential(server: RunningServer, client_id: str, credential: Any, tenant: str = TENANT_ID) -> Any:
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=f"{server.base_url}/{tenant}",
        instance_discovery=False,
        http_client=http_session(server.ca_path),
    )


def graph_get(server: RunningServer, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with httpx.Client(verify=tls_context(server), trust_env=False) as client:
        return client.get(f"{server.base_url}{path}", headers=headers)


def token_post(server: RunningServer, data: dict[str, str], tenant: str = TENANT_ID) -> httpx.Response:
    with httpx.Client(verify=tls_context(server), trust_env=False) as client:
        return client.post(f"{server.base_url}/{tenant}/oauth2/v2.0/token", data=data)


# --------------------------------------------------------------------------- msal end to end


def test_msal_gets_a_token_with_a_client_secret_and_graph_accepts_it(server: RunningServer) -> None:
    result = confidential(server, RW_APP, RW_SECRET).acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["appid"] == RW_APP and claims["tid"] == TENANT_ID
    assert claims["aud"] == "https://graph.microsoft.com"
    assert 3500 <= claims["exp"] - claims["iat"] <= 3600
    assert claims["roles"] == sorted(
        ["LicenseAssignment.ReadWrite.All", "Group.ReadWrite.All", "User.Read.All"]
    )

    reply = graph_get(server, "/v1.0/probe", result["access_token"])
    assert reply.status_code == 200
    assert reply.json()["appId"] == RW_APP
    assert "LicenseAssignment.ReadWrite.All" in reply.json()["roles"]


def test_msal_accepts_the_initial_domain_as_tenant(server: RunningServer) -> None:
    result = confidential(server, RO_APP, RO_SECRET, tenant=DOMAIN).acquire_token_for_client(
        scopes=GRAPH_SCOPE
    )
    assert "access_token" in result, result
    assert graph_get(server, "/v1.0/probe", result["access_token"]).json()["appId"] == RO_APP


def test_msal_gets_a_token_with_a_certificate_assertion_by_thumbprint(
    server: RunningServer, app_cert: tuple[str, str, str]
) -> None:
    key_pem, _cert_pem, thumbprint = app_cert
    app = confidential(server, CERT_APP, {"private_key": key_pem, "thumbprint": thumbprint})
    result = app.acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["appid"] == CERT_APP and claims["appidacr"] == "2"
    assert graph_get(server, "/v1.0/probe", result["access_token"]).status_code == 200


def test_msal_gets_a_token_with_a_certificate_assertion_signed_ps256(
    server: RunningServer, app_cert: tuple[str, str, str]
) -> None:
    key_pem, cert_pem, _ = app_cert
    # with public_certificate msal signs PS256 and names the key by its SHA-256 thumbprint (x5t#S256)
    app = confidential(server, CERT_APP, {"private_key": key_pem, "public_certificate": cert_pem})
    result = app.acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert "access_token" in result, result


def test_msal_with_thumbprint_and_public_certificate_signs_rs256_with_x5c(
    server: RunningServer, app_cert: tuple[str, str, str]
) -> None:
    # what the product's own certificate credential hands msal (AZURE_CLIENT_CERTIFICATE_PATH)
    key_pem, cert_pem, thumbprint = app_cert
    credential = {"private_key": key_pem, "thumbprint": thumbprint.upper(), "public_certificate": cert_pem}
    result = confidential(server, CERT_APP, credential).acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert "access_token" in result, result


def test_wrong_secret_is_refused_like_entra(server: RunningServer) -> None:
    result = confidential(server, RW_APP, "not-the-secret").acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert "access_token" not in result
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith(
        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the "
        f"client secret value, not the client secret ID, for a secret added to app '{RW_APP}'. Trace ID: "
    )

    raw = token_post(
        server,
        {
            "grant_type": "client_credentials",
            "client_id": RW_APP,
            "client_secret": "nope",
            "scope": GRAPH_SCOPE[0],
        },
    )
    assert raw.status_code == 401
    body = raw.json()
    assert set(body) == {
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
        "error_uri",
    }
    assert body["error_uri"] == "https://login.microsoftonline.com/error?code=7000215"
    assert "nope" not in raw.text


def test_certificate_not_registered_on_the_app_is_refused(server: RunningServer) -> None:
    other_key, _, other_thumb = make_certificate("someone else")
    result = confidential(
        server, CERT_APP, {"private_key": other_key, "thumbprint": other_thumb}
    ).acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]


def test_assertion_signed_by_another_key_but_naming_the_registered_thumbprint_is_refused(
    server: RunningServer, app_cert: tuple[str, str, str]
) -> None:
    other_key, _, _ = make_certificate("forger")
    result = confidential(
        server, CERT_APP, {"private_key": other_key, "thumbprint": app_cert[2]}
    ).acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert result["error_codes"] == [700027]
    assert "signature value did not match" in result["error_description"]


def _assertion(
    key_pem: str, thumbprint: str, *, iss: str, aud: str, exp_in: float, now: float | None = None
) -> str:
    t = time.time() if now is None else now
    x5t = jwt.utils.base64url_encode(bytes.fromhex(thumbprint)).decode()
    claims = {
        "aud": aud,
        "iss": iss,
        "sub": iss,
        "jti": str(uuid.uuid4()),
        "iat": int(t),
        "nbf": int(t),
        "exp": int(t + exp_in),
    }
    return jwt.encode(claims, key_pem, algorithm="RS256", headers={"x5t": x5t})


def _assertion_form(assertion: str, client_id: str = CERT_APP) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
        "scope": GRAPH_SCOPE[0],
    }


def test_client_assertion_checks_issuer_audience_and_expiry(
    server: RunningServer, app_cert: tuple[str, str, str]
) -> None:
    key_pem, _, thumb = app_cert
    endpoint = f"{server.base_url}/{TENANT_ID}/oauth2/v2.0/token"

    ok = token_post(
        server, _assertion_form(_assertion(key_pem, thumb, iss=CERT_APP, aud=endpoint, exp_in=600))
    )
    assert ok.status_code == 200, ok.text

    wrong_iss = token_post(
        server, _assertion_form(_assertion(key_pem, thumb, iss=RW_APP, aud=endpoint, exp_in=600))
    )
    assert wrong_iss.status_code == 401
    assert wrong_iss.json()["error_codes"] == [700021]

    expired = token_post(
        server,
        _assertion_form(
            _assertion(key_pem, thumb, iss=CERT_APP, aud=endpoint, exp_in=600, now=time.time() - 7200)
        ),
    )
    assert expired.status_code == 401
    assert expired.json()["error_codes"] == [700024]

    elsewhere = f"https://login.microsoftonline.com/{TENANT_ID}/oauth2/v2.0/token"
    wrong_aud = token_post(
        server, _assertion_form(_assertion(key_pem, thumb, iss=CERT_APP, aud=elsewhere, exp_in=600))
    )
    assert wrong_aud.status_code == 401
    assert wrong_aud.json()["error"] == "invalid_client"

    garbage = token_post(server, _assertion_form("not.a.jwt"))
    assert garbage.status_code == 400
    assert garbage.json()["error_codes"] == [50027]


def test_unknown_client_is_refused_like_entra(server: RunningServer) -> None:
    unknown = str(uuid.uuid4())
    result = confidential(server, unknown, "whatever-secret").acquire_token_for_client(scopes=GRAPH_SCOPE)
    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]
    assert (
        f"Application with identifier '{unknown}' was not found in the directory 'Contoso Lab'"
        in result["error_description"]
    )
    raw = token_post(
        server,
        {
            "grant_type": "client_credentials",
            "client_id": unknown,
            "client_secret": "x",
            "scope": GRAPH_SCOPE[0],
        },
    )
    assert raw.status_code == 400


def test_wrong_tenant_is_refused_like_entra(server: RunningServer) -> None:
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        confidential(server, RW_APP, RW_SECRET, tenant="fabrikam.onmicrosoft.com")
    with httpx.Client(verify=tls_context(server), trust_env=False) as client:
        disco = client.get(
            f"{server.base_url}/fabrikam.onmicrosoft.com/v2.0/.well-known/openid-configuration"
        )
    assert disco.status_code == 400
    assert disco.json()["error"] == "invalid_tenant"
    assert disco.json()["error_codes"] == [90002]

    raw = token_post(
        server,
        {
            "grant_type": "client_credentials",
            "client_id": RW_APP,
            "client_secret": RW_SECRET,
            "scope": GRAPH_SCOPE[0],
        },
        tenant=str(uuid.uuid4()),
    )
    assert raw.status_code == 400
    assert raw.json()["error"] == "invalid_request"
    assert raw.json()["error_description"].startswith("AADSTS90002: Tenant '")


def test_scope_must_be_a_dot_default_scope_of_graph_or_the_emulator(server: RunningServer) -> None:
    form = {"grant_type": "client_credentials", "client_id": RW_APP, "client_secret": RW_SECRET}
    user_read = token_post(server, {**form, "scope": "User.Read"})
    assert user_read.status_code == 400
    assert user_read.json()["error"] == "invalid_scope"
    assert user_read.json()["error_codes"] == [1002012]

    other = token_post(server, {**form, "scope": "https://management.azure.com/.default"})
    assert other.status_code == 400
    assert other.json()["error_codes"] == [500011]

    own = token_post(server, {**form, "scope": f"{server.base_url}/.default"})
    assert own.status_code == 200
    assert set(own.json()) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert own.json()["expires_in"] == 3599

    missing = token_post(
        server, {"grant_type": "client_credentials", "client_id": RW_APP, "scope": GRAPH_SCOPE[0]}
    )
    assert missing.status_code == 401
    assert missing.json()["error_codes"] == [7000218]


def test_discovery_document_points_at_the_emulator(server: RunningServer) -> None:
    with httpx.Client(verify=tls_context(server), trust_env=False) as client:
        doc = client.get(f"{server.base_url}/{DOMAIN}/v2.0/.well-known/openid-configuration").json()
    assert doc["token_endpoint"] == f"{server.base_url}/{TENANT_ID}/oauth2/v2.0/token"
    assert doc["issuer"] == f"{server.base_url}/{TENANT_ID}/v2.0"
    assert doc["authorization_endpoint"].startswith(server.base_url)


def test_token_endpoint_only_accepts_post(server: RunningServer) -> None:
    with httpx.Client(verify=tls_context(server), trust_env=False) as client:
        reply = client.get(f"{server.base_url}/{TENANT_ID}/oauth2/v2.0/token")
    assert reply.status_code == 400
    assert reply.json()["error_codes"] == [900561]


# --------------------------------------------------------------------------- Graph's token checks


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Access token is empty."),
        ("", "Access token is empty."),
        ("Bearer", "Access token is empty."),
        ("Basic dXNlcjpwYXNz", "Access token is empty."),
        ("Bearer garbage", "CompactToken parsing failed with error code: 80049217"),
        ("Bearer a.b.c", "CompactToken parsing failed with error code: 80049217"),
    ],
)
def test_missing_or_garbage_token_is_401_invalid_authentication_token(
    server: RunningServer, header: str | None, message: str
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    with httpx.Client(verify=tls_context(server), trust_env=False) as client:
        reply = client.get(f"{server.base_url}/v1.0/probe", headers=headers)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert reply.json()["error"]["message"] == message
    assert reply.headers["www-authenticate"].startswith("Bearer ")


def test_expired_token_is_401(server: RunningServer, token_service: TokenService) -> None:
    expired = token_service.issue_access_token(RW_APP, now=time.time() - 2 * 3600)
    reply = graph_get(server, "/v1.0/probe", expired)
    assert reply.status_code == 401
    assert reply.json()["error"] == {
        "code": "InvalidAuthenticationToken",
        "message": "Access token has expired or is not yet valid.",
        "innerError": reply.json()["error"]["innerError"],
    }
    not_yet = token_service.issue_access_token(RW_APP, now=time.time() + 2 * 3600)
    assert graph_get(server, "/v1.0/probe", not_yet).status_code == 401


def test_token_of_another_emulator_instance_has_an_invalid_signature(
    server: RunningServer, token_service: TokenService
) -> None:
    other = TokenService([a for a in token_service.applications], tenant_id=TENANT_ID, initial_domain=DOMAIN)
    forged = other.issue_access_token(RW_APP)
    reply = graph_get(server, "/v1.0/probe", forged)
    assert reply.status_code == 401
    assert reply.json()["error"]["message"] == "Access token validation failure. Invalid signature."


def test_read_only_app_is_denied_writes_with_403(server: RunningServer) -> None:
    ro = confidential(server, RO_APP, RO_SECRET).acquire_token_for_client(scopes=GRAPH_SCOPE)["access_token"]
    rw = confidential(server, RW_APP, RW_SECRET).acquire_token_for_client(scopes=GRAPH_SCOPE)["access_token"]
    with httpx.Client(verify=tls_context(server), trust_env=False) as client:
        url = f"{server.base_url}/v1.0/groups/{uuid.uuid4()}/assignLicense"
        denied = client.post(url, headers={"Authorization": f"Bearer {ro}"})
        allowed = client.post(url, headers={"Authorization": f"Bearer {rw}"})
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "Authorization_RequestDenied"
    assert denied.json()["error"]["message"] == INSUFFICIENT_PRIVILEGES
    assert allowed.status_code == 202


def test_authenticate_unit(token_service: TokenService) -> None:
    token = token_service.issue_access_token(CERT_APP)
    who = token_service.authenticate(f"bearer {token}")
    assert who == Principal(CERT_APP, "reconciler (certificate)", frozenset({"Directory.ReadWrite.All"}))
    with pytest.raises(GraphAuthError) as err:
        token_service.authenticate(f"Bearer {token[:-4]}AAAA")
    assert err.value.status == 401 and err.value.code == "InvalidAuthenticationToken"


# --------------------------------------------------------------------------- permission model


def _p(*perms: str) -> Principal:
    return Principal("app", "app", frozenset(perms))


def test_directory_readwrite_implies_everything() -> None:
    admin = _p("Directory.ReadWrite.All")
    for op in Operation:
        assert has_permission(admin, op), op
    for perm in (
        "User.Read.All",
        "Group.ReadWrite.All",
        "LicenseAssignment.ReadWrite.All",
        "Organization.Read.All",
    ):
        assert has_permission(admin, perm)


def test_readwrite_implies_read_and_directory_read_implies_object_reads() -> None:
    assert has_permission(_p("User.ReadWrite.All"), "User.Read.All")
    assert has_permission(_p("Group.ReadWrite.All"), "Group.Read.All")
    assert not has_permission(_p("User.Read.All"), "User.ReadWrite.All")
    reader = _p("Directory.Read.All")
    for perm in ("User.Read.All", "Group.Read.All", "Organization.Read.All"):
        assert has_permission(reader, perm)
    assert "GroupMember.Read.All" in implied_permissions({"Directory.Read.All"})
    for op in (
        Operation.USERS_READ,
        Operation.GROUPS_READ,
        Operation.SUBSCRIBED_SKUS_READ,
        Operation.ORGANIZATION_READ,
    ):
        assert has_permission(reader, op)
    for op in (
        Operation.USERS_WRITE,
        Operation.USERS_ASSIGN_LICENSE,
        Operation.USERS_REPROCESS,
        Operation.GROUPS_WRITE,
        Operation.GROUPS_MEMBERS_WRITE,
        Operation.GROUPS_ASSIGN_LICENSE,
    ):
        assert not has_permission(reader, op), op


def test_license_assignment_permission_covers_assign_license_on_users_and_groups_only() -> None:
    lic = _p("LicenseAssignment.ReadWrite.All")
    assert has_permission(lic, Operation.USERS_ASSIGN_LICENSE)
    assert has_permission(lic, Operation.GROUPS_ASSIGN_LICENSE)
    assert has_permission(lic, Operation.SUBSCRIBED_SKUS_READ)
    assert not has_permission(lic, Operation.USERS_WRITE)
    assert not has_permission(lic, Operation.GROUPS_MEMBERS_WRITE)
    assert not has_permission(lic, Operation.USERS_REPROCESS)


def test_user_and_group_readwrite_cover_their_own_writes() -> None:
    users = _p("User.ReadWrite.All")
    assert has_permission(users, Operation.USERS_WRITE)
    assert has_permission(users, Operation.USERS_REPROCESS)
    assert has_permission(users, Operation.USERS_ASSIGN_LICENSE)
    assert not has_permission(users, Operation.GROUPS_ASSIGN_LICENSE)
    groups = _p("Group.ReadWrite.All")
    assert has_permission(groups, Operation.GROUPS_WRITE)
    assert has_permission(groups, Operation.GROUPS_MEMBERS_WRITE)
    assert has_permission(groups, Operation.GROUPS_ASSIGN_LICENSE)
    assert has_permission(groups, Operation.GROUPS_CREATE)
    assert not has_permission(groups, Operation.USERS_WRITE)
    assert has_permission(_p(), Operation.EMULATOR_CONTROL)
    assert not has_permission(_p(), Operation.USERS_READ)


def test_require_permission_raises_graphs_403() -> None:
    with pytest.raises(GraphAuthError) as err:
        require_permission(_p("User.Read.All"), Operation.USERS_WRITE)
    assert (err.value.status, err.value.code, err.value.message) == (
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )


def test_bad_certificate_in_seed_names_its_json_path() -> None:
    bad = {
        "appId": RW_APP,
        "displayName": "x",
        "certificate": "-----BEGIN CERTIFICATE-----\nnope\n",
        "permissions": [],
    }
    with pytest.raises(SeedError, match=r"\$\.applications\[2\]\.certificate"):
        Application.from_seed(bad, path="$.applications[2]")
    with pytest.raises(SeedError, match=r"\$\.applications\[0\]\.certificate"):
        TokenService([bad], tenant_id=TENANT_ID, initial_domain=DOMAIN)
