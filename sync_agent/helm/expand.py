"""The render hook: a RenderResult with its charts and HelmReleases turned into objects.

`render.render` calls `expand` with the chart directories it found under --path and the objects
it read. Each HelmRelease is rendered or kept for its controller (`--helm`: auto renders when
the cluster does not serve the HelmRelease kind); each chart directory is rendered as a release
named after the directory, in --namespace. The Flux source objects a rendered release used are
consumed (left out) when the cluster does not serve their kind. Every problem becomes one
sentence of the RenderError naming the release, chart, version and URL: nothing is applied.
"""

from __future__ import annotations

import base64
import copy
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sync_agent import source
from sync_agent.errors import RenderError
from sync_agent.helm import binary, fetch, fetch_oci, releases
from sync_agent.helm.context import HelmContext
from sync_agent.helm.releases import Release, ReleaseError, ValuesRef
from sync_agent.helm.template import TemplateError, run_template
from sync_agent.objects import ObjectRef, Origin, RenderResult, Resource
from sync_agent.yaml_loader import YAMLSyntaxError, load_documents

WORKERS = 4


@dataclass
class _Outcome:
    resources: list[Resource]
    note: str
    problem: str = ""


def expand(root: Path, result: RenderResult, chart_dirs: list[str],
           ctx: HelmContext) -> RenderResult:
    by_ref = {r.ref: r for r in result.resources}
    notes: list[str] = []
    problems: list[str] = []
    wanted: list[Release] = [
        releases.from_chart_dir(d, ctx.namespace, _chart_field(root / d, "name"))
        for d in chart_dirs]
    dropped: set[ObjectRef] = set()
    for resource in result.resources:
        if not releases.is_helm_release(resource):
            continue
        mode = _mode(resource, ctx)
        if mode == "controller":
            notes.append(f"{resource.ref}: applied as-is for its controller (--helm "
                         f"{ctx.settings.mode}; the cluster serves {resource.group} HelmRelease)")
            continue
        dropped.add(resource.ref)
        try:
            wanted.append(releases.from_resource(resource, by_ref, ctx.namespace,
                                                 lambda ref, url: _is_this_repo(ctx, ref, url)))
        except ReleaseError as e:
            problems.append(f"{resource.origin}: {e}")
    ordered, order_problems = _by_dependencies(wanted)
    problems.extend(order_problems)
    if not wanted:
        return result
    helm = binary.helm_path()
    if helm is None:
        raise RenderError([f"{r.declared_in}: {r.owner}: helm {binary.HELM_VERSION} is needed "
                           "to render it and is not built; run `gitops-restore cluster-bin`"
                           for r in wanted])
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = list(pool.map(lambda r: _render_one(helm, root, r, by_ref, ctx), ordered))
    rendered: list[Resource] = []
    for release, outcome in zip(ordered, outcomes, strict=True):
        if outcome.problem:
            problems.append(outcome.problem)
            continue
        notes.append(outcome.note)
        rendered.extend(outcome.resources)
        if release.create_namespace:
            rendered.extend(_namespace(release, by_ref, rendered))
        for used in release.uses:
            if used in by_ref and not ctx.capabilities.serves(by_ref[used].api_version,
                                                              used.kind):
                dropped.add(used)
    notes.extend(f"{ref}: consumed by rendering, not applied (the cluster does not serve "
                 f"{ref.kind})" for ref in sorted(dropped) if ref.kind != "HelmRelease")
    kept = [r for r in result.resources if r.ref not in dropped]
    problems.extend(_duplicates(kept, rendered))
    merged = replace(result, resources=tuple(kept + rendered),
                     helm=tuple(result.helm) + tuple(notes))
    if problems:
        raise RenderError(problems, partial=merged)
    return merged


def _mode(resource: Resource, ctx: HelmContext) -> str:
    if ctx.settings.mode != "auto":
        return ctx.settings.mode
    return "controller" if ctx.capabilities.serves(resource.api_version, "HelmRelease") \
        else "render"


def _is_this_repo(ctx: HelmContext, ref: ObjectRef | None, url: str) -> bool:
    if ref is not None and ref.namespace == "flux-system" and ref.name == "flux-system":
        return True  # the source `flux bootstrap` makes for the repository it bootstraps
    return bool(url) and _normal(url) == _normal(ctx.repo_url)


def _normal(url: str) -> str:
    text = source.redact(url).strip().rstrip("/").removesuffix(".git").lower()
    for prefix in ("ssh://", "https://", "http://", "file://", "git@"):
        text = text.removeprefix(prefix)
    text = text.split("@", 1)[-1] if "@" in text.split("/", 1)[0] else text
    return text.replace(":", "/", 1) if "/" not in text.split(":", 1)[0] else text


def _by_dependencies(wanted: list[Release]) -> tuple[list[Release], list[str]]:
    """Releases in dependsOn order (dependencies first); a cycle is a problem."""
    names = {f"{r.ref.namespace}/{r.ref.name}": r for r in wanted if r.ref}
    done: list[Release] = []
    state: dict[str, str] = {}
    problems: list[str] = []

    def visit(release: Release, key: str, trail: list[str]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            problems.append(f"{release.declared_in}: {release.owner}: dependsOn forms a cycle: "
                            f"{' -> '.join([*trail, key])}")
            return
        state[key] = "visiting"
        for dependency in release.depends_on:
            if dependency in names:
                visit(names[dependency], dependency, [*trail, key])
        state[key] = "done"
        done.append(release)

    for release in wanted:
        key = f"{release.ref.namespace}/{release.ref.name}" if release.ref else release.owner
        visit(release, key, [])
    return done, problems


def _render_one(helm: Path, root: Path, release: Release, by_ref: dict[ObjectRef, Resource],
                ctx: HelmContext) -> _Outcome:
    chart = release.chart
    try:
        with tempfile.TemporaryDirectory(prefix="gitops-restore-helm-") as scratch:
            chart_path, version, url = _locate(root, release, ctx)
            shown = f"{chart.name or _chart_field(chart_path, 'name')} {version}".strip()
            values = _values(root, release, chart_path, by_ref)
            out = run_template(helm, chart_path, release.name, release.namespace, values,
                               release.include_crds, ctx.capabilities, Path(scratch), shown)
    except (ReleaseError, fetch.ChartFetchError, TemplateError) as e:
        where = f"{release.owner} (release {release.namespace}/{release.name})"
        return _Outcome([], "", f"{release.declared_in}: {where}: {_chart_named(root, chart)}: "
                                f"{_trim(str(e))}")
    resources = [Resource(body, Origin(_origin_path(release, shown, src), n))
                 for n, (body, src) in enumerate(out.objects, 1)]
    note = (f"{release.owner}: rendered release {release.namespace}/{release.name} from "
            f"{shown}{' (' + url + ')' if url else ''}: {len(resources)} objects")
    if out.skipped_hooks:
        note += f"; hooks left out: {', '.join(out.skipped_hooks)}"
    return _Outcome(resources, note)


def _chart_named(root: Path, chart: releases.ChartRef) -> str:
    """The chart as an error names it: name and version (or range), and where from."""
    if chart.kind == "path":
        version = _chart_field(root / chart.location, "version")
        return f"chart {chart.location} {version}".rstrip()
    return f"chart {chart.name} {chart.version} from {source.redact(chart.location)}"


def _trim(message: str) -> str:
    message = message.removeprefix("Error: ").replace("\n\nUse --debug flag to render out "
                                                       "invalid YAML", "")
    return message.strip()


def _origin_path(release: Release, shown: str, template: str) -> str:
    """Where users find an object: the template in the repository for a chart in it, else
    the HelmRelease, chart and template (helm names templates `<chart>/templates/...`)."""
    inside = template.split("/", 1)[1] if "/" in template else template
    if release.chart.kind == "path":
        return f"{release.chart.location.rstrip('/')}/{inside}".removeprefix("./")
    return f"{release.declared_in} -> chart {shown}: {inside}"


def _locate(root: Path, release: Release, ctx: HelmContext) -> tuple[Path, str, str]:
    """The chart directory or archive, its version, and its URL ("" for a path)."""
    chart = release.chart
    if chart.kind == "path":
        top = root.resolve()
        path = (root / chart.location).resolve()
        if not path.is_relative_to(top) or not (path / "Chart.yaml").is_file():
            raise ReleaseError(f"'{chart.location}' is not a chart directory (with Chart.yaml) "
                               "inside the repository")
        return path, _chart_field(path, "version"), ""
    if chart.kind == "oci":
        fetched = fetch_oci.fetch(chart.location, chart.version, ctx.settings, chart.plain_http)
    else:
        fetched = fetch.fetch(chart.location, chart.name, chart.version, ctx.settings)
    return fetched.archive, fetched.version, fetched.url


def _chart_field(path: Path, name: str) -> str:
    try:
        documents = load_documents((path / "Chart.yaml").read_text(errors="replace"))
    except YAMLSyntaxError:
        return ""
    data = documents[0].data if documents else None
    return str(data.get(name, "")) if isinstance(data, dict) else ""


def _values(root: Path, release: Release, chart_path: Path,
            by_ref: dict[ObjectRef, Resource]) -> dict[str, Any]:
    """valuesFrom in order, then spec.values on top (Flux's and the Helm Operator's order)."""
    merged: dict[str, Any] = {}
    for ref in release.values_from:
        text = _values_text(ref, chart_path, by_ref)
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


def _values_text(ref: ValuesRef, chart_path: Path, by_ref: dict[ObjectRef, Resource]
                 ) -> str | None:
    if ref.kind == "ChartFile":
        text = _chart_file(chart_path, ref.name)
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


def _chart_file(chart_path: Path, name: str) -> str | None:
    """A file of the chart (a directory, or an archive whose top directory is the chart)."""
    if chart_path.is_dir():
        file = (chart_path / name).resolve()
        inside = file.is_relative_to(chart_path.resolve()) and file.is_file()
        return file.read_text(errors="replace") if inside else None
    with tarfile.open(chart_path) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.split("/", 1)[-1] == name.removeprefix("./"):
                extracted = archive.extractfile(member)
                return extracted.read().decode(errors="replace") if extracted else None
    return None


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


def _namespace(release: Release, by_ref: dict[ObjectRef, Resource],
               rendered: list[Resource]) -> list[Resource]:
    """install.createNamespace: the target namespace, unless the revision declares it."""
    ref = ObjectRef("", "Namespace", "", release.namespace)
    if ref in by_ref or any(r.ref == ref for r in rendered):
        return []
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": release.namespace}}
    return [Resource(body, Origin(f"{release.declared_in} (install.createNamespace)", 1))]


def _duplicates(kept: list[Resource], rendered: list[Resource]) -> list[str]:
    seen: dict[ObjectRef, Origin] = {r.ref: r.origin for r in kept}
    problems = []
    for resource in rendered:
        first = seen.get(resource.ref)
        if first is not None:
            problems.append(f"{resource.origin}: {resource.ref} is declared twice; also in "
                            f"{first}")
        seen[resource.ref] = resource.origin
    return problems
