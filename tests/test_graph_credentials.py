"""Credential selection (SPEC section 3 order), certificate thumbprints, OIDC, pinned CA for msal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from reconciler.errors import AuthenticationError, UsageError
from reconciler.graph.credentials import (
    CredentialSettings,
    FederatedTokenFile,
    GitHubOidcToken,
    MissingCredentialError,
    MsalTokenProvider,
    PinnedVerifySession,
    certificate_credential,
    combined_ca_file,
    msal_http_client,
    select_credential,
    ssl_context,
)

SETTINGS = CredentialSettings(tenant_id="t", client_id="c")


def make_cert(tmp_path: Path, name: str = "app") -> tuple[Path, x509.Certificate]:
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
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / f"{name}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return path, cert


def test_order_secret_then_certificate_then_token_file_then_oidc_then_device_code(tmp_path: Path) -> None:
    cert_path, _ = make_cert(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text("assertion-1")
    env = {
        "AZURE_CLIENT_SECRET": "s3cret",
        "AZURE_CLIENT_CERTIFICATE_PATH": str(cert_path),
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://gh.test/token?api-version=2.0",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "gh",
    }
    device = CredentialSettings(tenant_id="t", client_id="c", device_code=True)
    kinds = []
    for drop in (
        "",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_FEDERATED_TOKEN_FILE",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
    ):
        env.pop(drop, None)
        kinds.append(select_credential(device, env).kind)
    assert kinds == ["secret", "certificate", "federated-token-file", "github-oidc", "device-code"]


def test_credential_repr_hides_the_secret() -> None:
    cred = select_credential(SETTINGS, {"AZURE_CLIENT_SECRET": "s3cret-value"})
    assert cred.client_credential == "s3cret-value"
    assert "s3cret" not in repr(cred)


def test_certificate_thumbprint_is_sha1_of_the_certificate(tmp_path: Path) -> None:
    path, cert = make_cert(tmp_path)
    cred = certificate_credential(path)
    assert cred["thumbprint"] == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert "PRIVATE KEY" in cred["private_key"]
    assert cred["public_certificate"].startswith("-----BEGIN CERTIFICATE-----")


def test_certificate_without_key_or_with_a_foreign_certificate_is_explained(tmp_path: Path) -> None:
    path, cert = make_cert(tmp_path, "a")
    only_cert = tmp_path / "cert-only.pem"
    only_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(MissingCredentialError, match="private key"):
        certificate_credential(only_cert)
    _, other_cert = make_cert(tmp_path, "b")
    mixed = tmp_path / "mixed.pem"
    key_part = path.read_text().split("-----BEGIN CERTIFICATE-----")[0]
    mixed.write_text(key_part + other_cert.public_bytes(serialization.Encoding.PEM).decode())
    with pytest.raises(MissingCredentialError, match="matches its private key"):
        certificate_credential(mixed)
    with pytest.raises(MissingCredentialError, match="cannot read"):
        certificate_credential(tmp_path / "missing.pem")


def test_federated_token_file_is_read_each_time(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("one\n")
    cred = select_credential(SETTINGS, {"AZURE_FEDERATED_TOKEN_FILE": str(token_file)})
    assertion = cred.client_credential["client_assertion"]
    assert assertion() == "one"
    token_file.write_text("two")
    assert assertion() == "two"
    token_file.write_text("")
    with pytest.raises(AuthenticationError, match="empty"):
        FederatedTokenFile(token_file)()


def test_github_oidc_token_is_fetched_lazily_with_the_entra_audience() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"value": f"id-token-{len(seen)}"})

    token = GitHubOidcToken(
        "https://pipelines.test/idtoken?api-version=2.0", "req-token", transport=httpx.MockTransport(handler)
    )
    assert seen == []
    assert token() == "id-token-1"
    assert token() == "id-token-2"  # a fresh one every time msal asks
    assert seen[0].url.params["audience"] == "api://AzureADTokenExchange"
    assert seen[0].url.params["api-version"] == "2.0"
    assert seen[0].headers["Authorization"] == "bearer req-token"
    assert "req-token" not in repr(token)


def test_github_oidc_refusal_mentions_id_token_permission() -> None:
    token = GitHubOidcToken(
        "https://p.test/x", "t", transport=httpx.MockTransport(lambda r: httpx.Response(403))
    )
    with pytest.raises(AuthenticationError, match="id-token: write"):
        token()


def test_missing_credential_lists_what_to_set() -> None:
    with pytest.raises(MissingCredentialError) as info:
        select_credential(SETTINGS, {})
    message = str(info.value)
    for name in (
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_FEDERATED_TOKEN_FILE",
        "id-token: write",
        "--device-code",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "--emulator",
    ):
        assert name in message


def test_fork_pull_request_gets_a_clear_message_not_an_auth_failure(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps(
            {
                "pull_request": {
                    "head": {"repo": {"full_name": "someone/fork", "fork": True}},
                    "base": {"repo": {"full_name": "org/repo"}},
                }
            }
        )
    )
    env = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)}
    with pytest.raises(MissingCredentialError) as info:
        select_credential(SETTINGS, env)
    assert "fork" in str(info.value) and "OIDC" in str(info.value)
    assert "not a sign-in failure" in str(info.value)
    # a push without id-token permission gets the permission advice instead
    with pytest.raises(MissingCredentialError, match="permissions: id-token: write"):
        select_credential(SETTINGS, {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push"})


def test_oidc_url_without_request_token() -> None:
    with pytest.raises(MissingCredentialError, match="ACTIONS_ID_TOKEN_REQUEST_TOKEN"):
        select_credential(SETTINGS, {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://x.test/"})


def test_tenant_and_client_id_are_required() -> None:
    cred = select_credential(SETTINGS, {"AZURE_CLIENT_SECRET": "x"})
    with pytest.raises(MissingCredentialError, match=r"tenant id .*AZURE_TENANT_ID.* and the client id"):
        MsalTokenProvider(CredentialSettings(), cred)


def test_non_microsoft_authority_disables_instance_discovery() -> None:
    assert CredentialSettings(authority="https://login.microsoftonline.us").is_microsoft_authority
    assert not CredentialSettings(authority="https://127.0.0.1:8443").is_microsoft_authority
    assert (
        CredentialSettings(tenant_id="t1", authority="https://h.test/").authority_url == "https://h.test/t1"
    )


def test_ca_bundle_is_pinned_against_requests_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, _ = make_cert(tmp_path, "extra-ca")
    cert_only = tmp_path / "ca.pem"
    cert_only.write_text(
        "-----BEGIN CERTIFICATE-----" + ca.read_text().split("-----BEGIN CERTIFICATE-----")[1]
    )
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a bundle")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bogus))
    # what requests does by default: the environment wins over the session's verify
    plain = requests.Session()
    plain.verify = "/somewhere/else.pem"
    assert plain.merge_environment_settings("https://x.test/", {}, None, None, None)["verify"] == str(bogus)
    session = msal_http_client(str(cert_only))
    assert isinstance(session, PinnedVerifySession)
    pinned = session.merge_environment_settings("https://x.test/", {}, None, None, None)["verify"]
    assert pinned == combined_ca_file(str(cert_only))
    text = Path(pinned).read_text()
    assert cert_only.read_text().strip() in text
    assert text.count("BEGIN CERTIFICATE") > 10  # the public CAs are still trusted


def test_ca_bundle_errors_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        ssl_context(tmp_path / "nope.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("junk")
    with pytest.raises(UsageError, match="not a PEM"):
        ssl_context(junk)


class _FakeApp:
    """Stands in for msal's application classes (records what the provider asks for)."""

    instances: ClassVar[list[_FakeApp]] = []

    def __init__(self, client_id: str, **kwargs: object) -> None:
        self.client_id = client_id
        self.kwargs = kwargs
        self.calls: list[str] = []
        self.accounts: list[dict[str, str]] = []
        _FakeApp.instances.append(self)

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, object]:
        self.calls.append(f"client:{scopes[0]}")
        return {"access_token": f"tok{len(self.calls)}", "expires_in": 10}

    def get_accounts(self) -> list[dict[str, str]]:
        return self.accounts

    def acquire_token_silent(self, scopes: list[str], account: object) -> dict[str, object]:
        self.calls.append("silent")
        return {"access_token": "silent-tok", "expires_in": 3600}

    def initiate_device_flow(self, scopes: list[str]) -> dict[str, object]:
        self.calls.append("initiate")
        return {
            "user_code": "ABCD",
            "message": "To sign in, open https://microsoft.com/devicelogin and enter ABCD",
        }

    def acquire_token_by_device_flow(self, flow: dict[str, object]) -> dict[str, object]:
        self.calls.append("device")
        self.accounts.append({"username": "admin@contoso.com"})
        return {"access_token": "device-tok", "expires_in": 3600}


def test_device_code_prints_the_instructions_on_stderr_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import msal

    monkeypatch.setattr(msal, "PublicClientApplication", _FakeApp)
    settings = CredentialSettings(tenant_id="t", client_id="c", device_code=True)
    err = io.StringIO()
    provider = MsalTokenProvider(
        settings, select_credential(settings, {}), http_client=requests.Session(), stderr=err
    )
    assert provider() == "device-tok"
    assert provider() == "device-tok"
    app = _FakeApp.instances[-1]
    assert app.calls == ["initiate", "device"]
    assert "devicelogin" in err.getvalue() and "ABCD" in err.getvalue()
    assert app.kwargs["authority"] == "https://login.microsoftonline.com/t"
    assert "instance_discovery" not in app.kwargs  # Microsoft's authority: msal's discovery stays on


def test_client_tokens_are_renewed_before_they_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    import msal

    monkeypatch.setattr(msal, "ConfidentialClientApplication", _FakeApp)
    settings = CredentialSettings(tenant_id="t", client_id="c", authority="https://127.0.0.1:9999")
    provider = MsalTokenProvider(
        settings, select_credential(settings, {"AZURE_CLIENT_SECRET": "s"}), http_client=requests.Session()
    )
    first = provider()
    app = _FakeApp.instances[-1]
    assert app.kwargs["instance_discovery"] is False  # not Microsoft's authority
    assert app.kwargs["client_credential"] == "s"
    provider._expires = 0.0  # as if the token were about to expire
    assert provider() != first
    assert app.calls == ["client:https://graph.microsoft.com/.default"] * 2


def test_msal_session_never_proxies_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = msal_http_client(None)
    assert (
        session.merge_environment_settings(
            "https://127.0.0.1:8443/t/oauth2/v2.0/token", {}, None, None, None
        )["proxies"]
        == {}
    )
    remote = session.merge_environment_settings("https://login.microsoftonline.com/t", {}, None, None, None)
    assert remote["proxies"].get("https") == "http://proxy.corp:3128"
