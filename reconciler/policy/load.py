"""Loading a policy: files and directories, reading, schema, merging, semantic checks.

    policy = load_policy(["policies/"])        # raises PolicyError listing every problem
    policy, problems = validate_paths(["a.yaml", "more/"])   # never raises PolicyError

A path that does not exist is a usage error (UsageError, exit 64): the command line is
wrong, not the policy. Everything else that can be wrong with the files (unreadable,
binary, not UTF-8, too large, empty, bad YAML, schema, semantics, merge conflicts) is a
Problem `path:line:column: message`, all of them collected before PolicyError is raised.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.catalog import Catalog, load_catalog
from reconciler.errors import PolicyError, Problem, UsageError
from reconciler.policy.build import build_policy
from reconciler.policy.checks import check_policy
from reconciler.policy.model import Policy
from reconciler.policy.schema_check import check_schema, dotted
from reconciler.policy.yamlpos import YNode, parse

MAX_FILE_BYTES = 5 * 1024 * 1024
POLICY_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class PolicyFile:
    """A file to read, and the name to show for it in messages."""

    path: Path
    display: str


def collect_files(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[PolicyFile], list[Problem]]:
    """The files the paths name, in order: a file as given, a directory's *.yaml/*.yml recursively
    in sorted order (hidden files and directories skipped). Raises UsageError for a missing path."""
    if not paths:
        raise UsageError("no policy path given")
    files: list[PolicyFile] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for raw in paths:
        given = os.fspath(raw)
        path = Path(given)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise UsageError(f"{given}: no such file or directory") from None
        except OSError as exc:
            problems.append(Problem(given, 1, 1, f"cannot read: {exc.strerror or exc}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            found = _walk(path, given)
            if not found:
                problems.append(Problem(given, 1, 1, "no policy files (*.yaml, *.yml) in this directory"))
            candidates = found
        else:
            candidates = [PolicyFile(path, given)]
        for candidate in candidates:
            try:
                real = str(candidate.path.resolve())
            except (OSError, RuntimeError):
                real = str(candidate.path.absolute())
            if real in seen:
                continue
            seen.add(real)
            files.append(candidate)
    return files, problems


def _walk(root: Path, display: str) -> list[PolicyFile]:
    found: list[tuple[str, PolicyFile]] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=None, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(POLICY_SUFFIXES):
                continue
            rel = (rel_dir / name).as_posix()
            shown = os.path.join(display, rel) if display not in ("", ".") else rel
            found.append((rel, PolicyFile(Path(dirpath) / name, shown)))
    found.sort(key=lambda item: item[0])
    return [pf for _, pf in found]


def read_text(pf: PolicyFile) -> tuple[str | None, list[Problem]]:
    """The file's text, or the problem that prevents reading it as UTF-8 YAML."""

    def fail(message: str, line: int = 1, column: int = 1) -> tuple[str | None, list[Problem]]:
        return None, [Problem(pf.display, line, column, message)]

    try:
        st = pf.path.stat()
    except OSError as exc:
        return fail(f"cannot read: {exc.strerror or exc}")
    if stat.S_ISDIR(st.st_mode):
        return fail("is a directory")
    if not stat.S_ISREG(st.st_mode):
        return fail("not a regular file (a device, socket or pipe); give a policy file or directory")
    if st.st_size > MAX_FILE_BYTES:
        return fail(
            f"file too large ({st.st_size} bytes; the limit is {MAX_FILE_BYTES // (1024 * 1024)} MiB): "
            "a policy is a small text file; is this the right file?"
        )
    try:
        with pf.path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return fail(f"cannot read: {exc.strerror or exc}")
    if len(data) > MAX_FILE_BYTES:
        return fail(
            f"file too large (over {MAX_FILE_BYTES // (1024 * 1024)} MiB): a policy is a small text file"
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return fail("the file is encoded as UTF-16; save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:
        offset = data.index(b"\x00")
        line, column = _position(data, offset)
        return fail("binary data (a NUL byte): this is not a YAML text file", line, column)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data, exc.start)
        return fail(f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8", line, column)
    return text, []


def _position(data: bytes, offset: int) -> tuple[int, int]:
    before = data[:offset]
    line = before.count(b"\n") + 1
    start = before.rfind(b"\n") + 1
    column = len(before[start:].decode("utf-8", errors="replace")) + 1
    return line, column


def read_policy_file(pf: PolicyFile) -> tuple[YNode | None, list[Problem]]:
    """Read, parse and schema-check one file. The returned tree holds only the valid parts."""
    text, problems = read_text(pf)
    if text is None:
        return None, problems
    try:
        root, problems = parse(text, pf.display)
    except RecursionError:  # pragma: no cover - the reader is iterative; belt and braces
        return None, [Problem(pf.display, 1, 1, "document nested too deeply")]
    if root is None:
        if not problems:
            problems = [
                Problem(pf.display, 1, 1, "empty file: a policy file starts with apiVersion: reconciler/v1")
            ]
        return None, problems
    return root, problems + check_schema(root, pf.display)


def merge_trees(trees: Iterable[YNode]) -> tuple[YNode | None, list[Problem]]:
    """Merge the files' trees (SPEC section 2): lists concatenate, mappings merge key by key,
    a scalar set in two files must agree."""
    problems: list[Problem] = []
    merged: YNode | None = None
    for tree in trees:
        if not isinstance(tree.value, dict):
            continue
        merged = tree if merged is None else _merge(merged, tree, [], problems)
    return merged, problems


def _merge(a: YNode, b: YNode, path: list[str | int], problems: list[Problem]) -> YNode:
    if isinstance(a.value, dict) and isinstance(b.value, dict):
        out = dict(a.value)
        for key, child in b.value.items():
            out[key] = _merge(out[key], child, [*path, key], problems) if key in out else child
        return YNode(out, a.line, a.column, key_line=a.key_line, key_column=a.key_column, path=a.path)
    if isinstance(a.value, list) and isinstance(b.value, list):
        return YNode(
            a.value + b.value, a.line, a.column, key_line=a.key_line, key_column=a.key_column, path=a.path
        )
    if type(a.value) is type(b.value) and a.value == b.value:
        return a
    problems.append(
        Problem(
            b.path,
            b.line,
            b.column,
            f"{dotted(path)} is {_show(b)} here but {_show(a)} at {a.path}:{a.line}:{a.column}; "
            "a value set in two files must agree",
        )
    )
    return a


def _show(node: YNode) -> str:
    if isinstance(node.value, dict):
        return "a mapping"
    if isinstance(node.value, list):
        return "a list"
    return json.dumps(node.value) if not isinstance(node.value, str) else node.value


def validate_paths(
    paths: Sequence[str | os.PathLike[str]], *, catalog: Catalog | None = None
) -> tuple[Policy | None, list[Problem]]:
    """Load and check a policy. Returns (policy, problems): policy is None when there are problems.

    Raises UsageError when a path does not exist or none is given.
    """
    files, problems = collect_files(paths)
    trees: list[YNode] = []
    for pf in files:
        tree, file_problems = read_policy_file(pf)
        problems.extend(file_problems)
        if tree is not None:
            trees.append(tree)
    merged, merge_problems = merge_trees(trees)
    problems.extend(merge_problems)
    if merged is None:
        merged = YNode({}, 1, 1)
    cat = catalog if catalog is not None else load_catalog()
    policy = build_policy(merged, tuple(pf.display for pf in files), cat)
    problems.extend(check_policy(policy, cat))
    problems = sorted(set(problems))
    if problems:
        return None, problems
    return policy, []


def load_policy(paths: Sequence[str | os.PathLike[str]], *, catalog: Catalog | None = None) -> Policy:
    """Load and check a policy from files and directories; raises PolicyError with every problem."""
    policy, problems = validate_paths(paths, catalog=catalog)
    if policy is None:
        raise PolicyError(problems)
    return policy
