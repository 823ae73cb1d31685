"""How a rollback hands the cluster over to the sync agent: pin it to the commit, or push a
revert commit to the branch and let it follow.

Called by `rollback` before it applies anything, so the agent can never roll forward in
between; `undo_pin` puts the old pin back when the rollback was refused as bad input.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bootstrap.agent import read_sync, set_spec
from bootstrap.errors import OperationFailed, UserError
from sync_agent import git_https, git_process, paths, source
from sync_agent.inventory import NAMESPACE
from sync_agent.kube import Kube


@dataclass(frozen=True)
class Revert:
    sha: str  # the new commit on the branch ("" when nothing needed reverting)
    to: str  # the full SHA whose state the path returns to
    reverted: tuple[str, ...]  # "sha subject" of the commits undone, newest first


class _Git:
    """git on a private bare clone. The remote is reached at `url` (no credentials in it: a
    token goes through git_https's askpass helper, a key through the ssh command), with
    git_process's deadline; errors name the repository without credentials."""

    def __init__(self, directory: Path, repo: str, env: dict[str, str]):
        self.dir, self.shown = directory, source.redact(repo)
        self.url = git_https.without_credentials(repo)
        self.env = env
        (directory / "work").mkdir()  # empty: `rm --cached` wants a work tree, uses none
        subprocess.run(["git", "init", "-q", "--bare", str(directory / "repo.git")],
                       check=True, capture_output=True)

    def __call__(self, *args: str, env: dict[str, str] | None = None, doing: str = "",
                 check: bool = True) -> str:
        done = git_process.run(["--git-dir", str(self.dir / "repo.git"), "--work-tree",
                                str(self.dir / "work"), *args], {**self.env, **(env or {})},
                               self.shown, doing or args[0])
        if done.returncode != 0 and check:
            detail = source.redact(" ".join(done.stderr.strip().splitlines()[-2:]))
            raise OperationFailed(f"{self.shown}: cannot {doing or args[0]}: {detail}; "
                                  "nothing was pushed")
        return done.stdout.strip() if done.returncode == 0 else ""


@contextmanager
def _remote_env(repo: str, auth: source.GitAuth | None, scratch: Path) -> Iterator[dict[str, str]]:
    """The environment git needs to reach `repo`: the ssh command, and for HTTPS the CA and the
    askpass helper holding the token (never the URL or the command line). The helper lives
    under `scratch` (the cache, not /tmp, which is often mounted noexec)."""
    auth = auth or source.GitAuth()
    scratch.mkdir(parents=True, exist_ok=True)
    env = {"GIT_SSH_COMMAND": source.ssh_command(auth), "GIT_TERMINAL_PROMPT": "0"}
    with git_https.git_env(repo, source.redact(repo), auth.ca_file, auth.username,
                           auth.password, scratch=scratch) as https_env:
        yield {**env, **https_env}


def revert_to(repo: str, branch: str, path: str, to: str,
              auth: source.GitAuth | None) -> Revert:
    """Push one commit on `branch` that returns `path` to its state at `to`.

    The commit's tree is the branch head's with `path` replaced by `to`'s (the whole tree when
    `path` is ""), so merges and conflicts need no resolution and other paths are left alone.
    The push is a fast-forward: if the branch moved meanwhile it is refused, nothing changes.
    """
    path = path.strip("/")
    path = "" if path == "." else path
    with tempfile.TemporaryDirectory(prefix="gitops-restore-revert-") as tmp, \
            _remote_env(repo, auth, paths.cache_root()) as env:
        git = _Git(Path(tmp), repo, env)
        git("fetch", "-q", "--", git.url, f"+refs/heads/{branch}:refs/heads/{branch}",
            doing=f"fetch branch {branch}")
        head = git("rev-parse", f"refs/heads/{branch}")
        if to == "HEAD" or to.startswith(("HEAD~", "HEAD^")):
            to = f"refs/heads/{branch}" + to[4:]
        target = git("rev-parse", "--verify", "--quiet", f"{to}^{{commit}}", check=False)
        if not target:
            raise UserError(f"{git.shown}: '{to}' is not a commit of branch {branch}")
        if git("merge-base", target, head, check=False) != target:
            raise UserError(f"{git.shown}: {target[:12]} is not an ancestor of {branch}; a "
                            "revert returns the branch to one of its earlier commits")
        listed = git("log", "--first-parent", "--format=%H %s", f"{target}..{head}",
                     *(["--", path] if path else []))
        reverted = tuple(listed.splitlines())
        tree = _tree_with_path(git, Path(tmp) / "index", head, target, path)
        if not reverted or tree == git("rev-parse", f"{head}^{{tree}}"):
            return Revert("", target, ())
        message = (f"Revert {path or 'the repository'} to {target[:12]}\n\n"
                   f"Undoes {len(reverted)} commit(s) on {branch} after {target}:\n"
                   + "".join(f"  {line[:12]} {line[41:]}\n" for line in reverted)
                   + "\nMade by `gitops-restore rollback --revert`.\n")
        who = {k: os.environ.get(k, v) for k, v in _IDENTITY.items()}
        new = git("commit-tree", tree, "-p", head, "-m", message, env=who,
                  doing="write the revert commit")
        git("push", "-q", "--", git.url, f"{new}:refs/heads/{branch}",
            doing=f"push the revert commit to {branch} (--push-key needs write access; if "
                  "the branch moved meanwhile, run again)")
        return Revert(new, target, reverted)


_IDENTITY = {"GIT_AUTHOR_NAME": "gitops-restore", "GIT_AUTHOR_EMAIL": "gitops-restore@localhost",
             "GIT_COMMITTER_NAME": "gitops-restore",
             "GIT_COMMITTER_EMAIL": "gitops-restore@localhost"}


def _tree_with_path(git: _Git, index: Path, head: str, target: str, path: str) -> str:
    """`head`'s tree with `path` as it is in `target` (or `target`'s tree when path is "")."""
    if not path:
        return git("rev-parse", f"{target}^{{tree}}")
    env = {"GIT_INDEX_FILE": str(index)}
    git("read-tree", head, env=env)
    git("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", path, env=env)
    if git("rev-parse", "--verify", "--quiet", f"{target}:{path}", check=False):
        git("read-tree", f"--prefix={path}/", f"{target}:{path}", env=env)
    return git("write-tree", env=env)


@dataclass(frozen=True)
class Handoff:
    """How a rollback leaves the agent: pinned to the commit, or following a reverted branch."""

    ref: str  # what the rollback applies now
    sync: str
    found: bool  # a Sync of that name exists (else there is no agent to hand over to)
    pinned: str = ""  # the SHA the agent is pinned to
    revert: Revert | None = None
    previous: str = ""  # the pin before this rollback ("" = it followed the branch)

    def to_json(self) -> dict:
        revert = None if self.revert is None else {
            "commit": self.revert.sha or None, "to": self.revert.to,
            "reverted": list(self.revert.reverted)}
        return {"sync": self.sync, "found": self.found, "pinned": self.pinned or None,
                "revert": revert}

    @property
    def note(self) -> str:
        if not self.found:
            return f"no Sync {NAMESPACE}/{self.sync}: no agent to hand over to"
        if self.revert is not None:
            done = (f"pushed revert commit {self.revert.sha[:12]} undoing "
                    f"{len(self.revert.reverted)} commit(s)" if self.revert.sha
                    else "the branch already matches that revision: nothing to revert")
            return f"{done}; the agent follows the branch"
        return (f"the agent is pinned to {self.pinned[:12]} so it does not roll forward; "
                f"`gitops-restore agent resume --sync {self.sync}` follows the branch again")


def rollback_handoff(kube: Kube, sync: str, repo: str, to: str, path: str,
                     read_auth: source.GitAuth | None, revert: bool, branch: str,
                     push_auth: source.GitAuth | None) -> Handoff:
    """Before a rollback applies anything: pin the agent to the resolved commit (so it cannot
    roll forward meanwhile), or push a revert commit and unpin it."""
    obj = read_sync(kube, sync)
    if revert:
        result = revert_to(repo, obj.spec.branch if obj else branch, path, to, push_auth)
        if obj is not None and obj.spec.revision:
            set_spec(kube, sync, revision=None)
        return Handoff(result.sha or result.to, sync, obj is not None, revert=result)
    repository = source.open_repository(repo, read_auth)
    sha = source.resolve(repository, repo, ref=to).sha
    if obj is None:
        return Handoff(sha, sync, False)
    set_spec(kube, sync, revision=sha)
    return Handoff(sha, sync, True, pinned=sha, previous=obj.spec.revision)


def undo_pin(kube: Kube, handoff: Handoff) -> None:
    """Put the pin back as it was: the rollback was refused before it changed anything."""
    if handoff.pinned:
        set_spec(kube, handoff.sync, revision=handoff.previous or None)
