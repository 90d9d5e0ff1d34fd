"""Create or update ONE pull-request comment with the reconciler plan (Azure Repos REST API).

    python examples/azure-devops/pr_comment.py plan.md

Run in a pull-request build. Finds the thread whose first comment contains the hidden marker
`<!-- reconciler-plan -->` (which `reconciler plan --format markdown` writes on its first line) and
replaces that comment; creates the thread the first time. Uses the pipeline's own identity:
`SYSTEM_ACCESSTOKEN: $(System.AccessToken)` in the step's env, and the project's build service needs
"Contribute to pull requests" on the repository. Standard library only; the token is never printed.

Reads SYSTEM_COLLECTIONURI, SYSTEM_TEAMPROJECTID, BUILD_REPOSITORY_ID and
SYSTEM_PULLREQUEST_PULLREQUESTID, which Azure Pipelines sets. Exit 0 also when the build is not for a
pull request (nothing to do); 1 when the REST API refuses.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

MARKER = "<!-- reconciler-plan -->"
API = "api-version=7.1"
MAX_CHARS = 150_000  # Azure Repos comments hold 150,000 characters


def _request(method: str, url: str, token: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def upsert_comment(base: str, token: str, content: str) -> str:
    """`base` is .../_apis/git/repositories/{repo}/pullRequests/{id}; returns "created" or "updated"."""
    threads = _request("GET", f"{base}/threads?{API}", token).get("value", [])
    for thread in threads:
        comments = thread.get("comments") or []
        if comments and MARKER in (comments[0].get("content") or "") and not thread.get("isDeleted"):
            _request(
                "PATCH",
                f"{base}/threads/{thread['id']}/comments/{comments[0]['id']}?{API}",
                token,
                {"content": content},
            )
            return "updated"
    _request(
        "POST",
        f"{base}/threads?{API}",
        token,
        {"comments": [{"parentCommentId": 0, "content": content, "commentType": 1}], "status": 1},
    )
    return "created"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: pr_comment.py PLAN.md\n")
        return 64
    env = os.environ
    pr = env.get("SYSTEM_PULLREQUEST_PULLREQUESTID", "")
    if not pr:
        print("not a pull-request build: no comment")
        return 0
    token = env.get("SYSTEM_ACCESSTOKEN", "")
    if not token:
        sys.stderr.write(
            "SYSTEM_ACCESSTOKEN is not set: add `env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`\n"
        )
        return 1
    content = Path(argv[0]).read_text(encoding="utf-8")
    if MARKER not in content:
        content = f"{MARKER}\n{content}"
    if len(content) > MAX_CHARS:
        content = (
            content[: MAX_CHARS - 200] + "\n\n> Truncated: the whole plan is in the build's artifacts.\n"
        )
    base = (
        f"{env['SYSTEM_COLLECTIONURI'].rstrip('/')}/{env['SYSTEM_TEAMPROJECTID']}/_apis/git/repositories/"
        f"{env['BUILD_REPOSITORY_ID']}/pullRequests/{pr}"
    )
    try:
        what = upsert_comment(base, token, content)
    except urllib.error.HTTPError as exc:
        sys.stderr.write(
            f"Azure DevOps refused the comment ({exc.code} {exc.reason}); give the build service"
            " 'Contribute to pull requests' on the repository\n"
        )
        return 1
    except urllib.error.URLError as exc:
        sys.stderr.write(f"cannot reach Azure DevOps: {exc.reason}\n")
        return 1
    print(f"{what} the plan comment on pull request {pr}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
