"""A fake of GitHub Actions' OIDC token service, for tests.

GitHub gives a job with `permissions: id-token: write` two variables: ACTIONS_ID_TOKEN_REQUEST_URL and
ACTIONS_ID_TOKEN_REQUEST_TOKEN. `GET $URL&audience=AUD` with `Authorization: bearer $TOKEN` answers
`{"value": "<JWT>"}`, an ID token signed RS256 by GitHub's issuer
`https://token.actions.githubusercontent.com` whose `sub` says which repository, and which event,
environment or branch the job runs for (`repo:ORG/REPO:pull_request`,
`repo:ORG/REPO:environment:NAME`, `repo:ORG/REPO:ref:refs/heads/main`).

`FakeGitHubOidc` serves that (`app()`, a starlette app) with its own RSA key; `jwks()` is the public
key document the emulator's seed registers as the issuer's keys (application `issuerKeys`).
`subject` is changed by a test to play another job; every token issued is recorded (`issued`,
claims only).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ISSUER = "https://token.actions.githubusercontent.com"
AUDIENCE = "api://AzureADTokenExchange"


@dataclass
class FakeGitHubOidc:
    repository: str = "contoso/licensing-policies"
    subject: str = "repo:contoso/licensing-policies:pull_request"
    request_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    issuer: str = ISSUER
    kid: str = "fake-github-key-1"
    lifetime: int = 300
    issued: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    # ------------------------------------------------------------------ keys

    def jwks(self) -> dict[str, Any]:
        """The issuer's public keys, as GitHub publishes them at its jwks_uri."""
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        return {"keys": [jwk]}

    def private_pem(self) -> str:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def id_token(
        self, audience: str = AUDIENCE, *, subject: str | None = None, now: float | None = None
    ) -> str:
        t = int(time.time() if now is None else now)
        sub = subject or self.subject
        claims: dict[str, Any] = {
            "jti": secrets.token_hex(16),
            "sub": sub,
            "aud": audience,
            "iss": self.issuer,
            "iat": t,
            "nbf": t - 5,
            "exp": t + self.lifetime,
            "repository": self.repository,
            "repository_owner": self.repository.split("/", 1)[0],
            "runner_environment": "github-hosted",
        }
        if ":environment:" in sub:
            claims["environment"] = sub.rsplit(":", 1)[1]
        if sub.endswith(":pull_request"):
            claims["event_name"] = "pull_request"
        self.issued.append(claims)
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    # ------------------------------------------------------------------ HTTP

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/_apis/pipelines/idtoken", self._token, methods=["GET"])])

    async def _token(self, request: Request) -> JSONResponse:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or value != self.request_token:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        audience = (
            request.query_params.get("audience") or f"https://github.com/{self.repository.split('/')[0]}"
        )
        return JSONResponse({"count": 1, "value": self.id_token(audience)})

    def request_url(self, base_url: str) -> str:
        """ACTIONS_ID_TOKEN_REQUEST_URL for a server at `base_url` (GitHub's has a query string too)."""
        return f"{base_url}/_apis/pipelines/idtoken?api-version=2.0"

    def seed_credentials(self, *subjects: str, name_prefix: str = "github") -> dict[str, Any]:
        """`federatedIdentityCredentials` and `issuerKeys` for a seed application trusting `subjects`."""
        return {
            "federatedIdentityCredentials": [
                {
                    "name": f"{name_prefix}-{i}",
                    "issuer": self.issuer,
                    "subject": s,
                    "audiences": [AUDIENCE],
                    "description": None,
                }
                for i, s in enumerate(subjects, 1)
            ],
            "issuerKeys": {self.issuer: self.jwks()},
        }
