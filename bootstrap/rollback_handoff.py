"""A rollback, from the sync it rolls back to the report: how it hands the cluster over to
the sync agent (pin it to the commit, or push a revert commit to the branch and let it
follow), and the restore with prune that follows.

`rollback` is called by the `rollback` command with the options already parsed: it finds the
sync and the path its state is at, checks the target's signatures, hands the agent over
before it applies anything (so the agent can never roll forward in between), restores, and
puts the old pin back when the restore was refused as bad input. The drill rehearses the same
restore through the engine directly.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bootstrap import sync_lookup
from bootstrap.agent import read_sync, set_spec
from bootstrap.errors import OperationFailed, UserError
from sync_agent import engine, errors, events, git_https, git_process, paths, source
from sync_agent.conventions import NAMESPACE
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


@dataclass(frozen=True)
class RollbackRequest:
    """A rollback as asked for, its options parsed."""

    spec: engine.SourceSpec  # ref: the revision to return to (--to); path: see `path`
    options: engine.SyncOptions  # sync_name: --name, or "" to find the sync; prune is forced
    path: str | None = None  # --path; None: the path the sync's inventory records
    revert: bool = False  # push a revert commit instead of pinning the agent
    branch: str = "main"  # for `revert` when no Sync names the branch
    push_auth: source.GitAuth | None = None  # for `revert`: credentials that may push


@dataclass(frozen=True)
class Rollback:
    """What a rollback did: the restore's report, how the agent was left, which sync."""

    report: engine.Report
    handoff: Handoff
    sync: sync_lookup.RollbackSync


def rollback(kube: Kube, request: RollbackRequest,
             emit: events.EventSink = events.ignore) -> Rollback:
    """Return the cluster exactly to `request.spec.ref`, keeping the agent from undoing it."""
    to = request.spec.ref or "HEAD"
    found = sync_lookup.for_rollback(kube, request.options.sync_name or None,
                                     request.spec.repo, request.path, to, request.spec.auth)
    spec = replace(request.spec, path=found.path)
    options = replace(request.options, sync_name=found.name, prune=True,
                      take_over=request.options.take_over or found.moved)
    # --to as asked (a signed tag counts), before the pin or a revert commit changes
    # anything; the restore then applies the SHA, which was just verified.
    signed = _verify_first(kube, spec, found.name) if spec.verify else []
    handoff = rollback_handoff(kube, found.name, spec.repo, to, found.path, spec.auth,
                               request.revert, request.branch, request.push_auth)
    try:
        options = sync_lookup.continued(kube, options, spec.repo, spec.path)
        report = engine.restore(kube, replace(spec, ref=handoff.ref, verify=None), options,
                                emit)
    except errors.Refused:  # refused before any write: the pin goes too
        undo_pin(kube, handoff)
        raise
    report.signatures = signed
    return Rollback(report, handoff, found)


def _verify_first(kube: Kube, spec: engine.SourceSpec, sync: str) -> list:
    repo, revision = engine.fetch(spec)
    return engine.verify_signatures(kube, repo, revision, spec, sync)
