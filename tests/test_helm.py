"""Helm end to end: charts in Git and in a chart repository served over HTTPS, every
HelmRelease shape, on the real local cluster with the real helm (`gitops-restore cluster-bin`).

Charts are made by `helm create` and `helm package`; the chart repository is indexed by
`helm repo index` and served on loopback with its own CA and basic auth (tests/helmrepo.py).
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from sync_agent.helm import fetch
from tests import cli
from tests.conftest import SESSION_CLUSTER
from tests.helmrepo import ChartRepoServer, make_chart, package
from tests.ociregistry import OciRegistry
from tests.test_drill import drill_existing, phase
from tests.testdata.gitrepos import commit, new_repo

EXTRA = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "web.fullname" . }}-extra
data:
  added-in: "{{ .Chart.Version }}"
"""
PRE_HOOK = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "web.fullname" . }}-pre-install
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
data:
  step: migrate
"""


def widget_crd(group: str, scope: str = "Namespaced") -> str:
    return f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: {scope}
  names: {{kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""


@pytest.fixture(scope="module")
def chart_repo(tmp_path_factory):
    """web 1.0.0 (helm create), 1.1.0 (adds a ConfigMap `<fullname>-extra`) and 2.0.0."""
    base = tmp_path_factory.mktemp("charts")
    with ChartRepoServer(base) as server:
        server.publish(make_chart(base / "src", "web", "1.0.0"))
        server.publish(make_chart(base / "src", "web", "1.1.0",
                                  {"templates/extra.yaml": EXTRA}))
        server.publish(make_chart(base / "src", "web", "2.0.0",
                                  {"templates/extra.yaml": EXTRA}))
        yield server


def helm_env(server: ChartRepoServer) -> dict[str, str]:
    return {"GITOPS_RESTORE_HELM_USERNAME": server.username,
            "GITOPS_RESTORE_HELM_PASSWORD": server.token}


def gr(verb: str, repo: Path, namespace: str, *args: str, code: int | None = 0,
       env: dict | None = None):
    return cli.run(verb, "--repo", str(repo), "--cluster", SESSION_CLUSTER, "-n", namespace,
                   "--sync", namespace, *args, check_code=code, env=env)


def gr_json(verb: str, repo: Path, namespace: str, *args: str, code: int | None = 0,
            env: dict | None = None) -> dict:
    return json.loads(gr(verb, repo, namespace, *args, "--output", "json", code=code,
                         env=env).stdout)


def actions(report: dict) -> dict[str, str]:
    return {c["object"]: c["action"] for c in report["changes"]}


def configmaps(api_client, namespace: str) -> dict[str, dict]:
    return {c.metadata.name: c for c in
            client.CoreV1Api(api_client).list_namespaced_config_map(namespace).items}


def deployments(api_client, namespace: str) -> dict:
    return {d.metadata.name: d for d in
            client.AppsV1Api(api_client).list_namespaced_deployment(namespace).items}


def flux_release(namespace: str, version: str, chart_url: str) -> str:
    return f"""apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: charts
  namespace: {namespace}
spec:
  interval: 10m
  url: {chart_url}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: shop
  namespace: {namespace}
spec:
  interval: 10m
  chart:
    spec:
      chart: web
      version: "{version}"
      sourceRef: {{kind: HelmRepository, name: charts}}
  values:
    service: {{port: 8080}}
  valuesFrom:
    - kind: ConfigMap
      name: shop-values
    - kind: Secret
      name: shop-image
      valuesKey: tag
      targetPath: image.tag
    - kind: ConfigMap
      name: not-there
      optional: true
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: shop-values
  namespace: {namespace}
data:
  values.yaml: |
    replicaCount: 3
---
apiVersion: v1
kind: Secret
metadata:
  name: shop-image
  namespace: {namespace}
type: Opaque
data:
  tag: {base64.b64encode(b"1.27.3").decode()}
"""


def test_chart_directory_renders_with_crds_hooks_and_helm_ownership(
        api_client, namespace, tmp_path):
    group = f"{namespace[-6:]}.helm.gitops-restore.io"
    repo = new_repo(tmp_path / "repo")
    make_chart(repo / "apps", "web", "1.0.0", {
        "crds/widgets.yaml": widget_crd(group),
        "templates/widget.yaml": f"apiVersion: {group}/v1\nkind: Widget\nmetadata:\n"
                                 "  name: {{ .Release.Name }}-widget\nspec: {size: 3}\n",
        "templates/pre-install.yaml": PRE_HOOK})
    commit(repo, {"apps/plain.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                                     "  name: plain\ndata: {a: b}\n"}, "chart and a manifest")
    try:
        report = gr_json("restore", repo, namespace, "--path", "apps")
        done = actions(report)
        assert done[f"CustomResourceDefinition/widgets.{group}"] == "create"
        assert done[f"Widget/{namespace}/web-widget"] == "create"
        assert done[f"Deployment/{namespace}/web"] == "create"
        assert done[f"ConfigMap/{namespace}/plain"] == "create"
        assert f"Pod/{namespace}/web-test-connection" not in done  # test hook: left out
        phases = [p["phase"] for p in report["phases"]]
        assert phases.index("apply:helm-pre-hooks") < phases.index("apply:config")
        (note,) = report["helm"]
        assert note.startswith(f"chart directory apps/web: rendered release {namespace}/web "
                               "from web 1.0.0") and "web-test-connection (test hook" in note

        web = deployments(api_client, namespace)["web"]
        assert web.metadata.annotations["meta.helm.sh/release-name"] == "web"
        assert web.metadata.annotations["meta.helm.sh/release-namespace"] == namespace
        assert web.metadata.labels["app.kubernetes.io/managed-by"] == "Helm"
        assert "web-pre-install" in configmaps(api_client, namespace)
        assert not client.CoreV1Api(api_client).list_namespaced_pod(
            namespace, field_selector="metadata.name=web-test-connection").items
        crd = client.ApiextensionsV1Api(api_client).read_custom_resource_definition(
            f"widgets.{group}")
        assert "meta.helm.sh/release-name" not in (crd.metadata.annotations or {})
        gr("verify", repo, namespace, "--path", "apps")
        text = gr("plan", repo, namespace, "--path", "apps").stdout  # nothing to change: 0
        assert f"helm: chart directory apps/web: rendered release {namespace}/web from web " \
               "1.0.0: 6 objects; hooks left out: Pod/web-test-connection" in text
    finally:
        client.ApiextensionsV1Api(api_client).delete_custom_resource_definition(
            f"widgets.{group}")


def test_flux_helmrelease_from_https_repository_with_semver_and_values_from(
        api_client, namespace, tmp_path, chart_repo):
    repo = new_repo(tmp_path / "repo")
    older = commit(repo, {"apps/shop.yaml": flux_release(namespace, "1.0.x", chart_repo.url)},
                   "shop on web 1.0.x")
    newer = commit(repo, {"apps/shop.yaml": flux_release(namespace, "1.x", chart_repo.url)},
                   "shop on web 1.x")
    env, ca = helm_env(chart_repo), ("--ca-file", str(chart_repo.ca_file))
    gr("restore", repo, namespace, "--path", "apps", "--ref", older, *ca, env=env)
    assert "shop-web-extra" not in configmaps(api_client, namespace)  # chart 1.0.0

    plan = gr_json("plan", repo, namespace, "--path", "apps", *ca, env=env, code=3)
    assert actions(plan)[f"ConfigMap/{namespace}/shop-web-extra"] == "create"
    assert f"release {namespace}/shop: chart web 1.0.0 -> web 1.1.0 (a newer chart)" \
        in plan["helm"]

    report = gr_json("restore", repo, namespace, "--path", "apps", *ca, env=env)
    done = actions(report)
    assert done[f"ConfigMap/{namespace}/shop-web-extra"] == "create"  # 1.x resolved to 1.1.0
    assert f"HelmRelease/{namespace}/shop" not in done
    assert f"HelmRepository/{namespace}/charts" not in done
    notes = "\n".join(report["helm"])
    assert f"HelmRelease/{namespace}/shop: rendered release {namespace}/shop from web 1.1.0 " \
           f"({chart_repo.url}/web-1.1.0.tgz)" in notes
    assert f"HelmRepository/{namespace}/charts: consumed by rendering, not applied" in notes
    assert chart_repo.token not in json.dumps(report)
    shop = deployments(api_client, namespace)["shop-web"]
    assert shop.spec.replicas == 3  # valuesFrom ConfigMap values.yaml
    assert shop.spec.template.spec.containers[0].image.endswith(":1.27.3")  # targetPath
    service = client.CoreV1Api(api_client).read_namespaced_service("shop-web", namespace)
    assert service.spec.ports[0].port == 8080  # spec.values over the chart's defaults
    gr("verify", repo, namespace, "--path", "apps", "--ref", newer, *ca, env=env)

    rollback = gr_json("rollback", repo, namespace, "--path", "apps", "--to", older, *ca,
                       env=env)
    assert actions(rollback)[f"ConfigMap/{namespace}/shop-web-extra"] == "delete"
    assert f"release {namespace}/shop: chart web 1.1.0 -> web 1.0.0 (an older chart)" \
        in rollback["helm"]
    assert "shop-web-extra" not in configmaps(api_client, namespace)
    assert "shop-web" in deployments(api_client, namespace)
    gr("verify", repo, namespace, "--path", "apps", "--ref", older, *ca, env=env)


def test_offline_renders_from_the_cache_and_refuses_what_it_lacks(
        api_client, namespace, tmp_path, chart_repo):
    repo = new_repo(tmp_path / "repo")
    commit(repo, {"apps/shop.yaml": flux_release(namespace, "~1.0", chart_repo.url)}, "1.0")
    env, ca = helm_env(chart_repo), ("--ca-file", str(chart_repo.ca_file))
    gr("plan", repo, namespace, "--path", "apps", *ca, env=env, code=3)  # fills the cache
    asked = len(chart_repo.requests)
    report = gr_json("restore", repo, namespace, "--path", "apps", "--offline", *ca)
    assert len(chart_repo.requests) == asked  # nothing fetched, no credentials needed
    assert f"Deployment/{namespace}/shop-web" in actions(report)

    with ChartRepoServer(tmp_path) as never_seen:
        # The helm cache outlives test runs and ports are reused: an index an earlier run kept
        # for this very address must not stand in for one never seen (seen once in CI).
        address = f"//{urlsplit(never_seen.url).netloc}/"
        for cached in (fetch.cache_dir() / "index").glob("*.yaml"):
            if address in cached.read_text():
                cached.unlink()
        commit(repo, {"apps/shop.yaml": flux_release(namespace, "~1.0", never_seen.url)}, "new")
        refused = gr("restore", repo, namespace, "--path", "apps", "--offline", code=2)
        assert f"HelmRelease/{namespace}/shop (release {namespace}/shop): chart web ~1.0 from " \
               f"{never_seen.url}: --offline: the repository's index is not in the " \
               "cache" in refused.stderr
        assert never_seen.requests == []


def test_template_error_or_missing_version_exits_2_and_applies_nothing(
        api_client, namespace, tmp_path, chart_repo):
    repo = new_repo(tmp_path / "repo")
    make_chart(repo / "apps", "broken", "0.3.0",
               {"templates/bad.yaml": "value: {{ .Values.nope.missing }}\n"})
    commit(repo, {"apps/plain.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                                     "  name: plain\ndata: {a: b}\n"}, "broken chart")
    failed = gr("restore", repo, namespace, "--path", "apps", code=2)
    assert f"apps/broken/Chart.yaml: chart directory apps/broken (release {namespace}/broken): " \
           "chart apps/broken 0.3.0: template: broken/templates/bad.yaml" in failed.stderr
    assert "nil pointer" in failed.stderr
    assert "plain" not in configmaps(api_client, namespace)

    shutil.rmtree(repo / "apps" / "broken")
    commit(repo, {"apps/shop.yaml": flux_release(namespace, "9.x", chart_repo.url)}, "no 9.x")
    failed = gr("restore", repo, namespace, "--path", "apps", "--ca-file",
                str(chart_repo.ca_file), env=helm_env(chart_repo), code=2)
    assert f"HelmRelease/{namespace}/shop (release {namespace}/shop): chart web 9.x from " \
           f"{chart_repo.url}: no version " \
           "matches '9.x' (the index has 1.0.0, 1.1.0, 2.0.0)" in failed.stderr
    assert chart_repo.token not in failed.stderr + failed.stdout
    assert configmaps(api_client, namespace).keys() <= {"kube-root-ca.crt"}


def test_every_helmrelease_shape_with_charts_from_this_repository(
        api_client, namespace, tmp_path, chart_repo):
    repo = new_repo(tmp_path / "repo")
    make_chart(repo / "charts", "web", "1.0.0")
    releases = f"""apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {{name: from-git, namespace: {namespace}}}
spec:
  chart:
    spec:
      chart: ./charts/web
      sourceRef: {{kind: GitRepository, name: flux-system, namespace: flux-system}}
  dependsOn: [{{name: beta}}]
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: self, namespace: {namespace}}}
spec: {{url: {repo}, interval: 1m, ref: {{branch: main}}}}
---
apiVersion: helm.toolkit.fluxcd.io/v2beta1
kind: HelmRelease
metadata: {{name: beta, namespace: {namespace}}}
spec:
  releaseName: beta
  chart:
    spec: {{chart: charts/web, sourceRef: {{kind: GitRepository, name: self}}}}
  values: {{replicaCount: 2}}
---
apiVersion: helm.fluxcd.io/v1
kind: HelmRelease
metadata: {{name: legacy, namespace: {namespace}}}
spec:
  releaseName: legacy
  chart: {{git: "{repo}", path: charts/web, ref: main}}
  valuesFrom:
    - configMapKeyRef: {{name: legacy-values, key: values.yaml}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: legacy-values, namespace: {namespace}}}
data:
  values.yaml: "replicaCount: 4"
---
apiVersion: flux.weave.works/v1beta1
kind: HelmRelease
metadata: {{name: older, namespace: {namespace}}}
spec:
  releaseName: older
  chart: {{repository: "{chart_repo.url}", name: web, version: 2.0.0}}
"""
    commit(repo, {"clusters/apps/releases.yaml": releases}, "four shapes")
    report = gr_json("restore", repo, namespace, "--path", "clusters/apps", "--ca-file",
                     str(chart_repo.ca_file), env=helm_env(chart_repo))
    live = deployments(api_client, namespace)
    assert {"from-git-web", "beta-web", "legacy-web", "older-web"} <= live.keys()
    assert live["beta-web"].spec.replicas == 2 and live["legacy-web"].spec.replicas == 4
    assert "older-web-extra" in configmaps(api_client, namespace)  # chart 2.0.0
    notes = "\n".join(report["helm"])
    assert f"GitRepository/{namespace}/self: consumed by rendering" in notes
    assert notes.index(f"HelmRelease/{namespace}/beta:") < \
        notes.index(f"HelmRelease/{namespace}/from-git:")  # dependsOn order
    gr("verify", repo, namespace, "--path", "clusters/apps", "--ca-file",
       str(chart_repo.ca_file), env=helm_env(chart_repo))


def test_a_chart_from_another_repository_is_refused_naming_it(namespace, tmp_path):
    repo = new_repo(tmp_path / "repo")
    commit(repo, {"apps/hr.yaml": f"""apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {{name: elsewhere, namespace: {namespace}}}
spec:
  chart:
    spec:
      chart: ./charts/x
      sourceRef: {{kind: GitRepository, name: other}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: other, namespace: {namespace}}}
spec: {{url: "https://git.example.com/other.git", interval: 1m}}
"""}, "foreign chart")
    failed = gr("restore", repo, namespace, "--path", "apps", code=2)
    assert f"HelmRelease/{namespace}/elsewhere: its chart comes from GitRepository/" \
           f"{namespace}/other (https://git.example.com/other.git), which is not this " \
           "repository" in failed.stderr


def test_drill_over_a_chart_version_bump(api_client, local_cluster, namespace, tmp_path):
    repo = new_repo(tmp_path / "repo")
    make_chart(repo / "apps", "web", "1.0.0")
    commit(repo, {}, "web 1.0.0")
    make_chart(repo / "apps", "web", "1.1.0", {"templates/extra.yaml": EXTRA})
    commit(repo, {}, "web 1.1.0")
    report, _ = drill_existing(repo, namespace, local_cluster.kubeconfig, tmp_path,
                               "--path", "apps", code=0)
    assert report["result"] == "passed"
    rollback = {c["object"]: c["result"] for c in phase(report, "rollback-to")["changes"]}
    assert rollback[f"ConfigMap/{namespace}/web-extra"] == "deleted"  # 1.1.0 -> 1.0.0
    forward = {c["object"]: c["result"] for c in phase(report, "roll-forward")["changes"]}
    assert forward[f"ConfigMap/{namespace}/web-extra"] == "created"
    for name in ("verify-from", "verify-to", "verify-forward"):
        assert phase(report, name)["result"] == "passed"
    assert "web-extra" in configmaps(api_client, namespace)  # rolled forward to 1.1.0


def test_oci_helmrepository_and_ocirepository_from_a_registry_over_https(
        api_client, namespace, tmp_path):
    with OciRegistry(tmp_path) as registry:
        for version, files in (("1.0.0", None), ("1.1.0", {"templates/extra.yaml": EXTRA})):
            registry.push(package(make_chart(tmp_path / "src", "web", version, files),
                                  tmp_path / "packages"))
        repo = new_repo(tmp_path / "repo")
        commit(repo, {"apps/oci.yaml": f"""apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {{name: registry, namespace: {namespace}}}
spec: {{type: oci, url: "{registry.url}", interval: 10m}}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {{name: pinned, namespace: {namespace}}}
spec:
  chart:
    spec: {{chart: web, version: "1.0.x", sourceRef: {{kind: HelmRepository, name: registry}}}}
---
apiVersion: source.toolkit.fluxcd.io/v1beta2
kind: OCIRepository
metadata: {{name: web, namespace: {namespace}}}
spec:
  url: "{registry.url}/web"
  ref: {{semver: "1.x"}}
  interval: 10m
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {{name: latest, namespace: {namespace}}}
spec:
  chartRef: {{kind: OCIRepository, name: web}}
"""}, "charts from OCI")
        env = {"GITOPS_RESTORE_HELM_USERNAME": registry.username,
               "GITOPS_RESTORE_HELM_PASSWORD": registry.token}
        report = gr_json("restore", repo, namespace, "--path", "apps", "--ca-file",
                         str(registry.ca_file), env=env)
        assert {"pinned-web", "latest-web"} <= deployments(api_client, namespace).keys()
        cms = configmaps(api_client, namespace)
        assert "latest-web-extra" in cms and "pinned-web-extra" not in cms  # 1.1.0 vs 1.0.0
        notes = "\n".join(report["helm"])
        assert f"OCIRepository/{namespace}/web: consumed by rendering" in notes
        assert f"from web 1.1.0 ({registry.url}/web)" in notes
        assert registry.token not in json.dumps(report)
        gr("verify", repo, namespace, "--path", "apps", "--ca-file", str(registry.ca_file),
           env=env)


def test_auto_leaves_helmreleases_to_the_controller_whose_crd_the_revision_declares(
        api_client, namespace, tmp_path):
    """Last in this module: the HelmRelease CRD it makes is removed again before others run."""
    repo = new_repo(tmp_path / "repo")
    make_chart(repo / "charts", "web", "1.0.0")
    crd = (widget_crd("helm.toolkit.fluxcd.io")
           .replace("widgets.", "helmreleases.")
           .replace("kind: Widget, plural: widgets, singular: widget, listKind: WidgetList",
                    "kind: HelmRelease, plural: helmreleases, singular: helmrelease, "
                    "listKind: HelmReleaseList")
           .replace("- name: v1\n", "- name: v2\n"))
    release = f"""apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {{name: shop, namespace: {namespace}}}
spec:
  chart:
    spec:
      chart: ./charts/web
      sourceRef: {{kind: GitRepository, name: flux-system, namespace: flux-system}}
"""
    commit(repo, {"flux/crd.yaml": crd, "flux/shop.yaml": release}, "flux and a release")
    extensions = client.ApiextensionsV1Api(api_client)
    try:
        report = gr_json("restore", repo, namespace, "--path", "flux")
        assert actions(report)[f"HelmRelease/{namespace}/shop"] == "create"
        assert report["helm"] == [
            f"HelmRelease/{namespace}/shop: applied as-is for its controller (this revision "
            "declares the helm.toolkit.fluxcd.io HelmRelease CRD)"]
        assert "shop-web" not in deployments(api_client, namespace)
        forced = gr_json("plan", repo, namespace, "--path", "flux", "--helm", "render", code=3)
        assert actions(forced)[f"Deployment/{namespace}/shop-web"] == "create"
        assert f"HelmRelease/{namespace}/shop" not in actions(forced)
    finally:
        extensions.delete_custom_resource_definition("helmreleases.helm.toolkit.fluxcd.io")
        for _ in range(100):
            if not any(c.metadata.name == "helmreleases.helm.toolkit.fluxcd.io"
                       for c in extensions.list_custom_resource_definition().items):
                break
            time.sleep(0.2)
