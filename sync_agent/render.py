"""Files -> objects: turn the manifests under a path of an exported tree into Resources.

Called after `source.export_tree` by restore, plan, rollback and history; the objects go on to
validation and planning. It does what Flux's kustomize-controller does with a path:

- If the path holds a kustomization file (`kustomization.yaml`, `kustomization.yml` or
  `Kustomization`), it is built with `kubectl kustomize`, and that is all.
- Otherwise every `*.yaml`, `*.yml` and `*.json` file below the path is read, in path order.
  A directory below the path that holds its own kustomization file is built with kustomize as
  one unit and not descended into (Flux's generated kustomization lists such a directory as a
  resource). Hidden files and directories (name starting with ".") are tool configuration, not
  manifests, and are skipped. A directory holding a `Chart.yaml` is a Helm chart: with a
  `HelmContext` (the engine's, which knows the cluster) charts and HelmReleases are rendered
  by `helm.expand`; without one (history) each chart is named in `RenderResult.skipped`.
- Ignore rules use gitignore syntax, as Flux's source-controller: `.sourceignore` files (the
  one at the repository root and those in the directories on the way down to and below the
  path, each applying to its own directory), then the `ignore` patterns, which are relative to
  the repository root and win over the files. Kustomize builds read what their kustomization
  names; ignore rules do not apply inside them.
- kustomize runs with `--load-restrictor LoadRestrictionsNone`, as Flux does, so overlays may
  read patches and files from sibling directories, confined to the tree the way Flux confines
  it; remote bases are refused unless allowed (see `kustomize`).
- Nothing is read through a symbolic link that leaves the tree, no file past
  `RenderOptions.max_file_bytes`, and no YAML past `max_yaml_nodes` once its aliases are
  expanded (see `yaml_loader`).

Every problem is collected and raised at the end as one RenderError, each message starting
with the file and document. Default namespaces are not filled in: which kinds are namespaced
is known only from the cluster's discovery, in a later stage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import pathspec

from sync_agent import kustomize, sops, sops_kustomize
from sync_agent.errors import RenderError, SourceError
from sync_agent.helm import expand as helm_expand
from sync_agent.helm.context import HelmContext
from sync_agent.objects import ObjectRef, Origin, RenderResult, Resource, Revision, strings
from sync_agent.render_options import DEFAULTS, RenderOptions
from sync_agent.yaml_loader import YAMLLimitError, YAMLSyntaxError, load_documents

KUSTOMIZATION_FILES = kustomize.KUSTOMIZATION_FILES
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
SOURCEIGNORE = ".sourceignore"


@dataclass(frozen=True)
class _Unit:
    """One thing to read: a manifest file, or a directory kustomize builds (`kustomization`)."""

    path: str  # relative to the repository root, posix
    kustomization: str = ""  # the kustomization file's path, for kustomize units

    @property
    def sort_key(self) -> tuple[str, ...]:
        return PurePosixPath(self.path).parts


def render(root: Path, path: str, revision: Revision, ignore: Sequence[str] = (),
           options: RenderOptions = DEFAULTS, left_out: Mapping[str, str] | None = None,
           helm: HelmContext | None = None) -> RenderResult:
    """Every object declared under `path` of the exported tree `root` at `revision`.

    `left_out`: the symbolic links `source.export_tree` did not write because they lead out of
    the tree (path -> target); one under `path` that would be read is refused, naming it.
    `helm`: charts and HelmReleases are rendered with it (`helm.expand`); without it chart
    directories are skipped and reported.
    """
    left_out = left_out or {}
    rel = _normalize(path, revision)
    root = root.resolve()
    base = root / rel if rel else root
    if rel in left_out:
        raise RenderError([kustomize.link_left_out(rel, left_out[rel])])
    if not base.exists():
        raise SourceError(_missing_path_message(root, rel or ".", revision))
    if not _inside(root, base):
        raise RenderError([f"{rel}: a symbolic link to outside the repository; only files "
                           "inside it are read. Replace the link with what it points to"])
    charts: list[str] = []  # chart directories, relative to the root
    walked = False
    if base.is_file():
        units = [_Unit(rel)]
    elif kfile := kustomize.kustomization_in(base):
        units = [_Unit(rel or ".", _join(rel, kfile))]
    elif (base / "Chart.yaml").is_file():
        units, charts = [], [rel or "."]
    else:
        units = _walk(root, rel, _IgnoreRules(root, rel, ignore), charts)
        walked = True
    collector = _Collector(options.max_yaml_nodes)
    builds = [unit for unit in units if unit.kustomization]
    collector.problems.extend(kustomize.check(root, [u.path for u in builds], options, left_out))
    if walked:
        collector.problems.extend(_links_left_out(rel, left_out))
    built = {} if collector.problems else _build_all(root, builds, collector, options)
    for unit in units:
        if not unit.kustomization:
            collector.add_text(unit, *_plaintext(root, unit, options))
        elif unit in built:
            collector.add_text(unit, built[unit], decrypted=unit.path in collector.decrypted)
    skipped = [] if helm else [_chart_skipped(chart) for chart in charts]
    result = RenderResult(revision, rel or ".", tuple(collector.resources), tuple(skipped))
    if collector.problems:
        raise RenderError(collector.problems, partial=result)
    return helm_expand.expand(root, result, charts, helm, options, left_out) if helm else result


def _normalize(path: str, revision: Revision) -> str:
    rel = PurePosixPath(path.strip() or ".")
    if rel.is_absolute() or ".." in rel.parts:
        raise SourceError(
            f"path '{path}' must be relative to the repository root, inside it "
            f"(at {revision.sha[:12]})"
        )
    return "" if str(rel) == "." else str(rel)


def _missing_path_message(root: Path, rel: str, revision: Revision) -> str:
    tops = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    there = f"top-level directories there: {', '.join(tops)}" if tops else "no directories there"
    return (
        f"path '{rel}' does not exist at {revision.sha[:12]} ({revision.ref}; {there}). "
        "Check --path, or pick a revision where it exists (the history command shows them)."
    )


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def _chart_skipped(directory: str) -> str:
    """Without a Helm context (helm-renderer not built), charts are listed, not rendered."""
    return (f"{directory}: Helm chart skipped (helm-renderer is not built: run "
            "`gitops-restore cluster-bin`)")


class _IgnoreRules:
    """Gitignore-style rules from `.sourceignore` files and the caller's patterns."""

    def __init__(self, root: Path, rel: str, patterns: Sequence[str]):
        self._root = root
        self._rules: list[tuple[str, pathspec.GitIgnoreSpec]] = []
        self._extra = pathspec.GitIgnoreSpec.from_lines(patterns) if patterns else None
        parts = PurePosixPath(rel).parts if rel else ()
        for depth in range(len(parts) + 1):
            self.load("/".join(parts[:depth]))

    def load(self, directory: str) -> None:
        file = self._root / directory / SOURCEIGNORE
        if file.is_file() and _inside(self._root, file):
            lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
            self._rules.append((directory, pathspec.GitIgnoreSpec.from_lines(lines)))

    def ignored(self, rel: str, is_dir: bool) -> bool:
        verdict: bool | None = None
        suffix = "/" if is_dir else ""
        for domain, spec in self._rules:
            if domain and not rel.startswith(domain + "/"):
                continue
            include = spec.check_file(rel[len(domain) + 1 if domain else 0 :] + suffix).include
            verdict = include if include is not None else verdict
        if self._extra is not None:
            include = self._extra.check_file(rel + suffix).include
            verdict = include if include is not None else verdict
        return bool(verdict)


def _walk(root: Path, rel: str, rules: _IgnoreRules, charts: list[str]) -> list[_Unit]:
    units: list[_Unit] = []
    base = root / rel if rel else root
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath).relative_to(root).as_posix()
        here = "" if here == "." else here
        descend = []
        for name in sorted(dirnames):
            sub = _join(here, name)
            full = Path(dirpath, name)
            if name.startswith(".") or rules.ignored(sub, is_dir=True):
                continue
            if not _inside(root, full):
                units.append(_Unit(sub))  # reading it reports the link
                continue
            if (full / "Chart.yaml").is_file():
                charts.append(sub)
            elif kfile := kustomize.kustomization_in(full):
                units.append(_Unit(sub, _join(sub, kfile)))
            else:
                rules.load(sub)
                descend.append(name)
        dirnames[:] = descend
        for name in filenames:
            sub = _join(here, name)
            manifest = name.endswith(MANIFEST_SUFFIXES) and not name.startswith(".")
            if manifest and not rules.ignored(sub, is_dir=False):
                units.append(_Unit(sub))
    units.sort(key=lambda u: u.sort_key)
    return units


def _build_all(root: Path, units: list[_Unit], collector: _Collector, options: RenderOptions
               ) -> dict[_Unit, str | RenderError]:
    """kustomize output for each kustomization directory, built concurrently. SOPS-encrypted
    files the builds read are decrypted in memory first (`sops_kustomize`); the collector
    learns which builds read them and their plain values."""
    if not units:
        return {}
    inputs = sops_kustomize.prepare(root, [u.path for u in units], options)
    try:
        if inputs.problems:
            collector.problems.extend(inputs.problems)
            return {}
        collector.decrypted, collector.plain_values = inputs.directories, inputs.values
        with ThreadPoolExecutor(max_workers=min(4, len(units))) as pool:
            built = pool.map(lambda u: kustomize.build(root, u.path, u.kustomization, options,
                                                       inputs.fds), units)
            return dict(zip(units, built, strict=True))
    finally:
        inputs.close()


def _links_left_out(rel: str, left_out: Mapping[str, str]) -> list[str]:
    """Problems for links out of the tree that the walk under `rel` would have read."""
    problems = []
    for link, target in sorted(left_out.items()):
        parts = PurePosixPath(link).parts
        under = not rel or link == rel or link.startswith(rel + "/")
        hidden = any(part.startswith(".") for part in parts)
        manifest_or_dir = link.endswith(MANIFEST_SUFFIXES) or "." not in parts[-1]
        if under and not hidden and manifest_or_dir:
            problems.append(kustomize.link_left_out(link, target))
    return problems


def _inside(root: Path, path: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(root)


def _read_file(root: Path, unit: _Unit, max_bytes: int) -> str | RenderError:
    file = root / unit.path
    if not _inside(root, file):
        return RenderError([f"{unit.path}: a symbolic link to outside the repository; only "
                            "files inside it are read. Replace the link with the file"])
    try:
        with file.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        return RenderError([f"{unit.path}: cannot be read: {e.strerror}"])
    if len(data) > max_bytes:
        return RenderError([kustomize.too_large(unit.path, max_bytes)])
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return RenderError([f"{unit.path}: not UTF-8 or UTF-16 text"])


def _plaintext(root: Path, unit: _Unit, options: RenderOptions
               ) -> tuple[str | RenderError, bool]:
    """The file's text, decrypted in memory if SOPS encrypted it; and whether it was."""
    text = _read_file(root, unit, options.max_file_bytes)
    fmt = sops.file_format(unit.path, text) if isinstance(text, str) else ""
    if not fmt:
        return text, False
    return sops.decrypt(root, unit.path, fmt, options.sops_keys, options.max_file_bytes), True


def kustomization_references(data: Any) -> Iterator[str]:
    """Strings in a parsed kustomization that are paths leaving its directory (`../x`, `/x`)."""
    for value in strings(data):
        leaves = value.startswith("/") or ".." in PurePosixPath(value).parts
        if leaves and "\n" not in value and "://" not in value:
            yield value


class _Collector:
    """Turns texts into Resources, gathering every problem and spotting duplicates."""

    def __init__(self, max_yaml_nodes: int) -> None:
        self.max_yaml_nodes = max_yaml_nodes
        self.resources: list[Resource] = []
        self.problems: list[str] = []
        self._seen: dict[ObjectRef, Origin] = {}
        self._decrypted = False  # the text being added was decrypted
        # kustomize builds that read SOPS-encrypted files, and those files' plain values
        self.decrypted: set[str] = set()
        self.plain_values: dict[str, Any] = {}

    def add_text(self, unit: _Unit, text: str | RenderError, decrypted: bool = False) -> None:
        self._decrypted = decrypted
        if isinstance(text, RenderError):
            self.problems.extend(text.problems)
            return
        where = unit.kustomization or unit.path
        if unit.path.endswith(".json") and not unit.kustomization:
            try:
                self.add_document(json.loads(text), Origin(where, 1, 1))
            except json.JSONDecodeError as e:
                self.problems.append(f"{where}, document 1 (line {e.lineno}): bad JSON: {e.msg}")
            except RecursionError:
                self.problems.append(f"{where}, document 1: exceeded maximum nesting depth "
                                     "(Python's recursion limit); flatten the value")
            return
        try:
            documents = load_documents(text, self.max_yaml_nodes)
        except YAMLSyntaxError as e:
            line = f" (line {e.line})" if e.line else ""
            what = "refused" if isinstance(e, YAMLLimitError) else "bad YAML"
            self.problems.append(f"{where}, document {e.document}{line}: {what}: {e.problem}")
            return
        for doc in documents:
            # Lines of kustomize's output would mislead: only the document index is kept.
            line = 0 if unit.kustomization else doc.line
            self.add_document(doc.data, Origin(where, doc.index, line))

    def add_document(self, data: Any, origin: Origin) -> None:
        if data is None:
            return
        if not isinstance(data, dict):
            found = type(data).__name__
            self.problems.append(f"{origin}: not a Kubernetes object (a {found}, not a mapping)")
            return
        kind, items = data.get("kind"), data.get("items")
        if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
            for number, item in enumerate(items, 1):
                origin_item = replace(origin, item=number)
                if not isinstance(item, dict):
                    self.problems.append(f"{origin_item}: not a Kubernetes object")
                else:
                    self.add_object(item, origin_item)
            return
        self.add_object(data, origin)

    def add_object(self, body: dict[str, Any], origin: Origin) -> None:
        if isinstance(body.get("sops"), dict) and "mac" in body["sops"]:
            plain = sops_kustomize.plain_object(body, self.plain_values)
            if plain is None:
                self.problems.append(f"{origin}: holds SOPS-encrypted values of a file that "
                                     "was not decrypted; list the encrypted file under "
                                     "`resources` of a kustomization")
                return
            body = plain
        metadata = body.get("metadata")
        fields = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata.name": metadata.get("name") if isinstance(metadata, dict) else None,
        }
        missing = [name for name, value in fields.items() if not value]
        wrong = [name for name, value in fields.items() if value and not isinstance(value, str)]
        namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
        if namespace is not None and not isinstance(namespace, str):
            wrong.append("metadata.namespace")
        if missing or wrong:
            what = [f"missing {', '.join(missing)}"] if missing else []
            what += [f"{', '.join(wrong)} must be a string"] if wrong else []
            kind = f" (kind {body['kind']})" if "kind" not in missing + wrong else ""
            self.problems.append(f"{origin}: {'; '.join(what)}{kind}")
            return
        resource = Resource(body, origin, decrypted=self._decrypted)
        first = self._seen.get(resource.ref)
        if first is not None:
            self.problems.append(f"{origin}: {resource.ref} is declared twice; also in {first}")
            return
        self._seen[resource.ref] = origin
        self.resources.append(resource)
