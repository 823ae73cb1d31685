"""Why a cluster that already holds many objects creates Services slowly: an experiment.

Services are created in batches by the raw probe (no client of ours involved) into fresh
clusters, and each batch's rate is recorded against how many objects the cluster already holds:
  - `clusterip`: Services that get a cluster IP, as in the restore benchmark;
  - `headless`: the same Services with `clusterIP: None`, which allocate no IP;
  - `clusterip-after-configmaps`: ClusterIP Services into a cluster first filled with as many
    ConfigMaps, so the object count grows but the allocator's range does not fill.
If only `clusterip` slows down as it grows, the cost is the IP allocator's; if all slow down
alike, it is the store's size. Found (README, Performance): kube-apiserver v1.36.3's allocator
counts the addresses in use by listing every IPAddress on each allocation and release, so each
ClusterIP Service costs time in proportion to those already there (a CPU profile of the API
server is in bench/results/).
Run: `python -m bench.service_allocation --batches 10 --batch 2000`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench import restore_throughput
from bench.ways import Probe, go_build

ROOT = Path(__file__).resolve().parent


def _lines(path: Path, kind: str, start: int, count: int, headless: bool = False) -> None:
    with path.open("w") as out:
        for i in range(start, start + count):
            name = f"svc-{i:06d}" if kind == "Service" else f"cm-{i:06d}"
            meta = {"name": name, "namespace": "default"}
            if kind == "Service":
                spec: dict = {"selector": {"app": name}, "ports": [{"port": 80}]}
                if headless:
                    spec["clusterIP"] = "None"
                body = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}
                collection = "/api/v1/namespaces/default/services"
            else:
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                        "data": {"payload": "x" * 200}}
                collection = "/api/v1/namespaces/default/configmaps"
            out.write(json.dumps({"path": collection, "body": body}) + "\n")


def variant(name: str, probe_binary: str, work: Path, batches: int, batch: int) -> list[dict]:
    kubeconfig = restore_throughput.provision("svc-alloc")
    try:
        command = Probe(probe_binary, work, work, work, 32).command(kubeconfig)
        if name == "clusterip-after-configmaps":
            for number in range(batches):
                lines = work / f"cm-{number}.jsonl"
                _lines(lines, "ConfigMap", number * batch, batch)
                Probe.send(command, lines, [])
        rows = []
        for number in range(batches):
            lines = work / f"{name}-{number}.jsonl"
            _lines(lines, "Service", number * batch, batch, headless=name == "headless")
            seconds = Probe.send(command, lines, [])
            rows.append({"services_before": number * batch, "seconds": round(seconds, 2),
                         "per_second": round(batch / seconds, 1)})
            print(f"{name}: {rows[-1]}", flush=True)  # a run cut short still says something
        return rows
    finally:
        restore_throughput.destroy("svc-alloc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    probe = go_build("rawprobe", "rawprobe")
    with restore_throughput.private_state() as work:
        results = {name: variant(name, probe, work, args.batches, args.batch)
                   for name in ("clusterip", "headless", "clusterip-after-configmaps")}
    out = ROOT / "results" / f"service-allocation-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    for name, rows in results.items():
        rates = ", ".join(f"{r['per_second']:.0f}" for r in rows)
        print(f"{name}: Services/s per batch of {args.batch}: {rates}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
