"""reconciler.ops.output: the fast json and csv writers give, byte for byte, what the standard
library's json.dumps(indent=2, ensure_ascii=False) and csv.writer give, also when written in pieces."""

from __future__ import annotations

import csv
import io
import itertools
import json
from typing import Any

import pytest

from reconciler.ops.output import iter_csv, iter_json, json_text, line_chunks, to_csv, to_json

ODD_TEXT = ["", "a", "é ß ẞ 😀", "\u2028\u2029", "\x00\x1f\x7f", 'q"q', "back\\slash", "tab\tnew\nline\rcr", "/"]


def reference_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def test_to_json_is_the_standard_layout() -> None:
    data = {
        "text": ODD_TEXT,
        "empty": [],
        "none": {},
        "nested": [{"a": [1, [2, []]], "b": None, "c": True, "d": False}, []],
        "ints": [0, -1, 2**63 - 1],
        "big": 2**70,  # beyond orjson: the standard encoder takes over
        "surrogate": "\ud800",
    }
    assert to_json(data) == reference_json(data)
    assert json_text([]) == "[]" and to_json({}) == "{}\n"


@pytest.mark.parametrize("count", [0, 1, 2, 3, 7])
def test_iter_json_in_pieces_is_the_whole_document(count: int) -> None:
    head = {"tenant": "contoso", "skus": [{"sku": "E3", "groups": ["a", "ß"]}]}
    items = [{"user": f"u{i}{ODD_TEXT[i % len(ODD_TEXT)]}", "plans": [] if i % 2 else ["x", "y"], "n": i} for i in range(count)]
    pieces = list(iter_json(head, "users", iter(items), chunk=2))
    assert "".join(pieces) == reference_json({**head, "users": items})
    assert len(pieces) == 2 + (count + 1) // 2  # head, one piece per chunk of items, the end


def test_line_chunks() -> None:
    lines = [f"line {i}" for i in range(5)]
    assert list(line_chunks(lines, chunk=2)) == ["line 0\nline 1\n", "line 2\nline 3\n", "line 4\n"]
    assert "".join(line_chunks(lines)) == "\n".join(lines) + "\n"


def test_csv_is_the_csv_module_output() -> None:
    values: list[Any] = [*ODD_TEXT, None, "a,b", ",", '"', " spaced ", 1, 2.5, True, "x\r\ny"]
    rows = [list(pair) for pair in itertools.product(values, repeat=2)]
    rows += [[v] for v in values] + [[], ["a", "b", "c,d", "e"]]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["h1", "h2"])
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    assert to_csv(["h1", "h2"], rows) == buf.getvalue()
    pieces = list(iter_csv(["h1", "h2"], rows, chunk=10))
    assert len(pieces) == 1 + (len(rows) + 9) // 10 and "".join(pieces) == buf.getvalue()
