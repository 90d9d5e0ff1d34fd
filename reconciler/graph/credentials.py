"""Sign-in with msal, credential picked in the order of SPEC section 3.

1. ``AZURE_CLIENT_SECRET``                client secret
2. ``AZURE_CLIENT_CERTIFICATE_PATH``      PEM with private key and certificate (SHA-1 thumbprint computed)
3. ``AZURE_FEDERATED_TOKEN_FILE``         workload identity (AKS): the file is re-read for every token
4. ``ACTIONS_ID_TOKEN_REQUEST_URL``       GitHub Actions OIDC: an ID token for ``api://AzureADTokenExchange``
                                          fetched lazily, so a long apply gets a fresh one
5. ``--device-code``                      a person at a terminal

Tokens live only in memory (msal's in-memory cache); nothing here prints or logs a secret or token.

``--ca-bundle`` is honoured by msal too: msal talks through ``requests``, whose sessions let
``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` replace the ``verify`` they were given. The session built
here pins ``verify`` (to the system + certifi CAs plus the extra one) whatever the environment says,
while still honouring proxy variables.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import certifi
import httpx
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.errors import AuthenticationError, TransportError, UsageError

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
GITHUB_AUDIENCE = "api://AzureADTokenExchange"
# Entra's public and national-cloud sign-in hosts: msal's instance discovery only knows these
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.de",
    }
)

CREDENTIAL_HELP = (
    "set one of: AZURE_CLIENT_SECRET (client secret), AZURE_CLIENT_CERTIFICATE_PATH (PEM file with the"
    " private key and certificate), AZURE_FEDERATED_TOKEN_FILE (workload identity), run in GitHub Actions"
    " with `permissions: id-token: write` (OIDC federation), or pass --device-code to sign in as a person;"
    " together with AZURE_TENANT_ID / --tenant-id and AZURE_CLIENT_ID / --client-id. To try reconciler"
    " without a tenant, use --emulator SEED."
)


class MissingCredentialError(AuthenticationError):
    """No usable credential is configured (as opposed to a credential the server rejected)."""


# --------------------------------------------------------------------------- TLS


def ssl_context(ca_bundle: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """Trust the system CAs, certifi's, and the extra CA of ``--ca-bundle`` (for httpx)."""
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=certifi.where())
    if ca_bundle:
        path = _check_ca_bundle(ca_bundle)
        try:
            ctx.load_verify_locations(cafile=str(path))
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(f"--ca-bundle {path}: not a PEM certificate file ({exc})") from exc
    return ctx


def _check_ca_bundle(ca_bundle: str | os.PathLike[str]) -> Path:
    path = Path(ca_bundle)
    if not path.is_file():
        raise UsageError(
            f"--ca-bundle {path}: file not found (give the PEM certificate of the CA to trust, e.g. the"
            " emulator's ca.pem)"
        )
    return path


_combined_lock = threading.Lock()
_combined: dict[str, str] = {}


def combined_ca_file(ca_bundle: str | os.PathLike[str]) -> str:
    """A private PEM file with certifi's CAs, the system's and the extra CA (``requests`` wants a path)."""
    path = _check_ca_bundle(ca_bundle).resolve()
    key = str(path)
    with _combined_lock:
        if key in _combined and os.path.exists(_combined[key]):
            return _combined[key]
        parts = [Path(certifi.where()).read_text()]
        system = ssl.get_default_verify_paths().cafile
        if system and os.path.isfile(system):
            with contextlib.suppress(OSError):
                parts.append(Path(system).read_text())
        extra = path.read_text()
        if "-----BEGIN CERTIFICATE-----" not in extra:
            raise UsageError(f"--ca-bundle {path}: no PEM certificate in the file")
        parts.append(extra)
        fd, name = tempfile.mkstemp(prefix="reconciler-ca-", suffix=".pem")
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(parts))
        atexit.register(_remove_quietly, name)
        _combined[key] = name
        return name


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


class PinnedVerifySession(requests.Session):
    """A requests session for msal: ``verify`` (when given) can't be replaced by the environment
    (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE), and loopback hosts (the emulator) never go through a proxy."""

    def __init__(self, verify: str | bool | None = None) -> None:
        super().__init__()
        if verify is not None:
            self.verify = verify
        self._pinned_verify = verify

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self._pinned_verify is not None:
            settings["verify"] = self._pinned_verify
        if (httpx.URL(str(url)).host or "").lower() in ("localhost", "127.0.0.1", "::1"):
            settings["proxies"] = {}
        return settings


def msal_http_client(ca_bundle: str | os.PathLike[str] | None) -> requests.Session:
    return PinnedVerifySession(combined_ca_file(ca_bundle) if ca_bundle else None)


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class CredentialSettings:
    tenant_id: str | None = None
    client_id: str | None = None
    authority: str = DEFAULT_AUTHORITY
    device_code: bool = False
    ca_bundle: str | None = None
    scope: str = GRAPH_SCOPE

    @property
    def authority_url(self) -> str:
        return f"{self.authority.rstrip('/')}/{self.tenant_id}"

    @property
    def is_microsoft_authority(self) -> bool:
        return (httpx.URL(self.authority).host or "").lower() in MICROSOFT_AUTHORITY_HOSTS


@dataclass(frozen=True)
class Credential:
    """The credential picked from the environment. ``client_credential`` is what msal takes."""

    kind: str  # secret | certificate | federated-token-file | github-oidc | device-code
    source: str  # where it came from, for messages (never the value)
    client_credential: Any = None

    def __repr__(self) -> str:  # never show the secret
        return f"Credential(kind={self.kind!r}, source={self.source!r})"


def certificate_credential(path: str | os.PathLike[str], password: str | None = None) -> dict[str, str]:
    """msal's certificate credential from a PEM holding the private key and the certificate."""
    pem_path = Path(path)
    try:
        data = pem_path.read_bytes()
    except OSError as exc:
        raise MissingCredentialError(
            f"AZURE_CLIENT_CERTIFICATE_PATH={pem_path}: cannot read the file ({exc.strerror})"
        ) from exc
    passphrase = password.encode() if password else None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise MissingCredentialError(
            f"AZURE_CLIENT_CERTIFICATE_PATH={pem_path}: no usable private key in the PEM file ({exc}); the"
            " file must hold the private key and the certificate (set AZURE_CLIENT_CERTIFICATE_PASSWORD if"
            " the key is encrypted)"
        ) from exc
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise MissingCredentialError(
            f"AZURE_CLIENT_CERTIFICATE_PATH={pem_path}: no certificate in the PEM file; append the"
            " certificate (-----BEGIN CERTIFICATE-----) to the private key"
        ) from exc
    public_numbers = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cert = next(
        (
            c
            for c in certs
            if c.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            == public_numbers
        ),
        None,
    )
    if cert is None:
        raise MissingCredentialError(
            f"AZURE_CLIENT_CERTIFICATE_PATH={pem_path}: no certificate in the file matches its private key"
        )
    thumbprint = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "private_key": key_pem,
        "thumbprint": thumbprint,
        "public_certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }


class FederatedTokenFile:
    """A client assertion read from a file each time msal needs one (AKS rotates it)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __call__(self) -> str:
        try:
            token = self.path.read_text().strip()
        except OSError as exc:
            raise AuthenticationError(
                f"AZURE_FEDERATED_TOKEN_FILE={self.path}: cannot read the token file ({exc.strerror})"
            ) from exc
        if not token:
            raise AuthenticationError(f"AZURE_FEDERATED_TOKEN_FILE={self.path}: the token file is empty")
        return token


class GitHubOidcToken:
    """A GitHub Actions ID token for Entra workload identity federation, fetched when msal asks."""

    def __init__(
        self,
        request_url: str,
        request_token: str,
        *,
        audience: str = GITHUB_AUDIENCE,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.request_url = request_url
        self._request_token = request_token
        self.audience = audience
        self._verify = verify
        self._transport = transport

    def __repr__(self) -> str:
        return f"GitHubOidcToken(audience={self.audience!r})"

    def __call__(self) -> str:
        url = httpx.URL(self.request_url)
        url = url.copy_merge_params({"audience": self.audience})
        try:
            with httpx.Client(verify=self._verify, transport=self._transport, timeout=30.0) as http:
                response = http.get(url, headers={"Authorization": f"bearer {self._request_token}"})
        except httpx.HTTPError as exc:
            raise TransportError(
                f"could not fetch the GitHub Actions OIDC token: {type(exc).__name__}"
            ) from exc
        if response.status_code != 200:
            raise AuthenticationError(
                f"GitHub refused the OIDC token request ({response.status_code}); check that the workflow"
                " has `permissions: id-token: write`."
            )
        try:
            value = response.json()["value"]
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthenticationError("GitHub's OIDC token response had no `value`") from exc
        return str(value)


def _github_without_oidc_message(env: Mapping[str, str]) -> str:
    event = env.get("GITHUB_EVENT_NAME", "")
    if event in ("pull_request", "pull_request_review", "pull_request_review_comment"):
        fork = _is_fork_pull_request(env)
        if fork is not False:
            return (
                "no credential: this GitHub Actions job runs for a pull request from a fork, and GitHub gives"
                " fork pull requests neither an OIDC token (ACTIONS_ID_TOKEN_REQUEST_URL is unset) nor"
                " secrets. This is expected, not a sign-in failure: run `reconciler validate` (offline) on"
                " fork pull requests, or plan with --emulator SEED, and run `plan` against the tenant on"
                " pushes or from a maintainer's branch."
            )
    return (
        "no credential: running in GitHub Actions without an OIDC token (ACTIONS_ID_TOKEN_REQUEST_URL is"
        " unset). Add `permissions: id-token: write` to the workflow or job and a federated credential for"
        " this repository to the app registration, or " + CREDENTIAL_HELP
    )


def _is_fork_pull_request(env: Mapping[str, str]) -> bool | None:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        event = json.loads(Path(path).read_text())
        head = event["pull_request"]["head"]["repo"]
        base = event["pull_request"]["base"]["repo"]
        return bool(head.get("fork")) or head.get("full_name") != base.get("full_name")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def select_credential(settings: CredentialSettings, env: Mapping[str, str]) -> Credential:
    """The credential to use, in the order of SPEC section 3 (raises with what to set if none)."""
    if env.get("AZURE_CLIENT_SECRET"):
        return Credential("secret", "AZURE_CLIENT_SECRET", env["AZURE_CLIENT_SECRET"])
    if env.get("AZURE_CLIENT_CERTIFICATE_PATH"):
        path = env["AZURE_CLIENT_CERTIFICATE_PATH"]
        cred = certificate_credential(path, env.get("AZURE_CLIENT_CERTIFICATE_PASSWORD") or None)
        return Credential("certificate", f"AZURE_CLIENT_CERTIFICATE_PATH={path}", cred)
    if env.get("AZURE_FEDERATED_TOKEN_FILE"):
        path = env["AZURE_FEDERATED_TOKEN_FILE"]
        return Credential(
            "federated-token-file",
            f"AZURE_FEDERATED_TOKEN_FILE={path}",
            {"client_assertion": FederatedTokenFile(path)},
        )
    if env.get("ACTIONS_ID_TOKEN_REQUEST_URL"):
        request_token = env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        if not request_token:
            raise MissingCredentialError(
                "ACTIONS_ID_TOKEN_REQUEST_URL is set but ACTIONS_ID_TOKEN_REQUEST_TOKEN is not; give the job"
                " `permissions: id-token: write`."
            )
        return Credential(
            "github-oidc",
            "GitHub Actions OIDC (ACTIONS_ID_TOKEN_REQUEST_URL)",
            {"client_assertion": GitHubOidcToken(env["ACTIONS_ID_TOKEN_REQUEST_URL"], request_token)},
        )
    if settings.device_code:
        return Credential("device-code", "--device-code")
    if env.get("GITHUB_ACTIONS") == "true":
        raise MissingCredentialError(_github_without_oidc_message(env))
    raise MissingCredentialError("no credential for Microsoft Graph: " + CREDENTIAL_HELP)


class MsalTokenProvider:
    """Callable giving a Graph access token; msal builds lazily and caches tokens in memory only."""

    refresh_margin = 300.0

    def __init__(
        self,
        settings: CredentialSettings,
        credential: Credential,
        *,
        http_client: requests.Session | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        missing = [
            name
            for name, value in (
                ("the tenant id (--tenant-id or AZURE_TENANT_ID)", settings.tenant_id),
                ("the client id (--client-id or AZURE_CLIENT_ID)", settings.client_id),
            )
            if not value
        ]
        if missing:
            raise MissingCredentialError(
                f"cannot sign in to Microsoft Graph: set {' and '.join(missing)}, the app registration"
                f" that {credential.source} belongs to."
            )
        self.settings = settings
        self.credential = credential
        self._http = http_client if http_client is not None else msal_http_client(settings.ca_bundle)
        self._stderr = stderr
        self._app: Any = None
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def __repr__(self) -> str:
        return f"MsalTokenProvider(kind={self.credential.kind!r}, authority={self.settings.authority_url!r})"

    def invalidate(self) -> None:
        """Forget the current token (Graph refused it): the next call gets a new one from Entra."""
        with self._lock:
            self._token = None
            self._expires = 0.0
            remove = getattr(self._app, "remove_tokens_for_client", None)
            if self.credential.kind != "device-code" and callable(remove):
                remove()

    def close(self) -> None:
        """Close msal's HTTP session (its keep-alive connections); tokens are forgotten."""
        with self._lock:
            self._token = None
            self._app = None
            self._http.close()

    def _build(self) -> Any:
        import msal

        common: dict[str, Any] = {
            "authority": self.settings.authority_url,
            "http_client": self._http,
        }
        if not self.settings.is_microsoft_authority:
            common["instance_discovery"] = False
        try:
            if self.credential.kind == "device-code":
                return msal.PublicClientApplication(self.settings.client_id, **common)
            return msal.ConfidentialClientApplication(
                self.settings.client_id, client_credential=self.credential.client_credential, **common
            )
        except requests.exceptions.SSLError as exc:
            raise TransportError(self._tls_advice(exc)) from exc
        except requests.exceptions.RequestException as exc:
            raise TransportError(
                f"cannot reach the sign-in authority {self.settings.authority_url}: {type(exc).__name__}"
            ) from exc
        except ValueError as exc:
            raise AuthenticationError(
                f"the authority {self.settings.authority_url} was not accepted ({exc}). Check --authority and"
                " the tenant id."
            ) from exc

    def _tls_advice(self, exc: Exception) -> str:
        return (
            f"TLS verification failed talking to {self.settings.authority}: {type(exc).__name__}. If a"
            " corporate proxy or the emulator signs the connection, pass its CA with --ca-bundle"
            " (RECONCILER_CA_BUNDLE)."
        )

    def _acquire(self) -> dict[str, Any]:
        if self._app is None:
            self._app = self._build()
        scopes = [self.settings.scope]
        app = self._app
        if self.credential.kind != "device-code":
            result: dict[str, Any] = app.acquire_token_for_client(scopes=scopes)
            return result
        accounts = app.get_accounts()
        if accounts:
            silent = app.acquire_token_silent(scopes, account=accounts[0])
            if silent and "access_token" in silent:
                return dict(silent)
        flow = app.initiate_device_flow(scopes=scopes)
        if "user_code" not in flow:
            return dict(flow)
        out = self._stderr or sys.stderr
        out.write(str(flow.get("message", "")) + "\n")
        out.flush()
        return dict(app.acquire_token_by_device_flow(flow))

    def __call__(self) -> str:
        with self._lock:
            if self._token is not None and time.monotonic() < self._expires:
                return self._token
            try:
                result = self._acquire()
            except requests.exceptions.SSLError as exc:
                raise TransportError(self._tls_advice(exc)) from exc
            except requests.exceptions.RequestException as exc:
                raise TransportError(
                    f"cannot reach the sign-in authority {self.settings.authority_url}: {type(exc).__name__}"
                ) from exc
            token = result.get("access_token")
            if not token:
                raise AuthenticationError(self._failure(result))
            expires_in = float(result.get("expires_in") or 3600)
            self._token = str(token)
            self._expires = time.monotonic() + max(30.0, expires_in - self.refresh_margin)
            return self._token

    def _failure(self, result: Mapping[str, Any]) -> str:
        error = result.get("error") or "unknown_error"
        description = str(result.get("error_description") or "").split("\r\n")[0].split("\n")[0]
        hint = (
            "Check the tenant id (--tenant-id / AZURE_TENANT_ID), the client id (--client-id /"
            f" AZURE_CLIENT_ID) and the credential ({self.credential.source})"
        )
        if error == "invalid_client":
            hint += "; the secret may have expired or the certificate may not be uploaded to the app"
        return f"sign-in failed at {self.settings.authority_url} ({error}: {description}). {hint}."


def token_provider(
    settings: CredentialSettings,
    env: Mapping[str, str] | None = None,
    *,
    stderr: TextIO | None = None,
) -> MsalTokenProvider:
    """Pick the credential from ``env`` (default: os.environ) and return a token provider."""
    environ = os.environ if env is None else env
    credential = select_credential(settings, environ)
    if credential.kind == "github-oidc" and settings.ca_bundle:
        assertion = credential.client_credential["client_assertion"]
        assertion._verify = ssl_context(settings.ca_bundle)
    return MsalTokenProvider(settings, credential, stderr=stderr)


TokenCallable = Callable[[], str]
