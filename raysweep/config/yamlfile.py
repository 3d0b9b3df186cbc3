"""Reading a study file without losing data: PyYAML keeps the last of two equal keys and accepts `.nan`, `.inf`
and `1.0e999` as numbers; a study with either would run something other than what its author reads."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from raysweep.config.errors import ConfigError, format_key_path

MERGE_TAG = "tag:yaml.org,2002:merge"


def _key_path(path: list[str | int]) -> str:
    return format_key_path(path) or "(top level)"


def _check_duplicates(node: yaml.Node, source: str, path: list[str | int], seen: set[int]) -> None:
    """Walk the composed node tree (before construction, while the line numbers are known)."""
    if id(node) in seen:  # an alias of a node already walked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != MERGE_TAG:
                ident = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if ident in first_line:
                    raise ConfigError(source, _key_path([*path, key_node.value]),
                                      f"key given twice (lines {first_line[ident]} and {line}); YAML would keep "
                                      "only the last; remove one")
                first_line[ident] = line
            label = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            _check_duplicates(value_node, source, [*path, label], seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, source, [*path, i], seen)


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


def read_yaml(path: Path) -> Any:
    """The file's data, refusing duplicate keys with a one-line `ConfigError` (non-finite numbers are refused by
    `parse_study`, which also sees studies built in code)."""
    source = str(path)
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_duplicates(node, source, [], set())
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(source, "", f"invalid YAML at {where}: {getattr(err, 'problem', err)}") from None
    return data
