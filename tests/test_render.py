"""sync_agent.render on real exported trees: the fixture repositories and small edge cases."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sync_agent import child_process, render, source
from sync_agent.errors import RenderError, SourceError
from sync_agent.objects import RenderResult, Revision
from sync_agent.render_options import RenderOptions
from tests.testdata.gitrepos import clone_bundle, commit, new_repo

Tree = tuple[Path, Revision]


def export_head(repo_path: Path, dest: Path) -> Tree:
    repo = source.open_repository(str(repo_path))
    revision = source.resolve(repo, str(repo_path))
    source.export_tree(repo, revision.sha, dest)
    return dest, revision


@pytest.fixture(scope="session")
def guestbook(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    base = tmp_path_factory.mktemp("guestbook")
    return export_head(clone_bundle("guestbook", base / "repo"), base / "tree")


@pytest.fixture(scope="session")
def flux_get_started(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    base = tmp_path_factory.mktemp("flux")
    return export_head(clone_bundle("flux-get-started", base / "repo"), base / "tree")


@pytest.fixture
def tree(tmp_path: Path) -> Callable[[dict[str, str]], Tree]:
    """Commit these files to a new repository and export its HEAD."""

    def build(files: dict[str, str]) -> Tree:
        repo = new_repo(tmp_path / "repo")
        commit(repo, files, "manifests")
        return export_head(repo, tmp_path / "tree")

    return build


def problems_of(root: Path, path: str, revision: Revision, **kwargs: object) -> list[str]:
    with pytest.raises(RenderError) as caught:
        render.render(root, path, revision, **kwargs)  # type: ignore[arg-type]
    return caught.value.problems


def refs(result: RenderResult) -> list[str]:
    return [str(r.ref) for r in result.resources]


CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


def test_guestbook_all_in_one_duplicates_name_both_files(guestbook: Tree) -> None:
    root, revision = guestbook
    problems = problems_of(root, "web/guestbook", revision)
    assert (
        "web/guestbook/frontend-service.yaml, document 1 (line 1): Service/frontend is declared "
        "twice; also in web/guestbook/all-in-one/frontend.yaml, document 1 (line 1)"
    ) in problems
    assert len(problems) == 10
    assert all(p.startswith("web/guestbook/") for p in problems)


def test_guestbook_renders_when_all_in_one_is_ignored(guestbook: Tree) -> None:
    root, revision = guestbook
    result = render.render(root, "web/guestbook", revision, ignore=["all-in-one/"])
    assert sorted(refs(result)) == [
        "Deployment/frontend",
        "Deployment/redis-master",
        "Deployment/redis-replica",
        "ReplicationController/frontend",
        "ReplicationController/redis-master",
        "ReplicationController/redis-replica",
        "Service/frontend",
        "Service/redis-master",
        "Service/redis-replica",
    ]
    assert result.revision == revision and result.path == "web/guestbook"
    origins = [r.origin.path for r in result.resources]
    assert origins == sorted(origins, key=lambda p: p.split("/"))
    # No default namespace is filled in at this stage.
    assert all("namespace" not in r.body["metadata"] for r in result.resources)


def test_path_missing_at_revision_names_sha_and_top_directories(guestbook: Tree) -> None:
    root, revision = guestbook
    with pytest.raises(SourceError) as caught:
        render.render(root, "guestbook", revision)
    message = str(caught.value)
    assert message.startswith(f"path 'guestbook' does not exist at {revision.sha[:12]} (")
    assert "top-level directories there: web" in message


def test_path_outside_the_repository_is_refused(guestbook: Tree) -> None:
    root, revision = guestbook
    with pytest.raises(SourceError, match="must be relative to the repository root"):
        render.render(root, "../etc", revision)


def test_flux_get_started_renders_helm_releases_and_workloads(flux_get_started: Tree) -> None:
    root, revision = flux_get_started
    result = render.render(root, ".", revision)
    assert refs(result) == [
        "Namespace/demo",
        "HelmRelease/demo/ghost",
        "HelmRelease/demo/mongodb",
        "Secret/demo/redis-auth",
        "HelmRelease/demo/redis",
        "Deployment/demo/podinfo",
        "HorizontalPodAutoscaler/demo/podinfo",
        "Service/demo/podinfo",
    ]
    by_ref = {str(r.ref): r for r in result.resources}
    assert by_ref["HelmRelease/demo/redis"].group == "helm.fluxcd.io"
    assert by_ref["Secret/demo/redis-auth"].origin.path == "releases/redis-auth.yaml"
    assert result.path == "."


def test_equals_scalar_trailing_tabs_and_timestamps_read_as_kubectl_does(
    tree: Callable[[dict[str, str]], Tree],
) -> None:
    text = (
        "apiVersion: v1\t\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: odd-values\t\t\n"
        "\t\n"
        "data:\n"
        "  separator: =\n"
        "  since: 2026-11-01\n"
        "  at: 12:30\n"
        "  enabled: on\n"
    )
    root, revision = tree({"cm.yaml": text})
    (resource,) = render.render(root, "", revision).resources
    assert resource.name == "odd-values"
    assert resource.body["data"] == {
        "separator": "=",
        "since": "2026-11-01",
        "at": "12:30",
        "enabled": True,
    }


def test_list_kinds_expand_into_items_keeping_file_and_document(
    tree: Callable[[dict[str, str]], Tree],
) -> None:
    text = (
        CONFIGMAP.format(name="single")
        + "---\napiVersion: v1\nkind: List\nitems:\n"
        + "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: first}\n"
        + "- apiVersion: v1\n  kind: Service\n  metadata: {name: second, namespace: web}\n"
        + "---\napiVersion: v1\nkind: ConfigMapList\nitems:\n"
        + "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: third}\n"
    )
    root, revision = tree({"lists.yaml": text})
    result = render.render(root, "", revision)
    assert refs(result) == [
        "ConfigMap/single",
        "ConfigMap/first",
        "Service/web/second",
        "ConfigMap/third",
    ]
    origin = result.resources[2].origin
    assert (origin.path, origin.document, origin.item) == ("lists.yaml", 2, 2)


def test_list_item_problems_name_the_item(tree: Callable[[dict[str, str]], Tree]) -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n"
    root, revision = tree({"list.yaml": text})
    assert problems_of(root, "", revision) == [
        "list.yaml, document 1, item 1 (line 1): missing metadata.name (kind ConfigMap)"
    ]


def test_every_problem_is_reported_with_file_and_document(
    tree: Callable[[dict[str, str]], Tree],
) -> None:
    files = {
        "a-dup.yaml": CONFIGMAP.format(name="shared"),
        "b-dup.yaml": "# the same object again\n" + CONFIGMAP.format(name="shared"),
        "c-broken.yaml": CONFIGMAP.format(name="ok") + "---\nkind: ConfigMap\nmetadata:\n"
        "  name: [unclosed\n",
        "d-noname.yaml": CONFIGMAP.format(name="fine")
        + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  labels: {}\n",
        "e-nokind.yaml": "apiVersion: v1\nmetadata:\n  name: x\n",
        "f-scalar.yaml": "just a string\n",
        "g-bad.json": '{"apiVersion": "v1",\n "kind": }\n',
    }
    root, revision = tree(files)
    problems = problems_of(root, "", revision)
    assert problems[0] == (
        "b-dup.yaml, document 1 (line 2): ConfigMap/shared is declared twice; "
        "also in a-dup.yaml, document 1 (line 1)"
    )
    assert problems[1] == (
        "c-broken.yaml, document 2 (line 9): bad YAML: did not find expected ',' or ']' "
        "(while parsing a flow sequence at line 8)"
    )
    assert problems[2:] == [
        "d-noname.yaml, document 2 (line 6): missing metadata.name (kind Deployment)",
        "e-nokind.yaml, document 1 (line 1): missing kind",
        "f-scalar.yaml, document 1 (line 1): not a Kubernetes object (a str, not a mapping)",
        "g-bad.json, document 1 (line 2): bad JSON: Expecting value",
    ]


def test_partial_result_on_error_keeps_the_good_objects(
    tree: Callable[[dict[str, str]], Tree],
) -> None:
    root, revision = tree({"ok.yaml": CONFIGMAP.format(name="ok"), "bad.yaml": "kind: [\n"})
    with pytest.raises(RenderError) as caught:
        render.render(root, "", revision)
    assert refs(caught.value.partial) == ["ConfigMap/ok"]


def test_same_name_declared_with_and_without_namespace_is_not_a_duplicate_yet(
    tree: Callable[[dict[str, str]], Tree],
) -> None:
    namespaced = CONFIGMAP.format(name="cfg") + "  namespace: default\n"
    root, revision = tree({"a.yaml": CONFIGMAP.format(name="cfg"), "b.yaml": namespaced})
    assert refs(render.render(root, "", revision)) == ["ConfigMap/cfg", "ConfigMap/default/cfg"]


def test_json_files_hidden_dirs_and_other_files(tree: Callable[[dict[str, str]], Tree]) -> None:
    files = {
        "app/cm.json": '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}}',
        "app/README.md": "# not a manifest\n",
        "app/.hidden.yaml": "not: a manifest\n",
        ".github/workflows/ci.yaml": "on: push\n",
        "app/.config/tool.yaml": "tool: settings\n",
    }
    root, revision = tree(files)
    result = render.render(root, "", revision)
    assert refs(result) == ["ConfigMap/j"]
    assert result.resources[0].origin.path == "app/cm.json"


def test_helm_chart_directories_are_skipped_and_said(
    tree: Callable[[dict[str, str]], Tree],
) -> None:
    files = {
        "apps/web.yaml": CONFIGMAP.format(name="web"),
        "apps/chart/Chart.yaml": "apiVersion: v2\nname: chart\nversion: 1.0.0\n",
        "apps/chart/values.yaml": "replicas: 1\n",
        "apps/chart/templates/deploy.yaml": "{{ .Values.replicas }}\n",
    }
    root, revision = tree(files)
    result = render.render(root, "apps", revision)
    assert refs(result) == ["ConfigMap/web"]
    assert result.skipped == (
        "apps/chart: Helm chart skipped (helm-renderer is not built: run "
        "`gitops-restore cluster-bin`)",
    )


def test_sourceignore_and_ignore_patterns_use_gitignore_rules(
    tree: Callable[[dict[str, str]], Tree],
) -> None:
    files = {
        ".sourceignore": "*.draft.yaml\n",
        "cluster/.sourceignore": "legacy/\n!legacy/keep.yaml\n",
        "cluster/app.yaml": CONFIGMAP.format(name="app"),
        "cluster/app.draft.yaml": CONFIGMAP.format(name="draft"),
        "cluster/legacy/old.yaml": CONFIGMAP.format(name="old"),
        "cluster/tools/.sourceignore": "local-*.yaml\n",
        "cluster/tools/local-dev.yaml": CONFIGMAP.format(name="local-dev"),
        "cluster/tools/tool.yaml": CONFIGMAP.format(name="tool"),
        "cluster/secrets/token.yaml": CONFIGMAP.format(name="token"),
    }
    root, revision = tree(files)
    result = render.render(
        root, "cluster", revision, ignore=["secrets/", "/cluster/tools/tool.yaml"]
    )
    assert refs(result) == ["ConfigMap/app"]
    assert refs(render.render(root, "cluster", revision)) == [
        "ConfigMap/app",
        "ConfigMap/token",
        "ConfigMap/tool",
    ]
    # The caller's patterns come last, so they can take back what a .sourceignore excluded.
    reincluded = render.render(root, "cluster", revision, ignore=["!*.draft.yaml"])
    assert "ConfigMap/draft" in refs(reincluded)


def test_kustomization_at_the_path_is_built_with_kubectl(
    tree: Callable[[dict[str, str]], Tree],
) -> None:
    files = {
        "base/kustomization.yaml": "resources:\n- cm.yaml\n",
        "base/cm.yaml": CONFIGMAP.format(name="settings") + "data:\n  replicas: '1'\n",
        "patches/replicas.yaml": CONFIGMAP.format(name="settings") + "data:\n  replicas: '3'\n",
        "prod/kustomization.yaml": (
            "resources:\n- ../base\nnamePrefix: prod-\nnamespace: prod\n"
            "patches:\n- path: ../patches/replicas.yaml\n"
        ),
        "prod/unlisted.yaml": CONFIGMAP.format(name="unlisted"),
    }
    root, revision = tree(files)
    result = render.render(root, "prod", revision)
    assert refs(result) == ["ConfigMap/prod/prod-settings"]
    (resource,) = result.resources
    assert resource.body["data"] == {"replicas": "3"}
    assert (resource.origin.path, resource.origin.document) == ("prod/kustomization.yaml", 1)


def test_nested_kustomization_is_built_whole_and_not_descended(
    tree: Callable[[dict[str, str]], Tree],
) -> None:
    files = {
        "apps/plain.yaml": CONFIGMAP.format(name="plain"),
        "apps/kustomized/Kustomization": "resources:\n- listed.yaml\nnameSuffix: -k\n",
        "apps/kustomized/listed.yaml": CONFIGMAP.format(name="listed"),
        "apps/kustomized/unlisted.yaml": CONFIGMAP.format(name="unlisted"),
    }
    root, revision = tree(files)
    result = render.render(root, "apps", revision)
    assert refs(result) == ["ConfigMap/listed-k", "ConfigMap/plain"]
    assert result.resources[0].origin.path == "apps/kustomized/Kustomization"


def test_kustomize_failure_names_the_file_and_kubectls_words(
    tree: Callable[[dict[str, str]], Tree],
) -> None:
    files = {
        "ok.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok\n",
        "broken/kustomization.yml": "resources:\n- missing.yaml\n",
    }
    root, revision = tree(files)
    (problem,) = problems_of(root, "", revision)
    assert problem.startswith("broken/kustomization.yml: kubectl kustomize failed: ")
    assert "missing.yaml" in problem


def test_kustomization_reading_outside_the_repository_is_refused(
    tree: Callable[[dict[str, str]], Tree],
) -> None:
    files = {
        "base/kustomization.yaml": "resources:\n- ../../../outside.yaml\n",
        "app/kustomization.yaml": "resources:\n- ../base\n",
        "fine/kustomization.yaml": "resources:\n- cm.yaml\n",
        "fine/cm.yaml": CONFIGMAP.format(name="fine"),
    }
    root, revision = tree(files)
    (root.parent / "outside.yaml").write_text(CONFIGMAP.format(name="stolen"))
    # Found through app's `../base`, and named where it is written.
    assert problems_of(root, "app", revision) == [
        "base/kustomization.yaml: refers to '../../../outside.yaml', outside the repository; "
        "kustomize may only read files inside it. Copy the file into the repository and name "
        "it by a path relative to the kustomization"
    ]
    # Another directory's broken kustomization does not stop this one.
    assert refs(render.render(root, "fine", revision)) == ["ConfigMap/fine"]


def test_a_single_file_path_renders_that_file(guestbook: Tree) -> None:
    root, revision = guestbook
    result = render.render(root, "web/guestbook/frontend-service.yaml", revision)
    assert refs(result) == ["Service/frontend"]


def test_ten_thousand_objects_render(tmp_path: Path) -> None:
    doc = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n"
        "  namespace: team-{t}\nspec:\n  replicas: 2\n  template:\n    spec:\n"
        "      containers:\n      - name: main\n        image: example.com/app:{i}\n"
    )
    for t in range(20):
        (tmp_path / f"team-{t}").mkdir()
        for f in range(50):
            docs = [doc.format(i=(t * 50 + f) * 10 + k, t=t) for k in range(10)]
            (tmp_path / f"team-{t}" / f"apps-{f}.yaml").write_text("---\n".join(docs))
    revision = Revision(str(tmp_path), "HEAD", "0" * 40, "", "", "")
    result = render.render(tmp_path, "", revision)
    assert len(result.resources) == 10_000
    assert len({r.ref for r in result.resources}) == 10_000


def test_values_that_look_like_paths_are_not_refused(
    tree: Callable[[dict[str, str]], Tree],
) -> None:
    """Literals, labels, annotations and inline patches hold values, not files to read."""
    files = {
        "app/kustomization.yaml": (
            "resources: [cm.yaml]\n"
            "commonAnnotations: {docs: /etc, up: ../../..}\n"
            "configMapGenerator:\n- name: env\n  literals: [LOG_DIR=/var/log, HOME=/root]\n"
            "patches:\n- target: {kind: ConfigMap, name: app}\n"
            "  patch: '[{\"op\": \"add\", \"path\": \"/data\", \"value\": {\"dir\": \"/tmp\"}}]'\n"
        ),
        "app/cm.yaml": CONFIGMAP.format(name="app"),
    }
    root, revision = tree(files)
    result = render.render(root, "app", revision)
    bodies = {r.ref.name: r.body for r in result.resources}
    assert bodies["app"]["data"] == {"dir": "/tmp"}
    assert bodies["app"]["metadata"]["annotations"] == {"docs": "/etc", "up": "../../.."}
    assert any(name.startswith("env-") for name in bodies)


def test_allowed_remote_base_is_not_checked_for_remoteness(
    tree: Callable[[dict[str, str]], Tree], tmp_path: Path,
) -> None:
    """With allow_remote_bases the reference passes the check and kustomize fetches it."""
    remote = new_repo(tmp_path / "remote")
    commit(remote, {"base/kustomization.yaml": "resources: [cm.yaml]\n",
                    "base/cm.yaml": CONFIGMAP.format(name="fetched")}, "base")
    root, revision = tree({"app/kustomization.yaml":
                           f"resources:\n- file://{remote}//base?ref=main\n"})
    (problem,) = problems_of(root, "app", revision)
    assert problem.startswith("app/kustomization.yaml: resources entry 'file://")
    allowed = render.render(root, "app", revision, options=RenderOptions(allow_remote_bases=True))
    assert refs(allowed) == ["ConfigMap/fetched"]


def test_kustomize_runs_without_the_tools_credentials(tmp_path: Path) -> None:
    """The environment kustomize (and every renderer child) gets: allow-listed, empty HOME."""
    ours = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
            "GITOPS_RESTORE_GIT_PASSWORD": "s3cret", "GITOPS_RESTORE_GIT_USERNAME": "me",
            "KUBECONFIG": "/root/.kube/config", "SSH_AUTH_SOCK": "/tmp/agent.sock",
            "GITHUB_TOKEN": "ghp_x", "AWS_SECRET_ACCESS_KEY": "x", "HTTPS_PROXY": "http://p"}
    env = child_process.environment(tmp_path, source=ours)
    assert env == {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path),
                   **child_process.FIXED}
    remote = child_process.environment(tmp_path, operator_git=True, source=ours)
    assert remote["HOME"] == "/root" and remote["SSH_AUTH_SOCK"] == "/tmp/agent.sock"
    assert remote["HTTPS_PROXY"] == "http://p"
    for name in ("GITOPS_RESTORE_GIT_PASSWORD", "GITOPS_RESTORE_GIT_USERNAME", "KUBECONFIG",
                 "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY"):
        assert name not in remote
    seen = child_process.run(["env"], cwd=tmp_path, env=env, timeout=30, max_stdout=1 << 20)
    assert sorted(seen.stdout.splitlines()) == sorted(f"{k}={v}" for k, v in env.items())


def test_child_output_past_the_bound_is_cut_and_the_child_stopped(tmp_path: Path) -> None:
    done = child_process.run(["yes"], cwd=tmp_path, env={"PATH": os.defpath}, timeout=60,
                             max_stdout=100_000)
    assert done.truncated and len(done.stdout) <= 100_000 and done.returncode != 0
