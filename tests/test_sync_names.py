"""Sync names that do not collide, a sync that will not silently change its source, and a
rollback that finds the existing sync and the path it had at the target revision.

The naming and path-following rules are checked on their own (pure, real git); every
behaviour a user sees is checked end to end with the CLI on the real local cluster.
"""

from __future__ import annotations

import re

import git as gitpython
import pytest
from kubernetes import client

from bootstrap import sync_names
from sync_agent import inventory, rollback_target, sync_identity
from tests import cli
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.testdata.gitrepos import commit, git, new_repo

NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?")


def run(verb: str, repo, namespace: str, *args: str, code: int = 0):
    return cli.run(verb, "--repo", str(repo), "--cluster", SESSION_CLUSTER, "-n", namespace,
                   *args, check_code=code)


def run_json(verb: str, repo, namespace: str, *args: str, code: int = 0) -> dict:
    return cli.run_json(verb, "--repo", str(repo), "--cluster", SESSION_CLUSTER, "-n",
                        namespace, *args, check_code=code)


def configmaps(api_client, namespace: str) -> list[str]:
    return sorted(c.metadata.name for c in
                  client.CoreV1Api(api_client).list_namespaced_config_map(namespace).items
                  if c.metadata.name != "kube-root-ca.crt")


def actions(report: dict) -> dict[str, str]:
    return {c["object"]: c["action"] for c in report["changes"]}


# --- default names ------------------------------------------------------------------------------

@pytest.mark.parametrize("first, second", [
    (("git@github.com:team-a/fleet.git", "apps"), ("git@github.com:team-b/fleet.git", "apps")),
    (("/srv/fleet", "apps/web"), ("/srv/fleet", "apps-web")),
    (("/srv/fleet", "clusters/production/europe-west/" + "a" * 30 + "/one"),
     ("/srv/fleet", "clusters/production/europe-west/" + "a" * 30 + "/two")),
])
def test_default_sync_names_of_different_sources_differ(first, second):
    one, two = sync_names.sync_name(None, *first), sync_names.sync_name(None, *second)
    assert one != two
    assert NAME.fullmatch(one) and NAME.fullmatch(two)
    # the old default gave these pairs one name: that was the collision
    assert sync_names.legacy_sync_name(*first) == sync_names.legacy_sync_name(*second)


def test_default_sync_name_is_the_same_for_every_spelling_of_one_source():
    spellings = [("git@github.com:org/fleet.git", "apps"),
                 ("ssh://git@github.com/org/fleet", "./apps/"),
                 ("ssh://deploy:secret@GitHub.com/org/fleet.git/", "apps")]
    names = {sync_names.sync_name(None, repo, path) for repo, path in spellings}
    assert len(names) == 1
    assert names.pop().startswith("fleet-apps-")
    assert "TOKEN123" not in sync_identity.repo_of("https://TOKEN123@host/org/fleet")
    assert "secret" not in sync_identity.repo_of("https://u:secret@host/org/fleet")


def test_path_at_follows_a_directory_moved_between_two_commits(tmp_path):
    repo = new_repo(tmp_path / "moves")
    v1 = commit(repo, {"apps/a.yaml": m.configmap("a"), "apps/b.yaml": m.configmap("b"),
                       "other/x.yaml": m.configmap("x")}, "v1")
    git(repo, "mv", "apps", "web")
    v2 = commit(repo, {"web/c.yaml": m.configmap("c")}, "moved apps to web, added c")
    (repo / "clusters").mkdir()
    git(repo, "mv", "web", "clusters/web")
    v3 = commit(repo, {}, "moved web into clusters")
    r = gitpython.Repo(repo)
    assert rollback_target.path_at(r, "clusters/web", v3, v1) == "apps"  # back two moves
    assert rollback_target.path_at(r, "apps", v1, v3) == "clusters/web"  # and forward
    assert rollback_target.path_at(r, "web", v2, v2) == "web"
    assert rollback_target.path_at(r, "other", v3, v1) == "other"  # never moved


# --- one source per sync name ----------------------------------------------------------------

def test_two_repositories_called_fleet_get_inventories_of_their_own(kube, api_client,
                                                                    namespace, tmp_path):
    one, two = new_repo(tmp_path / "a" / "fleet"), new_repo(tmp_path / "b" / "fleet")
    commit(one, {"a.yaml": m.configmap("from-a"), "a2.yaml": m.configmap("a2"),
                 "a3.yaml": m.configmap("a3")}, "a")
    commit(two, {"b.yaml": m.configmap("from-b")}, "b")
    first = run_json("restore", one, namespace)
    second = run_json("restore", two, namespace)
    assert first["sync"] != second["sync"]
    assert first["sync"].startswith("fleet-") and second["sync"].startswith("fleet-")
    commit(one, {"a3.yaml": None}, "a3 removed")
    pruned = run_json("restore", one, namespace, "--prune")
    assert pruned["sync"] == first["sync"]
    assert actions(pruned)[f"ConfigMap/{namespace}/a3"] == "delete"
    assert configmaps(api_client, namespace) == ["a2", "from-a", "from-b"]
    assert {str(e.ref) for e in inventory.load(kube, second["sync"]).entries} == {
        f"ConfigMap/{namespace}/from-b"}


def test_another_source_under_an_existing_name_is_refused_unless_take_over(
        kube, api_client, namespace, tmp_path):
    first, second = new_repo(tmp_path / "first"), new_repo(tmp_path / "second")
    commit(first, {"app/one.yaml": m.configmap("one"), "other/x.yaml": m.configmap("x")},
           "first")
    commit(second, {"app/two.yaml": m.configmap("two")}, "second")
    run_json("restore", first, namespace, "--sync", namespace, "--path", "app")
    recorded = inventory.load(kube, namespace)
    assert (recorded.repo, recorded.path) == (sync_identity.repo_of(str(first)), "app")

    for verb, repo, path in (("restore", second, "app"), ("plan", second, "app"),
                             ("restore", first, "other"), ("rollback", second, "app")):
        extra = ("--to", "HEAD") if verb == "rollback" else ("--prune",)
        result = run(verb, repo, namespace, "--sync", namespace, "--path", path, *extra,
                     code=2)
        assert f"records repository {recorded.repo} path 'app'" in result.stderr, verb
        assert "--take-over" in result.stderr and "nothing was changed" in result.stderr
    assert configmaps(api_client, namespace) == ["one"]

    moved = run_json("restore", second, namespace, "--sync", namespace, "--path", "app",
                     "--prune", "--allow-mass-prune", "--take-over")
    assert actions(moved) == {f"ConfigMap/{namespace}/two": "create",
                              f"ConfigMap/{namespace}/one": "delete"}
    assert inventory.load(kube, namespace).repo == sync_identity.repo_of(str(second))
    assert configmaps(api_client, namespace) == ["two"]


def test_a_sync_under_the_old_default_name_is_continued(kube, api_client, namespace, tmp_path):
    repo = new_repo(tmp_path / "oldname")
    commit(repo, {"app/a.yaml": m.configmap("a"), "app/b.yaml": m.configmap("b"),
                  "app/c.yaml": m.configmap("c")}, "three")
    legacy = sync_names.legacy_sync_name(str(repo), "app")
    run_json("restore", repo, namespace, "--path", "app", "--sync", legacy)  # as before

    commit(repo, {"app/c.yaml": None}, "c removed")
    report = run_json("restore", repo, namespace, "--path", "app", "--prune")
    assert report["sync"] == legacy
    assert actions(report)[f"ConfigMap/{namespace}/c"] == "delete"
    assert inventory.load(kube, sync_names.sync_name(None, str(repo), "app")) is None


# --- rollback finds the sync and its path -------------------------------------------------------

@pytest.fixture
def moved_repo(tmp_path):
    """v1: apps/{a,b}; v2: apps moved to clusters/prod/apps, and c added there."""
    repo = new_repo(tmp_path / "moving")
    v1 = commit(repo, {"apps/a.yaml": m.configmap("a", v="1"), "apps/b.yaml": m.configmap("b"),
                       "README.md": "fleet\n"}, "v1")
    (repo / "clusters" / "prod").mkdir(parents=True)
    git(repo, "mv", "apps", "clusters/prod/apps")
    v2 = commit(repo, {"clusters/prod/apps/c.yaml": m.configmap("c"),
                       "clusters/prod/apps/a.yaml": m.configmap("a", v="2")}, "moved, c added")
    return repo, v1, v2


def test_rollback_without_name_or_path_rolls_the_existing_sync_back_across_a_move(
        kube, api_client, namespace, moved_repo):
    repo, v1, v2 = moved_repo
    restored = run_json("restore", repo, namespace, "--path", "clusters/prod/apps")

    back = run_json("rollback", repo, namespace, "--to", "HEAD~1")
    assert back["sync"] == restored["sync"] and back["sha"] == v1
    assert back["path"] == "apps" and back["moved_from"] == "clusters/prod/apps"
    assert actions(back)[f"ConfigMap/{namespace}/c"] == "delete"
    assert configmaps(api_client, namespace) == ["a", "b"]
    core = client.CoreV1Api(api_client)
    assert core.read_namespaced_config_map("a", namespace).data == {"v": "1"}
    record = inventory.load(kube, restored["sync"])
    assert (record.revision, record.path) == (v1, "apps")
    assert inventory.names(kube).count(restored["sync"]) == 1

    forward = run_json("rollback", repo, namespace, "--to", v2)
    assert forward["sync"] == restored["sync"] and forward["path"] == "clusters/prod/apps"
    assert actions(forward)[f"ConfigMap/{namespace}/c"] == "create"
    assert core.read_namespaced_config_map("a", namespace).data == {"v": "2"}


def test_rollback_asks_for_name_when_several_syncs_apply_the_repository(api_client, namespace,
                                                                        tmp_path):
    repo = new_repo(tmp_path / "two-paths")
    commit(repo, {"one/a.yaml": m.configmap("a"), "two/b.yaml": m.configmap("b")}, "v1")
    commit(repo, {"one/a2.yaml": m.configmap("a2")}, "v2")
    one = run_json("restore", repo, namespace, "--path", "one")["sync"]
    two = run_json("restore", repo, namespace, "--path", "two")["sync"]

    result = run("rollback", repo, namespace, "--to", "HEAD~1", code=2)
    assert "2 syncs in this cluster apply this repository" in result.stderr
    assert one in result.stderr and two in result.stderr and "--sync" in result.stderr
    assert configmaps(api_client, namespace) == ["a", "a2", "b"]
    back = run_json("rollback", repo, namespace, "--to", "HEAD~1", "--sync", one)
    assert back["path"] == "one" and configmaps(api_client, namespace) == ["a", "b"]


def test_rollback_of_a_repository_never_applied_here_needs_a_path(api_client, namespace,
                                                                  tmp_path):
    repo = new_repo(tmp_path / "never")
    commit(repo, {"a.yaml": m.configmap("a")}, "v1")
    result = run("rollback", repo, namespace, "--to", "HEAD", code=2)
    assert "no sync in this cluster applied this repository" in result.stderr
    assert "--path" in result.stderr
    assert configmaps(api_client, namespace) == []
