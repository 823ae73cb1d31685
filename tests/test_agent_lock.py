"""The sync agent and the commands share the sync's one lock, the agent's Lease.

The real agent process (`python -m sync_agent`, as tests/test_agent.py runs it, reading over
real SSH) and real `gitops-restore restore` processes against the real local cluster. To
catch the agent in the middle of a sync it is frozen with SIGSTOP while the Lease says it is
writing: a real process that stops renewing, as a paused or partitioned one would.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

from kubernetes import client

from sync_agent import conventions, inventory, lock
from tests import cli, test_agent
from tests import manifests as m
from tests.test_agent import NS, AgentProcess, Sync, configmap, head

# The agent's fixtures: an SSH Git server, a repository on it, a Sync with its deploy key.
git_server, fleet, sync = test_agent.git_server, test_agent.fleet, test_agent.sync


def restore(sync: Sync, *args: str, code: int = 0, timeout: float = 600):
    """`restore` of the agent's own sync, over SSH with the deploy key, as an operator would."""
    return cli.run("restore", "--repo", sync.fleet.url, "--path", "app", "--sync", sync.name,
                   "-n", sync.fleet.namespace, "--ssh-key", str(sync.deploy_key),
                   "--known-hosts", str(sync.known_hosts), "--kubeconfig", sync.kubeconfig,
                   *args, check_code=code, timeout=timeout)


def lease(sync: Sync) -> dict:
    return sync.kube.get(conventions.LEASE_RT, NS, lock.lease_name(sync.name)) or {}


def holder(sync: Sync) -> lock.Holder:
    return lock.Holder.of(lease(sync))


def transitions(sync: Sync) -> int:
    return (lease(sync).get("spec") or {}).get("leaseTransitions") or 0


def many(count: int) -> dict[str, str]:
    return {f"app/many-{i}.yaml": m.configmap(f"many-{i}", n=str(i)) for i in range(count)}


def configmap_count(api_client, namespace: str) -> int:
    return len(client.CoreV1Api(api_client).list_namespaced_config_map(namespace).items)


def freeze_while_writing(sync: Sync, agent: AgentProcess, applying: Callable[[], bool]) -> None:
    """SIGSTOP the agent at a moment its Lease says it is syncing (busy) and it has begun to
    apply (past its fetch, which holds the clone cache's file lock this machine shares)."""
    for _ in range(10):
        sync.wait(lambda: holder(sync).identity == agent.identity and holder(sync).busy
                  and applying(), "the agent to be applying")
        os.kill(agent.process.pid, signal.SIGSTOP)
        time.sleep(0.5)  # a Lease write already in flight lands now
        if holder(sync).busy and holder(sync).identity == agent.identity:
            return
        os.kill(agent.process.pid, signal.SIGCONT)  # the sync ended just before: next one
    raise AssertionError("never caught the agent syncing\n" + sync.explain())


def test_a_restore_takes_the_lock_from_an_idle_agent_which_then_leads_again(sync: Sync,
                                                                            namespace):
    started = sync.start_agent("idle-leader")
    v1 = head(sync.fleet)
    sync.wait(lambda: sync.applied(v1), "the first sync")
    before = transitions(sync)

    report = json.loads(restore(sync, "--output", "json").stdout)

    assert report["sha"] == v1 and "lock" in [p["phase"] for p in report["phases"]]
    # The command took the Lease from the agent (one transition) and the agent took it back
    # once it was released (another): nobody waited for a lease to expire.
    sync.wait(lambda: holder(sync).identity == "idle-leader" and transitions(sync) >= before + 2,
              "the agent to lead again")
    applied = started.count("sync applied")
    sync.wait(lambda: started.count("sync applied") > applied, "the agent to sync again")
    assert started.count("sync abandoned") == 0


def test_a_restore_waits_for_a_syncing_agent_which_abandons_its_sync_once_overtaken(
        api_client, sync: Sync, namespace):
    v2 = sync.fleet.push(many(600), "600 more")
    agent = sync.start_agent("frozen")
    freeze_while_writing(sync, agent, lambda: configmap_count(api_client, namespace) > 5)
    try:
        result = restore(sync, "--lock-timeout", "2m", "--output", "json", timeout=300)
    finally:
        os.kill(agent.process.pid, signal.SIGCONT)

    # It waited for the busy agent (never took the lock from it) until the frozen agent's
    # claim ran out, then restored everything.
    waited = " ".join(result.stderr.split())
    assert "for the lock held by agent frozen (frozen), writing, since" in waited
    assert json.loads(result.stdout)["sha"] == v2
    assert configmap(api_client, namespace, "many-599") == {"n": "599"}
    # The agent, resumed, finds it no longer leads (or that the inventory moved on) and stops
    # that sync at its next check instead of finishing it on a stale plan.
    sync.wait(lambda: 'msg="sync abandoned"' in agent.text() and "no longer leads"
              in agent.text() or "changed by another writer" in agent.text(),
              "the resumed agent to give up its stale sync")
    sync.wait(lambda: sync.applied(v2), "the agent to take the lock back and converge")
    recorded = inventory.load(sync.kube, sync.name)
    assert recorded.complete and recorded.revision == v2 and len(recorded.entries) == 603


def test_sigterm_mid_sync_finishes_it_while_still_renewing_then_releases(api_client, sync: Sync,
                                                                         namespace):
    # A renew deadline shorter than the sync: had the agent stopped renewing at the signal,
    # it would have lost the lock before finishing and abandoned a half-applied sync.
    v2 = sync.fleet.push(many(800), "800 more")
    agent = sync.start_agent("finishing", "--lease-duration", "3s", "--renew-deadline", "2s",
                             "--retry-period", "0.5s")
    sync.wait(lambda: configmap_count(api_client, namespace) > 5, "the sync to start applying")
    agent.process.send_signal(signal.SIGTERM)
    assert agent.process.wait(120) == 0, agent.text()

    text = agent.text()
    assert agent.count("sync applied") == 1 and agent.count("sync abandoned") == 0, text
    assert 'msg="lost leadership"' not in text
    assert text.index('msg="sync applied"') < text.index('msg="released the lease"')
    assert holder(sync).identity == ""
    assert configmap(api_client, namespace, "many-799") == {"n": "799"}
    recorded = inventory.load(sync.kube, sync.name)
    assert recorded.complete and recorded.revision == v2
