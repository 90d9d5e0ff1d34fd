"""YAML loading that keeps the position of every node and refuses what a policy must not contain.

The standard loaders lose positions, accept duplicate keys (the last one silently wins),
expand aliases without limit and recurse once per nesting level. This module builds the
document itself from the parser's event stream, without recursion, and returns a tree of
`YNode`s that carry their line and column (1-based) next to their value:

- a duplicate key is an error naming both positions;
- nesting deeper than `MAX_DEPTH` is an error (no RecursionError ever);
- aliases are allowed, but the document they expand to may not exceed `MAX_NODES` nodes
  (a "billion laughs" document is refused before anything is expanded);
- explicit tags other than YAML's standard ones are refused;
- only one document per file.

Scalars follow YAML 1.1 as PyYAML resolves them (so `NO` is a boolean); `YNode.text` keeps
the scalar as written so messages can explain such surprises. Mapping keys are always
strings: the key as written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.errors import Problem

MAX_DEPTH = 64
MAX_NODES = 200_000
MAX_ALIASES = 1_000

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"
_CONSTRUCTED = {
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    _STR,
}
# standard tags whose value we keep as the text written (a policy never needs them typed)
_AS_TEXT = {
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:binary",
    "tag:yaml.org,2002:value",
    _MERGE,
}


@dataclass(eq=False)
class YNode:
    """A YAML node: `value` is a dict[str, YNode], a list[YNode] or a plain scalar.

    `line`/`column` are where the node starts (1-based); for a mapping value,
    `key_line`/`key_column` are where its key starts. `size` counts the nodes the
    subtree expands to (aliases included).
    """

    value: Any
    line: int
    column: int
    text: str | None = None  # the scalar as written
    plain: bool = False  # the scalar was unquoted (so YAML resolved its type)
    key_line: int = 0
    key_column: int = 0
    size: int = 1
    path: str = ""  # the file the node was read from

    def to_plain(self) -> Any:
        """The document as plain Python data (dict/list/scalars), iteratively."""
        return _to_plain(self)

    def child(self, key: str | int) -> YNode | None:
        if isinstance(self.value, dict) and isinstance(key, str):
            node = self.value.get(key)
            return node if isinstance(node, YNode) else None
        if isinstance(self.value, list) and isinstance(key, int) and 0 <= key < len(self.value):
            node = self.value[key]
            return node if isinstance(node, YNode) else None
        return None

    def walk(self, path: list[str | int] | tuple[str | int, ...]) -> tuple[YNode, int]:
        """The deepest node along `path`, and how many path elements were followed."""
        node = self
        for i, key in enumerate(path):
            nxt = node.child(key)
            if nxt is None:
                return node, i
            node = nxt
        return node, len(path)


def _to_plain(root: YNode) -> Any:
    # iterative copy: a stack of (source node, destination container, key)
    def leaf_or_new(node: YNode) -> Any:
        if isinstance(node.value, dict):
            return {}
        if isinstance(node.value, list):
            return []
        return node.value

    out = leaf_or_new(root)
    stack: list[tuple[YNode, Any]] = [(root, out)]
    while stack:
        node, dest = stack.pop()
        if isinstance(node.value, dict):
            for key, child in node.value.items():
                new = leaf_or_new(child)
                dest[key] = new
                if isinstance(new, dict | list):
                    stack.append((child, new))
        elif isinstance(node.value, list):
            for child in node.value:
                new = leaf_or_new(child)
                dest.append(new)
                if isinstance(new, dict | list):
                    stack.append((child, new))
    return out


@dataclass(eq=False)
class _Frame:
    node: YNode
    anchor: str | None
    pending_key: YNode | None = None
    merges: list[tuple[YNode, YNode]] = field(default_factory=list)  # (key node, value node) of `<<`
    explicit: dict[str, YNode] = field(default_factory=dict)  # key nodes written in this mapping


def _mark(mark: Any) -> tuple[int, int]:
    if mark is None:
        return 1, 1
    return int(mark.line) + 1, int(mark.column) + 1


def _resolve_scalar(event: Any) -> str:
    tag = event.tag
    if tag == "!":
        return _STR
    if tag is None:
        return str(_resolver.resolve(yaml.ScalarNode, event.value, event.implicit))  # type: ignore[no-untyped-call]
    return str(tag)


_resolver = yaml.resolver.Resolver()
_constructor = yaml.constructor.SafeConstructor()
_SCALAR_BUILDERS: dict[str, Any] = {
    "tag:yaml.org,2002:null": _constructor.construct_yaml_null,
    "tag:yaml.org,2002:bool": _constructor.construct_yaml_bool,
    "tag:yaml.org,2002:int": _constructor.construct_yaml_int,
    "tag:yaml.org,2002:float": _constructor.construct_yaml_float,
}


def _scalar_value(tag: str, text: str, start: Any, end: Any) -> Any:
    if tag == _STR:
        return text
    # call the constructor's scalar methods directly: construct_object would cache every node
    return _SCALAR_BUILDERS[tag](yaml.ScalarNode(tag, text, start, end))


def parse(text: str, path: str) -> tuple[YNode | None, list[Problem]]:
    """Parse one YAML document: (tree, problems); never raises for bad input.

    The tree is None for an empty document (nothing or only comments) and when a fatal
    problem (a syntax error, too deep, too large, a second document) stopped the parse.
    Other problems (duplicate keys, unsupported tags) are collected and the tree is
    still returned without the offending entries, so later checks can report more.
    """
    problems: list[Problem] = []

    def problem(line: int, column: int, message: str) -> None:
        problems.append(Problem(path, line, column, message))

    try:
        root = _build(_events(text), path, problem)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = _mark(mark)
        what = exc.problem or exc.context or "invalid YAML"
        if "nesting depth" in what:
            # PyYAML 6.0.4 and later stop at their own depth, ahead of ours: one message either way
            problems.append(Problem(path, line, column, f"document nested deeper than {MAX_DEPTH} levels"))
            return None, problems
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        problems.append(Problem(path, line, column, f"YAML syntax error: {what}{context}"))
        return None, problems
    except yaml.reader.ReaderError as exc:
        line, column = _offset_position(text, int(exc.position))
        char = exc.character
        code = f"#x{ord(char):04x}" if isinstance(char, str) else f"#x{int(char):04x}"
        problems.append(
            Problem(
                path,
                line,
                column,
                f"character {code} is not allowed in YAML ({exc.reason}); is this a text file?",
            )
        )
        return None, problems
    except yaml.YAMLError as exc:
        problems.append(Problem(path, 1, 1, f"YAML error: {exc}"))
        return None, problems
    except _Stop:
        return None, problems
    return root, problems


def _offset_position(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    line = before.count("\n") + 1
    return line, offset - (before.rfind("\n") + 1) + 1


def _events(text: str) -> Iterator[Any]:
    loader = _Loader(text)
    try:
        while loader.check_event():
            yield loader.get_event()
    finally:
        loader.dispose()


class _Stop(Exception):
    """Abandon the document (the problem is already recorded)."""


def _build(events: Iterator[Any], path: str, problem: Any) -> YNode | None:
    anchors: dict[str, YNode] = {}
    stack: list[_Frame] = []
    root: YNode | None = None
    documents = 0
    total = 0
    aliases = 0

    def attach(node: YNode, anchor: str | None) -> None:
        nonlocal root, total
        if anchor is not None:
            anchors[anchor] = node
        if not stack:
            root = node
            return
        parent = stack[-1]
        pnode = parent.node
        pnode.size += node.size
        if pnode.size > MAX_NODES or total > MAX_NODES:
            problem(
                node.line,
                node.column,
                f"document too large: it expands to more than {MAX_NODES} YAML nodes "
                "(aliases included); write the policy out or split it",
            )
            raise _Stop
        if isinstance(pnode.value, list):
            pnode.value.append(node)
            return
        if parent.pending_key is None:
            # node is a key
            if isinstance(node.value, dict | list):
                problem(node.line, node.column, "a mapping key must be a plain string, not a list or mapping")
                parent.pending_key = YNode("\x00invalid", node.line, node.column)
                return
            parent.pending_key = node
            return
        key = parent.pending_key
        parent.pending_key = None
        if key.text == "<<" and key.plain:
            parent.merges.append((key, node))
            return
        name = key.text if key.text is not None else str(key.value)
        if name == "\x00invalid":
            return
        node.key_line, node.key_column = key.line, key.column
        if name in parent.explicit:
            first = parent.explicit[name]
            problem(
                key.line,
                key.column,
                f"duplicate key '{name}' (first defined at line {first.line}, "
                f"column {first.column}); a key may appear once in a mapping",
            )
            return
        parent.explicit[name] = key
        pnode.value[name] = node

    def finish_mapping(frame: _Frame) -> None:
        node = frame.node
        if not frame.merges:
            return
        merged: dict[str, YNode] = {}
        for key, value in frame.merges:
            sources = value.value if isinstance(value.value, list) else [value]
            for src in sources:
                if not isinstance(src.value, dict):
                    problem(key.line, key.column, "'<<' (merge key) needs a mapping or a list of mappings")
                    continue
                for name, child in src.value.items():
                    merged.setdefault(name, child)
        for name, child in merged.items():
            if name not in node.value:
                node.value[name] = child

    for event in events:
        if isinstance(event, yaml.StreamStartEvent | yaml.StreamEndEvent | yaml.DocumentEndEvent):
            continue
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                line, column = _mark(event.start_mark)
                problem(
                    line,
                    column,
                    "a policy file holds one YAML document; remove the second one (after ---)"
                    " or move it to its own file",
                )
                raise _Stop
            continue
        line, column = _mark(event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            target = anchors.get(str(event.anchor))
            if target is None:
                problem(
                    line,
                    column,
                    f"alias *{event.anchor} refers to an anchor that is not defined before it"
                    " (or to a node that contains the alias)",
                )
                raise _Stop
            if aliases > MAX_ALIASES:
                problem(line, column, f"too many aliases (more than {MAX_ALIASES}); write the policy out")
                raise _Stop
            total += target.size
            attach(target, None)
            continue
        if isinstance(event, yaml.ScalarEvent):
            tag = _resolve_scalar(event)
            if tag in _CONSTRUCTED:
                try:
                    value = _scalar_value(tag, event.value, event.start_mark, event.end_mark)
                except (yaml.YAMLError, ValueError, OverflowError):
                    problem(line, column, f"cannot read {event.value[:40]!r} as {tag.rsplit(':', 1)[-1]}")
                    value = event.value
            elif tag in _AS_TEXT:
                value = event.value
            else:
                problem(line, column, f"unsupported YAML tag {tag}; remove it")
                value = event.value
            total += 1
            plain = bool(not event.style and event.implicit[0])
            attach(YNode(value, line, column, text=event.value, plain=plain, path=path), event.anchor)
            continue
        if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            is_map = isinstance(event, yaml.MappingStartEvent)
            if event.tag not in (None, "!", _MAP if is_map else _SEQ):
                problem(line, column, f"unsupported YAML tag {event.tag}; remove it")
            if len(stack) >= MAX_DEPTH:
                problem(line, column, f"document nested deeper than {MAX_DEPTH} levels")
                raise _Stop
            total += 1
            stack.append(_Frame(YNode({} if is_map else [], line, column, path=path), event.anchor))
            continue
        if isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            frame = stack.pop()
            if isinstance(event, yaml.MappingEndEvent):
                finish_mapping(frame)
            attach(frame.node, frame.anchor)
            continue
    return root
