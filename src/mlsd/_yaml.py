"""Reading YAML that a person wrote (``mlsd.yaml``, ``schemas/*.yaml``) safely.

PyYAML's safe loader builds no Python objects from tags, but it still accepts
three things a spec must not hold:

* a "billion laughs": a few lines of anchors and aliases (``&a``, ``*a``)
  that expand to billions of values once the document is walked (the spec's
  hash expanded one to 2.6 GB);
* nesting thousands of levels deep, which ends in a RecursionError;
* the same key twice in a mapping, where the last silently wins.

:func:`load` refuses each with one line naming the file and line. Written by
hand on top of PyYAML's own loader: PyYAML has no option for any of the three.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 64  # mappings and lists inside one another
MAX_ALIASES = 100  # uses of an anchor (`*name`)
MAX_VALUES = 100_000  # values of the document once every alias is expanded


class YamlError(ValueError):
    """A document refused: the message names the line."""


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}" if mark is not None else "somewhere"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (the C one when PyYAML has it), counting depth and
    aliases as nodes are composed and refusing duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise YamlError(f"{_where(mark)}: more than {MAX_ALIASES} aliases "
                                f"(*name): refused, a document of aliases can "
                                f"expand without bound")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlError(f"{_where(mark)}: nested more than {MAX_DEPTH} "
                                f"levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # noqa: ANN001
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` merges keys, later ones win by design
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # PyYAML reports unhashable keys itself
            if key in seen:
                raise YamlError(f"{_where(key_node.start_mark)}: the key {key!r} "
                                f"appears twice in one mapping (first on "
                                f"{_where(seen[key])}); say it once")
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` holds once every alias is copied out."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # a cycle counts once
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo)
                       for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, memo) for v in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


def load(text: str) -> Any:
    """The one document in ``text``, as plain Python values (like
    ``yaml.safe_load``), or :class:`YamlError` / ``yaml.YAMLError``."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_VALUES:
            raise YamlError(f"{_where(node.start_mark)}: the document expands to "
                            f"{size:,} values through its aliases (at most "
                            f"{MAX_VALUES:,}): refused")
        return loader.construct_document(node)
    finally:
        loader.dispose()
