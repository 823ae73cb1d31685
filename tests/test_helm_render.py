"""Helm rendering without a cluster: version ranges, the hook table, values, and the real helm
rendering a chart directory of an exported tree (no API server involved in these)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from sync_agent import history, render, source
from sync_agent.errors import RenderError
from sync_agent.helm import capabilities, expand, hooks, process, semver
from sync_agent.helm import values as values_mod
from sync_agent.helm.releases import ChartRef, Release, ReleaseError, ValuesRef
from sync_agent.objects import ObjectRef, Origin, Resource, Revision
from tests.helmrepo import helm, make_chart
from tests.testdata.gitrepos import commit, new_repo

VERSIONS = ["0.1.0", "1.0.0", "1.0.7", "1.2.3", "1.9.0", "2.0.0", "2.1.0-rc.1"]
REVISION = Revision("repo", "HEAD", "0" * 40, "", "", "")


@pytest.mark.parametrize(("constraint", "chosen"), [
    ("1.x", "1.9.0"), ("1.0.x", "1.0.7"), ("1.2.*", "1.2.3"), ("~1.0", "1.0.7"),
    ("^1.2", "1.9.0"), (">=1.0.0 <2.0.0", "1.9.0"), (">=1, <2", "1.9.0"),
    ("1.0.0 || 2.0.0", "2.0.0"), ("*", "2.0.0"), ("", "2.0.0"), ("1.2.3", "1.2.3"),
    ("<=1.2", "1.2.3"), (">=2.1.0-0", "2.1.0-rc.1"), ("^0.1", "0.1.0"), ("3.x", None),
])
def test_semver_constraints_choose_as_helm_does(constraint, chosen) -> None:
    assert semver.best(constraint, VERSIONS) == chosen


def test_a_malformed_constraint_is_an_error() -> None:
    with pytest.raises(ValueError, match="'1.2.3.4.5!' is not a version constraint"):
        semver.best("1.2.3.4.5!", VERSIONS)


@pytest.mark.parametrize(("annotation", "decision"), [
    (None, None), ("pre-install", hooks.PRE), ("post-install,post-upgrade", hooks.WITH),
    ("test", hooks.SKIP), ("pre-delete", hooks.SKIP), ("post-install,pre-upgrade", hooks.PRE),
    ("something-new", hooks.SKIP),
])
def test_hook_policy_table(annotation, decision) -> None:
    metadata = {"name": "x", "annotations": {hooks.HOOK_ANNOTATION: annotation}} \
        if annotation else {"name": "x"}
    assert hooks.decide({"metadata": metadata}) == decision


def test_values_from_merge_in_order_with_target_path_and_values_on_top() -> None:
    cm = Resource({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "base", "namespace": "apps"},
                   "data": {"values.yaml": "image: {repository: nginx, tag: old}\nreplicas: 1"}},
                  Origin("cm.yaml", 1))
    secret = Resource({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "tag", "namespace": "apps"},
                       "data": {"t": base64.b64encode(b"1.27").decode()}}, Origin("s.yaml", 1))
    release = Release("HelmRelease/apps/x", "hr.yaml", "x", "apps", ChartRef("path", "c"),
                      values={"replicas": 5},
                      values_from=(ValuesRef("ConfigMap", "base", "apps"),
                                   ValuesRef("Secret", "tag", "apps", "t", "image.tag"),
                                   ValuesRef("ConfigMap", "gone", "apps", optional=True)))
    by_ref = {r.ref: r for r in (cm, secret)}
    values = values_mod.merged(release, Path("/nonexistent"), by_ref)
    assert values == {"image": {"repository": "nginx", "tag": "1.27"}, "replicas": 5}
    missing = Release("HelmRelease/apps/x", "hr.yaml", "x", "apps", ChartRef("path", "c"),
                      values_from=(ValuesRef("ConfigMap", "gone", "apps"),))
    with pytest.raises(ReleaseError, match="ConfigMap/apps/gone is not declared"):
        values_mod.merged(missing, Path("/x"), by_ref)


@pytest.mark.parametrize("url", [
    "https://github.com/org/fleet", "https://github.com/org/fleet.git",
    "ssh://git@github.com/org/fleet.git", "git@github.com:org/fleet.git",
    "https://user:token@github.com/org/fleet.git/",
])
def test_a_gitrepository_url_is_this_repository_in_any_spelling(url) -> None:
    ctx = capabilities.HelmContext(capabilities.HelmSettings(), _caps,
                                   "git@github.com:org/fleet.git", "default")
    assert expand._is_this_repo(ctx, ObjectRef("", "GitRepository", "apps", "x"), url)
    assert not expand._is_this_repo(ctx, None, "https://github.com/org/other.git")
    assert expand._is_this_repo(ctx, ObjectRef("", "GitRepository", "flux-system",
                                               "flux-system"), "")


def _caps() -> capabilities.Capabilities:
    return capabilities.Capabilities("v1.36.3", (), frozenset(), capabilities.CLUSTER_SCOPED)


def test_history_sees_a_chart_version_bump_in_the_rendered_objects(tmp_path) -> None:
    repo = new_repo(tmp_path / "repo")
    make_chart(repo / "apps", "web", "1.0.0")
    commit(repo, {}, "web 1.0.0")
    make_chart(repo / "apps", "web", "1.1.0", {"templates/extra.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n")})
    commit(repo, {}, "web 1.1.0")
    opened = source.open_repository(str(repo), None)
    newest, oldest = history.history(opened, str(repo), "apps")
    assert newest.message == "web 1.1.0" and "ConfigMap/default/extra" in newest.added
    assert oldest.message == "web 1.0.0" and "Deployment/default/web" in oldest.added


def test_a_template_error_names_the_chart_and_the_template(tmp_path) -> None:
    make_chart(tmp_path / "apps", "broken", "0.3.0",
               {"templates/bad.yaml": "value: {{ .Values.nope.missing }}\n"})
    ctx = capabilities.without_cluster("repo")
    with pytest.raises(RenderError) as caught:
        render.render(tmp_path, "apps", REVISION, (), helm=ctx)
    (problem,) = caught.value.problems
    assert problem.startswith("apps/broken/Chart.yaml: chart directory apps/broken (release "
                              "default/broken): chart apps/broken 0.3.0: template: "
                              "broken/templates/bad.yaml:1:17:")
    assert "nil pointer" in problem


def test_a_chart_linking_outside_the_repository_is_refused(tmp_path) -> None:
    secret = tmp_path / "operator-secret.txt"
    secret.write_text("token=abc\n")
    tree = tmp_path / "tree"
    make_chart(tree / "apps", "leaky", "0.1.0", {"templates/leak.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leak}\n"
        "data: {stolen: {{ .Files.Get \"files/secret.txt\" | quote }}}\n")})
    (tree / "apps" / "leaky" / "files").mkdir()
    (tree / "apps" / "leaky" / "files" / "secret.txt").symlink_to(secret)
    with pytest.raises(RenderError) as caught:
        render.render(tree, "apps", REVISION, (), helm=capabilities.without_cluster("repo"))
    (problem,) = caught.value.problems
    assert "apps/leaky/files/secret.txt is a link to outside the repository" in problem
    assert "token=abc" not in problem


def test_a_chart_values_file_past_max_file_size_is_refused(tmp_path) -> None:
    chart = tmp_path / "web"
    chart.mkdir()
    (chart / "big-values.yaml").write_text("blob: " + "x" * 2000 + "\n")
    release = Release("HelmRelease/apps/web", "web.yaml", "web", "apps", ChartRef("path", "web"),
                      values_from=(ValuesRef("ChartFile", "big-values.yaml", ""),))
    assert values_mod.merged(release, chart, {}, 4096) == {"blob": "x" * 2000}
    with pytest.raises(ReleaseError, match=r"values file big-values.yaml: larger than 1,024 "
                                           r"bytes; nothing was read. Raise --max-file-size"):
        values_mod.merged(release, chart, {}, 1024)


def test_helm_sees_none_of_the_operators_credentials_or_helm_setup(tmp_path, monkeypatch) -> None:
    """The real helm, run as rendering runs it, reports its view of the environment."""
    secret = "helm-env-test-secret-7d2e"
    for name, value in {"HELM_KUBETOKEN": secret, "GITOPS_RESTORE_HELM_PASSWORD": secret,
                        "KUBECONFIG": f"/home/op/.kube/{secret}",
                        "HELM_REPOSITORY_CONFIG": f"/home/op/{secret}.yaml",
                        "SSH_AUTH_SOCK": f"/tmp/{secret}"}.items():
        monkeypatch.setenv(name, value)
    done = process.run(helm(), ["env"], tmp_path, 60, 1 << 20)
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout
    assert 'HELM_KUBETOKEN=""' in done.stdout
    assert f'HELM_REPOSITORY_CONFIG="{tmp_path}/config/repositories.yaml"' in done.stdout
    assert f'HELM_DATA_HOME="{tmp_path}/data"' in done.stdout


def test_a_helm_release_whose_chart_directory_is_missing_is_named(tmp_path) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "web.yaml").write_text(
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\n"
        "metadata: {name: web, namespace: default}\nspec:\n  chart:\n    spec:\n"
        "      chart: ./charts/nope\n"
        "      sourceRef: {kind: GitRepository, name: flux-system, namespace: flux-system}\n")
    ctx = capabilities.HelmContext(capabilities.HelmSettings(mode="render"), _caps,
                                   "repo", "default")
    with pytest.raises(RenderError) as caught:
        render.render(tmp_path, "apps", REVISION, (), helm=ctx)
    (problem,) = caught.value.problems
    assert problem.startswith("apps/web.yaml")
    assert "HelmRelease/default/web" in problem
    assert "'charts/nope' is not a chart directory (with Chart.yaml) inside the repository" \
        in problem


def test_depends_on_orders_releases_and_a_cycle_is_named() -> None:
    def release(name: str, *depends: str) -> Release:
        return Release(f"HelmRelease/apps/{name}", f"{name}.yaml", name, "apps",
                       ChartRef("path", "c"), depends_on=tuple(f"apps/{d}" for d in depends),
                       ref=ObjectRef("helm.toolkit.fluxcd.io", "HelmRelease", "apps", name))

    ordered, problems = expand._by_dependencies(
        [release("web", "db", "cache"), release("db"), release("cache", "db")])
    assert [r.name for r in ordered] == ["db", "cache", "web"] and problems == []
    _, problems = expand._by_dependencies([release("a", "b"), release("b", "a")])
    assert problems == ["a.yaml: HelmRelease/apps/a: dependsOn forms a cycle: "
                        "apps/a -> apps/b -> apps/a"]
