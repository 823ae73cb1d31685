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

Aliases are bounded: PyYAML builds an alias as a second reference to one object, so a "billion
laughs" of a kilobyte loads at once and only explodes later, when the objects are hashed or
serialised. Each file's node graph is therefore measured as if its aliases were expanded, and a
file past `max_nodes` (or an alias inside its own anchor: a structure that never ends) is refused
with YAMLLimitError before anything is built, as go-yaml refuses "excessive aliasing".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from sync_agent.render_options import DEFAULT_MAX_YAML_NODES

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


class YAMLLimitError(YAMLSyntaxError):
    """A file parses but is refused: too large once expanded, or recursive."""


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


def _collections(node: yaml.Node) -> list[yaml.Node]:
    """The sequences and mappings directly inside `node` (scalars count 1 and need no visit)."""
    if type(node) is yaml.SequenceNode:
        children = node.value
    else:
        children = [child for pair in node.value for child in pair]
    return [child for child in children if type(child) is not yaml.ScalarNode]


def _expanded_size(root: yaml.Node, limit: int, document: int) -> int:
    """Nodes in `root` with every alias expanded (capped just past `limit`), without recursion:
    a depth-first walk that sizes each shared node once, however often it is used."""
    if type(root) is yaml.ScalarNode:
        return 1
    sizes: dict[int, int] = {}
    path: set[int] = set()  # the node on top of the stack and its ancestors
    stack = [root]
    while stack:
        node = stack[-1]
        key = id(node)
        if key in sizes:
            stack.pop()
        elif key not in path:  # first visit: size the children first
            path.add(key)
            for child in _collections(node):
                if id(child) in path:
                    line = child.start_mark.line + 1
                    raise YAMLLimitError(
                        f"an alias at line {line} or below refers to a node that contains "
                        "it, a structure without end; write the value out instead",
                        document, line)
                stack.append(child)
        else:  # second visit: every child is sized
            path.discard(key)
            nested = _collections(node)
            scalars = (len(node.value) * (1 if type(node) is yaml.SequenceNode else 2)
                       - len(nested))
            total = 1 + scalars + sum(sizes[id(child)] for child in nested)
            sizes[key] = min(total, limit + 1)
            stack.pop()
    return sizes[id(root)]


def _check_nodes(nodes: int, max_nodes: int, document: int, line: int) -> None:
    if nodes > max_nodes:
        raise YAMLLimitError(
            f"more than {max_nodes:,} YAML nodes once its aliases are expanded (a \"billion "
            "laughs\"?); write the values out, or raise --max-yaml-nodes (spec.maxYAMLNodes "
            "in a Sync) if the file is meant to be this large", document, line)


def _documents(text: str, max_nodes: int) -> Iterator[Document]:
    loader = ManifestLoader(text)
    index = 0
    nodes = 0
    aliased = "&" in text and "*" in text  # without both, the file size bounds the nodes
    try:
        while loader.check_node():
            index += 1
            node = loader.get_node()
            line = node.start_mark.line + 1 if node is not None else 0
            if aliased and node is not None:
                nodes += _expanded_size(node, max_nodes, index)
                _check_nodes(nodes, max_nodes, index, line)
            try:
                data = _construct(loader, node)
            except RecursionError:
                raise YAMLLimitError(
                    "exceeded maximum nesting depth (Python's recursion limit); no Kubernetes "
                    "object nests this deep, flatten the value", index, line) from None
            yield Document(data, index, line)
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


def load_documents(text: str, max_nodes: int = DEFAULT_MAX_YAML_NODES) -> list[Document]:
    """Every document in `text`, in order (empty ones included as None data).

    Raises YAMLSyntaxError for text that does not parse even with trailing whitespace stripped,
    and YAMLLimitError for text past `max_nodes` once expanded (see the module doc).
    """
    try:
        return list(_documents(text, max_nodes))
    except YAMLLimitError:
        raise
    except YAMLSyntaxError:
        stripped = "\n".join(line.rstrip() for line in text.split("\n"))
        if stripped == text:
            raise
    return list(_documents(stripped, max_nodes))
