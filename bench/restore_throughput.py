"""Restore throughput against the peers, side by side in one run, and how it grows with N.

For each size N (default 1,000, 10,000 and 50,000 objects of the kinds a fleet repository
holds: bench/synthetic.py) every way below restores the same objects, each time into a fresh
local cluster that has settled, once per round, rounds interleaved, medians compared (one run
of the same thing varies by ±20% on this machine):
  gitops_restore     `gitops-restore restore` (validate + dry-run everything, staged apply,
                     inventory);
  flux_ssa           Flux's own apply engine, fluxcd/pkg/ssa ApplyAllStaged, as
                     kustomize-controller drives it (bench/fluxapply), no client rate limit;
  flux_controllers   Flux's source-controller and kustomize-controller as local processes:
                     time from a Kustomization created to Ready (bench/ways.py);
  kubectl            `kubectl apply --server-side -R`;
  client_go_create   client-go's dynamic client POSTing every object, 32 at a time;
  raw_probe          bench/rawprobe POSTing every object, 32 at a time, metadata-only
                     responses: the API server's own create limit, the ratios' baseline;
  raw_probe_apply / raw_probe_dry_run   the same probe sending server-side applies / dry-run
                     creates: together, what a validate-first apply cannot go below.
Then, on the first round's clusters of the steady-state size, one idle re-sync of the unchanged
revision by gitops-restore and by Flux's engine (CPU seconds, requests as the API server counted
them: bench/steady_state.py); and on gitops-restore's first cluster of every size, a revision
changing 10 objects is restored and rolled back. Sizes above 10,000 run --large-rounds rounds
(default 1: one round of every way at 50,000 takes over 20 minutes).
Writes JSON and a Markdown table to bench/results/.
Run: `make bench` = `python -m bench.restore_throughput` (defaults below).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import control_plane, report, steady_state, synthetic, ways
from bench.ways import GITOPS_RESTORE, Probe, run_timed

ROOT = Path(__file__).resolve().parent
SETTLE_SECONDS = 5
FLUX_CONCURRENCY = 4  # kustomize-controller's --concurrent-ssa default
LARGE = 10_000  # above this, one round of every way takes over 20 minutes on 2 cores
# The slowest peers are measured up to this size: at 50,000, kubectl would take over 5 minutes
# and the Flux controllers, at their shipped client rate limit, over 15, for one run each.
SLOW_WAYS_UP_TO = {"kubectl": LARGE, "flux_controllers": LARGE}


@contextmanager
def private_state() -> Iterator[Path]:
    """A scratch directory whose state root keeps the benchmark's clusters apart from yours."""
    with tempfile.TemporaryDirectory(prefix="gitops-restore-bench-") as tmp:
        os.environ["GITOPS_RESTORE_STATE"] = str(Path(tmp) / "state")
        yield Path(tmp)


def provision(name: str) -> str:
    for attempt in (1, 2):
        out = subprocess.run([GITOPS_RESTORE, "provision", "--name", name, "--nodes", "3",
                              "--output", "json"], capture_output=True, text=True)
        if out.returncode == 0:
            break
        # Seen once: another cluster starting at the same moment took the port kwokctl chose.
        print(f"provision {name} failed (attempt {attempt}):\n{out.stderr[-2000:]}",
              file=sys.stderr)
        subprocess.run([GITOPS_RESTORE, "destroy", "--cluster", name], capture_output=True)
    else:
        raise SystemExit(f"cannot provision {name}")
    # A new control plane is busy for a few seconds after it answers (controllers syncing,
    # per-namespace defaults); every way measured starts on a settled one.
    time.sleep(SETTLE_SECONDS)
    return json.loads(out.stdout)["kubeconfig"]


def destroy(name: str) -> None:
    subprocess.run([GITOPS_RESTORE, "destroy", "--cluster", name], check=True, capture_output=True)


def bench_size(size: int, args: argparse.Namespace, work: Path, binaries: dict[str, str]
               ) -> dict:
    items = synthetic.objects(size)
    repo = work / f"repo-{size}"
    synthetic.write_tree(items, repo)
    synthetic.git_commit(repo, f"{size} objects")
    probe = _probe(binaries["rawprobe"], items, work / f"probe-{size}", args.workers)
    flux = binaries["fluxapply"]
    measures = {
        "gitops_restore": ways.ours(repo, size, args.workers),
        "flux_ssa": ways.flux(flux, repo, size, "staged", FLUX_CONCURRENCY),
        "flux_controllers": ways.flux_controllers(repo, size),
        "kubectl": ways.kubectl(repo),
        "client_go_create": ways.flux(flux, repo, size, "create", args.workers),
        "raw_probe": probe.run("create"),
        "raw_probe_apply": probe.run("apply"),
        "raw_probe_dry_run": probe.run("dry-run"),
    }
    measures = {way: m for way, m in measures.items()
                if way in args.ways and size <= SLOW_WAYS_UP_TO.get(way, size)}
    runs: dict[str, list[dict]] = {way: [] for way in measures}
    rounds = args.rounds if size <= LARGE else args.large_rounds
    result: dict = {"objects": size, "rounds": rounds}
    for round_number in range(rounds):
        for way, measure in measures.items():
            kubeconfig = provision(f"bench-{round_number}")
            try:
                before = control_plane.cpu_seconds(kubeconfig)
                measured = measure(kubeconfig)
                measured["control_plane_cpu"] = control_plane.spent(
                    before, control_plane.cpu_seconds(kubeconfig))
                runs[way].append(measured)
                if round_number == 0:
                    _after_first_run(way, size, args, repo, items, kubeconfig, flux, result)
            finally:
                destroy(f"bench-{round_number}")
    for way, measured in runs.items():
        median = statistics.median(m["seconds"] for m in measured)
        apiserver = statistics.median(m["control_plane_cpu"].get("kube-apiserver", 0)
                                      for m in measured)
        result[way] = {"seconds": median, "objects_per_second": round(size / median, 1),
                       "apiserver_cpu_seconds": round(apiserver, 2), "runs": measured}
    if "gitops_restore" in runs:
        result["gitops_restore"]["peak_rss_mb"] = max(m["peak_rss_mb"]
                                                      for m in runs["gitops_restore"])
    return report.add_ratios(result)


def _after_first_run(way: str, size: int, args: argparse.Namespace, repo: Path,
                     items: list[dict], kubeconfig: str, flux: str, result: dict) -> None:
    if size == args.steady_size and way == "gitops_restore":
        result["steady_gitops_restore"] = steady_state.measure(
            [sys.executable, "-m", "bench.idle_sync", "--repo", str(repo), "--kubeconfig",
             kubeconfig, "--workers", str(args.workers)], kubeconfig)
    if size == args.steady_size and way == "flux_ssa":
        result["steady_flux_ssa"] = steady_state.measure(
            [flux, "-kubeconfig", kubeconfig, "-dir", str(repo), "-concurrency",
             str(FLUX_CONCURRENCY)], kubeconfig)
    if way == "gitops_restore":
        result["rollback_10"] = rollback_scenario(repo, items, kubeconfig, args.workers)


def _probe(binary: str, items: list[dict], stem: Path, workers: int) -> Probe:
    files = {part: stem.with_name(f"{stem.name}-{part}.jsonl")
             for part in ("all", "cluster", "namespaced")}
    synthetic.probe_lines(items, files["all"])
    synthetic.probe_lines([o for o in items if "namespace" not in o["metadata"]],
                          files["cluster"])
    synthetic.probe_lines([o for o in items if "namespace" in o["metadata"]],
                          files["namespaced"])
    return Probe(binary, files["all"], files["cluster"], files["namespaced"], workers)


def rollback_scenario(repo: Path, items: list[dict], kubeconfig: str, workers: int) -> dict:
    """Commit a revision that changes 10 ConfigMaps, restore it, then roll back to the first."""
    changed = 0
    for o in items:
        if o["kind"] == "ConfigMap" and changed < 10:
            o["data"]["index"] += "-changed"
            changed += 1
    tree = repo.with_name(repo.name + "-changed")
    synthetic.write_tree(items, tree)
    for path in tree.rglob("*.yaml"):
        (repo / path.relative_to(tree)).write_text(path.read_text())
    synthetic.git_commit(repo, "10 ConfigMaps changed")
    common = ["--repo", str(repo), "--kubeconfig", kubeconfig, "--workers", str(workers),
              "--output", "json"]
    forward = run_timed([GITOPS_RESTORE, "restore", *common])
    back = run_timed([GITOPS_RESTORE, "rollback", "--to", "HEAD~1", *common])
    done = {"forward": json.loads(forward.stdout), "rollback": json.loads(back.stdout)}
    return {"forward_seconds": round(forward.seconds, 2),
            "forward_counts": done["forward"]["counts"],
            "forward_phases": {p["phase"]: p["seconds"] for p in done["forward"]["phases"]},
            "rollback_seconds": round(back.seconds, 2),
            "rollback_counts": done["rollback"]["counts"],
            "rollback_phases": {p["phase"]: p["seconds"] for p in done["rollback"]["phases"]},
            "rollback_peak_rss_mb": back.peak_rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--large-rounds", type=int, default=1,
                        help=f"rounds at sizes above {LARGE:,}")
    parser.add_argument("--steady-size", type=int, default=10000,
                        help="N at which the idle re-sync is measured (0: not at all)")
    parser.add_argument("--ways", nargs="+", default=list(report.WAYS), choices=report.WAYS)
    args = parser.parse_args()
    binaries = {name: ways.go_build(name, name) for name in ("rawprobe", "fluxapply")}
    with private_state() as work:
        results = [bench_size(size, args, work, binaries) for size in args.sizes]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = ROOT / "results" / f"restore-throughput-{stamp}.json"
    out.write_text(json.dumps({"workers": args.workers, "machine": report.machine(),
                               "results": results}, indent=2))
    table = report.markdown(results)
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"written to {out} and {out.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
