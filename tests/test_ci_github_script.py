"""The actions/github-script steps of plan.yml and drift.yml, run under node with a fake `github`
client: one plan comment per pull request (created, then updated, another bot's or a person's
comment left alone), and one drift issue (opened, updated, closed when the drift is gone)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None, reason="node is not installed (it runs the github-script steps)"
)

HARNESS = r"""
const fs = require('fs');
const state = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const script = fs.readFileSync(process.argv[3], 'utf8');
const calls = [];
let nextId = 1000;
const ok = (data) => Promise.resolve({ data });
const github = {
  paginate: async (fn, args) => (await fn(args)).data,
  rest: { issues: {
    listComments: async (a) => ok(state.comments.filter(c => c.issue_number === a.issue_number)),
    updateComment: async (a) => { calls.push(['updateComment', a.comment_id]);
      state.comments.find(c => c.id === a.comment_id).body = a.body; return ok({ html_url: 'u' }); },
    createComment: async (a) => { calls.push(['createComment', a.issue_number]);
      const c = { id: nextId++, issue_number: a.issue_number, body: a.body, user: { type: 'Bot' } };
      state.comments.push(c); return ok({ html_url: 'u', ...c }); },
    listForRepo: async (a) => ok(state.issues.filter(i => i.state === a.state && i.labels.includes(a.labels))),
    createLabel: async () => { if (state.labelExists) { const e = new Error('exists'); e.status = 422; throw e; }
      state.labelExists = true; calls.push(['createLabel']); return ok({}); },
    update: async (a) => { calls.push(['update', a.issue_number, a.state || 'body']);
      const i = state.issues.find(x => x.number === a.issue_number);
      if (a.body) i.body = a.body; if (a.state) i.state = a.state; return ok(i); },
    create: async (a) => { calls.push(['create']);
      const i = { number: nextId++, state: 'open', labels: a.labels, body: a.body, title: a.title };
      state.issues.push(i); return ok(i); },
  } },
};
const context = { repo: { owner: 'contoso', repo: 'licensing-policies' }, runId: 42,
  serverUrl: 'https://github.com', payload: { pull_request: { number: 7, head: { sha: 'abcdef1234567' } } } };
const core = { info: () => {} };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('github', 'context', 'core', 'require', script)(github, context, core, require)
  .then(() => { fs.writeFileSync(process.argv[2], JSON.stringify(state)); console.log(JSON.stringify(calls)); })
  .catch((e) => { console.error(e); process.exit(1); });
"""


def _script(workflow: str) -> str:
    data = yaml.safe_load((ROOT / "examples" / "github-actions" / workflow).read_text())
    for job in data["jobs"].values():
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/github-script@"):
                return str(step["with"]["script"])
    raise AssertionError(f"no github-script step in {workflow}")


def _run(
    tmp_path: Path, workflow: str, state: dict[str, Any], **env: str
) -> tuple[list[Any], dict[str, Any]]:
    assert NODE is not None
    (tmp_path / "harness.js").write_text(HARNESS)
    (tmp_path / "script.js").write_text(_script(workflow))
    (tmp_path / "state.json").write_text(json.dumps(state))
    result = subprocess.run(
        [NODE, "harness.js", "state.json", "script.js"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), json.loads((tmp_path / "state.json").read_text())


def test_plan_comment_is_created_then_updated_in_place(tmp_path: Path) -> None:
    human = {
        "id": 1,
        "issue_number": 7,
        "body": "quoting <!-- reconciler-plan --> by hand",
        "user": {"type": "User"},
    }
    state: dict[str, Any] = {"comments": [human], "issues": []}
    (tmp_path / "plan.md").write_text("<!-- reconciler-plan -->\n## reconciler plan\n\nfirst\n")
    calls, state = _run(tmp_path, "plan.yml", state)
    assert calls == [["createComment", 7]]
    (tmp_path / "plan.md").write_text("<!-- reconciler-plan -->\n## reconciler plan\n\nsecond\n")
    calls, state = _run(tmp_path, "plan.yml", state)
    assert calls == [["updateComment", 1000]]
    bot = [c for c in state["comments"] if c["user"]["type"] == "Bot"]
    assert len(bot) == 1 and "second" in bot[0]["body"] and "abcdef1" in bot[0]["body"]
    assert state["comments"][0] == human


def test_drift_issue_is_opened_updated_and_closed(tmp_path: Path) -> None:
    state: dict[str, Any] = {"comments": [], "issues": []}
    (tmp_path / "plan.md").write_text("<!-- reconciler-plan -->\nTEAMS1 off\n")
    calls, state = _run(tmp_path, "drift.yml", state, EXITCODE="2")
    assert calls == [["createLabel"], ["create"]]
    (tmp_path / "plan.md").write_text("<!-- reconciler-plan -->\nTEAMS1 and SWAY off\n")
    calls, state = _run(tmp_path, "drift.yml", state, EXITCODE="3")
    number = state["issues"][0]["number"]
    assert calls == [["update", number, "body"]]
    assert "TEAMS1 and SWAY" in state["issues"][0]["body"] and "exit 3" in state["issues"][0]["body"]
    calls, state = _run(tmp_path, "drift.yml", state, EXITCODE="0")
    assert calls == [["createComment", number], ["update", number, "closed"]]
    assert [i["state"] for i in state["issues"]] == ["closed"]
