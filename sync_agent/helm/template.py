"""`helm template` for one release, and its output made ready to apply.

helm runs through `process` (the renderer's clean environment, output bounded), with the
cluster's real version and API versions (helm's built-in default would be an old Kubernetes),
the chart's own values plus the release's merged values from a file. Its output then gets
what helm itself would add when installing: the release namespace on namespaced objects
naming none, and Helm's ownership marks (meta.helm.sh/release-name and -namespace
annotations, the managed-by label) so that `helm upgrade --take-ownership` or helm-controller
can later adopt the objects. Hook objects follow `hooks.POLICY`. Outputs are reused from
`rendercache` when nothing that shapes them changed.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_agent.conventions import CHART_ANNOTATION, MANAGED_BY
from sync_agent.helm import hooks, process, rendercache
from sync_agent.helm.context import Capabilities
from sync_agent.render_options import DEFAULTS, RenderOptions
from sync_agent.yaml_loader import YAMLLimitError, YAMLSyntaxError, load_documents

TIMEOUT = 120  # seconds per `helm template`
RELEASE_NAME = "meta.helm.sh/release-name"
RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
_SOURCE = re.compile(r"^# Source: (.+)$", re.MULTILINE)
_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)


class TemplateError(Exception):
    """helm could not render the chart; the message is helm's, trimmed."""


@dataclass
class Rendered:
    objects: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # body, source
    skipped_hooks: list[str] = field(default_factory=list)  # "Pod/ns/x (test)"


def run_template(helm: Path, chart: Path, release: str, namespace: str, values: dict,
                 include_crds: bool, caps: Capabilities, scratch: Path, shown: str,
                 limits: RenderOptions = DEFAULTS) -> Rendered:
    """The release's objects; `shown` ("web 1.1.0") goes into CHART_ANNOTATION. helm's output
    is bounded as kustomize's is (`limits`: --max-file-size, --max-yaml-nodes)."""
    inputs = {"release": release, "namespace": namespace, "values": values,
              "crds": include_crds, "kube": caps.kube_version, "apis": caps.api_versions}
    entry = rendercache.key(chart, inputs)
    output = rendercache.load(entry)
    if output is None or len(output.encode()) > limits.max_file_bytes:
        output = _helm_template(helm, chart, inputs, scratch, limits.max_file_bytes)
        rendercache.store(entry, output)
    return _finish(_documents(output, limits.max_yaml_nodes), (release, namespace, shown), caps)


def _helm_template(helm: Path, chart: Path, inputs: dict, scratch: Path, max_bytes: int) -> str:
    values_file = scratch / "values.json"
    values_file.write_text(json.dumps(inputs["values"]))
    args = ["template", inputs["release"], str(chart), "--namespace", inputs["namespace"],
            "--kube-version", inputs["kube"], "--values", str(values_file)]
    if inputs["apis"]:
        args += ["--api-versions", ",".join(inputs["apis"])]
    if inputs["crds"]:
        args.append("--include-crds")
    try:
        done = process.run(helm, args, scratch, TIMEOUT, max_bytes)
    except subprocess.TimeoutExpired:
        raise TemplateError(f"helm template did not finish in {TIMEOUT}s") from None
    if done.truncated:
        raise TemplateError(f"helm template's output is larger than {max_bytes:,} bytes; "
                            "nothing was read. Raise --max-file-size (spec.maxFileSize in a "
                            "Sync) if it is meant to be this large")
    if done.returncode != 0:
        message = done.stderr.strip().replace(str(chart), "<chart>")
        raise TemplateError(message[-2000:] or f"helm exited {done.returncode}")
    return done.stdout


def _documents(text: str, max_nodes: int) -> list[tuple[dict[str, Any], str]]:
    found: list[tuple[dict[str, Any], str]] = []
    for chunk in _SEPARATOR.split(text):
        source = _SOURCE.search(chunk)
        try:
            documents = load_documents(chunk, max_nodes)
        except YAMLLimitError as e:
            where = source.group(1) if source else "helm output"
            raise TemplateError(f"{where}: {e.problem}") from None
        except YAMLSyntaxError as e:
            where = source.group(1) if source else "helm output"
            raise TemplateError(f"{where}: the chart rendered bad YAML: {e.problem}") from None
        for doc in documents:
            if isinstance(doc.data, dict) and doc.data:
                found.append((doc.data, source.group(1) if source else ""))
            elif doc.data is not None:
                where = source.group(1) if source else "helm output"
                raise TemplateError(f"{where}: the chart rendered something that is not an "
                                    "object")
    return found


def _finish(documents: list[tuple[dict[str, Any], str]], mark: tuple[str, str, str],
            caps: Capabilities) -> Rendered:
    cluster_scoped = set(caps.cluster_scoped) | _cluster_scoped_crds(documents)
    rendered = Rendered()
    for body, source in documents:
        decision = hooks.decide(body)
        if decision == hooks.SKIP:
            rendered.skipped_hooks.append(
                f"{body.get('kind')}/{(body.get('metadata') or {}).get('name')} "
                f"({', '.join(hooks.hooks_of(body))} hook, from {source})")
            continue
        metadata = body.setdefault("metadata", {})
        group = str(body.get("apiVersion", "")).rpartition("/")[0]
        if not metadata.get("namespace") and (group, body.get("kind")) not in cluster_scoped:
            metadata["namespace"] = mark[1]
        if "/crds/" not in f"/{source}":  # helm leaves CRDs from crds/ unmanaged, and so do we
            _mark(metadata, *mark)
        rendered.objects.append((body, source))
    return rendered


def _cluster_scoped_crds(documents: list[tuple[dict[str, Any], str]]) -> set[tuple[str, str]]:
    scoped = set()
    for body, _ in documents:
        spec = body.get("spec") or {}
        if body.get("kind") == "CustomResourceDefinition" and spec.get("scope") == "Cluster":
            scoped.add((spec.get("group", ""), (spec.get("names") or {}).get("kind", "")))
    return scoped


def _mark(metadata: dict[str, Any], release: str, namespace: str, shown: str) -> None:
    annotations = metadata.get("annotations")
    metadata["annotations"] = {**(annotations if isinstance(annotations, dict) else {}),
                               RELEASE_NAME: release, RELEASE_NAMESPACE: namespace,
                               CHART_ANNOTATION: shown}
    labels = metadata.get("labels")
    metadata["labels"] = {**(labels if isinstance(labels, dict) else {}), MANAGED_BY: "Helm"}
