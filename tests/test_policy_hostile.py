"""Hostile input to `reconciler validate`: a clear message naming the file, exit 3 (64 for a missing
path), never a traceback. Includes a property-based test over more than 1,000 documents."""

from __future__ import annotations

import atexit
import contextlib
import copy
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.policy import MAX_FILE_BYTES

FIXTURES = Path(__file__).parent / "fixtures" / "policies"
VALID = (FIXTURES / "valid" / "spec-example.yaml").read_text(encoding="utf-8")


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def validate_bytes(tmp_path: Path, data: bytes, name: str = "policy.yaml") -> tuple[int, str]:
    path = tmp_path / name
    path.write_bytes(data)
    code, _, err = run_cli("validate", str(path))
    assert "Traceback" not in err
    return code, err


def first_line(err: str) -> str:
    return err.splitlines()[0]


def test_empty_file(tmp_path: Path) -> None:
    code, err = validate_bytes(tmp_path, b"")
    assert code == 3
    assert (
        first_line(err)
        == f"{tmp_path / 'policy.yaml'}:1:1: empty file: a policy file starts with apiVersion: reconciler/v1"
    )
    assert validate_bytes(tmp_path, b"  \n# just a comment\n\n")[0] == 3


def test_directory_without_policy_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    code, _, err = run_cli("validate", str(tmp_path))
    assert code == 3
    assert first_line(err) == f"{tmp_path}:1:1: no policy files (*.yaml, *.yml) in this directory"


def test_not_utf8(tmp_path: Path) -> None:
    code, err = validate_bytes(tmp_path, "apiVersion: reconciler/v1\ntenant: caf\xe9\n".encode("latin-1"))
    assert code == 3
    assert (
        first_line(err)
        == f"{tmp_path / 'policy.yaml'}:2:12: not valid UTF-8 (byte 0xe9); save the file as UTF-8"
    )


def test_utf16_and_utf8_bom(tmp_path: Path) -> None:
    code, err = validate_bytes(tmp_path, "apiVersion: reconciler/v1\n".encode("utf-16"))
    assert code == 3 and "encoded as UTF-16; save it as UTF-8" in err
    assert validate_bytes(tmp_path, b"\xef\xbb\xbfapiVersion: reconciler/v1\n")[0] == 0


def test_binary_data(tmp_path: Path) -> None:
    code, err = validate_bytes(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert code == 3 and "binary data (a NUL byte): this is not a YAML text file" in err


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written, nothing is read
    code, _, err = run_cli("validate", str(path))
    assert code == 3
    assert first_line(err).startswith(
        f"{path}:1:1: file too large ({MAX_FILE_BYTES + 1} bytes; the limit is 5 MiB)"
    )


def test_alias_bomb(tmp_path: Path) -> None:
    lines = ["apiVersion: reconciler/v1", "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 12):
        lines.append(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    code, err = validate_bytes(tmp_path, ("\n".join(lines) + "\n").encode())
    assert code == 3 and "expands to more than" in err


def test_deeply_nested_documents(tmp_path: Path) -> None:
    for text in ("[" * 50_000 + "]" * 50_000, "{a: " * 10_000 + "1" + "}" * 10_000, "- " * 5_000 + "x"):
        code, err = validate_bytes(tmp_path, text.encode())
        assert code == 3 and "nested deeper than" in err


def test_wrong_types_everywhere(tmp_path: Path) -> None:
    text = """apiVersion: 1
tenant: {a: b}
catalog: [1]
groups:
  - 7
  - group: [x]
    create: "yes"
    members: {a: b}
    licenses: sku
    usageLocation: 33
  - group: G
    licenses:
      - sku: 5
        disabledPlans: oops
      - {sku: EMS, enabledPlans: [1, null, {}]}
usageLocations: [US]
directLicenses: {mode: [keep], skus: EMS, waveSize: "10"}
unmanagedGroups: true
safety: {maxRemovals: [1], protected: G}
"""
    code, err = validate_bytes(tmp_path, text.encode())
    assert code == 3
    lines = err.splitlines()
    assert lines[-1].startswith("invalid: ") and len(lines) > 15
    assert all(line.startswith(str(tmp_path / "policy.yaml") + ":") for line in lines[:-1])


@pytest.mark.parametrize("text", ["[]", "just a string", "42", "null", "- a\n- b\n", "~"])
def test_a_document_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    code, err = validate_bytes(tmp_path, text.encode())
    assert code == 3
    assert "Traceback" not in err


def test_missing_path_is_64_and_names_it(tmp_path: Path) -> None:
    code, _, err = run_cli("validate", str(tmp_path / "missing"), str(FIXTURES / "valid"))
    assert code == 64 and str(tmp_path / "missing") in err


def test_device_is_not_a_regular_file() -> None:
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    code, _, err = run_cli("validate", "/dev/zero")
    assert code == 3 and "not a regular file" in err


def test_python_tags_are_never_executed(tmp_path: Path) -> None:
    code, err = validate_bytes(
        tmp_path, b"apiVersion: reconciler/v1\ntenant: !!python/object/apply:os.system [touch pwned]\n"
    )
    assert code == 3 and "unsupported YAML tag" in err
    assert not (Path.cwd() / "pwned").exists()


# --- property-based -------------------------------------------------------------------------------

_TMP = Path(tempfile.mkdtemp(prefix="reconciler-hypothesis-"))
atexit.register(shutil.rmtree, _TMP, True)
BASE: dict[str, Any] = yaml.safe_load(VALID)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "ENTERPRISEPACK",
            "ENTERPRISPACK",
            "STANDARDPACK",
            "SHAREPOINTENTERPRISE",
            "FR",
            "fr",
            "NO",
            "10%",
            "150%",
            "keep",
            "remove",
            "6fd2c87f-b296-42f0-b197-1e91e994b900",
            "reconciler/v1",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_paths(value, (*prefix, i)))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def mutated_policies(draw: st.DrawFn) -> str:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["drop", "retype", "duplicate", "rename", "insert"]))
        if not path:
            if action == "retype":
                doc = draw(values)
            continue
        parent = _get(doc, path[:-1])
        key = path[-1]
        if action == "drop":
            del parent[key]
        elif action == "retype":
            parent[key] = draw(values)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = parent.pop(key)
        elif action == "insert" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(values)
        if not isinstance(doc, dict | list):
            break
    text = yaml.safe_dump(doc, allow_unicode=draw(st.booleans()), sort_keys=False)
    if draw(st.booleans()):  # text-level mutations: duplicate keys, lost lines, stray characters
        lines = text.splitlines()
        if lines:
            i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            op = draw(st.sampled_from(["dup", "del", "chars", "indent"]))
            if op == "dup":
                lines.insert(i, lines[i])
            elif op == "del":
                del lines[i]
            elif op == "chars":
                lines[i] = lines[i] + draw(st.text(max_size=5))
            else:
                lines[i] = " " * draw(st.integers(min_value=1, max_value=3)) + lines[i]
        text = "\n".join(lines) + "\n"
    return text


def _check(data: bytes) -> None:
    path = _TMP / "doc.yaml"
    path.write_bytes(data)
    code, _, err = run_cli("validate", str(path))
    assert code in (0, 3), err
    assert "Traceback" not in err
    if code == 3:
        assert err.splitlines()[-1].startswith("invalid: ")


COMMON = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(COMMON, max_examples=600)
@given(mutated_policies())
def test_mutated_policies_never_crash(text: str) -> None:
    _check(text.encode("utf-8", "surrogatepass"))


@settings(COMMON, max_examples=300)
@given(st.one_of(st.text(max_size=300), values.map(lambda v: yaml.safe_dump(v, allow_unicode=True))))
def test_random_yaml_and_text_never_crash(text: str) -> None:
    _check(text.encode("utf-8", "surrogatepass"))


@settings(COMMON, max_examples=200)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data: bytes) -> None:
    _check(data)
