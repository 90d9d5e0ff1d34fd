"""The position-keeping YAML reader: positions, duplicate keys, aliases, limits."""

from __future__ import annotations

from reconciler.policy import yamlpos
from reconciler.policy.yamlpos import parse


def test_positions_of_values_and_keys_are_one_based() -> None:
    root, problems = parse("a: 1\nb:\n  - x\n  - {c: d}\n", "f.yaml")
    assert problems == []
    assert root is not None
    b = root.child("b")
    assert b is not None and (b.key_line, b.key_column) == (2, 1)
    x = b.child(0)
    assert x is not None and (x.line, x.column, x.value) == (3, 5, "x")
    c = root.walk(["b", 1, "c"])[0]
    assert (c.line, c.column, c.key_line, c.key_column, c.value) == (4, 9, 4, 6, "d")
    assert root.to_plain() == {"a": 1, "b": ["x", {"c": "d"}]}


def test_duplicate_key_names_both_positions_and_keeps_the_first() -> None:
    root, problems = parse("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert [str(p) for p in problems] == [
        "f.yaml:3:1: duplicate key 'a' (first defined at line 1, column 1); a key may appear once in a mapping"
    ]
    assert root is not None and root.to_plain() == {"a": 1, "b": 2}


def test_nested_duplicate_key() -> None:
    _, problems = parse("g:\n  - group: A\n    group: B\n", "f.yaml")
    assert len(problems) == 1
    assert (problems[0].line, problems[0].column) == (3, 5)
    assert "first defined at line 2, column 5" in problems[0].message


def test_yaml_11_booleans_keep_their_text() -> None:
    root, _ = parse("c: NO\nd: 'NO'\n", "f.yaml")
    assert root is not None
    c, d = root.child("c"), root.child("d")
    assert c is not None and c.value is False and c.text == "NO" and c.plain
    assert d is not None and d.value == "NO" and not d.plain


def test_keys_are_strings_as_written() -> None:
    root, _ = parse("1: a\nyes: b\n~: c\n", "f.yaml")
    assert root is not None and root.to_plain() == {"1": "a", "yes": "b", "~": "c"}


def test_aliases_and_merge_keys_expand() -> None:
    text = "base: &b {sku: EMS, disabledPlans: [A]}\nx: *b\ny:\n  <<: *b\n  sku: EMSPREMIUM\n"
    root, problems = parse(text, "f.yaml")
    assert problems == []
    assert root is not None
    plain = root.to_plain()
    assert plain["x"] == {"sku": "EMS", "disabledPlans": ["A"]}
    assert plain["y"] == {"sku": "EMSPREMIUM", "disabledPlans": ["A"]}


def test_alias_bomb_is_refused_without_expanding() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    root, problems = parse("\n".join(lines) + "\n", "bomb.yaml")
    assert root is None
    assert len(problems) == 1 and "expands to more than" in problems[0].message


def test_too_many_aliases() -> None:
    text = "a: &a x\nl: [" + ", ".join(["*a"] * (yamlpos.MAX_ALIASES + 1)) + "]\n"
    root, problems = parse(text, "f.yaml")
    assert root is None and "too many aliases" in problems[0].message


def test_recursive_alias_is_refused() -> None:
    root, problems = parse("&a [*a]\n", "f.yaml")
    assert root is None and "not defined before it" in problems[0].message


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    for text in ("[" * 100_000, "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200))):
        root, problems = parse(text, "deep.yaml")
        assert root is None
        assert problems and ("nested deeper" in problems[0].message or "syntax" in problems[0].message)


def test_one_document_per_file() -> None:
    root, problems = parse("a: 1\n---\nb: 2\n", "f.yaml")
    assert root is None and (problems[0].line, "one YAML document" in problems[0].message) == (2, True)


def test_unsupported_tags_are_reported() -> None:
    root, problems = parse("a: !!python/object:os.system x\nb: !custom 3\n", "f.yaml")
    assert root is not None
    assert [p.line for p in problems] == [1, 2]
    assert all("unsupported YAML tag" in p.message for p in problems)


def test_syntax_error_has_position() -> None:
    root, problems = parse("a: [1, 2\nb: 3\n", "f.yaml")
    assert root is None and problems[0].message.startswith("YAML syntax error")
    assert problems[0].line >= 2


def test_control_characters_are_reported_with_position() -> None:
    root, problems = parse("a: b\nc: \x07\n", "f.yaml")
    assert root is None
    assert (problems[0].line, problems[0].column) == (2, 4)
    assert "#x0007" in problems[0].message


def test_empty_and_comment_only_documents() -> None:
    assert parse("", "f.yaml") == (None, [])
    assert parse("# only a comment\n", "f.yaml") == (None, [])
