"""Small rendering helpers shared by the ops commands (tables for markdown and csv, json).

Large outputs (`report` on a big tenant: one json object per user and SKU) are produced in pieces
(`iter_json`, `line_chunks`) so that the command writes them as they come and never holds the
whole document, nor the structure it is rendered from, in memory at once.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

import orjson

FORMATS = ("text", "markdown", "json", "csv")
CHUNK = 1000  # items (json) or lines (text) per piece
# characters that make the csv module quote a field
_CSV_SPECIAL = re.compile('[\r\n",]')


def check_format(fmt: str, formats: Sequence[str] = FORMATS) -> None:
    from reconciler.errors import UsageError

    if fmt not in formats:
        raise UsageError(f"--format must be one of {', '.join(formats)}, not {fmt!r}")


def json_text(data: Any) -> str:
    """`json.dumps(data, indent=2, ensure_ascii=False)`, byte for byte, at orjson's speed."""
    try:
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, an integer beyond 64 bits
        return json.dumps(data, indent=2, ensure_ascii=False)


def to_json(data: Any) -> str:
    return json_text(data) + "\n"


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def iter_json(head: Mapping[str, Any], key: str, items: Iterable[Any], chunk: int = CHUNK) -> Iterator[str]:
    """`to_json({**head, key: list(items)})` in pieces (`key` last), `items` serialised and
    released `chunk` at a time."""
    doc = json_text({**head, key: []})
    empty = "[]\n}"  # how the document ends with an empty list under `key`
    yield doc[: -len(empty)]
    started = False
    for batch in batched(items, chunk):
        # "[\n  {...},\n  {...}\n]" at depth 0 -> the same elements two levels deeper (a JSON text
        # holds no raw newline inside a string, so every newline is layout)
        inner = json_text(batch)[2:-2].replace("\n", "\n  ")
        yield (",\n  " if started else "[\n  ") + inner
        started = True
    yield "\n  ]\n}\n" if started else empty + "\n"


def line_chunks(lines: Iterable[str], chunk: int = CHUNK) -> Iterator[str]:
    """Each line followed by a newline, `chunk` lines per piece."""
    for batch in batched(lines, chunk):
        batch.append("")
        yield "\n".join(batch)


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    return "".join(iter_csv(header, rows))


def iter_csv(header: Sequence[str], rows: Iterable[Sequence[Any]], chunk: int = CHUNK) -> Iterator[str]:
    """What `csv.writer(lineterminator="\n")` writes (None as an empty field), `chunk` rows per
    piece. A row of plain text fields none of which needs quoting is joined directly (the csv
    module's writer costs some microseconds per row); any other row or field goes through it."""
    slow = io.StringIO()
    writer = csv.writer(slow, lineterminator="\n")

    def through_csv(row: Sequence[Any]) -> str:
        writer.writerow(row)
        text = slow.getvalue()
        slow.seek(0)
        slow.truncate()
        return text

    def field(value: Any) -> str:
        if type(value) is str and _CSV_SPECIAL.search(value) is None:
            return value
        return through_csv(["" if value is None else value, ""])[:-2]  # "<field>,\n"

    def line(row: Sequence[Any]) -> str:
        if len(row) > 1:
            try:
                text = ",".join(row)
            except TypeError:  # a field that is not text
                pass
            else:
                # (str methods: a regular expression scans the long plan lists ten times slower)
                if text.count(",") == len(row) - 1 and '"' not in text and "\n" not in text and "\r" not in text:
                    return text + "\n"
            return ",".join([field(v) for v in row]) + "\n"
        return through_csv(["" if v is None else v for v in row])

    yield line(header)
    for batch in batched(rows, chunk):
        yield "".join([line(row) for row in batch])


def md_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    return list(iter_md_table(header, rows))


def iter_md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    yield "| " + " | ".join(md_cell(h) for h in header) + " |"
    yield "|" + "---|" * len(header)
    for row in rows:
        yield "| " + " | ".join(md_cell(v) for v in row) + " |"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"
