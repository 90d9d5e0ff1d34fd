"""Open or update ONE work item tagged `reconciler-drift` with the drift plan (Azure Boards REST API).

    python examples/azure-devops/drift_work_item.py plan.md

Run by drift-pipeline.yml when `reconciler plan --detailed-exitcode` exits 2. Looks up an open work
item tagged reconciler-drift (WIQL) and replaces its description with the plan; creates one (type
RECONCILER_WORK_ITEM_TYPE, default "Issue" as in the Basic process; "Bug" or "Task" elsewhere)
otherwise. Uses `SYSTEM_ACCESSTOKEN: $(System.AccessToken)`; the build service needs "Edit work items
in this node" on the area. Standard library only; the token is never printed.
"""

from __future__ import annotations

import html
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TAG = "reconciler-drift"
API = "api-version=7.1"
CLOSED = ("Closed", "Done", "Removed", "Resolved")


def _request(method: str, url: str, token: str, body: Any, content_type: str = "application/json") -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=60) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def upsert_work_item(project_url: str, token: str, plan_markdown: str, kind: str) -> str:
    closed = " AND ".join(f"[System.State] <> '{s}'" for s in CLOSED)
    query = (
        "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project "
        f"AND [System.Tags] CONTAINS '{TAG}' AND {closed} ORDER BY [System.Id]"
    )
    found = _request("POST", f"{project_url}/_apis/wit/wiql?{API}", token, {"query": query})
    description = (
        "<p>The tenant no longer matches the policy on main (a change made outside the repository). "
        "Re-run the apply stage to undo it, or adopt the change in policies/.</p>"
        f"<pre>{html.escape(plan_markdown)}</pre>"
    )
    patch = "application/json-patch+json"
    items = found.get("workItems") or []
    if items:
        wid = items[0]["id"]
        ops = [{"op": "add", "path": "/fields/System.Description", "value": description}]
        _request("PATCH", f"{project_url}/_apis/wit/workitems/{wid}?{API}", token, ops, patch)
        return f"updated work item {wid}"
    ops = [
        {
            "op": "add",
            "path": "/fields/System.Title",
            "value": "Licensing drift: the tenant no longer matches the policy",
        },
        {"op": "add", "path": "/fields/System.Description", "value": description},
        {"op": "add", "path": "/fields/System.Tags", "value": TAG},
    ]
    created = _request("POST", f"{project_url}/_apis/wit/workitems/${kind}?{API}", token, ops, patch)
    return f"opened work item {created.get('id')}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: drift_work_item.py PLAN.md\n")
        return 64
    env = os.environ
    token = env.get("SYSTEM_ACCESSTOKEN", "")
    if not token:
        sys.stderr.write(
            "SYSTEM_ACCESSTOKEN is not set: add `env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`\n"
        )
        return 1
    project_url = f"{env['SYSTEM_COLLECTIONURI'].rstrip('/')}/{env['SYSTEM_TEAMPROJECTID']}"
    plan = Path(argv[0]).read_text(encoding="utf-8")[:100_000]
    try:
        print(upsert_work_item(project_url, token, plan, env.get("RECONCILER_WORK_ITEM_TYPE", "Issue")))
    except urllib.error.HTTPError as exc:
        sys.stderr.write(f"Azure DevOps refused the work item ({exc.code} {exc.reason})\n")
        return 1
    except urllib.error.URLError as exc:
        sys.stderr.write(f"cannot reach Azure DevOps: {exc.reason}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
