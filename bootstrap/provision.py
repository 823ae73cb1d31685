"""Provision and destroy clusters by running a provider's playbook through ansible-runner.

One playbook per provider in `playbooks/` (`local`, `kind`, `existing`), each taking
`cluster_state: present|absent`. The playbook writes a small JSON result (kubeconfig, context,
whether the cluster was already running); this module turns it into a `ClusterRecord`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bootstrap import clusters
from bootstrap.errors import OperationFailed, UserError
from bootstrap.resources import resource
from sync_agent import paths
from sync_agent.agent import localproc

PLAYBOOKS = resource("playbooks")

# Receives one line per task started, for progress display.
ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class ProvisionResult:
    record: clusters.ClusterRecord
    already_running: bool


def provision(provider: str, name: str, nodes: int = 1, kubeconfig: str | None = None,
              context: str | None = None, progress: ProgressCallback | None = None
              ) -> ProvisionResult:
    check_request(provider, name, nodes, kubeconfig)
    directory = clusters.cluster_dir(name)
    result_file = directory / "result.json"
    extravars = {
        "cluster_name": name,
        "cluster_state": "present",
        "nodes": nodes,
        "cluster_dir": str(directory),
        "result_file": str(result_file),
        **_provider_vars(provider),
    }
    if provider == "existing":
        path = Path(kubeconfig).expanduser().resolve()
        extravars.update(kubeconfig=str(path), kube_context=context or "",
                         kubectl=paths.kubectl())
    known = is_recorded(name)
    try:
        run_playbook(provider, extravars, progress)
    except OperationFailed:
        if not known:  # leave nothing half-made behind, as `kind create cluster` does
            run_playbook(provider, {**extravars, "cluster_state": "absent"}, None,
                         raise_on_failure=False)
        raise
    result = json.loads(result_file.read_text())
    record = clusters.ClusterRecord(name=name, provider=provider,
                                    kubeconfig=result["kubeconfig"], context=result["context"])
    clusters.save(record)
    return ProvisionResult(record=record, already_running=bool(result["already_running"]))


def check_request(provider: str, name: str, nodes: int, kubeconfig: str | None) -> None:
    """Refuse what `provision` would refuse, before anything is made (bootstrap calls it
    first too)."""
    if provider not in clusters.PROVIDERS:
        raise UserError(f"provider {provider!r}: choose one of {', '.join(clusters.PROVIDERS)}")
    clusters.check_name(name)
    if nodes < 1:
        raise UserError(f"--nodes {nodes}: a cluster needs at least one node")
    if provider == "existing" and not kubeconfig:
        raise UserError("--provider existing needs --kubeconfig PATH (and optionally --context)")
    if provider == "existing" and not Path(kubeconfig).expanduser().is_file():
        raise UserError(f"{kubeconfig}: no such kubeconfig file; pass the kubeconfig of "
                        "the cluster with --kubeconfig PATH")


def is_recorded(name: str) -> bool:
    """Whether `provision` made this cluster already (it may be stopped)."""
    return (clusters.cluster_dir(name) / "cluster.json").exists()


def destroy(name: str, progress: ProgressCallback | None = None) -> clusters.ClusterRecord:
    record = clusters.load(name)
    # Sync agents run beside a local cluster as processes (see bootstrap.agent): stop them
    # before their API server goes, so they exit cleanly instead of retrying into the void.
    for sync in localproc.stop_all(clusters.cluster_dir(name)):
        if progress:
            progress(f"stopped the sync agent of {sync}")
    extravars = {
        "cluster_name": name,
        "cluster_state": "absent",
        "nodes": 0,
        "cluster_dir": str(clusters.cluster_dir(name)),
        "result_file": "",
        "kubeconfig": record.kubeconfig,
        "kube_context": record.context,
        "kubectl": paths.kubectl(),
        **_provider_vars(record.provider),
    }
    run_playbook(record.provider, extravars, progress)
    return record


def _provider_vars(provider: str) -> dict:
    if provider != "local":
        return {}
    return {"bin_dir": str(paths.k8s_bin_dir()),
            "kwok_workdir": str(paths.state_root() / "kwok")}


def run_playbook(provider: str, extravars: dict, progress: ProgressCallback | None,
                 raise_on_failure: bool = True) -> None:
    """Run `playbooks/<provider>.yml`; a failed task raises OperationFailed with its message."""
    failures: list[str] = []
    shown: set[str] = set()

    def on_event(event: dict) -> bool:
        data = event.get("event_data", {})
        if event.get("event") in ("runner_on_ok", "runner_item_on_ok") and progress:
            if data.get("task") not in shown:  # skipped tasks send no ok event
                shown.add(data.get("task"))
                progress(data.get("task", ""))
        elif event.get("event") == "runner_on_failed" and not data.get("ignore_errors"):
            failures.append(_failure_message(data))
        return False  # ansible-runner need not keep the event on disk

    # ansible-playbook lives next to this interpreter in a venv that may not be on PATH.
    bin_path = str(Path(sys.executable).parent)
    env = {"PATH": f"{bin_path}:{os.environ.get('PATH', '')}",
           "ANSIBLE_LOCALHOST_WARNING": "False",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
    import ansible_runner  # here, not at the top: every other command would pay its import

    with tempfile.TemporaryDirectory(prefix="gitops-restore-ansible-") as private:
        runner = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(PLAYBOOKS),
            playbook=f"{provider}.yml",
            inventory="localhost ansible_connection=local",
            extravars=extravars,
            envvars=env,
            quiet=True,
            event_handler=on_event,
        )
        if runner.status != "successful" and raise_on_failure:
            detail = "; ".join(failures) or _tail(runner)
            raise OperationFailed(f"cluster {extravars['cluster_name']}: provider "
                                  f"{provider} failed: {detail}")


def _failure_message(data: dict) -> str:
    result = data.get("res", {})
    parts = [f"task '{data.get('task', '?')}'"]
    for key in ("msg", "stderr"):
        text = str(result.get(key) or "").strip()
        if text and text not in parts:
            parts.append(text[-1500:])
    return ": ".join(parts)


def _tail(runner) -> str:
    try:
        return runner.stdout.read()[-2000:]
    except (OSError, AttributeError):
        return f"ansible-runner ended with status {runner.status}"
