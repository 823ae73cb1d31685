"""How the renderer runs other programs (kustomize now; helm and sops later): with an
environment built from an allow-list, and output read up to a bound.

The operator runs this tool where kubeconfigs, SSH keys and tokens live, and a program reading
a hostile repository must not see them. So a child gets only the variables named here, never
the tool's own (`GITOPS_RESTORE_*`: the HTTPS token), nor `KUBECONFIG`, `SSH_AUTH_SOCK`, cloud
or forge tokens, and its HOME is an empty directory, so `~/.kube`, `~/.ssh`, `~/.gitconfig` and
`~/.git-credentials` are not found. Only when the operator asks for remote bases
(`--allow-remote-bases`) does a child get the real HOME and SSH agent, to fetch them with the
operator's own git setup. An allow-list, not a deny-list: a credential variable this module has
never heard of stays out too.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# Needed to run at all, and to read and write text the way the operator's shell does.
PASSED = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TMPDIR")
# How to reach the network, for remote bases only; no credentials of their own.
NETWORK = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
           "SSL_CERT_FILE", "SSL_CERT_DIR")
# The operator's git identity and keys: only with --allow-remote-bases.
OPERATOR_GIT = ("HOME", "SSH_AUTH_SOCK", "GIT_SSH", "GIT_SSH_COMMAND")
# Fixed values: git and kubectl read no system config and never prompt.
FIXED = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "KUBECTL_TELEMETRY": "0"}


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str
    truncated: bool  # stdout passed the bound and was cut off there
    raw: bytes = field(default=b"", repr=False)  # stdout as written, for binary output


def environment(home: Path, *, operator_git: bool = False,
                source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: the allow-listed variables of `source` (default: ours),
    HOME set to `home` (an empty directory) unless `operator_git`."""
    source = os.environ if source is None else source
    names = PASSED + (NETWORK + OPERATOR_GIT if operator_git else ())
    env = {name: source[name] for name in names if name in source}
    env.setdefault("PATH", os.defpath)
    if not operator_git or "HOME" not in env:
        env["HOME"] = str(home)
    return {**env, **FIXED}


@contextmanager
def empty_home() -> Iterator[Path]:
    """A fresh, empty directory to serve as a child's HOME; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="gitops-restore-home-") as home:
        yield Path(home)


@contextmanager
def _input(data: bytes) -> Iterator[IO[bytes]]:
    """The child's stdin: an unnamed file holding `data`, so no pipe has to be kept fed while
    its output is read."""
    with tempfile.TemporaryFile() as given:
        given.write(data)
        given.seek(0)
        yield given


def run(command: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float,
        max_stdout: int, pass_fds: Sequence[int] = (), stdin: bytes = b"") -> Finished:
    """Run `command` with `stdin` as its input, reading at most `max_stdout` bytes of its
    output: past that the child is stopped, so a hostile input never fills our memory.
    `pass_fds`: descriptors the child inherits (in-memory files it reads as /dev/fd/N).

    Raises FileNotFoundError (no such program) and subprocess.TimeoutExpired, as subprocess.
    """
    expired = threading.Event()
    chunks: list[bytes] = []
    size = 0
    with tempfile.TemporaryFile() as err, _input(stdin) as given, subprocess.Popen(
        command, cwd=cwd, env=dict(env), stdin=given, stdout=subprocess.PIPE,
        stderr=err, pass_fds=tuple(pass_fds),
    ) as child:
        timer = threading.Timer(timeout, lambda: (expired.set(), child.kill()))
        timer.start()
        try:
            while chunk := child.stdout.read(64 * 1024):
                size += len(chunk)
                if size > max_stdout:
                    child.kill()
                    break
                chunks.append(chunk)
            child.wait()
        finally:
            timer.cancel()
        err.seek(0)
        stderr = err.read(64 * 1024).decode("utf-8", "replace")
    if expired.is_set():
        raise subprocess.TimeoutExpired(list(command), timeout)
    raw = b"".join(chunks)
    return Finished(child.returncode, raw.decode("utf-8", "replace"), stderr,
                    truncated=size > max_stdout, raw=raw)
