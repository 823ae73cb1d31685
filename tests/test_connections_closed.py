"""A connection to the API server is closed when its `with` block ends, also on an error:
long-running callers (the agent, drill, bootstrap) open several over their life.

Counted from /proc: the TCP connections this process holds to the real API server's port.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

from bootstrap import agent
from sync_agent.kube import Kube, load_configuration
from tests.conftest import SESSION_CLUSTER


def connections_to(port: int) -> int:
    """Established TCP connections of this process to `port`."""
    sockets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed while listing
            continue
        if link.startswith("socket:["):
            sockets.add(link[len("socket:["):-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                established = fields[3] == "01"
                count += remote_port == port and established and fields[9] in sockets
    return count


def busy(kube: Kube) -> None:
    """Several requests at once, so the pool holds several connections."""
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: kube.request("GET", "/api/v1/namespaces"), range(8)))


def test_kube_closes_its_connections_when_the_block_ends(local_cluster):
    port = urlparse(load_configuration(local_cluster.kubeconfig).host).port
    before = connections_to(port)
    with Kube.from_kubeconfig(local_cluster.kubeconfig) as kube:
        busy(kube)
        assert connections_to(port) > before
    assert connections_to(port) == before

    with pytest.raises(RuntimeError), Kube.from_kubeconfig(local_cluster.kubeconfig) as kube:
        busy(kube)
        raise RuntimeError("a failure inside the block")
    assert connections_to(port) == before


def test_an_agent_target_closes_its_connection(local_cluster):
    port = urlparse(load_configuration(local_cluster.kubeconfig).host).port
    before = connections_to(port)
    with agent.target(None, None, SESSION_CLUSTER) as t:
        busy(t.kube)
        assert connections_to(port) > before
    assert connections_to(port) == before
