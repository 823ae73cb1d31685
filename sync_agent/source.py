"""The Git side of the pipeline: open a repository, resolve a ref or time, export a tree.

Called first by every restore, plan, rollback and history run (bootstrap's commands and the
in-cluster agent); `render` then reads the exported tree. A local path is used in place and
only read: its working tree, index and HEAD are never changed. Remote URLs (and `file://`) are
cloned once as a bare mirror into the clone cache and fetched incrementally afterwards, under
a file lock so that two processes never fetch the same URL at once. SSH always checks the host
key and HTTPS the server certificate; an HTTPS token never reaches the cache (see git_https).

History walks follow first parents only: on a branch that a sync agent follows, the
first-parent chain is the sequence of states the branch actually went through; commits of
merged side branches were never deployed on their own.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import git

from sync_agent import git_https, git_process, paths, redaction
from sync_agent.errors import SourceError
from sync_agent.objects import Revision

_REMOTE_SCHEMES = ("ssh://", "git://", "http://", "https://", "file://", "git+ssh://")
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?[^/:]+:(?!//)")
_TIME_FORMS = "2026-11-01T12:00Z, 2026-11-01T12:00:00+02:00 or 2026-11-01 (midnight UTC)"
_FETCH_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
_FIRST_PARENT_LOG = ("log", "--first-parent", "--no-show-signature")
_SSH_CONNECT_TIMEOUT = 30  # seconds for TCP connect plus the SSH handshake
_SSH_ALIVE_INTERVAL, _SSH_ALIVE_COUNT = 15, 4  # a server silent for 60 s is given up on

# A repository as the other modules name it: they pass it back to this module's functions,
# which are the only code that talks to Git through GitPython (an import contract checks it).
Repository = git.Repo


@dataclass(frozen=True)
class GitAuth:
    """Credentials for remotes. SSH: a deploy key and the pinned host keys to check against.
    HTTPS: the CA bundle to trust, and a username and token (a token in the URL wins)."""

    ssh_key: Path | None = None
    known_hosts: Path | None = None
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_time(text: str) -> datetime:
    """`--at` text to an aware datetime; a time without an offset is taken as UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SourceError(f"time '{text}' is not understood: use {_TIME_FORMS}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def redact(text: str) -> str:
    """A URL, or a message quoting one, without credentials in any spelling (see redaction)."""
    return redaction.redact(text)


def is_remote(url: str) -> bool:
    if url.startswith(_REMOTE_SCHEMES):
        return True
    return not os.path.exists(url) and bool(_SCP_LIKE.match(url))


def ssh_command(auth: GitAuth | None) -> str:
    """GIT_SSH_COMMAND for a remote: the user's ~/.ssh/config and /etc/ssh/ssh_config are not
    read (they could switch on agent forwarding, a multiplexed connection that skips host key
    checks, other identities or other known_hosts); host keys are checked against the pinned
    known_hosts only (else the user's ~/.ssh/known_hosts); a given key is the only identity
    offered, without the agent; nothing is forwarded; prompts never wait; a silent server is
    given up on (ConnectTimeout covers the handshake, ServerAlive probes the transfer)."""
    connect = min(_SSH_CONNECT_TIMEOUT, git_process.timeout())
    parts = ["ssh", "-F", "/dev/null"]
    if auth and auth.ssh_key:
        parts += ["-i", str(auth.ssh_key), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]
    if auth and auth.known_hosts:
        parts += ["-o", f"UserKnownHostsFile={auth.known_hosts}"]
    options = ["StrictHostKeyChecking=yes", "GlobalKnownHostsFile=/dev/null", "UpdateHostKeys=no",
               "BatchMode=yes", "ForwardAgent=no", "ForwardX11=no", "ClearAllForwardings=yes",
               "PermitLocalCommand=no", "ControlMaster=no", "ControlPath=none",
               f"ConnectTimeout={max(1, round(connect))}",
               f"ServerAliveInterval={_SSH_ALIVE_INTERVAL}",
               f"ServerAliveCountMax={_SSH_ALIVE_COUNT}"]
    for option in options:
        parts += ["-o", option]
    return shlex.join(parts)


def open_repository(url: str, auth: GitAuth | None = None) -> Repository:
    """The repository at `url`: a local path as it is, a remote through the clone cache."""
    if not is_remote(url):
        return _open_local(url)
    auth = auth or GitAuth()
    files = {"SSH key": auth.ssh_key, "known_hosts": auth.known_hosts, "CA": auth.ca_file}
    for label, file in files.items():
        if file and not Path(file).is_file():
            raise SourceError(f"{redact(url)}: the {label} file {file} does not exist")
    env = {
        "GIT_SSH_COMMAND": ssh_command(auth),
        "GIT_TERMINAL_PROMPT": "0",  # fail instead of waiting for a password nobody will type
        # bytes/s over seconds: give up on a stalled HTTPS transfer (git_process has a deadline)
        "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
        "GIT_HTTP_LOW_SPEED_TIME": str(max(1, round(min(60, git_process.timeout())))),
    }
    remote = _Remote(git_https.without_credentials(url), redact(url))
    mirror = cache_path(url)
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with _locked(mirror.with_suffix(".lock")), git_https.git_env(
            url, remote.shown, auth.ca_file, auth.username, auth.password,
            scratch=mirror.parent) as https_env:
        env.update(https_env)
        if _is_bare_repo(mirror):
            _fetch(remote, mirror, env)
        else:
            _clone(remote, mirror, env)
    return git.Repo(mirror)


def cache_path(url: str) -> Path:
    """Where the bare mirror of a remote URL lives in the clone cache: keyed by the URL without
    its token, so a rotated token finds the same mirror and no path is derived from it."""
    digest = hashlib.sha256(git_https.without_credentials(url).encode()).hexdigest()[:16]
    return paths.cache_root() / "repos" / f"{digest}.git"


@dataclass(frozen=True)
class _Remote:
    """A remote URL as git gets it (no token: that goes through askpass) and as messages say it."""

    url: str
    shown: str


def _open_local(url: str) -> Repository:
    path = Path(url).expanduser()
    if not path.exists():
        raise SourceError(f"{url}: no such directory; give a local repository path or a Git URL")
    try:
        return git.Repo(path)
    except git.InvalidGitRepositoryError:
        raise SourceError(
            f"{url}: not a Git repository; give the repository's top directory or a Git URL"
        ) from None


def _is_bare_repo(path: Path) -> bool:
    try:
        if git.Repo(path).bare:
            return True
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        pass
    shutil.rmtree(path, ignore_errors=True)  # a broken leftover, if anything: clone again
    return False


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_git(args: Sequence[str], env: dict[str, str], remote: _Remote, doing: str) -> str:
    result = git_process.run(args, env, remote.shown, doing)
    if result.returncode != 0:
        detail = git_failure(result.stderr) or f"exit {result.returncode}"
        hung = git_process.timed_out(remote.shown, doing, detail)
        if hung:
            raise hung
        fix = git_https.advice(detail) if remote.url.lower().startswith("http") else None
        raise SourceError(
            f"{remote.shown}: cannot {doing}: {redact(detail)}. "
            f"{fix or 'Check the URL, network access, the deploy key and known_hosts'}."
        )
    return result.stdout


def git_failure(stderr: str) -> str:
    """The line of git/ssh error output that says why (Permission denied (publickey), Host key
    verification failed, ...), rather than git's generic closing advice."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for hint in ("Host key verification failed", "Permission denied", "Connection refused",
                 "Could not resolve", "timed out", "No route to host", "fatal:"):
        for line in lines:
            if hint in line:
                return redact(line).rstrip(".")
    return redact(lines[-1]).rstrip(".") if lines else ""


def _clone(remote: _Remote, mirror: Path, env: dict[str, str]) -> None:
    tmp = Path(tempfile.mkdtemp(dir=mirror.parent, prefix=mirror.name + ".tmp-"))
    try:
        _run_git(["clone", "--bare", "--quiet", "--", remote.url, str(tmp)], env, remote, "clone")
        tmp.rename(mirror)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch(remote: _Remote, mirror: Path, env: dict[str, str]) -> None:
    args = ["--git-dir", str(mirror), "fetch", "--quiet", "--prune", "--no-tags"]
    _run_git([*args, "--", remote.url, *_FETCH_REFSPECS], env, remote, "fetch")
    # The remote's default branch may have changed since the clone: follow it.
    out = _run_git(["ls-remote", "--symref", "--", remote.url, "HEAD"], env, remote,
                   "read HEAD of")
    match = re.match(r"ref: (refs/heads/\S+)\tHEAD", out)
    if match:
        git_dir = ["--git-dir", str(mirror)]
        _run_git([*git_dir, "symbolic-ref", "HEAD", match.group(1)], env, remote, "set HEAD of")


def resolve(
    repo: Repository,
    url: str,
    ref: str | None = None,
    at: datetime | None = None,
    branch: str | None = None,
) -> Revision:
    """The commit for a ref (branch, tag, SHA, HEAD~N; None = HEAD) or for a time.

    With `at`, the last commit on `branch` (or `ref`, or HEAD) whose committer date is at or
    before that time, following first parents.
    """
    if at is None:
        asked = ref or branch or "HEAD"
        return _revision(url, asked, _commit(repo, url, asked))
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    start_name = branch or ref or "HEAD"
    start = _commit(repo, url, start_name)
    limit = at.timestamp()
    when = at.isoformat()
    oldest = ""
    for line in _git_lines(repo, *_FIRST_PARENT_LOG, "--format=%H %ct %cI", start.hexsha):
        sha, stamp, oldest = line.split(" ", 2)
        if int(stamp) <= limit:
            return _revision(url, f"{start_name} at {when}", repo.commit(sha))
    raise SourceError(
        f"{redact(url)}: no commit on {start_name} at or before {when}; "
        f"its first commit is from {oldest}"
    )


def _revision(url: str, asked: str, commit: git.Commit) -> Revision:
    return Revision(
        repo=redact(url),
        ref=asked,
        sha=commit.hexsha,
        committed_at=commit.committed_datetime.isoformat(),
        author=f"{commit.author.name} <{commit.author.email}>",
        message=_first_line(commit.message),
    )


def _first_line(message: str | bytes) -> str:
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return message.strip().split("\n", 1)[0]


def _commit(repo: Repository, url: str, name: str) -> git.Commit:
    candidates = [name]
    if not repo.bare:  # a working clone may know a branch only as origin/<name>
        candidates += [f"{remote.name}/{name}" for remote in repo.remotes]
    for candidate in candidates:
        if candidate.startswith("-"):
            break
        try:
            return repo.commit(repo.git.rev_parse("--verify", "--quiet", f"{candidate}^{{commit}}"))
        except (git.GitCommandError, ValueError):
            continue
    raise SourceError(f"{redact(url)}: unknown ref '{name}'. {_known_refs(repo)}")


def _known_refs(repo: Repository, shown: int = 8) -> str:
    def listing(names: list[str]) -> str:
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        return ", ".join(names[:shown]) + more if names else "none"

    branches = sorted(h.name for h in repo.heads)
    if not repo.bare:
        remote = repo.git.for_each_ref("--format=%(refname:short)", "refs/remotes").split()
        branches += sorted(name for name in remote if "/" in name and not name.endswith("/HEAD"))
    tags = sorted((t.name for t in repo.tags), reverse=True)
    return (
        f"Branches: {listing(branches)}; tags: {listing(tags)}. "
        "Give a branch, tag, commit SHA or HEAD~N."
    )


def _git_lines(repo: Repository, *args: str) -> Iterator[str]:
    """Lines of a git command's output, read as it runs (callers may stop early)."""
    handle = repo.git.execute(["git", *args], as_process=True)  # kills git when collected
    proc = handle.proc
    try:
        for raw in proc.stdout:
            yield raw.decode("utf-8", "replace").rstrip("\n")
        if proc.wait() != 0:
            detail = proc.stderr.read().decode("utf-8", "replace").strip()
            raise SourceError(f"{repo.git_dir}: git {args[0]} failed: {detail}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def path_commits(
    repo: Repository, url: str, start: str, pathspecs: Sequence[str] = ()
) -> Iterator[Revision]:
    """Commits from `start` back that changed any of `pathspecs` (all if empty), newest first.

    First parents only (see the module docstring); a merge is listed when it changed the paths
    compared with its first parent.
    """
    fmt = "--format=%H%x1f%cI%x1f%an <%ae>%x1f%s"
    whole_tree = any(p.strip("/") in ("", ".") for p in pathspecs)
    specs = [] if whole_tree else [f":(literal){p.strip('/')}" for p in pathspecs]
    for line in _git_lines(repo, *_FIRST_PARENT_LOG, fmt, start, "--", *specs):
        sha, date, author, subject = line.split("\x1f", 3)
        yield Revision(redact(url), sha, sha, date, author, subject)


def local_sha(url: str, ref: str) -> str:
    """The commit `ref` names in the copy of `url` already on this machine (its clone-cache
    mirror, or the local path), without fetching; "" when there is none or it is unknown."""
    try:
        return resolve(git.Repo(cache_path(url) if is_remote(url) else url), url, ref=ref).sha
    except (SourceError, git.GitError, OSError, ValueError):
        return ""


def path_exists(repo: Repository, sha: str, path: str) -> bool:
    try:
        repo.git.cat_file("-e", f"{sha}:{path.strip('/')}")
    except git.GitCommandError:
        return False
    return True


def first_parent(repo: Repository, sha: str) -> str | None:
    """The first parent of commit `sha`; None for a root commit."""
    return next(iter(_git(repo, "rev-list", "--parents", "-n", "1", sha).split()[1:]), None)


def merge_base(repo: Repository, one: str, other: str) -> str:
    return _git(repo, "merge-base", one, other).strip()


def commits_changing(repo: Repository, path: str, since: str, until: str,
                     oldest_first: bool = False) -> list[str]:
    """SHAs of the commits in `since..until` that changed `path`, newest first unless asked."""
    order = ["--topo-order", *(["--reverse"] if oldest_first else [])]
    return _git(repo, "log", "--format=%H", *order, f"{since}..{until}", "--", path).split()


def renames(repo: Repository, parent: str, sha: str) -> list[tuple[str, str]]:
    """The files renamed between two commits, as (old path, new path)."""
    fields = _git(repo, "diff", "--find-renames", "--name-status", "-z", parent, sha).split("\0")
    found, index = [], 0
    while index < len(fields):
        status = fields[index]
        if status.startswith(("R", "C")) and index + 2 < len(fields):
            if status.startswith("R"):
                found.append((fields[index + 1], fields[index + 2]))
            index += 3
        else:
            index += 2 if status else 1
    return found


def tree_files(repo: Repository, sha: str, directory: str) -> list[str]:
    """Paths of the files under `directory` ("." for all) at commit `sha`."""
    spec = [] if directory == "." else [directory]
    listing = _git(repo, "ls-tree", "-r", "--name-only", "-z", "--full-tree", sha, "--", *spec)
    return [path for path in listing.split("\0") if path]


def file_text(repo: Repository, sha: str, path: str) -> str:
    """The content of file `path` at commit `sha`; SourceError when it is not there."""
    return _git(repo, "show", f"{sha}:{path}")


def _git(repo: Repository, *args: str) -> str:
    try:
        return repo.git.execute(["git", *args])
    except git.GitCommandError as e:
        detail = str(e.stderr).strip().removeprefix("stderr: '").removesuffix("'").strip()
        raise SourceError(f"{repo.git_dir}: git {args[0]} failed: {detail}") from None


def export_tree(repo: Repository, sha: str, dest: Path, only: Sequence[str] = ()
                ) -> dict[str, str]:
    """Write the tree of commit `sha` into `dest` (or just the paths in `only`), from Git objects.

    No working tree or index is involved, and no attributes or filters apply: files are written
    byte for byte as committed. Symlinks are kept only if they resolve inside `dest`; the ones
    left out are returned (path in the tree -> where the link points), for `render` to report.
    """
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    specs = [p.strip("/") for p in only]
    if any(p in ("", ".") for p in specs):
        specs = []
    try:
        listing = repo.git.execute(
            ["git", "ls-tree", "-r", "-z", "--full-tree", sha, "--", *specs],
            stdout_as_string=False,
        )
    except git.GitCommandError:
        raise SourceError(f"{repo.git_dir}: {sha} is not a commit in this repository") from None
    links: list[tuple[Path, str]] = []
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, _, raw_path = entry.partition(b"\t")
        mode, kind, object_sha = meta.decode().split(" ")
        rel = raw_path.decode("utf-8", "surrogateescape")
        parts = rel.split("/")
        if kind != "blob" or any(p in ("", ".", "..", ".git") for p in parts):
            continue  # submodules, and names Git itself refuses to check out
        target = root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = repo.odb.stream(bytes.fromhex(object_sha)).read()
        if mode == "120000":
            links.append((target, data.decode("utf-8", "surrogateescape")))
            continue
        target.write_bytes(data)
        if mode == "100755":
            target.chmod(0o755)
    return _write_links(root, links)


def _write_links(root: Path, links: list[tuple[Path, str]]) -> dict[str, str]:
    left_out = {}
    for link, pointee in links:
        if os.path.isabs(pointee):
            left_out[link.relative_to(root).as_posix()] = pointee
        else:
            os.symlink(pointee, link)
    # Checked once all exist: a link may point through another link.
    for link, pointee in links:
        if link.is_symlink() and not Path(os.path.realpath(link)).is_relative_to(root):
            link.unlink()
            left_out[link.relative_to(root).as_posix()] = pointee
    return left_out
