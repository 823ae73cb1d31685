"""The ways of putting N objects into a cluster that the benchmark compares, and how each is run.

Every way is a function of a fresh cluster's kubeconfig returning what was measured. Each runs
as a child process of its own, so its wall time, CPU time and peak RSS are its alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench import synthetic
from sync_agent import paths

ROOT = Path(__file__).resolve().parent
GITOPS_RESTORE = str(Path(sys.executable).parent / "gitops-restore")

Measure = Callable[[str], dict]


@dataclass(frozen=True)
class Run:
    seconds: float  # wall
    cpu_seconds: float  # user + system of the child
    peak_rss_mb: int
    stdout: str


def run_timed(command: list[str], env: dict | None = None) -> Run:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=out, stderr=err,
                                   env={**os.environ, **(env or {})}, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code != 0:
            raise SystemExit(f"{' '.join(command[:3])} failed ({code}):\n{err.read()[-3000:]}")
        return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024, out.read())


def go_build(module: str, name: str) -> str:
    """Build a Go program of bench/ into the cache (outside the checkout), return its path."""
    target = paths.cache_root() / "bench" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["go", "build", "-o", str(target), "."], cwd=ROOT / module, check=True,
                   env={**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"})
    return str(target)


def kubeconfig_credentials(kubeconfig: str) -> dict[str, str]:
    """Server URL and file paths of the CA, client cert and key of a kwokctl kubeconfig."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    creds = {"server": cluster["server"]}
    for key, field in (("ca", "certificate-authority"), ("cert", "client-certificate"),
                       ("key", "client-key")):
        value = (cluster | user)[field]
        creds[key] = value if Path(value).is_absolute() else str(Path(kubeconfig).parent / value)
    return creds


def ours(repo: Path, size: int, workers: int) -> Measure:
    def measure(kubeconfig: str) -> dict:
        run = run_timed([GITOPS_RESTORE, "restore", "--repo", str(repo), "--kubeconfig",
                         kubeconfig, "--workers", str(workers), "--output", "json"])
        report = json.loads(run.stdout)
        assert report["counts"]["create"] == size, report["counts"]
        return {"seconds": round(run.seconds, 2), "cpu_seconds": round(run.cpu_seconds, 2),
                "peak_rss_mb": run.peak_rss_mb,
                "phases": {p["phase"]: p["seconds"] for p in report["phases"]}}
    return measure


def kubectl(repo: Path) -> Measure:
    """What a kubectl user does with CRDs and their resources in one tree: kubectl maps every
    kind before it sends anything, so the CRDs go first, then a wait, then the whole tree."""
    def measure(kubeconfig: str) -> dict:
        base = [paths.kubectl(), "--kubeconfig", kubeconfig]
        apply = [*base, "apply", "--server-side", "--field-manager", "bench", "-f"]
        seconds = sum(run_timed(command).seconds for command in (
            [*apply, str(repo / synthetic.CLUSTER_FILE)],
            [*base, "wait", "--for", "condition=established", "--timeout", "120s",
             "customresourcedefinitions", "--all"],
            [*apply[:-1], "-R", "-f", str(repo)]))
        return {"seconds": round(seconds, 2)}
    return measure


def flux(binary: str, repo: Path, size: int, mode: str, concurrency: int) -> Measure:
    """bench/fluxapply: Flux's ApplyAllStaged (`staged`) or client-go creates (`create`)."""
    def measure(kubeconfig: str) -> dict:
        run = run_timed([binary, "-kubeconfig", kubeconfig, "-dir", str(repo), "-mode", mode,
                         "-concurrency", str(concurrency)])
        result = json.loads(run.stdout)
        done = result["actions"].get("created", 0)
        assert done == size and not result["actions"].get("failed"), result
        return {"seconds": round(result["seconds"], 2), "cpu_seconds": round(run.cpu_seconds, 2),
                "requests": result["requests"]}
    return measure


@dataclass(frozen=True)
class Probe:
    """bench/rawprobe: creates (POST), server-side applies (PATCH), or dry-run creates of the
    same objects, as fast as the API server takes them."""

    binary: str
    objects: Path  # every object, in stage order
    cluster_scoped: Path  # created for real before a dry-run, as a restore's validate finds them
    namespaced: Path  # what is then dry-run
    workers: int

    def run(self, mode: str) -> Measure:
        def measure(kubeconfig: str) -> dict:
            command = self.command(kubeconfig)
            objects = self.objects
            if mode == "dry-run":
                self.send(command, self.cluster_scoped, [])
                objects = self.namespaced
            flags = {"create": [], "apply": ["-apply"], "dry-run": ["-dry-run"]}[mode]
            return {"seconds": round(self.send(command, objects, flags), 2)}
        return measure

    def command(self, kubeconfig: str) -> list[str]:
        creds = kubeconfig_credentials(kubeconfig)
        return [self.binary, "-server", creds["server"], "-ca", creds["ca"], "-cert",
                creds["cert"], "-key", creds["key"], "-workers", str(self.workers)]

    @staticmethod
    def send(command: list[str], objects: Path, flags: list[str]) -> float:
        raw = json.loads(run_timed([*command, "-objects", str(objects), *flags]).stdout)
        expected = sum(1 for line in objects.read_text().splitlines() if '"path"' in line)
        assert raw["created"] == expected and raw["failed"] == 0, raw
        return raw["seconds"]
