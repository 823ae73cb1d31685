"""The one place that talks HTTP to the Kubernetes API server.

Configuration (kubeconfig, context, in-cluster ServiceAccount) comes from the `kubernetes`
client, which knows every auth plugin; requests are plain JSON sent through `transport` (curl
handles, pooled and reused across the apply workers), because the generated models and urllib3
cost more than the API server's own work at 10,000 objects.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any
from urllib.parse import urlencode

from kubernetes import client, config

from sync_agent import json_codec
from sync_agent.conventions import FIELD_MANAGER
from sync_agent.errors import Failed, Refused, Transient
from sync_agent.objects import ResourceType
from sync_agent.transport import Response, Transport, TransportError

# Requests in flight at once. Creates are latency-bound (etcd batches concurrent writes): on a
# 2-core machine 32 restored 10,000 objects far faster than 16 or 8.
DEFAULT_WORKERS = 32
# Ask for metadata only when the body is not needed: less for the server to encode and for
# us to parse, at 10,000 objects a visible share of a restore.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_LIST = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                 "application/json")
AGGREGATED_DISCOVERY = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                        "application/json")
_RETRYABLE_STATUS = {429, 500, 502, 503, 504}
# How long the API server may stay unreachable (connection refused, no answer) before every
# request gives up: long enough to ride out a restart, short enough that a run whose server
# went away fails within a bounded time instead of retrying each of its objects in turn.
UNREACHABLE_LIMIT = 30.0
# Once given up, one request at most per this many seconds tries the server again (the others
# fail at once), so a long-running agent finds the server when it is back.
_PROBE_EVERY = 5.0


class ApiError(Failed):
    """The API server refused a request, or could not be reached."""

    def __init__(self, status: int, reason: str, message: str, body: dict | None = None):
        self.status = status
        self.reason = reason
        self.body = body or {}
        super().__init__(message)

    @property
    def causes(self) -> list[dict]:
        return self.body.get("details", {}).get("causes", []) or []

    @property
    def retryable(self) -> bool:
        return self.status in _RETRYABLE_STATUS or self.status == 0

    @property
    def about_server(self) -> bool:
        """The server could not take the request at all (unreachable, unavailable,
        throttled): says nothing about the object sent, so never a reason to call it invalid."""
        return isinstance(self, Unreachable) or self.status in (429, 503)


class Unreachable(ApiError, Transient):
    """No answer from the API server for longer than the limit: worth retrying later, never
    bad input."""

    def __init__(self, host: str, seconds: float, cause: str):
        super().__init__(0, "Unreachable", f"API server {host}: no answer for {seconds:.0f}s "
                         f"({cause})")


def load_configuration(kubeconfig: str | None = None, context: str | None = None
                       ) -> client.Configuration:
    """kubectl's rules: --kubeconfig, else KUBECONFIG, else in-cluster, else ~/.kube/config."""
    configuration = client.Configuration()
    try:
        if kubeconfig or context:
            config.load_kube_config(config_file=kubeconfig, context=context,
                                    client_configuration=configuration, persist_config=False)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration,
                                        persist_config=False)
    except (config.ConfigException, OSError, TypeError, ValueError) as e:
        where = kubeconfig or "the default kubeconfig"
        raise Refused(f"{where}: cannot load a Kubernetes client configuration"
                        f"{' for context ' + context if context else ''}: {e}") from e
    return configuration


class Kube:
    """A connection to one API server: raw JSON requests, retries, server-side apply.

    A context manager: `with Kube.from_kubeconfig(...) as kube:` closes its pooled
    connections on the way out."""

    def __init__(self, configuration: client.Configuration,
                 unreachable_limit: float = UNREACHABLE_LIMIT):
        self.configuration = configuration
        self._transport = Transport(configuration)
        self.host = self._transport.host
        self.unreachable_limit = unreachable_limit
        self._lock = threading.Lock()
        self._down_since: float | None = None  # first failure to connect since the last answer
        self._last_try = 0.0
        self._last_cause = ""

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, context: str | None = None) -> Kube:
        return cls(load_configuration(kubeconfig, context))

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None,
                content_type: str = "application/json", accept: str = "application/json",
                timeout: float = 60, attempts: int = 6) -> dict:
        """Send one request; retry what the server says is temporary; raise ApiError."""
        return self.send(method, path, body, query, content_type, accept, timeout, attempts)[1]

    def send(self, method: str, path: str, body: Any = None, query: dict | None = None,
             content_type: str = "application/json", accept: str = "application/json",
             timeout: float = 60, attempts: int = 6) -> tuple[int, dict]:
        """Like `request`, also returning the HTTP status (201 tells a create from an update)."""
        target = path + (f"?{urlencode(query)}" if query else "")
        headers = [f"Accept: {accept}", f"Content-Type: {content_type}",
                   "User-Agent: gitops-restore"]
        token = self.configuration.get_api_key_with_prefix("authorization")
        if token:
            headers.append(f"Authorization: {token}")
        data = None if body is None else json_codec.dumps(body)
        attempt = 0
        while True:
            self._check_reachable()
            started = time.monotonic()
            try:
                response = self._transport.request(method, target, data, headers, timeout)
            except TransportError as e:
                self._failed(started, str(e))
                attempt += 1
            else:
                self._down_since = None
                if response.status < 400:
                    return response.status, json_codec.loads(response.data) if response.data else {}
                error = _api_error(response)
                attempt += 1
                if not error.retryable or attempt >= attempts:
                    raise error
            time.sleep(min(2.0, 0.1 * 2 ** min(attempt, 5)) * (0.5 + random.random()))

    def _failed(self, started: float, cause: str) -> None:
        """Record a failure to reach the server (unanswered since `started`); give up once
        that has lasted the limit."""
        now = time.monotonic()
        with self._lock:
            if self._down_since is None:
                self._down_since = started
            self._last_cause = cause
            down = now - self._down_since
        if down >= self.unreachable_limit:
            raise Unreachable(self.host, down, cause)

    def _check_reachable(self) -> None:
        """After the limit, fail at once unless it is this request's turn to try again."""
        down_since = self._down_since
        if down_since is None:
            return
        now = time.monotonic()
        if now - down_since < self.unreachable_limit:
            return
        with self._lock:
            if now - self._last_try < _PROBE_EVERY:
                raise Unreachable(self.host, now - down_since, self._last_cause)
            self._last_try = now

    def apply(self, rt: ResourceType, body: dict, dry_run: bool = False,
              metadata_only: bool = False) -> tuple[bool, dict]:
        """Server-side apply with our field manager, taking ownership of conflicting fields.

        Returns (created, object as stored, or as it would be stored under dry-run; only its
        apiVersion, kind and metadata with `metadata_only`).
        """
        meta = body["metadata"]
        # Ignore only skips the server's second, strict parse of the body, which looks for
        # duplicate keys: json_codec cannot write any. Undeclared fields are still refused by
        # the apply itself. At 10,000 objects that parse is a visible share of the server's CPU.
        query = {"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Ignore"}
        if dry_run:
            query["dryRun"] = "All"
        status, stored = self.send("PATCH", rt.path(meta.get("namespace", ""), meta["name"]),
                                   body, query=query, content_type="application/apply-patch+yaml",
                                   accept=METADATA_ONLY if metadata_only else "application/json")
        return status == 201, stored

    def create(self, rt: ResourceType, body: dict) -> dict:
        """Create by POST with our field manager; the stored object's metadata.

        Only for objects a server-side dry-run validated just before: `fieldValidation=Ignore`
        skips the strict re-parse that dry-run made (as `apply` does).
        """
        query = {"fieldManager": FIELD_MANAGER, "fieldValidation": "Ignore"}
        return self.request("POST", rt.path(body["metadata"].get("namespace", "")), body,
                            query=query, accept=METADATA_ONLY)

    def create_dry_run(self, rt: ResourceType, body: dict, namespace: str) -> None:
        # Strict: a create would otherwise drop unknown fields with a warning, while the
        # server-side apply that follows rejects them, after the first write.
        self.request("POST", rt.path(namespace), body,
                     query={"dryRun": "All", "fieldValidation": "Strict"}, accept=METADATA_ONLY)

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict | None:
        try:
            return self.request("GET", rt.path(namespace, name))
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def list(self, rt: ResourceType, namespace: str = "", label_selector: str = "",
             metadata_only: bool = False) -> list[dict]:
        query: dict[str, Any] = {"limit": 1000}
        if label_selector:
            query["labelSelector"] = label_selector
        accept = METADATA_LIST if metadata_only else "application/json"
        items: list[dict] = []
        while True:
            page = self.request("GET", rt.path(namespace), query=query, accept=accept)
            for item in page.get("items") or []:
                # List items come without apiVersion and kind (metadata-only ones with
                # PartialObjectMetadata's); give them the listed type's, as kubectl does.
                item["apiVersion"], item["kind"] = rt.api_version, rt.kind
                items.append(item)
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items
            query["continue"] = token

    def delete(self, rt: ResourceType, namespace: str, name: str,
               propagation: str = "Background", uid: str = "",
               resource_version: str = "") -> bool:
        """Delete; False when it was already gone.

        With `uid` (and `resource_version`) the server deletes only that very object (in that
        state), else answers 409 Conflict: a recreated or changed object is never hit.
        """
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1",
                                   "propagationPolicy": propagation}
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version))
                         if v}
        if preconditions:
            options["preconditions"] = preconditions
        try:
            self.request("DELETE", rt.path(namespace, name), options)
            return True
        except ApiError as e:
            if e.status == 404:
                return False
            raise

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _api_error(response: Response) -> ApiError:
    try:
        body = json_codec.loads(response.data)
    except ValueError:
        body = {}
    message = body.get("message") or response.data.decode(errors="replace")[:500]
    return ApiError(response.status, body.get("reason", ""), message, body)
