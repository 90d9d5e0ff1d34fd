"""The Azure DevOps helpers of examples/azure-devops against a small fake of the Azure DevOps REST API:
one plan comment per pull request (created, then updated), one drift work item (opened, then updated)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "fake-system-access-token"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / "azure-devops" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeAzureDevOps:
    def __init__(self) -> None:
        self.threads: list[dict[str, Any]] = []
        self.items: dict[int, dict[str, Any]] = {}
        self.auth: list[str] = []

    def app(self) -> Starlette:
        base = "/org/proj/_apis"
        return Starlette(
            routes=[
                Route(
                    base + "/git/repositories/{repo}/pullRequests/{pr}/threads",
                    self.threads_ep,
                    methods=["GET", "POST"],
                ),
                Route(
                    base + "/git/repositories/{repo}/pullRequests/{pr}/threads/{tid:int}/comments/{cid:int}",
                    self.comment_ep,
                    methods=["PATCH"],
                ),
                Route(base + "/wit/wiql", self.wiql_ep, methods=["POST"]),
                Route(base + "/wit/workitems/{what}", self.workitem_ep, methods=["POST", "PATCH"]),
            ]
        )

    async def threads_ep(self, request: Request) -> JSONResponse:
        self.auth.append(request.headers.get("authorization", ""))
        if request.method == "GET":
            return JSONResponse({"value": self.threads, "count": len(self.threads)})
        body = await request.json()
        thread = {"id": len(self.threads) + 1, "comments": [{"id": 1, **body["comments"][0]}]}
        self.threads.append(thread)
        return JSONResponse(thread)

    async def comment_ep(self, request: Request) -> JSONResponse:
        body = await request.json()
        thread = self.threads[request.path_params["tid"] - 1]
        thread["comments"][request.path_params["cid"] - 1]["content"] = body["content"]
        return JSONResponse(thread["comments"][0])

    async def wiql_ep(self, request: Request) -> JSONResponse:
        query = (await request.json())["query"]
        assert "reconciler-drift" in query
        return JSONResponse({"workItems": [{"id": i} for i in sorted(self.items)]})

    async def workitem_ep(self, request: Request) -> JSONResponse:
        assert request.headers["content-type"] == "application/json-patch+json"
        ops = await request.json()
        fields = {op["path"].rsplit("/", 1)[1]: op["value"] for op in ops}
        what = request.path_params["what"]
        if request.method == "POST":
            assert what == "$Issue"
            wid = 100 + len(self.items)
            self.items[wid] = fields
        else:
            wid = int(what)
            self.items[wid].update(fields)
        return JSONResponse({"id": wid, "fields": self.items[wid]})


@pytest.fixture
def fake(serve_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> FakeAzureDevOps:
    ado = FakeAzureDevOps()
    server = serve_app(ado.app(), tls=False)
    monkeypatch.setenv("SYSTEM_COLLECTIONURI", server.base_url + "/org/")
    monkeypatch.setenv("SYSTEM_TEAMPROJECTID", "proj")
    monkeypatch.setenv("BUILD_REPOSITORY_ID", "repo-1")
    monkeypatch.setenv("SYSTEM_ACCESSTOKEN", TOKEN)
    return ado


def test_pr_comment_is_created_once_then_updated(
    fake: FakeAzureDevOps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pr_comment = _load("pr_comment")
    monkeypatch.setenv("SYSTEM_PULLREQUEST_PULLREQUESTID", "7")
    plan = tmp_path / "plan.md"
    plan.write_text("<!-- reconciler-plan -->\n## reconciler plan\n\nfirst\n")
    assert pr_comment.main([str(plan)]) == 0
    plan.write_text("<!-- reconciler-plan -->\n## reconciler plan\n\nsecond\n")
    assert pr_comment.main([str(plan)]) == 0
    assert len(fake.threads) == 1
    assert fake.threads[0]["comments"][0]["content"].endswith("second\n")
    assert set(fake.auth) == {f"Bearer {TOKEN}"}
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    assert "updated" in out.out


def test_pr_comment_outside_a_pull_request_does_nothing(
    fake: FakeAzureDevOps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYSTEM_PULLREQUEST_PULLREQUESTID", raising=False)
    plan = tmp_path / "plan.md"
    plan.write_text("x")
    assert _load("pr_comment").main([str(plan)]) == 0
    assert fake.threads == []


def test_drift_work_item_is_opened_once_then_updated(fake: FakeAzureDevOps, tmp_path: Path) -> None:
    drift = _load("drift_work_item")
    plan = tmp_path / "plan.md"
    plan.write_text("<!-- reconciler-plan -->\n~ LIC-E3-Base <b>\n")
    assert drift.main([str(plan)]) == 0
    plan.write_text("<!-- reconciler-plan -->\nlater drift\n")
    assert drift.main([str(plan)]) == 0
    assert list(fake.items) == [100]
    item = fake.items[100]
    assert item["System.Tags"] == "reconciler-drift"
    assert "later drift" in item["System.Description"] and "<b>" not in item["System.Description"]


def test_helpers_refuse_without_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYSTEM_ACCESSTOKEN", raising=False)
    monkeypatch.setenv("SYSTEM_PULLREQUEST_PULLREQUESTID", "7")
    plan = tmp_path / "plan.md"
    plan.write_text("x")
    assert _load("pr_comment").main([str(plan)]) == 1
    assert _load("drift_work_item").main([str(plan)]) == 1
    assert "pr_comment" not in sys.modules
