"""A YAML loader that reads manifests the way kubectl does; used by `render` for every file.

kubectl decodes YAML with sigs.k8s.io/yaml (go-yaml v2, YAML 1.1 rules) and converts it to JSON.
PyYAML's safe loader is close to that, with these differences fixed here:

- a bare `=` is the string "=" (PyYAML resolves it to `tag:yaml.org,2002:value` and then has no
  constructor for it);
- timestamps stay strings (objects go to the API server as JSON, and go-yaml v2 keeps them as
  strings when decoding into untyped maps);
- base-60 numbers (`12:30`) stay strings (go-yaml v2 has no sexagesimal numbers);
- trailing tabs and tab-only lines are tolerated: when a text does not parse, it is parsed again
  with trailing whitespace stripped from every line. Text that parses is never altered.

YAML 1.1 booleans (`yes`, `on`, `off`, ...) keep PyYAML's behaviour, which go-yaml v2 shares.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_VALUE = "tag:yaml.org,2002:value"

# PyYAML's YAML 1.1 patterns without their base-60 alternatives.
_INT_RE = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.X,
)
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class ManifestLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader (libyaml when available) with kubectl's view of scalars; see module doc."""


def _install_resolvers() -> None:
    resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    for first, entries in _BaseLoader.yaml_implicit_resolvers.items():
        kept = []
        for tag, regexp in entries:
            if tag == _TIMESTAMP:
                continue
            if tag == _INT:
                regexp = _INT_RE
            elif tag == _FLOAT:
                regexp = _FLOAT_RE
            kept.append((tag, regexp))
        resolvers[first] = kept
    ManifestLoader.yaml_implicit_resolvers = resolvers
    ManifestLoader.add_constructor(_VALUE, ManifestLoader.construct_yaml_str)


_install_resolvers()


@dataclass(frozen=True)
class Document:
    """One YAML document: its parsed data, 1-based index in the file and start line."""

    data: Any
    index: int
    line: int


class YAMLSyntaxError(ValueError):
    """A file does not parse; `document` and `line` say where (1-based)."""

    def __init__(self, problem: str, document: int, line: int):
        self.problem = problem
        self.document = document
        self.line = line
        super().__init__(problem)


_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"


class _Unusual(Exception):
    """The fast path met something it leaves to PyYAML (merge keys, custom tags, odd keys)."""


def _construct(loader: ManifestLoader, root: yaml.Node | None) -> Any:
    """Build one document, about twice as fast as PyYAML's generic constructor.

    Handles the plain maps, lists and scalars manifests are made of; anything else is built by
    PyYAML itself, so results and errors are PyYAML's.
    """
    if root is None:
        return None
    built: dict[int, Any] = {}  # by node id: aliases share one object, as in PyYAML
    scalars = loader.yaml_constructors

    def build(node: yaml.Node) -> Any:
        done = built.get(id(node))
        if done is not None:
            return done
        kind = type(node)
        if kind is yaml.ScalarNode:
            if node.tag == _STR:
                return node.value
            if node.tag not in _SCALAR_TAGS:
                raise _Unusual
            return scalars[node.tag](loader, node)
        if kind is yaml.SequenceNode and node.tag == _SEQ:
            items: list[Any] = []
            built[id(node)] = items
            items.extend(build(child) for child in node.value)
            return items
        if kind is yaml.MappingNode and node.tag == _MAP:
            mapping: dict[Any, Any] = {}
            built[id(node)] = mapping
            for key_node, value_node in node.value:
                if type(key_node) is not yaml.ScalarNode or key_node.tag == _MERGE:
                    raise _Unusual
                mapping[build(key_node)] = build(value_node)
            return mapping
        raise _Unusual

    try:
        return build(root)
    except _Unusual:
        return loader.construct_document(root)


_SCALAR_TAGS = frozenset(
    "tag:yaml.org,2002:" + t for t in ("int", "float", "bool", "null", "value", "binary")
)


def _documents(text: str) -> Iterator[Document]:
    loader = ManifestLoader(text)
    index = 0
    try:
        while loader.check_node():
            index += 1
            node = loader.get_node()
            line = node.start_mark.line + 1 if node is not None else 0
            yield Document(_construct(loader, node), index, line)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = e.problem or str(e)
        if e.context and e.context_mark is not None:
            problem += f" ({e.context} at line {e.context_mark.line + 1})"
        raise YAMLSyntaxError(problem, max(index, 1), line) from e
    except yaml.YAMLError as e:
        raise YAMLSyntaxError(str(e), max(index, 1), 0) from e
    finally:
        loader.dispose()


def load_documents(text: str) -> list[Document]:
    """Every document in `text`, in order (empty ones included as None data).

    Raises YAMLSyntaxError for text that does not parse even with trailing whitespace stripped.
    """
    try:
        return list(_documents(text))
    except YAMLSyntaxError:
        stripped = "\n".join(line.rstrip() for line in text.split("\n"))
        if stripped == text:
            raise
    return list(_documents(stripped))
