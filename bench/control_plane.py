"""CPU seconds the local cluster's own processes (kube-apiserver, etcd, controllers) spent,
read from /proc: where a way's time goes on a machine whose two cores the client shares with
the control plane."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(kubeconfig: str) -> Counter[str]:
    """Per program (kube-apiserver, etcd, ...), the CPU seconds so far of the processes of the
    cluster whose kubeconfig this is (kwokctl runs them from <state>/kwok/clusters/<name>/bin)."""
    marker = f"/kwok/clusters/{Path(kubeconfig).parent.name}/bin/"
    seconds: Counter[str] = Counter()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode()
            fields = (proc / "stat").read_text().rpartition(")")[2].split()
        except (OSError, UnicodeDecodeError):
            continue  # gone meanwhile, or not ours to read
        if marker in argv0:
            # utime and stime are fields 14 and 15 of /proc/PID/stat (1-based; 12, 13 here)
            seconds[argv0.rpartition("/")[2]] += (int(fields[11]) + int(fields[12])) / _TICKS
    return seconds


def spent(before: Counter[str], after: Counter[str]) -> dict[str, float]:
    return {program: round(after[program] - before[program], 2) for program in sorted(after)}
