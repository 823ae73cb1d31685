"""The agent as a detached local process: start it, find it, stop it.

Used by bootstrap for the `local` provider, whose pods are simulated and run nothing: there
the agent runs beside the control plane as `python -m sync_agent --kubeconfig …`, in a session
of its own (it outlives the command that started it), with a JSON pidfile and a log file in
the cluster's state directory.

A pidfile alone proves nothing (the process may have died, and its pid been reused), so
`running` reports a process only when the pid is alive, its command line is
`… -m sync_agent … --sync <name>`, and its start time (from /proc) is the one recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from sync_agent import git_https

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class LocalAgent:
    pid: int
    sync: str
    started: float  # process start, seconds since boot (from /proc/<pid>/stat)
    listen: str  # HOST:PORT of /healthz /readyz /metrics
    log: str  # log file

    def to_json(self) -> dict:
        return asdict(self)


def pidfile(directory: Path, sync: str) -> Path:
    return directory / f"agent-{sync}.json"


def logfile(directory: Path, sync: str) -> Path:
    return directory / f"agent-{sync}.log"


def start(directory: Path, sync: str, kubeconfig: str, context: str | None, listen: str,
          extra_args: tuple[str, ...] = ()) -> LocalAgent:
    """Start a detached agent for `sync` (the caller checks `running` first)."""
    directory.mkdir(parents=True, exist_ok=True)
    log_path = logfile(directory, sync)
    args = [sys.executable, "-m", "sync_agent", "--sync", sync, "--kubeconfig", kubeconfig,
            "--listen", listen, *extra_args]
    if context:
        args += ["--context", context]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True, close_fds=True,
                                   env={**_without_credentials(os.environ),
                                        "PYTHONUNBUFFERED": "1"})
    agent = LocalAgent(process.pid, sync, _start_time(process.pid) or 0.0, listen,
                       str(log_path))
    tmp = pidfile(directory, sync).with_suffix(".tmp")
    tmp.write_text(json.dumps(agent.to_json(), indent=2))
    tmp.replace(pidfile(directory, sync))
    return agent


def running(directory: Path, sync: str) -> LocalAgent | None:
    """The live agent process recorded for `sync`, or None (a stale pidfile is removed)."""
    path = pidfile(directory, sync)
    try:
        agent = LocalAgent(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if is_our_agent(agent):
        return agent
    path.unlink(missing_ok=True)
    return None


def all_running(directory: Path) -> list[LocalAgent]:
    found = []
    for path in sorted(directory.glob("agent-*.json")):
        agent = running(directory, path.stem.removeprefix("agent-"))
        if agent:
            found.append(agent)
    return found


def is_our_agent(agent: LocalAgent) -> bool:
    started = _start_time(agent.pid)
    if started is None or abs(started - agent.started) > 0.05:
        return False
    try:
        argv = Path(f"/proc/{agent.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [w.decode(errors="replace") for w in argv]
    return "sync_agent" in words and "--sync" in words and agent.sync in words


def stop(directory: Path, sync: str, timeout: float = 30.0) -> bool:
    """SIGTERM the agent of `sync` (SIGKILL after `timeout`); False if none was running."""
    agent = running(directory, sync)
    pidfile(directory, sync).unlink(missing_ok=True)
    if agent is None:
        return False
    _signal(agent.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and is_our_agent(agent):
        time.sleep(0.1)
    if is_our_agent(agent):
        _signal(agent.pid, signal.SIGKILL)
        while is_our_agent(agent):
            time.sleep(0.05)
    return True


def stop_all(directory: Path, timeout: float = 30.0) -> list[str]:
    """Stop every agent recorded in `directory`; the sync names of those that were running."""
    stopped = []
    for path in sorted(directory.glob("agent-*.json")):
        sync = path.stem.removeprefix("agent-")
        if stop(directory, sync, timeout):
            stopped.append(sync)
    return stopped


def _signal(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def _start_time(pid: int) -> float | None:
    """Seconds since boot when `pid` started; None if no such (or a zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # exited, not yet reaped: not running
        return None
    return int(fields[19]) / _CLOCK_TICKS


def _without_credentials(env: Mapping[str, str]) -> dict[str, str]:
    """The operator's environment minus the Git token: the agent reads its credentials from
    the Sync's Secret, as it does in a cluster, never from whoever started it."""
    return {k: v for k, v in env.items() if k not in (git_https.USERNAME_ENV,
                                                       git_https.PASSWORD_ENV)}
