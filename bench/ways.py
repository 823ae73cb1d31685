"""The ways of putting N objects into a cluster that the benchmark compares, and how each is run.

Every way is a function of a fresh cluster's kubeconfig returning what was measured. Each runs
as a child process of its own, so its wall time, CPU time and peak RSS are its alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench import gitserve, synthetic
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


# The newest releases that build on Go 1.26 (v1.10 needs Go 1.27): fluxcd/pkg/ssa v0.76.2 and
# k8s.io v0.36 inside, one minor behind bench/fluxapply's.
FLUX_VERSION = "v1.9.6"
FLUX_CONTROLLERS = ("source-controller", "kustomize-controller")
# The module proxy here does not serve every version a release asks for: the nearest it does.
# Flags for both controllers; none: as shipped, whose client allows 50 requests/s (burst 300).
FLUX_CONTROLLER_FLAGS: list[str] = []
FLUX_PINS = {"source-controller": ["github.com/fluxcd/pkg/artifact@v0.18.0"]}  # asks v0.18.3


def go_build_release(name: str, version: str = FLUX_VERSION) -> tuple[str, Path]:
    """Build github.com/fluxcd/NAME@version into the cache once; its binary and sources.

    `go install` refuses the module (it replaces its own api module by ./api, which the module
    zip leaves out), so a copy of the sources is built with that replace dropped."""
    target = paths.cache_root() / "bench" / f"{name}-{version}"
    source = paths.cache_root() / "bench" / "src" / f"{name}-{version}"
    if not target.exists():
        found = json.loads(subprocess.run(
            ["nice", "-n", "19", "go", "mod", "download", "-json",
             f"github.com/fluxcd/{name}@{version}"],
            capture_output=True, text=True, check=True).stdout)
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(found["Dir"], source)
        for path in [source, *source.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        subprocess.run(["go", "mod", "edit", "-dropreplace", f"github.com/fluxcd/{name}/api",
                        *(f"-require={pin}" for pin in FLUX_PINS.get(name, []))],
                       cwd=source, check=True, env=env)
        subprocess.run(["nice", "-n", "19", "go", "build", "-trimpath", "-o", str(target), "."],
                       cwd=source, check=True, env=env)
    return str(target), source


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
    """A restore as after a disaster: the revision never rendered on this machine before, so
    every round renders it (a cache of its own, beside the real one's binaries)."""
    def measure(kubeconfig: str) -> dict:
        with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
            (Path(cache) / "bin").symlink_to(paths.cache_root() / "bin")
            run = run_timed([GITOPS_RESTORE, "restore", "--repo", str(repo), "--kubeconfig",
                             kubeconfig, "--workers", str(workers), "--output", "json"],
                            env={"GITOPS_RESTORE_CACHE": cache})
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


def flux_controllers(repo: Path, size: int) -> Measure:
    """source-controller and kustomize-controller as local processes: the Flux CRDs, a
    GitRepository on the synthetic repo served over HTTP and Ready, then the time from a
    Kustomization (prune, no wait, no health checks) created to Ready at that revision."""
    def measure(kubeconfig: str) -> dict:
        built = {name: go_build_release(name) for name in FLUX_CONTROLLERS}  # once, then cached
        kubectl = [paths.kubectl(), "--kubeconfig", kubeconfig]
        with tempfile.TemporaryDirectory(prefix="flux-") as tmp:
            work = Path(tmp)
            subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(work / "repo.git")],
                           check=True)
            revision = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                                      capture_output=True, text=True, check=True).stdout.strip()
            crds = [a for _, src in built.values()
                    for a in ("-f", str(src / "config" / "crd" / "bases"))]
            subprocess.run([*kubectl, "apply", "--server-side", *crds], check=True,
                           capture_output=True)
            subprocess.run([*kubectl, "wait", "--for", "condition=established", "--timeout",
                            "60s", "customresourcedefinitions", "--all"], check=True,
                           capture_output=True)
            port = _free_port()
            (work / "storage").mkdir()
            args = {"source-controller": [f"--storage-path={work / 'storage'}",
                                          f"--storage-addr=127.0.0.1:{port}",
                                          f"--storage-adv-addr=127.0.0.1:{port}"],
                    "kustomize-controller": ["--no-remote-bases"]}
            processes = []
            with gitserve.GitServer(work) as server:
                try:
                    for name, (binary, _) in built.items():
                        log = (work / f"{name}.log").open("w")
                        processes.append(subprocess.Popen(
                            [binary, "--metrics-addr=0", "--health-addr=0", *args[name],
                             *FLUX_CONTROLLER_FLAGS],
                            stdout=log, stderr=log, env={**os.environ, "KUBECONFIG": kubeconfig}))
                    subprocess.run([*kubectl, "apply", "-f", "-"], check=True, text=True,
                                   capture_output=True,
                                   input=yaml.safe_dump_all(_git_repository(server.url("repo"))))
                    _wait_ready(kubectl, "gitrepository/bench", work)
                    cpu = _cpu_seconds(processes)
                    subprocess.run([*kubectl, "create", "-f", "-"], check=True,
                                   capture_output=True, text=True,
                                   input=yaml.safe_dump(KUSTOMIZATION))
                    started = time.monotonic()
                    # Ready=True is patched a moment before lastAppliedRevision and the
                    # inventory: the reconcile is over when the revision is there.
                    _wait_ready(kubectl, "kustomization/bench", work,
                                f"jsonpath={{.status.lastAppliedRevision}}=main@sha1:{revision}")
                    seconds = time.monotonic() - started
                    cpu = _cpu_seconds(processes) - cpu
                finally:
                    for process in processes:
                        process.send_signal(signal.SIGTERM)
                    usage = [os.wait4(p.pid, 0)[2] for p in processes]
        status = json.loads(subprocess.run(
            [*kubectl, "get", "-n", "flux-system", "kustomization/bench", "-o", "json"],
            capture_output=True, text=True, check=True).stdout)["status"]
        kinds = ",".join(sorted({o["kind"].lower() for o in synthetic.objects(size)}))
        applied = subprocess.run(
            [*kubectl, "get", kinds, "-A", "-o", "name", "-l",
             "kustomize.toolkit.fluxcd.io/name=bench"],
            capture_output=True, text=True, check=True).stdout.split()
        assert len(applied) == size == len(status["inventory"]["entries"]), len(applied)
        return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                "controllers_cpu_seconds_total": round(
                    sum(u.ru_utime + u.ru_stime for u in usage), 2)}
    return measure


def _git_repository(url: str) -> list[dict]:
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}},
            {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
             "metadata": {"name": "bench", "namespace": "flux-system"},
             "spec": {"url": url, "interval": "1h", "ref": {"branch": "main"}}}]


KUSTOMIZATION = {
    "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
    "metadata": {"name": "bench", "namespace": "flux-system"},
    "spec": {"interval": "1h", "path": "./", "prune": True, "wait": False,
             "sourceRef": {"kind": "GitRepository", "name": "bench"}}}


def _wait_ready(kubectl: list[str], what: str, work: Path, condition: str = "condition=Ready"
                ) -> None:
    done = subprocess.run([*kubectl, "wait", "-n", "flux-system", what, "--for", condition,
                           "--timeout", "10m"], capture_output=True, text=True)
    if done.returncode != 0:
        logs = "".join(p.read_text()[-2000:] for p in work.glob("*.log"))
        raise SystemExit(f"{what} not Ready: {done.stderr}\n{logs}")


def _cpu_seconds(processes: list[subprocess.Popen]) -> float:
    ticks = 0
    for process in processes:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
