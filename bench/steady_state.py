"""The steady state: what one idle sync of an unchanged revision costs (the agent pays it every
interval). Run on a cluster a tool has just restored: the same command twice, the second one
measured (its CPU time from the kernel, its requests as the API server counted them), beside an
idle window of the same length, so what the control plane does on its own can be told apart."""

from __future__ import annotations

import json
import time

from bench import apiserver_metrics
from bench.ways import run_timed

SETTLE_SECONDS = 10


def measure(command: list[str], kubeconfig: str) -> dict:
    time.sleep(SETTLE_SECONDS)  # controllers finish with what the restore created
    # The agent's first interval after a restore may still render the revision (and record
    # what it confirmed); every later one is what an idle cluster costs: measure the second.
    first = run_timed(command)
    before = apiserver_metrics.sample(kubeconfig)
    run = run_timed(command)
    after = apiserver_metrics.sample(kubeconfig)
    time.sleep(run.seconds)
    idle = apiserver_metrics.sample(kubeconfig)
    return {"first_seconds": round(first.seconds, 2),
            "seconds": round(run.seconds, 2), "cpu_seconds": round(run.cpu_seconds, 2),
            **{k: v for k, v in json.loads(run.stdout).items() if k.startswith("engine_")},
            "requests": apiserver_metrics.summary(before, after),
            "idle_window": apiserver_metrics.summary(after, idle)}
