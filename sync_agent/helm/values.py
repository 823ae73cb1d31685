"""A release's values: valuesFrom (ConfigMaps and Secrets of the revision, chart files) in
order, then spec.values on top, as Flux and the Helm Operator merge them; the chart's own
values.yaml stays helm's default underneath. `targetPath` sets one value (a string) at a dotted
path; `optional` entries may be missing.
"""

from __future__ import annotations

import base64
import copy
import tarfile
from pathlib import Path
from typing import Any

from sync_agent.helm.releases import Release, ReleaseError, ValuesRef
from sync_agent.objects import ObjectRef, Resource
from sync_agent.render_options import DEFAULT_MAX_FILE_BYTES
from sync_agent.yaml_loader import YAMLSyntaxError, load_documents


def merged(release: Release, chart_path: Path, by_ref: dict[ObjectRef, Resource],
           max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> dict[str, Any]:
    """valuesFrom in order, then spec.values on top (Flux's and the Helm Operator's order).
    A chart's values file larger than `max_bytes` (--max-file-size) is refused."""
    merged: dict[str, Any] = {}
    for ref in release.values_from:
        text = _values_text(ref, chart_path, by_ref, max_bytes)
        if text is None:
            continue
        if ref.target_path:
            _set_path(merged, ref.target_path, text)
            continue
        try:
            documents = load_documents(text)
        except YAMLSyntaxError as e:
            raise ReleaseError(f"valuesFrom {ref.kind}/{ref.namespace}/{ref.name} key "
                               f"{ref.key}: bad YAML: {e.problem}") from None
        data = documents[0].data if documents else None
        if data is not None and not isinstance(data, dict):
            raise ReleaseError(f"valuesFrom {ref.kind}/{ref.namespace}/{ref.name} key "
                               f"{ref.key}: not a mapping of values")
        merged = _merge(merged, data or {})
    return _merge(merged, copy.deepcopy(release.values))


def _values_text(ref: ValuesRef, chart_path: Path, by_ref: dict[ObjectRef, Resource],
                 max_bytes: int) -> str | None:
    if ref.kind == "ChartFile":
        text = _chart_file(chart_path, ref.name, max_bytes)
        if text is None and not ref.optional:
            raise ReleaseError(f"values file {ref.name}: no such file in the chart")
        return text
    found = by_ref.get(ObjectRef("", ref.kind, ref.namespace, ref.name))
    body = found.body if found else None
    text = _key_of(body, ref.key) if body else None
    if text is None and not ref.optional:
        missing = "is not declared in this revision" if body is None \
            else f"has no key '{ref.key}'"
        raise ReleaseError(f"valuesFrom {ref.kind}/{ref.namespace}/{ref.name} {missing} "
                           "(declare it, or mark the entry optional)")
    return text


def _chart_file(chart_path: Path, name: str, max_bytes: int) -> str | None:
    """A file of the chart (a directory, or an archive whose top directory is the chart)."""
    if chart_path.is_dir():
        file = (chart_path / name).resolve()
        if not (file.is_relative_to(chart_path.resolve()) and file.is_file()):
            return None
        with file.open("rb") as f:
            return _bounded(f.read(max_bytes + 1), name, max_bytes)
    with tarfile.open(chart_path) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.split("/", 1)[-1] == name.removeprefix("./"):
                extracted = archive.extractfile(member)
                return _bounded(extracted.read(max_bytes + 1), name, max_bytes) \
                    if extracted else None
    return None


def _bounded(data: bytes, name: str, max_bytes: int) -> str:
    if len(data) > max_bytes:
        raise ReleaseError(f"values file {name}: larger than {max_bytes:,} bytes; nothing was "
                           "read. Raise --max-file-size (spec.maxFileSize in a Sync) if it is "
                           "meant to be this large")
    return data.decode(errors="replace")


def _key_of(body: dict[str, Any], key: str) -> str | None:
    if body.get("kind") == "Secret":
        string_data = body.get("stringData") or {}
        if key in string_data:
            return str(string_data[key])
        raw = (body.get("data") or {}).get(key)
        return base64.b64decode(str(raw)).decode(errors="replace") if raw is not None else None
    value = (body.get("data") or {}).get(key)
    return None if value is None else str(value)


def _set_path(values: dict[str, Any], path: str, value: str) -> None:
    keys = [k for k in path.split(".") if k]
    node = values
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if keys:
        node[keys[-1]] = value


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
