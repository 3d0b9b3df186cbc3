"""Reading a study file without losing data or hanging: PyYAML keeps the last of two equal keys, accepts `.nan`,
`.inf` and `1.0e999` as numbers, reads `1e-4` (a YAML 1.2 float) as a string and `no` as a boolean (YAML 1.1),
expands aliases without bound (a few lines can stand for 10^9 nodes) and recurses once per nesting level. Each of
these is refused here, or read as YAML 1.2 reads it, with a one-line `ConfigError` naming the file and key path."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from raysweep.config.errors import ConfigError, format_key_path

MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"
BOOL_TAG = "tag:yaml.org,2002:bool"
MAX_BYTES = 4 * 2**20  # a study is a few KB; this bounds what the parser is asked to read
MAX_DEPTH = 32  # mappings/sequences inside each other (studies use about 6); PyYAML recurses once per level
MAX_NODES = 20_000  # nodes after alias expansion (studies have a few hundred): bounds "billion laughs" files
# YAML 1.2 floats with an exponent that PyYAML's YAML 1.1 rules leave as strings: 1e-4, 1.0e5, .5E3
_KINDS = {"int": "an integer", "float": "a number", "bool": "a boolean", "null": "null", "seq": "a list",
          "map": "a mapping", "timestamp": "a date"}
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class _Bounded(yaml.SafeLoader):
    """SafeLoader that reads YAML 1.2 exponent floats as numbers and refuses nesting deeper than `MAX_DEPTH`
    while composing (before Python's recursion limit turns it into a RecursionError)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"nesting deeper than {MAX_DEPTH} levels at line {mark.line + 1}; a study "
                                     "file needs far fewer")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


# YAML 1.2's booleans are true/false only: PyYAML's YAML 1.1 rules also read yes/no/on/off as booleans, so
# `regularizer: no` or a key `on:` would silently change type
_Bounded.yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != BOOL_TAG]
                                    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Bounded.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Bounded.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))


def _key_path(path: list[str | int]) -> str:
    return format_key_path(path) or "(top level)"


def _expanded_size(node: yaml.Node, source: str, sizes: dict[int, int], open_: set[int]) -> int:
    """Nodes under `node` as the constructed data will hold them (an alias counts its whole target again)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise ConfigError(source, "", f"invalid YAML at line {node.start_mark.line + 1}: an alias refers to a "
                                      "node that contains it (a recursive structure); aliases must not nest")
    open_.add(id(node))
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    total = 1
    for child in children:
        total += _expanded_size(child, source, sizes, open_)
        if total > MAX_NODES:
            raise ConfigError(source, "", f"aliases expand to more than {MAX_NODES} values (from line "
                                          f"{node.start_mark.line + 1}); refusing a file that small aliases blow up")
    open_.discard(id(node))
    sizes[id(node)] = total
    return total


def _check_keys(node: yaml.Node, source: str, path: list[str | int], seen: set[int]) -> None:
    """Walk the composed node tree (before construction, while the line numbers are known): every key a string,
    none given twice."""
    if id(node) in seen:  # an alias of a node already walked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == MERGE_TAG:
                _check_keys(value_node, source, path, seen)
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != STR_TAG:
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else f"a {key_node.id}"
                kind = key_node.tag.rsplit(":", 1)[-1]
                raise ConfigError(source, _key_path([*path, f"{shown}"]),
                                  f"key (line {line}) is read as {_KINDS.get(kind, kind)}, not a string; keys must "
                                  "be strings: quote it")
            if key_node.value in first_line:
                raise ConfigError(source, _key_path([*path, key_node.value]),
                                  f"key given twice (lines {first_line[key_node.value]} and {line}); YAML would "
                                  "keep only the last; remove one")
            first_line[key_node.value] = line
            _check_keys(value_node, source, [*path, key_node.value], seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_keys(item, source, [*path, i], seen)


def check_finite(tree: Any, source: str, path: list[str | int] | None = None) -> None:
    """ConfigError naming the key path of the first NaN or infinite number anywhere in `tree`."""
    path = path or []
    if isinstance(tree, float) and not math.isfinite(tree):
        raise ConfigError(source, _key_path(path),
                          f"{tree} is not a finite number; give a finite value (YAML .nan, .inf and overflowing "
                          "literals such as 1e999 are refused)")
    if isinstance(tree, dict):
        for key, value in tree.items():
            check_finite(value, source, [*path, str(key)])
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            check_finite(value, source, [*path, i])


def _text(path: Path) -> str:
    source = str(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise ConfigError(source, "", f"cannot read the file: {err.strerror or err}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(source, "", f"larger than {MAX_BYTES // 2**20} MiB; a study file is a few KB of YAML")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ConfigError(source, "", f"not UTF-8 text: byte 0x{data[err.start]:02x} at line {line} (offset "
                                      f"{err.start}); save the file as UTF-8") from None


def _yaml_error(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.reader.ReaderError):
        return (f"invalid YAML: character {chr(err.character)!r} at offset {err.position} is not allowed in YAML "
                "(control characters other than tab and newline)")
    mark = getattr(err, "problem_mark", None)
    problem = " ".join(str(getattr(err, "problem", None) or err).split())  # PyYAML's messages span lines
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else \
        f"invalid YAML: {problem}"


def read_yaml(path: Path) -> Any:
    """The file's data as YAML 1.2 reads it, refusing duplicate and non-string keys, deep nesting and alias
    bombs with a one-line `ConfigError` (non-finite numbers are refused by `parse_study`, which also sees studies
    built in code)."""
    source = str(path)
    text = _text(path)
    try:
        loader = _Bounded(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _expanded_size(node, source, {}, set())
            _check_keys(node, source, [], set())
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise ConfigError(source, "", _yaml_error(err)) from None
    except ValueError as err:  # a constructor's own: an integer literal past Python's 4300-digit limit, say
        raise ConfigError(source, "", f"invalid YAML value: {err}") from None
