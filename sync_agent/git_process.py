"""git as a child process that talks to a remote: with a deadline, and without our secrets.

Called by `source` (clone and fetch into the clone cache), bootstrap's rollback hand-off (the
revert push) and its deploy-key check (ls-remote). A Git server that accepts the connection
and then says nothing must not hang a restore or the agent: ssh gets ConnectTimeout and
ServerAlive probes (see `source.ssh_command`), HTTPS a low-speed limit, and every git command a
deadline (GITOPS_RESTORE_GIT_TIMEOUT, default 300 s, like Flux's and Argo CD's fetch timeouts
but for a whole mirror clone). git runs in a process group of its own so that, at the
deadline, its ssh or git-remote-https children are killed with it and the caller's locks are
released by the exception unwinding.

A hung server is a failure, not bad input: `GitTimeout` exits 1, and the agent retries it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from sync_agent import git_https
from sync_agent.errors import SourceError, Transient

TIMEOUT_ENV = "GITOPS_RESTORE_GIT_TIMEOUT"
DEFAULT_TIMEOUT = 300.0
# The tool's own credentials reach git only through the askpass helper's variables (git_https),
# never as these; GIT_SSL_NO_VERIFY would switch certificate checks off.
_NEVER_PASSED = (*git_https.IGNORED_ENV, git_https.USERNAME_ENV, git_https.PASSWORD_ENV)


class GitTimeout(Transient):
    """The Git server did not answer within the deadline: worth retrying, not bad input (so
    not a SourceError, which is)."""


def timeout() -> float:
    """The deadline for one git command talking to a remote, in seconds."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        value = 0.0
    if value <= 0:
        raise SourceError(f"{TIMEOUT_ENV}={text!r}: give the seconds a git command may take "
                          f"talking to a Git server, e.g. {DEFAULT_TIMEOUT:.0f}")
    return value


def environment(extra: Mapping[str, str]) -> dict[str, str]:
    """Our environment without credentials and certificate switches, plus `extra`."""
    inherited = {k: v for k, v in os.environ.items() if k not in _NEVER_PASSED}
    return {**inherited, **extra}


def run(args: Sequence[str], env: Mapping[str, str], shown: str, doing: str,
        deadline: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run `git args` (with `env` added to `environment`), killing it and its children after
    `deadline` seconds (default `timeout()`); raises GitTimeout naming `shown` and `doing`."""
    deadline = timeout() if deadline is None else deadline
    process = subprocess.Popen(["git", *args], env=environment(env), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise GitTimeout(f"{shown}: cannot {doing}: no answer from the Git server within "
                         f"{deadline:g}s. Check that it is up and reachable (a very large "
                         f"repository may need a higher {TIMEOUT_ENV})") from None
    except BaseException:
        _kill_group(process)
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def timed_out(shown: str, doing: str, detail: str) -> GitTimeout | None:
    """The error for git's or ssh's own timeout (ConnectTimeout, ServerAlive, the HTTPS
    low-speed limit) reported as `detail`; None if `detail` is no timeout."""
    if "timed out" not in detail.lower() and "timeout" not in detail.lower():
        return None
    return GitTimeout(f"{shown}: cannot {doing}: {detail} (no answer from the Git server). "
                      f"Check that it is up and reachable (or raise {TIMEOUT_ENV})")


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()
