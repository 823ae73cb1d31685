"""An API server that does not answer: a failure (exit 1) after a bounded time, not bad input.

Against a real socket nobody listens on; the real API server stopping mid-restore is
tests/test_api_server_outage.py.
"""

from __future__ import annotations

import socket

import pytest
from kubernetes import client

from sync_agent import errors
from sync_agent.errors import SyncError
from sync_agent.kube import ApiError, Kube, Unreachable


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends


def test_a_server_nobody_answers_on_is_unreachable_a_failure_naming_it():
    configuration = client.Configuration()
    configuration.host = f"https://127.0.0.1:{closed_port()}"
    kube = Kube(configuration, unreachable_limit=1.0)
    for _ in range(2):  # the second fails at once, with the same sentence
        with pytest.raises(Unreachable) as caught:
            kube.request("GET", "/api")
        error = caught.value
        assert isinstance(error, ApiError) and isinstance(error, SyncError)
        assert errors.kind(error) is errors.Transient and error.about_server
        assert str(error).startswith(f"API server {configuration.host}: no answer for ")
    kube.close()
