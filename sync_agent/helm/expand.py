"""The render hook: a RenderResult with its charts and HelmReleases turned into objects.

`render.render` calls `expand` with the chart directories it found under --path and the objects
it read. Each HelmRelease is rendered or kept for its controller (`--helm`: auto renders when
the cluster does not serve the HelmRelease kind); each chart directory is rendered as a release
named after the directory, in --namespace. The Flux source objects a rendered release used are
consumed (left out) when the cluster does not serve their kind. Every problem becomes one
sentence of the RenderError naming the release, chart, version and URL: nothing is applied.
Charts are located first (fetched concurrently where they come from a repository), then all
releases are rendered together (`template.render`: one renderer process for what the render
cache lacks).

A chart in the repository is confined as kustomize is (`kustomize`): a chart directory, or a
file in it, that is a link out of the tree (left out by `source.export_tree`, or resolving
outside) is refused naming it; helm's output and chart values files are bounded by the same
`RenderOptions`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from sync_agent import kustomize, source
from sync_agent.errors import RenderError
from sync_agent.helm import fetch, fetch_oci, releases, template
from sync_agent.helm import values as values_mod
from sync_agent.helm.context import HelmContext
from sync_agent.helm.releases import Release, ReleaseError
from sync_agent.helm.template import TemplateError
from sync_agent.objects import ObjectRef, Origin, RenderResult, Resource
from sync_agent.render_options import DEFAULTS, RenderOptions
from sync_agent.yaml_loader import YAMLLimitError, YAMLSyntaxError, load_documents

WORKERS = 4


@dataclass(frozen=True)
class _Tree:
    """The exported tree charts are read from, and what confines reading it."""

    root: Path
    limits: RenderOptions = DEFAULTS
    left_out: Mapping[str, str] = field(default_factory=dict)  # links out: path -> target


@dataclass
class _Outcome:
    resources: list[Resource]
    note: str
    problem: str = ""


def expand(root: Path, result: RenderResult, chart_dirs: list[str], ctx: HelmContext,
           limits: RenderOptions = DEFAULTS, left_out: Mapping[str, str] | None = None
           ) -> RenderResult:
    tree = _Tree(root, limits, left_out or {})
    by_ref = {r.ref: r for r in result.resources}
    plan = _Selection()
    for directory in chart_dirs:
        plan.wanted.append(releases.from_chart_dir(directory, ctx.namespace,
                                                   _chart_field(root / directory, "name")))
    declared = _declared_kinds(result.resources)
    for resource in result.resources:
        if releases.is_helm_release(resource):
            _select(resource, by_ref, ctx, declared, plan)
    ordered, order_problems = _by_dependencies(plan.wanted)
    plan.problems.extend(order_problems)
    rendered = _render_all(tree, ordered, by_ref, ctx, plan) if ordered else []
    plan.notes.extend(f"{ref}: consumed by rendering, not applied (the cluster does not serve "
                      f"{ref.kind})" for ref in sorted(plan.dropped) if ref.kind != "HelmRelease")
    kept = [r for r in result.resources if r.ref not in plan.dropped]
    plan.problems.extend(_duplicates(kept, rendered))
    merged = replace(result, resources=tuple(kept + rendered),
                     helm=tuple(result.helm) + tuple(plan.notes))
    if plan.problems:
        raise RenderError(plan.problems, partial=merged)
    return merged


@dataclass
class _Selection:
    wanted: list[Release] = field(default_factory=list)
    dropped: set[ObjectRef] = field(default_factory=set)  # consumed, not applied
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _select(resource: Resource, by_ref: dict[ObjectRef, Resource], ctx: HelmContext,
            declared: set[tuple[str, str]], plan: _Selection) -> None:
    """A HelmRelease: kept for its controller, or read into a Release to render."""
    if _mode(resource, ctx, declared) == "controller":
        why = "--helm controller" if ctx.settings.mode == "controller" else \
            f"the cluster serves {resource.group} HelmRelease" \
            if ctx.capabilities.serves(resource.api_version, resource.kind) else \
            f"this revision declares the {resource.group} HelmRelease CRD"
        plan.notes.append(f"{resource.ref}: applied as-is for its controller ({why})")
        return
    plan.dropped.add(resource.ref)
    try:
        plan.wanted.append(releases.from_resource(
            resource, by_ref, ctx.namespace, lambda ref, url: _is_this_repo(ctx, ref, url)))
    except ReleaseError as e:
        plan.problems.append(f"{resource.origin}: {e}")


def _render_all(tree: _Tree, ordered: list[Release], by_ref: dict[ObjectRef, Resource],
                ctx: HelmContext, plan: _Selection) -> list[Resource]:
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:  # fetching waits on the network
        located = list(pool.map(lambda r: _locate_release(tree, r, by_ref, ctx), ordered))
    jobs = [found.job for found in located if isinstance(found, _Located)]
    outputs = iter(template.render(jobs, ctx.capabilities, tree.limits))
    rendered: list[Resource] = []
    for release, found in zip(ordered, located, strict=True):
        outcome = found if isinstance(found, _Outcome) else \
            _outcome(tree.root, release, found, next(outputs))
        if outcome.problem:
            plan.problems.append(outcome.problem)
            continue
        plan.notes.append(outcome.note)
        rendered.extend(outcome.resources)
        if release.create_namespace:
            rendered.extend(_namespace(release, by_ref, rendered))
        plan.dropped.update(used for used in release.uses if used in by_ref and not
                            ctx.capabilities.serves(by_ref[used].api_version, used.kind))
    return rendered


def _mode(resource: Resource, ctx: HelmContext, declared: set[tuple[str, str]]) -> str:
    """auto: the controller's when its CRD is served or comes with this revision (a Flux
    installation in the repository restores the controller too), else rendered."""
    if ctx.settings.mode != "auto":
        return ctx.settings.mode
    served = ctx.capabilities.serves(resource.api_version, resource.kind)
    return "controller" if served or (resource.group, resource.kind) in declared else "render"


def _declared_kinds(resources: tuple[Resource, ...]) -> set[tuple[str, str]]:
    """(group, kind) of every CustomResourceDefinition in the revision."""
    kinds = set()
    for r in resources:
        if r.kind == "CustomResourceDefinition" and isinstance(r.body.get("spec"), dict):
            spec = r.body["spec"]
            kinds.add((str(spec.get("group", "")), str((spec.get("names") or {}).get("kind"))))
    return kinds


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


@dataclass(frozen=True)
class _Located:
    """A release ready to render: its chart found (fetched if need be), its values merged."""

    job: template.Job
    url: str  # where the chart came from; "" for a chart in the repository


def _locate_release(tree: _Tree, release: Release, by_ref: dict[ObjectRef, Resource],
                    ctx: HelmContext) -> _Located | _Outcome:
    try:
        chart_path, version, url = _locate(tree, release, ctx)
        shown = f"{release.chart.name or _chart_field(chart_path, 'name')} {version}".strip()
        values = values_mod.merged(release, chart_path, by_ref, tree.limits.max_file_bytes)
    except (ReleaseError, fetch.ChartFetchError) as e:
        return _failed(tree.root, release, e)
    return _Located(template.Job(chart_path, release.name, release.namespace, values,
                                 release.include_crds, shown), url)


def _outcome(root: Path, release: Release, found: _Located,
             out: template.Rendered | TemplateError) -> _Outcome:
    if isinstance(out, TemplateError):
        return _failed(root, release, out)
    shown = found.job.shown
    resources = [Resource(body, Origin(_origin_path(release, shown, src), n))
                 for n, (body, src) in enumerate(out.objects, 1)]
    note = (f"{release.owner}: rendered release {release.namespace}/{release.name} from "
            f"{shown}{' (' + found.url + ')' if found.url else ''}: {len(resources)} objects")
    if out.skipped_hooks:
        note += f"; hooks left out: {', '.join(out.skipped_hooks)}"
    return _Outcome(resources, note)


def _failed(root: Path, release: Release, error: Exception) -> _Outcome:
    where = f"{release.owner} (release {release.namespace}/{release.name})"
    return _Outcome([], "", f"{release.declared_in}: {where}: "
                            f"{_chart_named(root, release.chart)}: {_trim(str(error))}")


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


def _locate(tree: _Tree, release: Release, ctx: HelmContext) -> tuple[Path, str, str]:
    """The chart directory or archive, its version, and its URL ("" for a path)."""
    root, chart = tree.root, release.chart
    if chart.kind == "path":
        _refuse_left_out(chart.location, tree.left_out)
        top = root.resolve()
        path = (root / chart.location).resolve()
        if not path.is_relative_to(top) or not (path / "Chart.yaml").is_file():
            raise ReleaseError(f"'{chart.location}' is not a chart directory (with Chart.yaml) "
                               "inside the repository")
        _refuse_links_out(path, top)
        return path, _chart_field(path, "version"), ""
    if chart.kind == "oci":
        fetched = fetch_oci.fetch(chart.location, chart.version, ctx.settings, chart.plain_http)
    else:
        fetched = fetch.fetch(chart.location, chart.name, chart.version, ctx.settings)
    return fetched.archive, fetched.version, fetched.url


def _refuse_left_out(location: str, left_out: Mapping[str, str]) -> None:
    """A link out of the tree that `source.export_tree` did not write, at or under the chart
    directory: helm would render without the file (`.Files.Get` gives ""), so it is refused."""
    rel = os.path.normpath(PurePosixPath(location)).removeprefix("./")
    for link, target in sorted(left_out.items()):
        if rel in (".", link) or link.startswith(rel + "/") or rel.startswith(link + "/"):
            raise ReleaseError(kustomize.link_left_out(link, target))


def _refuse_links_out(chart: Path, top: Path) -> None:
    """helm follows symbolic links in a chart directory; one leading out of the repository
    would let the chart read the operator's files into the cluster (`.Files.Get`)."""
    for dirpath, dirnames, filenames in os.walk(chart):
        for name in dirnames + filenames:
            entry = Path(dirpath, name)
            if entry.is_symlink() and not entry.resolve().is_relative_to(top):
                raise ReleaseError(f"{entry.relative_to(top).as_posix()} is a link to outside "
                                   "the repository; charts may only read files inside it")


def _chart_field(path: Path, name: str) -> str:
    """A field of the chart's Chart.yaml; "" when there is none (a missing or left-out chart
    directory is reported by the caller)."""
    try:
        documents = load_documents((path / "Chart.yaml").read_text(errors="replace"))
    except (OSError, YAMLSyntaxError, YAMLLimitError):
        return ""
    data = documents[0].data if documents else None
    return str(data.get(name, "")) if isinstance(data, dict) else ""


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
