"""What to render: each HelmRelease shape, and each chart directory, read into a `Release`.

The shapes (group, kind) -> reader:
- helm.toolkit.fluxcd.io/v2, v2beta2, v2beta1 HelmRelease (Flux): `spec.chart.spec` with a
  `sourceRef` to a GitRepository (chart = a path in it) or a HelmRepository (chart = a name,
  version = a semver range), or `spec.chartRef` to an OCIRepository/HelmChart; `values`,
  `valuesFrom`, `releaseName` (default `[<targetNamespace>-]<name>`), `targetNamespace`,
  `install.crds`, `dependsOn`.
- helm.fluxcd.io/v1 and flux.weave.works/v1beta1 HelmRelease (Helm Operator): `spec.chart`
  with `repository` + `name` + `version` or `git` + `path`; `values`, `valuesFrom`
  (configMapKeyRef / secretKeyRef / chartFileRef) and `valueFileSecrets`, `releaseName` (default
  `<namespace>-<name>`), `targetNamespace`.
Problems are raised as ReleaseError sentences starting with the HelmRelease.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sync_agent.objects import ObjectRef, Resource

FLUX_GROUP = "helm.toolkit.fluxcd.io"
OPERATOR_GROUPS = ("helm.fluxcd.io", "flux.weave.works")
SOURCE_GROUP = "source.toolkit.fluxcd.io"
SOURCE_KINDS = ("GitRepository", "HelmRepository", "OCIRepository", "HelmChart", "Bucket")


class ReleaseError(Exception):
    pass


@dataclass(frozen=True)
class ChartRef:
    """Where the chart is: a path in this repository, or a name in a chart repository."""

    kind: str  # "path" | "repo" | "oci"
    location: str  # path in the tree, repository URL or oci:// URL
    name: str = ""  # chart name in the repository
    version: str = ""  # semver constraint ("" = latest)
    plain_http: bool = False  # an `insecure` OCI source: the registry speaks plain HTTP


@dataclass(frozen=True)
class ValuesRef:
    kind: str  # ConfigMap | Secret | ChartFile
    name: str
    namespace: str
    key: str = "values.yaml"
    target_path: str = ""
    optional: bool = False


@dataclass(frozen=True)
class Release:
    owner: str  # "HelmRelease/apps/web" or "chart charts/web", what users read
    declared_in: str  # file (and document) it came from
    name: str
    namespace: str
    chart: ChartRef
    values: dict[str, Any] = field(default_factory=dict)
    values_from: tuple[ValuesRef, ...] = ()
    include_crds: bool = True
    depends_on: tuple[str, ...] = ()  # "namespace/name" of other HelmReleases
    uses: tuple[ObjectRef, ...] = ()  # source objects of the revision it needs
    ref: ObjectRef | None = None  # the HelmRelease object, None for a chart directory
    create_namespace: bool = False  # install.createNamespace: the target namespace is declared


def is_helm_release(resource: Resource) -> bool:
    return resource.kind == "HelmRelease" and resource.group in (FLUX_GROUP, *OPERATOR_GROUPS)


def from_chart_dir(path: str, namespace: str, chart_name: str) -> Release:
    """A chart directory: released under the directory's name (the chart's at the root)."""
    name = path.rstrip("/").rsplit("/", 1)[-1] if path not in ("", ".") else chart_name
    return Release(f"chart directory {path}", f"{path}/Chart.yaml", name, namespace,
                   ChartRef("path", path))


def from_resource(hr: Resource, sources: dict[ObjectRef, Resource], default_ns: str,
                  is_this_repo) -> Release:
    namespace = hr.namespace or default_ns
    spec = hr.body.get("spec")
    if not isinstance(spec, dict):
        raise ReleaseError(f"{hr.ref}: spec is missing")
    if hr.group == FLUX_GROUP:
        return _flux(hr, spec, namespace, sources, is_this_repo)
    return _operator(hr, spec, namespace, is_this_repo)


def _flux(hr: Resource, spec: dict, namespace: str, sources: dict[ObjectRef, Resource],
          is_this_repo) -> Release:
    target = str(spec.get("targetNamespace") or "")
    name = str(spec.get("releaseName") or (f"{target}-{hr.name}" if target else hr.name))
    chart, uses = _flux_chart(hr, spec, namespace, sources, is_this_repo)
    if spec.get("postRenderers"):
        raise ReleaseError(f"{hr.ref}: spec.postRenderers are not applied when rendering; "
                           "use --helm controller for this release (rendering without them "
                           "would restore other objects than helm-controller makes)")
    install = spec.get("install") or {}
    crds = str(install.get("crds") or "Create")
    template = ((spec.get("chart") or {}).get("spec")) or {}
    files = tuple(ValuesRef("ChartFile", str(f), "", optional=bool(
        template.get("ignoreMissingValuesFiles"))) for f in template.get("valuesFiles") or [])
    values_from = files + tuple(_flux_values_ref(hr, item, namespace)
                                for item in spec.get("valuesFrom") or [])
    depends = tuple(f"{d.get('namespace') or namespace}/{d.get('name')}"
                    for d in spec.get("dependsOn") or [] if isinstance(d, dict))
    return Release(str(hr.ref), str(hr.origin), name, target or namespace, chart,
                   _values(hr, spec), values_from, crds != "Skip", depends, uses, hr.ref,
                   bool(install.get("createNamespace")))


def _flux_chart(hr: Resource, spec: dict, namespace: str, sources: dict[ObjectRef, Resource],
                is_this_repo) -> tuple[ChartRef, tuple[ObjectRef, ...]]:
    if spec.get("chartRef"):
        ref = spec["chartRef"]
        source_ref = ObjectRef(SOURCE_GROUP, str(ref.get("kind")),
                               str(ref.get("namespace") or namespace), str(ref.get("name")))
        found = sources.get(source_ref)
        if source_ref.kind == "OCIRepository" and found is not None:
            source_spec = found.body.get("spec") or {}
            url = str(source_spec.get("url", "")).rstrip("/")
            version = str((source_spec.get("ref") or {}).get("tag")
                          or (source_spec.get("ref") or {}).get("semver") or "")
            return ChartRef("oci", url, url.rsplit("/", 1)[-1], version,
                            bool(source_spec.get("insecure"))), (source_ref,)
        raise ReleaseError(f"{hr.ref}: spec.chartRef names {source_ref}, which the revision "
                           "does not declare as an OCIRepository; declare it, or use "
                           "--helm controller")
    template = ((spec.get("chart") or {}).get("spec")) or {}
    chart = str(template.get("chart") or "")
    ref = template.get("sourceRef") or {}
    if not chart or not ref.get("kind") or not ref.get("name"):
        raise ReleaseError(f"{hr.ref}: spec.chart.spec needs chart and sourceRef (kind, name)")
    source_ref = ObjectRef(SOURCE_GROUP, str(ref["kind"]), str(ref.get("namespace")
                                                                or namespace), str(ref["name"]))
    found = sources.get(source_ref)
    if source_ref.kind == "GitRepository":
        url = str(((found.body.get("spec") or {}).get("url")) or "") if found else ""
        if not is_this_repo(source_ref, url):
            where = url or "not declared in this revision"
            raise ReleaseError(
                f"{hr.ref}: its chart comes from {source_ref} ({where}), which is not this "
                "repository; only charts of the repository being restored are read (restore "
                "that repository too, or use --helm controller)")
        return ChartRef("path", chart.removeprefix("./")), (source_ref,) if found else ()
    if source_ref.kind == "HelmRepository":
        if found is None:
            raise ReleaseError(f"{hr.ref}: its chart comes from {source_ref}, which the "
                               "revision does not declare")
        source_spec = found.body.get("spec") or {}
        url = str(source_spec.get("url") or "")
        version = str(template.get("version") or "*")
        if source_spec.get("type") == "oci" or url.startswith("oci://"):
            return ChartRef("oci", f"{url.rstrip('/')}/{chart}", chart, version,
                            bool(source_spec.get("insecure"))), (source_ref,)
        return ChartRef("repo", url, chart, version), (source_ref,)
    raise ReleaseError(f"{hr.ref}: charts from a {source_ref.kind} are not rendered; use "
                       "--helm controller")


def _flux_values_ref(hr: Resource, item: Any, namespace: str) -> ValuesRef:
    if not isinstance(item, dict) or item.get("kind") not in ("ConfigMap", "Secret") \
            or not item.get("name"):
        raise ReleaseError(f"{hr.ref}: each valuesFrom entry needs kind (ConfigMap or Secret) "
                           "and name")
    return ValuesRef(str(item["kind"]), str(item["name"]), namespace,
                     str(item.get("valuesKey") or "values.yaml"),
                     str(item.get("targetPath") or ""), bool(item.get("optional")))


def _operator(hr: Resource, spec: dict, namespace: str, is_this_repo) -> Release:
    target = str(spec.get("targetNamespace") or "")
    name = str(spec.get("releaseName") or f"{namespace}-{hr.name}")
    chart = spec.get("chart") or {}
    if chart.get("git") is not None or chart.get("path"):
        if not is_this_repo(None, str(chart.get("git") or "")):
            raise ReleaseError(f"{hr.ref}: spec.chart.git ({chart.get('git')}, path "
                               f"{chart.get('path')}) is not this repository; only charts of "
                               "the repository being restored are read (restore that "
                               "repository too, or use --helm controller)")
        ref = ChartRef("path", str(chart.get("path") or "").removeprefix("./"))
    elif chart.get("repository") and chart.get("name"):
        ref = ChartRef("repo", str(chart["repository"]), str(chart["name"]),
                       str(chart.get("version") or "*"))
    else:
        raise ReleaseError(f"{hr.ref}: spec.chart needs git + path or repository + name")
    # valueFileSecrets: the Helm Operator's older spelling of secretKeyRef with key values.yaml
    secrets = tuple(ValuesRef("Secret", str(item.get("name")), namespace)
                    for item in spec.get("valueFileSecrets") or [] if isinstance(item, dict))
    values_from = secrets + tuple(v for item in spec.get("valuesFrom") or []
                                  if (v := _operator_values_ref(hr, item, namespace)) is not None)
    return Release(str(hr.ref), str(hr.origin), name, target or namespace, ref,
                   _values(hr, spec), values_from, True, (), (), hr.ref)


def _operator_values_ref(hr: Resource, item: Any, namespace: str) -> ValuesRef | None:
    if not isinstance(item, dict):
        raise ReleaseError(f"{hr.ref}: a valuesFrom entry is not a mapping")
    for field_name, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
        ref = item.get(field_name)
        if isinstance(ref, dict):
            return ValuesRef(kind, str(ref.get("name")), str(ref.get("namespace") or namespace),
                             str(ref.get("key") or "values.yaml"), "",
                             bool(ref.get("optional")))
    if isinstance(item.get("chartFileRef"), dict):
        ref = item["chartFileRef"]
        return ValuesRef("ChartFile", str(ref.get("path")), "", "", "", bool(ref.get("optional")))
    if isinstance(item.get("externalSourceRef"), dict):
        if item["externalSourceRef"].get("optional"):
            return None
        raise ReleaseError(f"{hr.ref}: valuesFrom.externalSourceRef (a URL) is not fetched: "
                           "values must come from the revision; mark it optional or move "
                           "the values into a ConfigMap")
    raise ReleaseError(f"{hr.ref}: unknown valuesFrom entry {sorted(item)}")


def _values(hr: Resource, spec: dict) -> dict[str, Any]:
    values = spec.get("values")
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ReleaseError(f"{hr.ref}: spec.values must be a mapping")
    return values
