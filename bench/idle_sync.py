"""One sync of a revision the cluster already matches, in-process, as the agent runs it every
interval (no interpreter start, no imports): prints the engine's CPU and wall seconds as JSON.
Run by bench/steady_state.py: `python -m bench.idle_sync --repo DIR --kubeconfig FILE`."""

from __future__ import annotations

import argparse
import json
import time

from bootstrap.sync_names import sync_name
from sync_agent import engine
from sync_agent.kube import Kube


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args()
    options = engine.SyncOptions(sync_name=sync_name(None, args.repo, ""), workers=args.workers)
    with Kube.from_kubeconfig(args.kubeconfig, None) as kube:
        cpu, wall = time.process_time(), time.monotonic()
        report = engine.restore(kube, engine.SourceSpec(repo=args.repo), options)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    print(json.dumps({"engine_cpu_seconds": round(cpu, 3), "engine_seconds": round(wall, 3),
                      "counts": report.changes.count()}))


if __name__ == "__main__":
    main()
