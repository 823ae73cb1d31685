"""sync_agent.history on the fixture repositories' real history and on small built ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_agent import history, source
from sync_agent.errors import SourceError
from tests.testdata.gitrepos import clone_bundle, commit, new_repo

CONFIGMAP = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: '{value}'\n"
)
GUESTBOOK_OBJECTS = (
    "Deployment/frontend",
    "Deployment/redis-master",
    "Deployment/redis-slave",
    "ReplicationController/frontend",
    "ReplicationController/redis-master",
    "ReplicationController/redis-slave",
    "Service/frontend",
    "Service/redis-master",
    "Service/redis-slave",
)


@pytest.fixture(scope="session")
def guestbook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clone_bundle("guestbook", tmp_path_factory.mktemp("history") / "guestbook")


@pytest.fixture(scope="session")
def flux_get_started(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clone_bundle("flux-get-started", tmp_path_factory.mktemp("history") / "flux")


def entries_of(path: Path, subpath: str, **kwargs: object) -> list[history.HistoryEntry]:
    repo = source.open_repository(str(path))
    return history.history(repo, str(path), subpath, **kwargs)  # type: ignore[arg-type]


def test_guestbook_path_that_moved_in_and_out(guestbook: Path) -> None:
    entries = entries_of(guestbook, "guestbook", ignore=["all-in-one/"])
    dates = [e.date for e in entries]
    assert dates == sorted(dates, reverse=True)

    newest, oldest = entries[0], entries[-1]
    # Moved on to web/guestbook: everything under guestbook/ went away.
    assert newest.message == "Merge pull request #571 from janetkuo/folder-restructure"
    assert newest.objects == 0 and newest.added == () and len(newest.removed) == 9
    # Moved in from staging/guestbook: everything appeared.
    assert oldest.message == "Merge pull request #5 from ahmetb/move-maintained-to-root"
    assert oldest.added == GUESTBOOK_OBJECTS

    renamed = next(e for e in entries if e.message == "rename deployment")
    assert renamed.added == ("Deployment/redis-replica",)
    assert renamed.removed == ("Deployment/redis-slave",)
    assert renamed.sha.startswith("8b8886b")
    assert renamed.author == "Emily Moss <emoss@redhat.com>"

    registry = next(e for e in entries if e.message.startswith("chore: move registry"))
    assert registry.changed == ("Deployment/redis-master", "ReplicationController/redis-master")
    assert registry.added == registry.removed == ()
    assert all(e.error == "" for e in entries)


def test_guestbook_history_at_the_old_path(guestbook: Path) -> None:
    entries = entries_of(guestbook, "staging/guestbook", ignore=["all-in-one/"])
    assert [(len(e.added), len(e.removed), e.objects) for e in entries] == [(0, 9, 0), (9, 0, 9)]


def test_render_errors_at_a_commit_are_recorded_not_raised(guestbook: Path) -> None:
    (entry,) = entries_of(guestbook, "web/guestbook")  # all-in-one/ repeats every object
    assert "web/guestbook/frontend-service.yaml, document 1 (line 1): Service/frontend is " in (
        entry.error
    )
    assert "is declared twice" in entry.error
    assert len(entry.added) == 9 and entry.objects == 9


def test_flux_get_started_api_group_change_and_limit(flux_get_started: Path) -> None:
    entries = entries_of(flux_get_started, ".")
    group_change = next(e for e in entries if e.sha.startswith("42341b1"))
    releases = ("HelmRelease/demo/ghost", "HelmRelease/demo/mongodb", "HelmRelease/demo/redis")
    # flux.weave.works -> helm.fluxcd.io: other objects to Kubernetes, so removed and added.
    assert group_change.added == releases and group_change.removed == releases
    secret = next(e for e in entries if "Secret/demo/redis-auth" in e.added)
    assert secret.message == "Merge pull request #1 from weaveworks/valueFileSecrets"
    first = ("Deployment/demo/podinfo", "Namespace/demo", "Service/demo/podinfo")
    assert entries[-1].added == first

    latest = entries_of(flux_get_started, ".", limit=2)
    assert latest == entries[:2]
    assert latest[0].message == "Fix Ghost image mapping"
    assert latest[0].changed == ("HelmRelease/demo/ghost",)


def test_only_commits_that_change_objects_are_listed(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    commit(repo, {"app/a.yaml": CONFIGMAP.format(name="a", value=1)}, "add a")
    commit(repo, {"app/README.md": "docs\n"}, "docs only")
    commit(repo, {"app/a.yaml": "# tuned\n" + CONFIGMAP.format(name="a", value=2)}, "tune a")
    commit(repo, {"app/a.yaml": "# comment only\n" + CONFIGMAP.format(name="a", value=2)}, "noop")
    commit(repo, {"other/x.yaml": CONFIGMAP.format(name="x", value=1)}, "elsewhere")
    commit(repo, {"app/b.yaml": "kind: [\n"}, "break b")
    commit(repo, {"app/b.yaml": CONFIGMAP.format(name="b", value=1)}, "fix b")
    commit(repo, {"app/a.yaml": None}, "drop a")

    entries = entries_of(repo, "app")
    assert [e.message for e in entries] == ["drop a", "fix b", "break b", "tune a", "add a"]
    drop, fix, broken, tune, add = entries
    assert drop.removed == ("ConfigMap/a",) and drop.objects == 1
    assert fix.added == ("ConfigMap/b",) and fix.error == ""
    assert broken.error.startswith("app/b.yaml, document 1 (line 2): bad YAML:")
    assert broken.added == broken.changed == broken.removed == ()
    assert tune.changed == ("ConfigMap/a",)
    assert add.added == ("ConfigMap/a",)
    assert len(add.sha) == 40 and add.author == "Dana Ops <dana@example.com>"

    assert [e.message for e in entries_of(repo, "app", limit=2)] == ["drop a", "fix b"]
    older = entries_of(repo, "app", ref="HEAD~2")
    assert [e.message for e in older] == ["break b", "tune a", "add a"]


def test_unknown_ref_and_escaping_path_are_refused(guestbook: Path) -> None:
    with pytest.raises(SourceError, match="unknown ref 'nope'"):
        entries_of(guestbook, "web/guestbook", ref="nope")
    with pytest.raises(SourceError, match="path '../etc' must be relative"):
        entries_of(guestbook, "../etc")


def test_kustomize_overlay_history_includes_changes_to_its_base(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    commit(
        repo,
        {
            "base/kustomization.yaml": "resources:\n- cm.yaml\n",
            "base/cm.yaml": CONFIGMAP.format(name="settings", value=1),
            "prod/kustomization.yaml": "resources:\n- ../base\nnamePrefix: prod-\n",
        },
        "overlay",
    )
    commit(repo, {"base/cm.yaml": CONFIGMAP.format(name="settings", value=2)}, "base change")
    commit(repo, {"docs/guide.md": "read me\n"}, "docs")

    entries = entries_of(repo, "prod")
    assert [(e.message, e.added, e.changed) for e in entries] == [
        ("base change", (), ("ConfigMap/prod-settings",)),
        ("overlay", ("ConfigMap/prod-settings",), ()),
    ]
    assert history.watched_paths(source.open_repository(str(repo)), "HEAD", "prod") == [
        "prod",
        "base",
    ]
