"""Restore throughput, side by side in one run: gitops-restore vs kubectl vs the raw limit.

For each size N it restores N synthetic objects, each time into a fresh local cluster:
  1. `gitops-restore restore` (validate + dry-run everything, staged apply, inventory),
  2. `kubectl apply --server-side -R -f` of the same rendered files,
  3. the raw probe (bench/rawprobe, Go): the same objects POSTed concurrently, as fast as the
     API server takes them: the baseline of the ratio;
  4. the raw probe sending server-side applies instead, and
  5. the raw probe dry-running every create,
so that (4) + (5) is what a validate-first server-side apply cannot go below on this server.
Each is run once per round, rounds interleaved, medians compared. Then, on the gitops-restore
cluster of the largest size, a revision changing 10 objects is restored and rolled back.
Reports objects/s, ratios and peak memory; writes JSON to bench/results/.
Run: `make bench` or `python -m bench.restore_throughput --sizes 1000 10000 --rounds 3`.
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
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench import synthetic
from sync_agent import paths

ROOT = Path(__file__).resolve().parent
GITOPS_RESTORE = str(Path(sys.executable).parent / "gitops-restore")
SETTLE_SECONDS = 5


def run_timed(command: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB (of that process alone) and stdout of a child process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=out, stderr=err,
                                   env={**os.environ, **(env or {})}, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command[:3])} failed ({process.returncode}):\n"
                             f"{err.read()[-3000:]}")
        return seconds, usage.ru_maxrss // 1024, out.read()


def provision(name: str) -> str:
    out = subprocess.run([GITOPS_RESTORE, "provision", "--name", name, "--nodes", "3",
                          "--output", "json"], check=True, capture_output=True, text=True)
    # A new control plane is busy for a few seconds after it answers (controllers syncing,
    # per-namespace defaults); every way measured starts on a settled one.
    time.sleep(SETTLE_SECONDS)
    return json.loads(out.stdout)["kubeconfig"]


def destroy(name: str) -> None:
    subprocess.run([GITOPS_RESTORE, "destroy", "--name", name], check=True, capture_output=True)


def build_probe() -> str:
    target = paths.cache_root() / "bench" / "rawprobe"
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["go", "build", "-o", str(target), "."], cwd=ROOT / "rawprobe", check=True,
                   env={**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"})
    return str(target)


def kubeconfig_credentials(kubeconfig: str) -> dict[str, str]:
    """Server URL and file paths of the CA, client cert and key, for the Go probe."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    creds = {"server": cluster["server"]}
    for key, field in (("ca", "certificate-authority"), ("cert", "client-certificate"),
                       ("key", "client-key")):
        creds[key] = str(Path(kubeconfig).parent / (cluster | user)[field]) \
            if not Path((cluster | user)[field]).is_absolute() else (cluster | user)[field]
    return creds


def bench_size(size: int, workers: int, work: Path, probe: str, rollback: bool,
               rounds: int) -> dict:
    """`rounds` interleaved rounds of every way to restore `size` objects; medians compared.

    One run of each varies by ±20% on this machine from one minute to the next, so each way is
    timed once per round, in turn, and the medians are compared.
    """
    items = synthetic.objects(size)
    repo = work / f"repo-{size}"
    synthetic.write_tree(items, repo)
    synthetic.git_commit(repo, f"{size} objects")
    probe_input = work / f"probe-{size}.jsonl"
    synthetic.probe_lines(items, probe_input)
    namespaces_only = work / f"probe-{size}-namespaces.jsonl"
    synthetic.probe_lines([o for o in items if o["kind"] == "Namespace"], namespaces_only)
    raw = Probe(probe, probe_input, namespaces_only, workers, size)
    ways = {  # each takes the kubeconfig of a fresh cluster
        "gitops_restore": ours(repo, size, workers),
        "kubectl": kubectl(repo),
        "raw_probe": raw.run("create"),
        "raw_probe_apply": raw.run("apply"),
        "raw_probe_dry_run": raw.run("dry-run"),
    }
    runs: dict[str, list[dict]] = {way: [] for way in ways}
    result: dict = {"objects": size, "rounds": rounds}
    for round_number in range(rounds):
        for way, measure in ways.items():
            kubeconfig = provision(f"bench-{round_number}")
            try:
                runs[way].append(measure(kubeconfig))
                if way == "gitops_restore" and rollback and round_number == 0:
                    result["rollback_10"] = rollback_scenario(repo, items, kubeconfig, workers)
            finally:
                destroy(f"bench-{round_number}")
    for way, measured in runs.items():
        seconds = [m["seconds"] for m in measured]
        result[way] = {"seconds": statistics.median(seconds), "runs": measured,
                       "objects_per_second": round(size / statistics.median(seconds), 1)}
    result["gitops_restore"]["peak_rss_mb"] = max(m["peak_rss_mb"]
                                                  for m in runs["gitops_restore"])
    ours_rate = result["gitops_restore"]["objects_per_second"]
    result["ratio_vs_raw"] = round(ours_rate / result["raw_probe"]["objects_per_second"], 3)
    result["ratio_vs_kubectl"] = round(ours_rate / result["kubectl"]["objects_per_second"], 2)
    # What validate-first server-side apply cannot go below: the server's own time to dry-run
    # every object plus its own time to apply every object.
    floor = result["raw_probe_dry_run"]["seconds"] + result["raw_probe_apply"]["seconds"]
    result["validate_first_floor_seconds"] = round(floor, 2)
    result["ratio_vs_floor"] = round(floor / result["gitops_restore"]["seconds"], 3)
    return result


def ours(repo: Path, size: int, workers: int):
    def measure(kubeconfig: str) -> dict:
        seconds, peak, out = run_timed([GITOPS_RESTORE, "restore", "--repo", str(repo),
                                        "--kubeconfig", kubeconfig, "--workers", str(workers),
                                        "--output", "json"])
        report = json.loads(out)
        assert report["counts"]["create"] == size, report["counts"]
        return {"seconds": round(seconds, 2), "peak_rss_mb": peak,
                "phases": {p["phase"]: p["seconds"] for p in report["phases"]}}
    return measure


def kubectl(repo: Path):
    def measure(kubeconfig: str) -> dict:
        seconds, _, _ = run_timed([paths.kubectl(), "--kubeconfig", kubeconfig, "apply",
                                   "--server-side", "--field-manager", "bench", "-R", "-f",
                                   str(repo)])
        return {"seconds": round(seconds, 2)}
    return measure


@dataclass
class Probe:
    """The Go probe: creates (POST), server-side applies (PATCH), or dry-run creates of the
    same objects, as fast as the API server takes them."""

    binary: str
    objects: Path
    namespaces: Path  # created for real before a dry-run, as a restore's validate finds them
    workers: int
    size: int

    def run(self, mode: str):
        def measure(kubeconfig: str) -> dict:
            creds = kubeconfig_credentials(kubeconfig)
            command = [self.binary, "-server", creds["server"], "-ca", creds["ca"],
                       "-cert", creds["cert"], "-key", creds["key"],
                       "-workers", str(self.workers)]
            if mode == "dry-run":
                run_timed([*command, "-objects", str(self.namespaces)])
            flags = {"create": [], "apply": ["-apply"], "dry-run": ["-dry-run"]}[mode]
            _, _, out = run_timed([*command, "-objects", str(self.objects), *flags])
            raw = json.loads(out)
            assert raw["created"] == self.size and raw["failed"] == 0, raw
            return {"seconds": round(raw["seconds"], 2)}
        return measure


def rollback_scenario(repo: Path, items: list[dict], kubeconfig: str, workers: int) -> dict:
    """Commit a revision that changes 10 ConfigMaps, restore it, then roll back to the first."""
    changed = 0
    for o in items:
        if o["kind"] == "ConfigMap" and changed < 10:
            o["data"]["index"] += "-changed"
            changed += 1
    tree = repo / "tree-tmp"
    synthetic.write_tree(items, tree)
    for path in tree.rglob("*.yaml"):
        target = repo / path.relative_to(tree)
        target.write_text(path.read_text())
    subprocess.run(["rm", "-rf", str(tree)], check=True)
    synthetic.git_commit(repo, "10 ConfigMaps changed")
    common = ["--repo", str(repo), "--kubeconfig", kubeconfig, "--workers", str(workers),
              "--output", "json"]
    forward, _, out = run_timed([GITOPS_RESTORE, "restore", *common])
    forward_counts = json.loads(out)["counts"]
    back, _, out = run_timed([GITOPS_RESTORE, "rollback", "--to", "HEAD~1", *common])
    back_counts = json.loads(out)["counts"]
    return {"forward_seconds": forward, "forward_counts": forward_counts,
            "rollback_seconds": back, "rollback_counts": back_counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitops-restore-bench-") as tmp:
        os.environ["GITOPS_RESTORE_STATE"] = str(Path(tmp) / "state")
        probe = build_probe()
        results = [bench_size(size, args.workers, Path(tmp), probe,
                              rollback=size == max(args.sizes), rounds=args.rounds)
                   for size in args.sizes]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = ROOT / "results" / f"restore-throughput-{stamp}.json"
    out.write_text(json.dumps({"workers": args.workers, "results": results}, indent=2))
    for r in results:
        rate = {way: r[way]["objects_per_second"] for way in
                ("gitops_restore", "kubectl", "raw_probe", "raw_probe_apply", "raw_probe_dry_run")}
        print(f"N={r['objects']} (median of {r['rounds']}): gitops-restore "
              f"{rate['gitops_restore']}/s (peak {r['gitops_restore']['peak_rss_mb']} MB), "
              f"kubectl {rate['kubectl']}/s, raw create {rate['raw_probe']}/s, raw apply "
              f"{rate['raw_probe_apply']}/s, raw dry-run {rate['raw_probe_dry_run']}/s; "
              f"vs raw {r['ratio_vs_raw']}x, vs kubectl {r['ratio_vs_kubectl']}x, vs the "
              f"validate-first floor ({r['validate_first_floor_seconds']}s) {r['ratio_vs_floor']}x")
        if "rollback_10" in r:
            rb = r["rollback_10"]
            print(f"  10-object change: restore {rb['forward_seconds']:.2f}s, rollback "
                  f"{rb['rollback_seconds']:.2f}s")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
