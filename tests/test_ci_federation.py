"""Workload identity federation in the emulator (federatedIdentityCredentials + issuerKeys), signed
in through reconciler's own credential code: GitHub Actions OIDC (ACTIONS_ID_TOKEN_REQUEST_URL) and
AZURE_FEDERATED_TOKEN_FILE (Azure DevOps, AKS), and Entra's refusals when issuer, subject, audience,
key or lifetime do not match."""

from __future__ import annotations

import copy
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.emulator.seed import load_seed
from reconciler.errors import AuthenticationError, SeedError
from reconciler.graph.credentials import CredentialSettings, ssl_context, token_provider
from tests.fake_github_oidc import AUDIENCE, FakeGitHubOidc

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample-tenant.json"
TENANT = "f1b45b40-57df-41f7-9596-7f2313883635"
PLAN_APP = "2f6a1c9e-7b4d-4e21-9a57-0c3d8e5f1a01"
APPLY_APP = "2f6a1c9e-7b4d-4e21-9a57-0c3d8e5f1a02"
REPO = "contoso/licensing-policies"
PR_SUBJECT = f"repo:{REPO}:pull_request"
MAIN_SUBJECT = f"repo:{REPO}:ref:refs/heads/main"
ENV_SUBJECT = f"repo:{REPO}:environment:licensing-production"


def federated_seed(oidc: FakeGitHubOidc, *, keep_secrets: bool = False) -> dict[str, Any]:
    """The sample tenant whose two apps sign in only through federation (as in examples/README.md)."""
    seed = json.loads(SAMPLE.read_text())
    for app in seed["applications"]:
        if app["appId"] == PLAN_APP:
            app.update(oidc.seed_credentials(PR_SUBJECT, MAIN_SUBJECT, name_prefix="github-plan"))
        elif app["appId"] == APPLY_APP:
            app.update(oidc.seed_credentials(ENV_SUBJECT, name_prefix="github-apply"))
        if not keep_secrets:
            app.pop("secret", None)
    return seed


@pytest.fixture
def oidc() -> FakeGitHubOidc:
    return FakeGitHubOidc(repository=REPO, subject=PR_SUBJECT)


@pytest.fixture
def tenant(tmp_path: Path, oidc: FakeGitHubOidc, start_emulator: Callable[..., Any]) -> Any:
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(federated_seed(oidc)))
    return start_emulator(path)


@pytest.fixture
def oidc_url(oidc: FakeGitHubOidc, serve_app: Callable[..., Any]) -> str:
    server = serve_app(oidc.app(), tls=True)
    return oidc.request_url(server.base_url)


def _settings(tenant: Any, client_id: str) -> CredentialSettings:
    return CredentialSettings(
        tenant_id=TENANT,
        client_id=client_id,
        authority=tenant.server.base_url,
        ca_bundle=str(tenant.server.ca_path),
    )


def _graph_get(tenant: Any, token: str, path: str) -> httpx.Response:
    verify: ssl.SSLContext = ssl_context(str(tenant.server.ca_path))
    with httpx.Client(verify=verify, trust_env=False) as http:
        return http.get(f"{tenant.server.graph_url}/{path}", headers={"Authorization": f"Bearer {token}"})


def test_github_actions_oidc_signs_in_the_read_only_app(
    tenant: Any, oidc: FakeGitHubOidc, oidc_url: str
) -> None:
    env = {"ACTIONS_ID_TOKEN_REQUEST_URL": oidc_url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": oidc.request_token}
    provider = token_provider(_settings(tenant, PLAN_APP), env)
    assert provider.credential.kind == "github-oidc"
    token = provider()
    assert _graph_get(tenant, token, "organization").status_code == 200
    # read-only: the emulator refuses a write with Graph's 403
    verify = ssl_context(str(tenant.server.ca_path))
    with httpx.Client(verify=verify, trust_env=False) as http:
        denied = http.post(
            f"{tenant.server.graph_url}/groups",
            headers={"Authorization": f"Bearer {token}"},
            json={"displayName": "x", "mailEnabled": False, "securityEnabled": True, "mailNickname": "x"},
        )
    assert denied.status_code == 403
    assert oidc.issued[-1]["aud"] == AUDIENCE  # the CLI asked GitHub for Entra's audience
    provider.close()


def test_the_pull_request_subject_cannot_sign_in_as_the_writing_app(
    tenant: Any, oidc: FakeGitHubOidc, oidc_url: str
) -> None:
    env = {"ACTIONS_ID_TOKEN_REQUEST_URL": oidc_url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": oidc.request_token}
    provider = token_provider(_settings(tenant, APPLY_APP), env)
    with pytest.raises(AuthenticationError) as info:
        provider()
    message = str(info.value)
    assert "AADSTS700213" in message and PR_SUBJECT in message
    provider.close()
    # the environment's subject can
    oidc.subject = ENV_SUBJECT
    provider = token_provider(_settings(tenant, APPLY_APP), env)
    assert _graph_get(tenant, provider(), "subscribedSkus").status_code == 200
    provider.close()


def test_federated_token_file_signs_in(tenant: Any, oidc: FakeGitHubOidc, tmp_path: Path) -> None:
    """Azure DevOps: the pipeline writes $idToken to a file and sets AZURE_FEDERATED_TOKEN_FILE."""
    token_file = tmp_path / "federated-token"
    token_file.write_text(oidc.id_token(subject=MAIN_SUBJECT))
    provider = token_provider(_settings(tenant, PLAN_APP), {"AZURE_FEDERATED_TOKEN_FILE": str(token_file)})
    assert provider.credential.kind == "federated-token-file"
    assert _graph_get(tenant, provider(), "organization").status_code == 200
    provider.close()


def _post_assertion(tenant: Any, client_id: str, assertion: str) -> httpx.Response:
    verify = ssl_context(str(tenant.server.ca_path))
    with httpx.Client(verify=verify, trust_env=False) as http:
        return http.post(
            f"{tenant.server.base_url}/{TENANT}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
                "scope": "https://graph.microsoft.com/.default",
            },
        )


def test_entra_refusals_for_federated_assertions(tenant: Any, oidc: FakeGitHubOidc) -> None:
    ok = _post_assertion(tenant, PLAN_APP, oidc.id_token())
    assert ok.status_code == 200, ok.text

    def codes(resp: httpx.Response) -> list[int]:
        assert resp.status_code in (400, 401), resp.text
        return list(resp.json()["error_codes"])

    stranger = FakeGitHubOidc(issuer="https://issuer.example.org", subject=PR_SUBJECT)
    assert codes(_post_assertion(tenant, PLAN_APP, stranger.id_token())) == [700211]
    forger = FakeGitHubOidc(subject=PR_SUBJECT)  # GitHub's issuer name, another key
    assert codes(_post_assertion(tenant, PLAN_APP, forger.id_token())) == [700027]
    other_repo = oidc.id_token(subject="repo:someone/else:pull_request")
    assert codes(_post_assertion(tenant, PLAN_APP, other_repo)) == [700213]
    assert codes(_post_assertion(tenant, PLAN_APP, oidc.id_token(audience="api://Other"))) == [700212]
    expired = oidc.id_token(now=time.time() - 7200)
    assert codes(_post_assertion(tenant, PLAN_APP, expired)) == [700024]
    # the subject is compared exactly, as Entra does (case matters)
    assert codes(_post_assertion(tenant, PLAN_APP, oidc.id_token(subject=PR_SUBJECT.upper()))) == [700213]


def test_seed_federation_problems_name_their_json_path(tmp_path: Path, oidc: FakeGitHubOidc) -> None:
    seed = federated_seed(oidc)
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(seed))
    load_seed(path)  # apps with federated credentials only are valid

    bad = copy.deepcopy(seed)
    plan_app = bad["applications"][0]
    plan_app["issuerKeys"] = {}
    plan_app["federatedIdentityCredentials"][1]["name"] = plan_app["federatedIdentityCredentials"][0]["name"]
    path.write_text(json.dumps(bad))
    with pytest.raises(SeedError) as info:
        load_seed(path)
    text = str(info.value)
    assert "$.applications[0].federatedIdentityCredentials[0].issuer: no signing keys" in text
    assert "$.applications[0].federatedIdentityCredentials[1].name" in text

    insecure = copy.deepcopy(seed)
    insecure["applications"][1]["federatedIdentityCredentials"][0]["issuer"] = "http://insecure.example"
    path.write_text(json.dumps(insecure))
    with pytest.raises(SeedError, match=r"\$\.applications\[1\]\.federatedIdentityCredentials\[0\]\.issuer"):
        load_seed(path)

    bad_key = copy.deepcopy(seed)
    bad_key["applications"][0]["issuerKeys"][oidc.issuer]["keys"][0]["n"] = "not-base64!"
    path.write_text(json.dumps(bad_key))
    with pytest.raises(SeedError, match="issuerKeys"):
        from reconciler.emulator.auth import TokenService

        TokenService.from_seed(load_seed(path))

    none = copy.deepcopy(seed)
    del none["applications"][0]["federatedIdentityCredentials"]
    path.write_text(json.dumps(none))
    with pytest.raises(
        SeedError, match="needs a `secret`, a `certificate` or `federatedIdentityCredentials`"
    ):
        load_seed(path)
