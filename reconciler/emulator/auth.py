"""Sign-in like Entra ID for the emulator: token endpoint, discovery document, bearer-token checks.

The emulator plays two Microsoft services:

- Entra's token endpoint (`POST {base}/{tenant}/oauth2/v2.0/token`) for the client credentials
  grant, with a client secret or a client assertion (a JWT signed with the private key of a
  certificate registered on the application, or a federated token: see below), plus the OpenID
  discovery document
  (`GET {base}/{tenant}/v2.0/.well-known/openid-configuration`) that msal reads first. `{tenant}`
  is the tenant id or the initial domain. Errors carry Entra's AADSTS codes and shapes.
- Graph's bearer-token check: `TokenService.authenticate(header)` returns the calling `Principal`
  or raises `GraphAuthError` (401 `InvalidAuthenticationToken`), and `has_permission` decides
  whether the principal's application permissions allow an operation (403 otherwise, see
  `require_permission`).

Workload identity federation (Graph's federatedIdentityCredential): an application of the seed may
carry `federatedIdentityCredentials: [{name, issuer, subject, audiences}]`. A client assertion whose
`iss` is an https:// URL is a federated token (a certificate assertion's `iss` is the app's own id):
it is accepted when it is signed by one of the issuer's keys, is within its lifetime, and one
credential of the application has exactly its `iss` and `sub` and one of its `aud` values, as Entra
does (AADSTS700211/700213/700212 otherwise). Entra fetches the issuer's keys from its OpenID
discovery document; the emulator never goes to the network, so the seed registers them on the
application as `issuerKeys: {ISSUER_URL: JWKS}` (the JWKS document the issuer publishes at its
`jwks_uri`; tests sign with a key they register there).

Access tokens are JWTs signed (HS256) with a key made per TokenService (so per emulator process);
they carry `appid`, `tid`, `roles` (the application's permissions) and expire after an hour.
Secrets and tokens are never logged.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reconciler.errors import SeedError

__all__ = [
    "ACCESS_TOKEN_LIFETIME",
    "GRAPH_APP_ID",
    "GRAPH_RESOURCE",
    "INSUFFICIENT_PRIVILEGES",
    "Application",
    "EntraError",
    "FederatedCredential",
    "GraphAuthError",
    "Operation",
    "Principal",
    "TokenService",
    "has_permission",
    "implied_permissions",
    "require_permission",
]

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
ACCESS_TOKEN_LIFETIME = 3599
"""Seconds; what Entra reports as `expires_in` for an app-only Graph token."""
CLOCK_SKEW = 300
"""Seconds of clock skew tolerated on token and assertion lifetimes (Entra and Graph allow 5 minutes)."""
INSUFFICIENT_PRIVILEGES = "Insufficient privileges to complete the operation."
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ASSERTION_ALGORITHMS = ("RS256", "PS256")
_MAX_FORM_BYTES = 256 * 1024
_GRAPH_WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
    f'client_id="{GRAPH_APP_ID}"'
)


# --------------------------------------------------------------------------- errors and principals


class GraphAuthError(Exception):
    """A request Graph refuses before running it: 401 (bad token) or 403 (missing permission).

    The Graph app renders it in Graph's error envelope with `code` and `message`, adding `headers`.
    """

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})
        if status == 401 and not self.headers:
            self.headers["WWW-Authenticate"] = _GRAPH_WWW_AUTHENTICATE


@dataclass(frozen=True)
class Principal:
    """The application a Graph request runs as."""

    app_id: str
    display_name: str
    permissions: frozenset[str]


class EntraError(Exception):
    """An error of the token endpoint, rendered the way Entra renders it (see `body`)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}: {description}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description

    def body(self, *, correlation_id: str | None = None, now: float | None = None) -> dict[str, Any]:
        trace_id = str(uuid.uuid4())
        correlation = correlation_id or str(uuid.uuid4())
        stamp = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%SZ"
        )
        return {
            "error": self.error,
            "error_description": (
                f"AADSTS{self.code}: {self.description} Trace ID: {trace_id} "
                f"Correlation ID: {correlation} Timestamp: {stamp}"
            ),
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }


# --------------------------------------------------------------------------- applications


@dataclass(frozen=True)
class _Certificate:
    cert: x509.Certificate
    sha1: bytes
    sha256: bytes


@dataclass(frozen=True)
class FederatedCredential:
    """Graph's federatedIdentityCredential: tokens of `issuer` for `subject` with one of `audiences`."""

    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...]


@dataclass(frozen=True)
class Application:
    """An app registration of the seed, with its credentials and admin-consented permissions."""

    app_id: str
    display_name: str
    permissions: frozenset[str]
    secrets: tuple[str, ...] = ()
    certificates: tuple[x509.Certificate, ...] = ()
    _certs: tuple[_Certificate, ...] = field(default=(), repr=False, compare=False)
    federated: tuple[FederatedCredential, ...] = ()
    # issuer URL -> its public signing keys ((kid, key) pairs, from the seed's JWKS documents)
    issuer_keys: Mapping[str, tuple[tuple[str | None, Any], ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self._certs and self.certificates:
            object.__setattr__(
                self,
                "_certs",
                tuple(
                    _Certificate(c, c.fingerprint(hashes.SHA1()), c.fingerprint(hashes.SHA256()))
                    for c in self.certificates
                ),
            )

    @classmethod
    def from_seed(cls, raw: Mapping[str, Any], *, path: str = "$.applications[?]") -> Application:
        """From a seed's application object; SeedError naming the JSON path on a bad certificate."""
        app_id = str(raw.get("appId") or "").strip().lower()
        if not app_id:
            raise SeedError(f"{path}.appId: an application needs an appId")
        secret = raw.get("secret")
        secrets_ = tuple(s for s in ([secret] if isinstance(secret, str) else (secret or ())) if s)
        pem = raw.get("certificate")
        pems = [pem] if isinstance(pem, str) else list(pem or ())
        certs: list[x509.Certificate] = []
        for i, text in enumerate(pems):
            where = f"{path}.certificate" + (f"[{i}]" if not isinstance(pem, str) else "")
            try:
                loaded = x509.load_pem_x509_certificates(str(text).encode())
            except ValueError:
                raise SeedError(f"{where}: not a PEM certificate (-----BEGIN CERTIFICATE----- ...)") from None
            for cert in loaded:
                if not isinstance(cert.public_key(), rsa.RSAPublicKey):
                    raise SeedError(f"{where}: Entra accepts only RSA certificates for client assertions")
            certs.extend(loaded)
        federated = tuple(
            FederatedCredential(
                name=str(f.get("name") or ""),
                issuer=str(f.get("issuer") or ""),
                subject=str(f.get("subject") or ""),
                audiences=tuple(str(a) for a in f.get("audiences") or ()),
            )
            for f in raw.get("federatedIdentityCredentials") or ()
            if isinstance(f, Mapping)
        )
        return cls(
            app_id=app_id,
            display_name=str(raw.get("displayName") or app_id),
            permissions=frozenset(str(p) for p in raw.get("permissions") or ()),
            secrets=secrets_,
            certificates=tuple(certs),
            federated=federated,
            issuer_keys=_issuer_keys(raw.get("issuerKeys"), f"{path}.issuerKeys"),
        )

    def principal(self) -> Principal:
        return Principal(self.app_id, self.display_name, self.permissions)


def _issuer_keys(raw: Any, path: str) -> dict[str, tuple[tuple[str | None, Any], ...]]:
    """issuer -> ((kid, public key), ...) from `issuerKeys: {ISSUER: JWKS}`; SeedError on a bad key."""
    out: dict[str, tuple[tuple[str | None, Any], ...]] = {}
    if not isinstance(raw, Mapping):
        return out
    for issuer, jwks in raw.items():
        keys: list[tuple[str | None, Any]] = []
        items = jwks.get("keys") if isinstance(jwks, Mapping) else None
        for i, jwk in enumerate(items or ()):
            where = f"{path}[{json.dumps(str(issuer))}].keys[{i}]"
            if not isinstance(jwk, Mapping) or jwk.get("kty") != "RSA":
                raise SeedError(f"{where}: give an RSA public key in JWK form (kty RSA, n, e)")
            try:
                key = jwt.PyJWK(dict(jwk), algorithm="RS256").key
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
                raise SeedError(f"{where}: not a usable RSA public key (JWK with kty, n, e)") from None
            kid = jwk.get("kid")
            keys.append((str(kid) if kid is not None else None, key))
        out[str(issuer)] = tuple(keys)
    return out


# --------------------------------------------------------------------------- the token service


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenService:
    """Entra's token endpoint and Graph's token check for one tenant.

    `issuer_base_url` (e.g. `https://127.0.0.1:8443`) is what the discovery document points at; when
    None (the usual case, as the port may be chosen at start) each request's own base URL is used.
    `clock` returns the current time in seconds (tests may pass a fake one).
    """

    def __init__(
        self,
        applications: Iterable[Mapping[str, Any] | Application],
        *,
        tenant_id: str,
        initial_domain: str,
        tenant_name: str | None = None,
        issuer_base_url: str | None = None,
        signing_key: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant_id = tenant_id.strip().lower()
        self.initial_domain = initial_domain.strip().lower()
        self.tenant_name = tenant_name or initial_domain
        self.issuer_base_url = issuer_base_url.rstrip("/") if issuer_base_url else None
        self._key = signing_key or secrets.token_bytes(32)
        self._clock = clock
        self._apps: dict[str, Application] = {}
        for i, raw in enumerate(applications):
            app = (
                raw
                if isinstance(raw, Application)
                else Application.from_seed(raw, path=f"$.applications[{i}]")
            )
            self._apps[app.app_id] = app
        self.token_issuer = f"https://sts.windows.net/{self.tenant_id}/"

    @classmethod
    def from_seed(cls, seed: Mapping[str, Any], **kwargs: Any) -> TokenService:
        """From a (normalised) seed or snapshot: tenant id, initial domain and applications."""
        org = seed.get("organization") or {}
        if isinstance(org, list):  # Graph returns organization as a collection
            org = org[0] if org else {}
        domains = org.get("verifiedDomains") or []
        initial = next((d.get("name") for d in domains if d.get("isInitial")), None)
        if initial is None and domains:
            initial = domains[0].get("name")
        return cls(
            seed.get("applications") or (),
            tenant_id=str(org.get("id") or ""),
            initial_domain=str(initial or ""),
            tenant_name=str(org.get("displayName") or initial or ""),
            **kwargs,
        )

    # ------------------------------------------------------------------ lookups

    @property
    def applications(self) -> tuple[Application, ...]:
        return tuple(self._apps.values())

    def application(self, app_id: str) -> Application | None:
        return self._apps.get(app_id.strip().lower())

    def is_tenant(self, tenant: str) -> bool:
        """True when `tenant` (from a URL) names this tenant: its id or its initial domain."""
        t = tenant.strip().lower()
        return bool(t) and t in (self.tenant_id, self.initial_domain)

    # ------------------------------------------------------------------ issuing

    def issue_access_token(self, app_id: str, *, now: float | None = None, auth_method: str = "1") -> str:
        """A Graph access token for the application (`auth_method`: "1" secret, "2" certificate)."""
        app = self.application(app_id)
        if app is None:
            raise KeyError(app_id)
        issued = int(self._clock() if now is None else now)
        oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"reconciler-emulator:{self.tenant_id}:{app.app_id}"))
        claims: dict[str, Any] = {
            "aud": GRAPH_RESOURCE,
            "iss": self.token_issuer,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ACCESS_TOKEN_LIFETIME,
            "app_displayname": app.display_name,
            "appid": app.app_id,
            "appidacr": auth_method,
            "idp": self.token_issuer,
            "idtyp": "app",
            "oid": oid,
            "sub": oid,
            "tid": self.tenant_id,
            "uti": _b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }
        if app.permissions:
            claims["roles"] = sorted(app.permissions)
        return jwt.encode(claims, self._key, algorithm="HS256", headers={"typ": "JWT"})

    def request_token(
        self,
        tenant: str,
        form: Mapping[str, str],
        *,
        endpoint_urls: Iterable[str] = (),
        basic_auth: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Handle one token request (form fields of the POST); the JSON reply, or EntraError.

        `endpoint_urls` are the URLs this token endpoint is known by (a client assertion's `aud`
        must be one of them, or the issuer); `basic_auth` is (client_id, secret) from an
        `Authorization: Basic` header.
        """
        if not self.is_tenant(tenant):
            raise EntraError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                "signing into the correct cloud. Check with your subscription administrator, this may "
                "happen if there are no active subscriptions for the tenant.",
            )
        grant_type = form.get("grant_type", "").strip()
        if not grant_type:
            raise _missing("grant_type")
        if grant_type != "client_credentials":
            raise EntraError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'. The emulator supports "
                "only client_credentials.",
            )
        client_id = form.get("client_id", "").strip() or (basic_auth[0] if basic_auth else "")
        if not client_id:
            raise _missing("client_id")
        app = self.application(client_id)
        if app is None:
            raise EntraError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant_name}'. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant. You may have "
                "sent your authentication request to the wrong tenant.",
            )
        secret = form.get("client_secret") or (basic_auth[1] if basic_auth else "")
        assertion = form.get("client_assertion", "")
        if assertion:
            assertion_type = form.get("client_assertion_type", "")
            if assertion_type != JWT_BEARER:
                raise EntraError(
                    400,
                    "invalid_request",
                    900144 if not assertion_type else 50027,
                    "The request body must contain the following parameter: 'client_assertion_type'."
                    if not assertion_type
                    else f"Invalid JWT token. Unsupported client_assertion_type '{assertion_type}'.",
                )
            self._check_assertion(app, assertion, endpoint_urls)
            method = "2"
        elif secret:
            if not any(hmac.compare_digest(secret.encode(), s.encode()) for s in app.secrets):
                raise EntraError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the "
                    f"client secret value, not the client secret ID, for a secret added to app '{app.app_id}'.",
                )
            method = "1"
        else:
            raise EntraError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        scope = form.get("scope", "").strip()
        if not scope:
            raise _missing("scope")
        self._check_scope(scope, endpoint_urls)
        return {
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "ext_expires_in": ACCESS_TOKEN_LIFETIME,
            "access_token": self.issue_access_token(app.app_id, auth_method=method),
        }

    def _check_scope(self, scope: str, endpoint_urls: Iterable[str]) -> None:
        scopes = scope.split()
        accepted = {f"{GRAPH_RESOURCE}/.default", f"{GRAPH_APP_ID}/.default"}
        for url in [*endpoint_urls, self.issuer_base_url or ""]:
            if url:
                parts = urlsplit(url)
                accepted.add(f"{parts.scheme}://{parts.netloc}/.default".lower())
        if len(scopes) == 1 and scopes[0].lower() in accepted:
            return
        bad = next((s for s in scopes if not s.lower().endswith("/.default")), None)
        if bad is not None:
            raise EntraError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {bad} is not valid. Client credential flows must have a "
                "scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        resource = scopes[0].rsplit("/.default", 1)[0] if len(scopes) == 1 else " ".join(scopes)
        raise EntraError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named {self.tenant_name}. "
            "This can happen if the application has not been installed by the administrator of the tenant "
            "or consented to by any user in the tenant. You might have sent your authentication request "
            "to the wrong tenant.",
        )

    def _check_assertion(self, app: Application, assertion: str, endpoint_urls: Iterable[str]) -> None:
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise EntraError(400, "invalid_request", 50027, "JWT token is invalid or malformed.") from None
        if str(claims.get("iss", "")).lower().startswith(("https://", "http://")):
            # a token of an external identity provider (workload identity federation)
            self._check_federated(app, assertion, header, claims)
            return
        alg = header.get("alg")
        if alg not in _ASSERTION_ALGORITHMS:
            raise EntraError(
                401,
                "invalid_client",
                5002738,
                f"Invalid JWT token. '{alg}' is not a supported signature algorithm. Supported signing "
                f"algorithms are: '{','.join(_ASSERTION_ALGORITHMS)}'.",
            )
        # the key: named by the x5t (SHA-1) or x5t#S256 header; else try every registered certificate
        candidates = list(app._certs)
        thumb_hex = ""
        try:
            if "x5t#S256" in header:
                wanted = _b64url_decode(str(header["x5t#S256"]))
                thumb_hex = wanted.hex().upper()
                candidates = [c for c in candidates if c.sha256 == wanted]
            elif "x5t" in header:
                wanted = _b64url_decode(str(header["x5t"]))
                thumb_hex = wanted.hex().upper()
                candidates = [c for c in candidates if c.sha1 == wanted]
        except (binascii.Error, ValueError):
            candidates = []
        if not candidates:
            raise EntraError(
                401,
                "invalid_client",
                700027,
                f"Client assertion contains an invalid signature. [Reason - The key was not found., "
                f"Thumbprint of key used by client: '{thumb_hex}', Please visit the Azure Portal, Graph "
                f"Explorer or directly use MS Graph to see configured keys for app Id '{app.app_id}'. "
                "Review the documentation at https://docs.microsoft.com/en-us/graph/deployments if you "
                "are not using the global cloud.]",
            )
        verified = _signed_by_any(assertion, str(alg), [cand.cert.public_key() for cand in candidates])
        if not verified:
            raise EntraError(
                401,
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. [Reason - The provided signature value did "
                f"not match the expected signature value., Thumbprint of key used by client: '{thumb_hex}']",
            )
        if (
            str(claims.get("iss", "")).lower() != app.app_id
            or str(claims.get("sub", "")).lower() != app.app_id
        ):
            raise EntraError(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter. Review the "
                "documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/"
                "active-directory-certificate-credentials .",
            )
        now = self._clock()
        exp = claims.get("exp")
        nbf = claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, int | float) or (nbf is not None and not isinstance(nbf, int | float)):
            raise EntraError(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
        if now > exp + CLOCK_SKEW or (nbf is not None and now + CLOCK_SKEW < nbf):
            raise EntraError(
                401,
                "invalid_client",
                700024,
                f"Client assertion is not within its valid time range. Current time: {_iso(now)}, "
                f"assertion valid from {_iso(nbf) if nbf is not None else 'unspecified'}, expiry time of "
                f"assertion {_iso(exp)}. Review the documentation at "
                "https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
            )
        if not self._audience_ok(claims.get("aud"), endpoint_urls):
            raise EntraError(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation. [Reason - The audience claim of the client "
                "assertion does not match the token endpoint.]",
            )

    def _check_federated(
        self, app: Application, assertion: str, header: Mapping[str, Any], claims: Mapping[str, Any]
    ) -> None:
        """Entra's checks of a federated client assertion: issuer, signature, lifetime, subject, audience."""
        iss = str(claims.get("iss", ""))
        sub = str(claims.get("sub", ""))
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else [str(a) for a in aud] if isinstance(aud, list) else []
        suffix = (
            " Please check your federated identity credential Subject, Audience and Issuer against the "
            "presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
        )
        by_issuer = [f for f in app.federated if f.issuer == iss]
        if not by_issuer:
            raise EntraError(
                400,
                "invalid_request",
                700211,
                f"No matching federated identity record found for presented assertion issuer '{iss}'.{suffix}",
            )
        alg = header.get("alg")
        if alg not in _ASSERTION_ALGORITHMS:
            raise EntraError(
                401,
                "invalid_client",
                5002738,
                f"Invalid JWT token. '{alg}' is not a supported signature algorithm. Supported signing "
                f"algorithms are: '{','.join(_ASSERTION_ALGORITHMS)}'.",
            )
        kid = header.get("kid")
        keys = [k for key_id, k in app.issuer_keys.get(iss, ()) if kid is None or key_id in (None, kid)]
        verified = _signed_by_any(assertion, str(alg), list(keys))
        if not verified:
            reason = "The key was not found." if not keys else "The provided signature value did not match."
            raise EntraError(
                401,
                "invalid_client",
                700027,
                f"Client assertion failed signature validation. [Reason - {reason}, key id '{kid}' of issuer "
                f"'{iss}'] (the emulator trusts the keys in the application's issuerKeys).",
            )
        now = self._clock()
        exp = claims.get("exp")
        nbf = claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, int | float) or (nbf is not None and not isinstance(nbf, int | float)):
            raise EntraError(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
        if now > exp + CLOCK_SKEW or (nbf is not None and now + CLOCK_SKEW < nbf):
            raise EntraError(
                401,
                "invalid_client",
                700024,
                f"Client assertion is not within its valid time range. Current time: {_iso(now)}, "
                f"assertion valid from {_iso(nbf) if nbf is not None else 'unspecified'}, expiry time of "
                f"assertion {_iso(exp)}.",
            )
        by_subject = [f for f in by_issuer if f.subject == sub]
        if not by_subject:
            raise EntraError(
                400,
                "invalid_request",
                700213,
                f"No matching federated identity record found for presented assertion subject '{sub}'.{suffix}",
            )
        if not any(a in f.audiences for f in by_subject for a in auds):
            raise EntraError(
                400,
                "invalid_request",
                700212,
                "No matching federated identity record found for presented assertion audience "
                f"'{', '.join(auds)}'.{suffix}",
            )

    def _audience_ok(self, aud: Any, endpoint_urls: Iterable[str]) -> bool:
        values = [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
        origins = set()
        for url in [*endpoint_urls, self.issuer_base_url or ""]:
            if url:
                parts = urlsplit(url)
                origins.add((parts.scheme.lower(), _loopback_alias(parts.hostname or ""), parts.port))
        tenants = {self.tenant_id, self.initial_domain}
        for value in values:
            if not isinstance(value, str):
                continue
            parts = urlsplit(value.strip())
            origin = (parts.scheme.lower(), _loopback_alias(parts.hostname or ""), parts.port)
            if origins and origin not in origins:
                continue
            segs = [s for s in parts.path.lower().split("/") if s]
            if not segs or segs[0] not in tenants:
                continue
            if segs[1:] in (["oauth2", "v2.0", "token"], ["oauth2", "token"], ["v2.0"]):
                return True
        return False

    # ------------------------------------------------------------------ checking Graph requests

    def authenticate(self, authorization_header: str | None) -> Principal:
        """The principal of a Graph request from its Authorization header, or GraphAuthError (401)."""
        raw = (authorization_header or "").strip()
        scheme, _, token = raw.partition(" ")
        token = token.strip()
        if not raw or scheme.lower() != "bearer" or not token:
            raise _invalid_token("Access token is empty.")
        if token.count(".") != 2:
            raise _invalid_token("CompactToken parsing failed with error code: 80049217")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid_token("CompactToken parsing failed with error code: 80049217") from None
        if header.get("alg") != "HS256":
            raise _invalid_token("Access token validation failure. Invalid signature.")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise _invalid_token("Access token validation failure. Invalid signature.") from None
        except jwt.PyJWTError:
            raise _invalid_token("CompactToken parsing failed with error code: 80049217") from None
        now = self._clock()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
            raise _invalid_token("Access token validation failure.")
        if now > exp + CLOCK_SKEW or now + CLOCK_SKEW < nbf:
            raise _invalid_token("Access token has expired or is not yet valid.")
        if claims.get("aud") not in (GRAPH_RESOURCE, f"{GRAPH_RESOURCE}/", GRAPH_APP_ID):
            raise _invalid_token("Access token validation failure. Invalid audience.")
        if claims.get("iss") != self.token_issuer or claims.get("tid") != self.tenant_id:
            raise _invalid_token("Access token validation failure. Invalid issuer.")
        app = self.application(str(claims.get("appid", "")))
        if app is None:
            raise _invalid_token("Access token validation failure. The application no longer exists.")
        roles = claims.get("roles") or []
        return Principal(app.app_id, app.display_name, frozenset(str(r) for r in roles))

    # ------------------------------------------------------------------ HTTP

    def discovery_document(self, base_url: str) -> dict[str, Any]:
        """The v2.0 OpenID configuration Entra publishes for this tenant, pointing at `base_url`."""
        base = (self.issuer_base_url or base_url).rstrip("/")
        t = f"{base}/{self.tenant_id}"
        return {
            "token_endpoint": f"{t}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{t}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{t}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{t}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{t}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{t}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "cloud_instance_name",
                "cloud_instance_host_name",
                "cloud_graph_host_name",
                "msgraph_host",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "kerberos_endpoint": f"{t}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": urlsplit(base).netloc,
            "rbac_url": "https://pas.windows.net",
        }

    def routes(self) -> list[BaseRoute]:
        """Starlette routes: token endpoint, discovery document, (empty) signing keys."""
        return [
            Route("/{tenant}/oauth2/v2.0/token", self._token_endpoint, methods=["GET", "POST"]),
            Route(
                "/{tenant}/v2.0/.well-known/openid-configuration", self._discovery_endpoint, methods=["GET"]
            ),
            Route("/{tenant}/discovery/v2.0/keys", self._keys_endpoint, methods=["GET"]),
        ]

    async def _token_endpoint(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        correlation = request.headers.get("client-request-id")
        if request.method != "POST":
            exc = EntraError(
                400,
                "invalid_request",
                900561,
                f"The endpoint only accepts POST, OPTIONS requests. Received a {request.method} request.",
            )
            return _entra_response(exc, correlation, self._clock())
        try:
            form = await _read_form(request)
            base = _request_base(request)
            urls = [f"{base}/{t}/oauth2/v2.0/token" for t in (self.tenant_id, self.initial_domain)]
            urls.append(str(request.url.replace(query="")))
            reply = self.request_token(tenant, form, endpoint_urls=urls, basic_auth=_basic_auth(request))
        except EntraError as exc:
            return _entra_response(exc, correlation, self._clock())
        return JSONResponse(reply, headers=_entra_headers(correlation))

    async def _discovery_endpoint(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        correlation = request.headers.get("client-request-id")
        if not self.is_tenant(tenant):
            exc = EntraError(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                "signing into the correct cloud. Check with your subscription administrator, this may "
                "happen if there are no active subscriptions for the tenant.",
            )
            return _entra_response(exc, correlation, self._clock())
        return JSONResponse(
            self.discovery_document(_request_base(request)), headers=_entra_headers(correlation)
        )

    async def _keys_endpoint(self, request: Request) -> Response:
        if not self.is_tenant(request.path_params["tenant"]):
            return JSONResponse({"error": "invalid_tenant"}, status_code=400)
        # access tokens are HS256 (a key only the emulator holds), so no public keys are published
        return JSONResponse({"keys": []})


# --------------------------------------------------------------------------- permissions


class Operation(StrEnum):
    """Graph operations and, in OPERATION_PERMISSIONS, the application permissions that allow each
    (Graph's permission tables: least privileged first)."""

    ORGANIZATION_READ = "organization.read"
    SUBSCRIBED_SKUS_READ = "subscribedSkus.read"
    USERS_READ = "users.read"
    USERS_WRITE = "users.write"
    USERS_ASSIGN_LICENSE = "users.assignLicense"
    USERS_REPROCESS = "users.reprocessLicenseAssignment"
    USERS_LICENSE_DETAILS_READ = "users.licenseDetails.read"
    USERS_MEMBER_OF_READ = "users.memberOf.read"
    GROUPS_READ = "groups.read"
    GROUPS_CREATE = "groups.create"
    GROUPS_WRITE = "groups.write"
    GROUPS_MEMBERS_READ = "groups.members.read"
    GROUPS_MEMBERS_WRITE = "groups.members.write"
    GROUPS_ASSIGN_LICENSE = "groups.assignLicense"
    GROUPS_LICENSE_ERRORS_READ = "groups.membersWithLicenseErrors.read"
    EMULATOR_CONTROL = "emulator.control"


_RW_DIR = "Directory.ReadWrite.All"
_R_DIR = "Directory.Read.All"

OPERATION_PERMISSIONS: dict[str, frozenset[str]] = {
    Operation.ORGANIZATION_READ: frozenset(
        {"Organization.Read.All", _R_DIR, "Organization.ReadWrite.All", _RW_DIR}
    ),
    Operation.SUBSCRIBED_SKUS_READ: frozenset(
        {
            "LicenseAssignment.Read.All",
            _R_DIR,
            "Organization.Read.All",
            "Organization.ReadWrite.All",
            "LicenseAssignment.ReadWrite.All",
            _RW_DIR,
        }
    ),
    Operation.USERS_READ: frozenset({"User.Read.All", _R_DIR, "User.ReadWrite.All", _RW_DIR}),
    Operation.USERS_WRITE: frozenset({"User.ReadWrite.All", _RW_DIR}),
    Operation.USERS_ASSIGN_LICENSE: frozenset(
        {"LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", _RW_DIR}
    ),
    Operation.USERS_REPROCESS: frozenset({"User.ReadWrite.All", _RW_DIR}),
    Operation.USERS_LICENSE_DETAILS_READ: frozenset(
        {
            "LicenseAssignment.Read.All",
            "User.Read.All",
            _R_DIR,
            "LicenseAssignment.ReadWrite.All",
            "User.ReadWrite.All",
            _RW_DIR,
        }
    ),
    Operation.USERS_MEMBER_OF_READ: frozenset(
        {
            "User.Read.All",
            "GroupMember.Read.All",
            "Group.Read.All",
            _R_DIR,
            "User.ReadWrite.All",
            "GroupMember.ReadWrite.All",
            "Group.ReadWrite.All",
            _RW_DIR,
        }
    ),
    Operation.GROUPS_READ: frozenset(
        {
            "GroupMember.Read.All",
            "Group.Read.All",
            _R_DIR,
            "GroupMember.ReadWrite.All",
            "Group.ReadWrite.All",
            _RW_DIR,
        }
    ),
    Operation.GROUPS_CREATE: frozenset({"Group.Create", "Group.ReadWrite.All", _RW_DIR}),
    Operation.GROUPS_WRITE: frozenset({"Group.ReadWrite.All", _RW_DIR}),
    Operation.GROUPS_MEMBERS_READ: frozenset(
        {
            "GroupMember.Read.All",
            "Group.Read.All",
            _R_DIR,
            "GroupMember.ReadWrite.All",
            "Group.ReadWrite.All",
            _RW_DIR,
        }
    ),
    Operation.GROUPS_MEMBERS_WRITE: frozenset({"GroupMember.ReadWrite.All", "Group.ReadWrite.All", _RW_DIR}),
    Operation.GROUPS_ASSIGN_LICENSE: frozenset(
        {"LicenseAssignment.ReadWrite.All", "Group.ReadWrite.All", _RW_DIR}
    ),
    Operation.GROUPS_LICENSE_ERRORS_READ: frozenset(
        {
            "GroupMember.Read.All",
            "Group.Read.All",
            _R_DIR,
            "GroupMember.ReadWrite.All",
            "Group.ReadWrite.All",
            _RW_DIR,
        }
    ),
    Operation.EMULATOR_CONTROL: frozenset(),  # any valid token
}

_IMPLIES: dict[str, frozenset[str]] = {
    _R_DIR: frozenset(
        {
            "User.Read.All",
            "User.ReadBasic.All",
            "Group.Read.All",
            "GroupMember.Read.All",
            "Organization.Read.All",
            "LicenseAssignment.Read.All",
        }
    ),
    "User.Read.All": frozenset({"User.ReadBasic.All"}),
    "Group.Read.All": frozenset({"GroupMember.Read.All"}),
    "Group.ReadWrite.All": frozenset({"GroupMember.ReadWrite.All", "Group.Create"}),
}
_READWRITE = re.compile(r"^(?P<res>.+)\.ReadWrite\.All$")


def implied_permissions(held: Iterable[str]) -> frozenset[str]:
    """Every permission `held` grants, with Graph's implications: Directory.ReadWrite.All grants all
    directory permissions, X.ReadWrite.All grants X.Read.All, Directory.Read.All grants the User, Group,
    GroupMember, Organization and LicenseAssignment reads, Group.ReadWrite.All grants member writes."""
    out: set[str] = set()
    todo = list(held)
    while todo:
        perm = todo.pop()
        if perm in out:
            continue
        out.add(perm)
        if perm == _RW_DIR:
            todo.extend(_ALL_DIRECTORY)
        m = _READWRITE.match(perm)
        if m:
            todo.append(f"{m['res']}.Read.All")
        todo.extend(_IMPLIES.get(perm, ()))
    return frozenset(out)


_ALL_DIRECTORY: frozenset[str] = frozenset(
    {p for perms in OPERATION_PERMISSIONS.values() for p in perms}
    | set(_IMPLIES)
    | {p for v in _IMPLIES.values() for p in v}
)


def has_permission(principal: Principal, needed: str) -> bool:
    """Whether the principal may do `needed`: an `Operation` (any permission of its table allows it)
    or a permission name (held directly or implied by a broader one)."""
    held = implied_permissions(principal.permissions)
    allowed = OPERATION_PERMISSIONS.get(needed)
    if allowed is not None:
        return not allowed or bool(held & allowed)
    return needed in held


def require_permission(principal: Principal, needed: str) -> None:
    """GraphAuthError 403 `Authorization_RequestDenied` unless `has_permission(principal, needed)`."""
    if not has_permission(principal, needed):
        raise GraphAuthError(403, "Authorization_RequestDenied", INSUFFICIENT_PRIVILEGES)


# --------------------------------------------------------------------------- helpers


def _missing(name: str) -> EntraError:
    return EntraError(
        400, "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'."
    )


def _invalid_token(message: str) -> GraphAuthError:
    return GraphAuthError(401, "InvalidAuthenticationToken", message)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%m/%d/%Y %H:%M:%S")


def _loopback_alias(host: str) -> str:
    h = host.lower().strip("[]")
    return "127.0.0.1" if h in ("localhost", "::1", "127.0.0.1") else h


def _request_base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _basic_auth(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep:
        return None
    return unquote_plus(user), unquote_plus(password)


async def _read_form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            raise EntraError(400, "invalid_request", 90033, "The request body is too large.")
    if ctype != "application/x-www-form-urlencoded":
        raise EntraError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        )
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise EntraError(400, "invalid_request", 90014, "The request body is not valid form data.") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def _entra_headers(correlation: str | None) -> dict[str, str]:
    headers = {
        "Cache-Control": "no-store, no-cache",
        "Pragma": "no-cache",
        "x-ms-request-id": str(uuid.uuid4()),
    }
    if correlation:
        headers["client-request-id"] = correlation
    return headers


def _entra_response(exc: EntraError, correlation: str | None, now: float) -> Response:
    body = exc.body(correlation_id=correlation, now=now)
    headers = _entra_headers(correlation)
    headers["x-ms-request-id"] = body["trace_id"]
    return Response(
        json.dumps(body),
        status_code=exc.status,
        media_type="application/json; charset=utf-8",
        headers=headers,
    )


def _signed_by_any(assertion: str, alg: str, keys: list[Any]) -> bool:
    """Is the assertion signed by one of the keys? Claims are checked by the caller, with Entra's
    own error for each; a token that is not a JWT at all is refused here."""
    for key in keys:
        try:
            jwt.decode(
                assertion,
                key,
                algorithms=[alg],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            raise EntraError(400, "invalid_request", 50027, "JWT token is invalid or malformed.") from None
        return True
    return False
