"""Plain data passed between the pipeline's stages: references, rendered objects, revisions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Identifies one Kubernetes object; `str()` gives `kind/namespace/name` as users read it."""

    group: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"

    @property
    def group_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


@dataclass(frozen=True)
class ResourceType:
    """A kind the API server serves at one version, and where to find it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str = "", name: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


@dataclass(frozen=True)
class Origin:
    """Where a rendered object came from, for error messages: file path and document index."""

    path: str  # relative to the repository root
    document: int  # 1-based index of the YAML document in the file
    line: int = 0  # 1-based line the document starts at, when known
    item: int = 0  # 1-based index in the `items` of a List document; 0 when not from a List

    def __str__(self) -> str:
        where = f"{self.path}, document {self.document}"
        if self.item:
            where += f", item {self.item}"
        return f"{where} (line {self.line})" if self.line else where


@dataclass(frozen=True)
class Resource:
    """One object as declared at a revision."""

    body: dict[str, Any]
    origin: Origin
    decrypted: bool = False  # from a SOPS-encrypted file: its values are never shown or hashed

    @property
    def api_version(self) -> str:
        return self.body["apiVersion"]

    @property
    def kind(self) -> str:
        return self.body["kind"]

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.body["metadata"].get("namespace", "") or ""

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.group, self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class Revision:
    """A resolved Git revision: what the user asked for, and the commit it is."""

    repo: str  # URL or path as the user gave it
    ref: str  # what the user asked for (branch, tag, SHA, HEAD~2, or an --at time)
    sha: str  # full 40-hex commit SHA
    committed_at: str  # ISO 8601
    author: str
    message: str  # first line


@dataclass(frozen=True)
class RenderResult:
    """Everything declared under a path at a revision, plus what was left out and why."""

    revision: Revision
    path: str
    resources: tuple[Resource, ...]
    skipped: tuple[str, ...] = field(default=())  # human sentences: "charts/x: Helm chart skipped"
    helm: tuple[str, ...] = field(default=())  # per release: rendered or left to its controller


def strings(data: Any) -> Iterator[str]:
    """Every string value in an object's body, or any parsed YAML or JSON: mapping values and
    list items, at any depth."""
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from strings(value)
