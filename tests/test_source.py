"""sync_agent.source against real Git: refs, times, the clone cache, exports, auth errors."""

from __future__ import annotations

import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sync_agent import source
from sync_agent.errors import SourceError
from tests.testdata.gitrepos import clone_bundle, commit, git, new_repo


@pytest.fixture(scope="session")
def guestbook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clone_bundle("guestbook", tmp_path_factory.mktemp("fixtures") / "guestbook")


@pytest.fixture
def dated(tmp_path: Path) -> tuple[Path, list[str]]:
    """main: three commits a month apart; tag v1 on the first; branch `feature` off the second."""
    repo = new_repo(tmp_path / "dated")
    shas = [
        commit(repo, {"a.yaml": "one\n"}, "first", "2026-01-01T00:00:00Z"),
        commit(repo, {"a.yaml": "two\n"}, "second", "2026-02-01T00:00:00Z"),
    ]
    git(repo, "tag", "v1", shas[0])
    git(repo, "branch", "feature")
    shas.append(commit(repo, {"a.yaml": "three\n"}, "third", "2026-03-01T00:00:00Z"))
    return repo, shas


def test_head_resolves_to_the_checked_out_commit_with_its_details(guestbook: Path) -> None:
    repo = source.open_repository(str(guestbook))
    revision = source.resolve(repo, str(guestbook))
    assert revision.sha == git(guestbook, "rev-parse", "HEAD")
    assert len(revision.sha) == 40
    assert revision.ref == "HEAD"
    assert revision.message == "Merge pull request #571 from janetkuo/folder-restructure"
    assert revision.committed_at == "2025-09-01T08:41:13-07:00"
    assert revision.author.startswith("Kubernetes Prow Robot <")


def test_branch_tag_short_sha_and_head_tilde_resolve(dated: tuple[Path, list[str]]) -> None:
    path, shas = dated
    repo = source.open_repository(str(path))
    assert source.resolve(repo, str(path), "v1").sha == shas[0]
    assert source.resolve(repo, str(path), "feature").sha == shas[1]
    assert source.resolve(repo, str(path), "main").sha == shas[2]
    assert source.resolve(repo, str(path), shas[1][:8]).sha == shas[1]
    assert source.resolve(repo, str(path), "HEAD~2").sha == shas[0]
    assert source.resolve(repo, str(path), branch="feature").sha == shas[1]


def test_annotated_tag_resolves_to_its_commit(dated: tuple[Path, list[str]]) -> None:
    path, shas = dated
    git(path, "tag", "-a", "release-2", "-m", "second release", shas[1])
    repo = source.open_repository(str(path))
    revision = source.resolve(repo, str(path), "release-2")
    assert revision.sha == shas[1]
    assert revision.ref == "release-2"


def test_unknown_ref_names_it_and_lists_branches_and_tags(dated: tuple[Path, list[str]]) -> None:
    path, _ = dated
    repo = source.open_repository(str(path))
    with pytest.raises(SourceError) as caught:
        source.resolve(repo, str(path), "release-9")
    message = str(caught.value)
    assert message.startswith(f"{path}: unknown ref 'release-9'")
    assert "feature" in message and "main" in message and "v1" in message


def test_at_picks_the_last_commit_at_or_before_the_time(dated: tuple[Path, list[str]]) -> None:
    path, shas = dated
    repo = source.open_repository(str(path))
    mid_february = source.parse_time("2026-02-15T12:00Z")
    assert source.resolve(repo, str(path), at=mid_february).sha == shas[1]
    exactly = source.parse_time("2026-02-01T00:00:00+00:00")
    assert source.resolve(repo, str(path), at=exactly).sha == shas[1]
    # One second before the second commit, with an offset: still the first.
    before = source.parse_time("2026-02-01T01:59:59+02:00")
    assert source.resolve(repo, str(path), at=before).sha == shas[0]
    assert source.resolve(repo, str(path), at=source.parse_time("2027-01-01")).sha == shas[2]


def test_at_walks_the_named_branch(dated: tuple[Path, list[str]]) -> None:
    path, shas = dated
    repo = source.open_repository(str(path))
    revision = source.resolve(repo, str(path), at=source.parse_time("2026-06-01"), branch="feature")
    assert revision.sha == shas[1]
    assert revision.ref.startswith("feature at 2026-06-01")


def test_at_before_the_first_commit_says_so(dated: tuple[Path, list[str]]) -> None:
    path, _ = dated
    repo = source.open_repository(str(path))
    with pytest.raises(SourceError, match=r"no commit on HEAD at or before 2025-12-01"):
        source.resolve(repo, str(path), at=source.parse_time("2025-12-01"))


def test_at_follows_first_parents_not_merged_side_commits(tmp_path: Path) -> None:
    repo_path = new_repo(tmp_path / "merged")
    base = commit(repo_path, {"a.yaml": "1\n"}, "base", "2026-01-01T00:00:00Z")
    git(repo_path, "checkout", "-q", "-b", "side")
    commit(repo_path, {"b.yaml": "side\n"}, "side work", "2026-01-10T00:00:00Z")
    git(repo_path, "checkout", "-q", "main")
    git(repo_path, "merge", "-q", "--no-ff", "-m", "merge side", "side", date="2026-01-20T00:00Z")
    repo = source.open_repository(str(repo_path))
    # The side commit was never the state of main: main was at `base` until the merge.
    at = source.parse_time("2026-01-15")
    assert source.resolve(repo, str(repo_path), at=at).sha == base


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T12:00Z", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T12:00:00+02:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),
    ],
)
def test_parse_time_accepts_the_documented_forms(text: str, expected: datetime) -> None:
    assert source.parse_time(text) == expected


def test_parse_time_rejects_other_text_listing_the_accepted_forms() -> None:
    with pytest.raises(SourceError) as caught:
        source.parse_time("last tuesday")
    assert "'last tuesday'" in str(caught.value)
    assert "2026-11-01T12:00Z" in str(caught.value)


def test_file_url_is_cloned_into_the_cache_and_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITOPS_RESTORE_CACHE", str(tmp_path / "cache"))
    origin = new_repo(tmp_path / "origin")
    first = commit(origin, {"a.yaml": "1\n"}, "first")
    git(origin, "branch", "doomed")
    url = origin.as_uri()

    repo = source.open_repository(url)
    mirror = source.cache_path(url)
    assert mirror.parent == tmp_path / "cache" / "repos"
    assert repo.bare and Path(repo.git_dir) == mirror
    assert source.resolve(repo, url).sha == first

    second = commit(origin, {"a.yaml": "2\n"}, "second")
    git(origin, "tag", "v2")
    git(origin, "branch", "-D", "doomed")
    repo = source.open_repository(url)
    assert source.resolve(repo, url).sha == second
    assert source.resolve(repo, url, "v2").sha == second
    with pytest.raises(SourceError, match="unknown ref 'doomed'"):
        source.resolve(repo, url, "doomed")  # pruned, as upstream deleted it


def test_cached_mirror_follows_the_remotes_default_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITOPS_RESTORE_CACHE", str(tmp_path / "cache"))
    origin = new_repo(tmp_path / "origin")
    commit(origin, {"a.yaml": "1\n"}, "on main")
    git(origin, "checkout", "-q", "-b", "trunk")
    on_trunk = commit(origin, {"a.yaml": "2\n"}, "on trunk")
    git(origin, "checkout", "-q", "main")
    url = origin.as_uri()
    source.open_repository(url)

    git(origin, "symbolic-ref", "HEAD", "refs/heads/trunk")
    repo = source.open_repository(url)
    assert source.resolve(repo, url).sha == on_trunk
    assert source.resolve(repo, url, "HEAD").message == "on trunk"


def test_concurrent_opens_of_one_url_share_one_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITOPS_RESTORE_CACHE", str(tmp_path / "cache"))
    origin = new_repo(tmp_path / "origin")
    head = commit(origin, {"a.yaml": "1\n"}, "first")
    url = origin.as_uri()

    def open_and_resolve(_: int) -> str:
        return source.resolve(source.open_repository(url), url).sha

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(open_and_resolve, range(4))) == [head] * 4
    assert [p.name for p in (tmp_path / "cache" / "repos").glob("*.git")] == [
        source.cache_path(url).name
    ]


def test_local_working_repo_is_left_untouched(tmp_path: Path) -> None:
    path = new_repo(tmp_path / "work")
    old = commit(path, {"app/a.yaml": "old\n"}, "old")
    commit(path, {"app/a.yaml": "new\n", "app/b.yaml": "b\n"}, "new")
    (path / "app" / "a.yaml").write_text("edited, not committed\n")
    (path / "staged.yaml").write_text("staged\n")
    git(path, "add", "staged.yaml")
    before = (
        git(path, "rev-parse", "HEAD"),
        git(path, "symbolic-ref", "HEAD"),
        git(path, "status", "--porcelain"),
        (path / ".git" / "index").read_bytes(),
    )

    repo = source.open_repository(str(path))
    revision = source.resolve(repo, str(path), "HEAD~1")
    source.export_tree(repo, revision.sha, tmp_path / "out")

    assert revision.sha == old
    assert (tmp_path / "out" / "app" / "a.yaml").read_text() == "old\n"
    assert not (tmp_path / "out" / "app" / "b.yaml").exists()
    assert (path / "app" / "a.yaml").read_text() == "edited, not committed\n"
    after = (
        git(path, "rev-parse", "HEAD"),
        git(path, "symbolic-ref", "HEAD"),
        git(path, "status", "--porcelain"),
        (path / ".git" / "index").read_bytes(),
    )
    assert after == before


def test_export_writes_committed_bytes_ignoring_export_attributes(tmp_path: Path) -> None:
    path = new_repo(tmp_path / "attrs")
    files = {
        ".gitattributes": "secret.yaml export-ignore\nsubst.yaml export-subst\n",
        "secret.yaml": "kept\n",
        "subst.yaml": "$Format:%H$\n",
        "bin/run.sh": "#!/bin/sh\n",
    }
    commit(path, files, "attrs")
    (path / "bin" / "run.sh").chmod(0o755)
    git(path, "add", "-A")
    sha = commit(path, {}, "exec bit")
    source.export_tree(source.open_repository(str(path)), sha, tmp_path / "out")
    assert (tmp_path / "out" / "secret.yaml").read_text() == "kept\n"
    assert (tmp_path / "out" / "subst.yaml").read_text() == "$Format:%H$\n"
    assert os.access(tmp_path / "out" / "bin" / "run.sh", os.X_OK)


def test_export_keeps_only_symlinks_that_stay_inside(tmp_path: Path) -> None:
    path = new_repo(tmp_path / "links")
    (path / "real.yaml").write_text("a: 1\n")
    (path / "sub").mkdir()
    links = {
        "inside.yaml": "real.yaml",
        "sub/up.yaml": "../real.yaml",
        "escape.yaml": "../../etc/passwd",
        "absolute.yaml": "/etc/hostname",
        "here": ".",
        "sneaky": "here/..",  # lexically inside, physically the parent of the export
    }
    for name, target in links.items():
        os.symlink(target, path / name)
    sha = commit(path, {}, "links")
    out = tmp_path / "export" / "out"
    source.export_tree(source.open_repository(str(path)), sha, out)
    assert (out / "inside.yaml").is_symlink()
    assert (out / "inside.yaml").read_text() == "a: 1\n"
    assert (out / "sub" / "up.yaml").read_text() == "a: 1\n"
    assert (out / "here").is_symlink()
    for escaping in ("escape.yaml", "absolute.yaml", "sneaky"):
        assert not os.path.lexists(out / escaping), escaping


def test_export_of_only_some_paths(guestbook: Path, tmp_path: Path) -> None:
    repo = source.open_repository(str(guestbook))
    sha = source.resolve(repo, str(guestbook)).sha
    source.export_tree(repo, sha, tmp_path / "out", only=["web/guestbook/legacy"])
    written = sorted(p.name for p in (tmp_path / "out").rglob("*.yaml"))
    assert written == [
        "frontend-controller.yaml",
        "redis-master-controller.yaml",
        "redis-replica-controller.yaml",
    ]


def test_path_commits_lists_first_parent_commits_touching_a_path(guestbook: Path) -> None:
    repo = source.open_repository(str(guestbook))
    head = source.resolve(repo, str(guestbook)).sha
    commits = list(source.path_commits(repo, str(guestbook), head, ["staging/guestbook"]))
    assert [c.message for c in commits] == [
        "Merge pull request #5 from ahmetb/move-maintained-to-root",
        "Merge pull request #2 from sebgoa/migration",
    ]
    assert commits[0].committed_at > commits[1].committed_at


def test_local_sha_reads_only_what_is_already_here(clone_cache: Path, tmp_path: Path) -> None:
    origin = new_repo(tmp_path / "origin")
    first = commit(origin, {"a.yaml": "1\n"}, "first")
    url = origin.as_uri()
    assert source.local_sha(url, "main") == ""  # never fetched: no mirror, and no fetch now
    source.open_repository(url)
    commit(origin, {"a.yaml": "2\n"}, "second")
    assert source.local_sha(url, "main") == first  # the mirror as fetched, not the remote
    assert source.local_sha(str(origin), "main") != first  # a local path is read in place
    assert source.local_sha(url, "no-such-branch") == ""


def test_history_queries_follow_renames_and_name_the_repository(tmp_path: Path) -> None:
    work = new_repo(tmp_path / "moves")
    v1 = commit(work, {"apps/a.yaml": "a\n", "apps/b.yaml": "b\n", "x.yaml": "x\n"}, "v1")
    git(work, "mv", "apps", "web")
    v2 = commit(work, {}, "moved apps to web")
    repo = source.open_repository(str(work))
    assert sorted(source.renames(repo, v1, v2)) == [("apps/a.yaml", "web/a.yaml"),
                                                    ("apps/b.yaml", "web/b.yaml")]
    assert source.first_parent(repo, v2) == v1 and source.first_parent(repo, v1) is None
    assert source.path_exists(repo, v2, "web") and not source.path_exists(repo, v2, "apps")
    assert source.commits_changing(repo, "web", v1, v2) == [v2]
    assert source.tree_files(repo, v2, "web") == ["web/a.yaml", "web/b.yaml"]
    assert source.file_text(repo, v1, "apps/a.yaml") == "a"
    with pytest.raises(SourceError, match=r"\.git: git show failed: .*apps/a\.yaml"):
        source.file_text(repo, v2, "apps/a.yaml")


def test_missing_local_path_and_non_repository_are_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=f"^{tmp_path}/nowhere: no such directory"):
        source.open_repository(str(tmp_path / "nowhere"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match="plain: not a Git repository"):
        source.open_repository(str(tmp_path / "plain"))


def test_unreachable_ssh_remote_names_the_url_and_never_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITOPS_RESTORE_CACHE", str(tmp_path / "cache"))
    key = tmp_path / "deploy key"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n")
    key.chmod(0o600)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    url = "ssh://git@127.0.0.1:1/team/cluster.git"  # nothing listens on port 1
    with pytest.raises(SourceError) as caught:
        source.open_repository(url, source.GitAuth(ssh_key=key, known_hosts=known_hosts))
    message = str(caught.value)
    assert message.startswith(f"{url}: cannot clone")
    assert "c2VjcmV0LWtleS1ieXRlcw" not in message and "PRIVATE KEY" not in message


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="SSH key file .*/absent does not exist"):
        source.open_repository(
            "git@example.com:team/cluster.git", source.GitAuth(tmp_path / "absent")
        )


def test_https_token_never_appears_in_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITOPS_RESTORE_CACHE", str(tmp_path / "cache"))
    url = "https://deploy:s3cr3t-token@127.0.0.1:1/team/cluster.git"
    with pytest.raises(SourceError) as caught:
        source.open_repository(url)
    assert "s3cr3t-token" not in str(caught.value)
    assert str(caught.value).startswith("https://deploy:***@127.0.0.1:1/team/cluster.git: ")


def test_ssh_command_always_checks_host_keys_and_quotes_paths(tmp_path: Path) -> None:
    key = tmp_path / "my keys" / "id_ed25519"
    hosts = tmp_path / "my keys" / "known hosts"
    words = shlex.split(source.ssh_command(source.GitAuth(key, hosts)))
    assert words[:5] == ["ssh", "-F", "/dev/null", "-i", str(key)]
    assert f"UserKnownHostsFile={hosts}" in words
    assert "StrictHostKeyChecking=yes" in words and "IdentitiesOnly=yes" in words
    assert "StrictHostKeyChecking=yes" in shlex.split(source.ssh_command(None))


def test_scp_style_and_scheme_urls_count_as_remote(tmp_path: Path) -> None:
    assert source.is_remote("git@github.com:team/cluster.git")
    assert source.is_remote("ssh://git@host:2222/team/cluster.git")
    assert source.is_remote("https://example.com/team/cluster.git")
    assert source.is_remote(tmp_path.as_uri())
    assert not source.is_remote(str(tmp_path))
