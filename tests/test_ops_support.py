"""Helpers for the tests of reconciler.ops (no tests here): clients of a running emulator."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from reconciler.graph.client import GraphClient
from reconciler.graph.credentials import Credential, CredentialSettings, MsalTokenProvider


class Access:
    """A read-only GraphClient (the seed's plan app) and an httpx writer (its apply app)."""

    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.server = emu.server
        org = emu.seed["organization"]
        self.tenant_id = str(org["id"])
        apps = {a["displayName"]: a for a in emu.seed["applications"]}
        readers = [a for a in emu.seed["applications"] if not _writes(a)]
        writers = [a for a in emu.seed["applications"] if _writes(a)]
        self.read_app = apps.get("reconciler-plan") or readers[0]
        self.write_app = apps.get("reconciler-apply") or writers[0]
        self.ssl = ssl.create_default_context(cafile=str(self.server.ca_path))
        self.read_token = self._provider(self.read_app)
        self.write_token = self._provider(self.write_app)

    def _provider(self, app: dict[str, Any]) -> MsalTokenProvider:
        settings = CredentialSettings(
            tenant_id=self.tenant_id,
            client_id=str(app["appId"]),
            authority=self.server.base_url,
            ca_bundle=str(self.server.ca_path),
        )
        secret = app["secret"]
        return MsalTokenProvider(settings, Credential("secret", "test", str(secret[0] if isinstance(secret, list) else secret)))

    def reader(self) -> GraphClient:
        return GraphClient(self.server.graph_url, token_provider=self.read_token, verify=self.ssl, read_only=True)

    def writer(self) -> GraphClient:
        return GraphClient(self.server.graph_url, token_provider=self.write_token, verify=self.ssl)

    def http(self) -> httpx.Client:
        return httpx.Client(
            verify=self.ssl,
            trust_env=False,
            timeout=120.0,
            headers={"Authorization": f"Bearer {self.write_token()}"},
        )

    def drain(self) -> None:
        with self.http() as http:
            res = http.post(f"{self.server.base_url}/_emulator/drain")
            assert res.status_code < 300, res.text

    def snapshot(self) -> dict[str, Any]:
        with self.http() as http:
            res = http.get(f"{self.server.base_url}/_emulator/snapshot")
            assert res.status_code == 200, res.text
            body: dict[str, Any] = res.json()
            return body


def _writes(app: dict[str, Any]) -> bool:
    return any("ReadWrite" in p for p in app.get("permissions") or ())
