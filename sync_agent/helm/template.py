"""`helm template` for the releases of a revision, and its output made ready to apply.

Every release that misses `rendercache` is rendered by one run of `helm-renderer` (renderer/,
linking the pinned Helm's own packages): `helm template` semantics and output for all of them
in one process, so a restore pays helm's start-up once, not once per release. It runs
through `process` (the renderer's clean environment), with the cluster's real version and API
versions (helm's built-in default would be an old Kubernetes), the chart's own values plus the
release's merged values. What it answers is bounded as kustomize's output is (--max-file-size
per release, --max-yaml-nodes). Its output then gets what helm itself would add when
installing: the release namespace on namespaced objects naming none, and Helm's ownership
marks (meta.helm.sh/release-name and -namespace annotations, the managed-by label) so that
`helm upgrade --take-ownership` or helm-controller can later adopt the objects. Hook objects
follow `hooks.POLICY`.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_agent.child_process import Finished
from sync_agent.conventions import CHART_ANNOTATION, MANAGED_BY
from sync_agent.helm import binary, hooks, process, rendercache
from sync_agent.helm.context import Capabilities
from sync_agent.render_options import DEFAULTS, RenderOptions
from sync_agent.yaml_loader import YAMLLimitError, YAMLSyntaxError, load_documents

TIMEOUT = 120  # seconds per release, as for one `helm template`
WORKERS = 4  # releases the renderer renders at once
ERROR_ROOM = 64 * 1024  # bytes of answer a release without a manifest may take
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


@dataclass(frozen=True)
class Job:
    """One release, as `helm template RELEASE CHART` takes it."""

    chart: Path  # a chart directory or archive
    release: str
    namespace: str
    values: dict[str, Any]
    include_crds: bool
    shown: str  # "web 1.1.0", for CHART_ANNOTATION


def render(jobs: list[Job], caps: Capabilities, limits: RenderOptions = DEFAULTS
           ) -> list[Rendered | TemplateError]:
    """Each job's objects, or why not, in order: from `rendercache` where it has the output,
    from one renderer run for all the others."""
    inputs = [{"release": job.release, "namespace": job.namespace, "values": job.values,
               "crds": job.include_crds, "kube": caps.kube_version, "apis": caps.api_versions}
              for job in jobs]
    entries = [rendercache.key(job.chart, given) for job, given in zip(jobs, inputs, strict=True)]
    outputs: list[str | TemplateError | None] = [rendercache.load(e) for e in entries]
    missing = [n for n, out in enumerate(outputs)
               if out is None or len(out.encode()) > limits.max_file_bytes]
    fresh = _run_renderer([jobs[n] for n in missing], caps, limits.max_file_bytes)
    for n, output in zip(missing, fresh, strict=True):
        if isinstance(output, str):
            rendercache.store(entries[n], output)
        outputs[n] = output
    return [_finished(output, job, caps, limits.max_yaml_nodes)
            for output, job in zip(outputs, jobs, strict=True)]


def _finished(output: str | TemplateError | None, job: Job, caps: Capabilities,
              max_nodes: int) -> Rendered | TemplateError:
    assert output is not None  # `render` filled in every one the cache lacked
    if isinstance(output, TemplateError):
        return output
    try:
        return _finish(_documents(output, max_nodes), (job.release, job.namespace, job.shown),
                       caps)
    except TemplateError as e:
        return e


def _run_renderer(jobs: list[Job], caps: Capabilities, max_bytes: int
                  ) -> list[str | TemplateError]:
    """The renderer's output for each job (helm template's stdout) or its error."""
    if not jobs:
        return []
    renderer = binary.renderer_path()
    if renderer is None:
        return [TemplateError(f"{binary.RENDERER} (helm {binary.HELM_VERSION}) is needed to "
                              "render it and is not built; run `gitops-restore cluster-bin`")
                for _ in jobs]
    request = {"workers": WORKERS, "timeout": TIMEOUT, "maxBytes": max_bytes, "releases": [
        {"name": job.release, "namespace": job.namespace, "chart": str(job.chart),
         "values": job.values, "crds": job.include_crds, "kubeVersion": caps.kube_version,
         "apiVersions": list(caps.api_versions)} for job in jobs]}
    bound = len(jobs) * (2 * max_bytes + ERROR_ROOM) + ERROR_ROOM  # the renderer keeps to it
    backstop = TIMEOUT * (math.ceil(len(jobs) / WORKERS) + 1)  # it times out each release
    try:
        with tempfile.TemporaryDirectory(prefix="gitops-restore-helm-") as scratch:
            done = process.run(renderer, [], Path(scratch), backstop, bound,
                               json.dumps(request).encode())
        answers = _answers(done, len(jobs))
    except subprocess.TimeoutExpired:
        answers = [{"error": f"{binary.RENDERER} did not finish in {backstop}s"}] * len(jobs)
    return [_output(answer, job.chart, max_bytes)
            for answer, job in zip(answers, jobs, strict=True)]


def _answers(done: Finished, count: int) -> list[dict[str, Any]]:
    """The renderer's answer per release; a renderer that failed answers each with why."""
    try:
        answers = json.loads(done.stdout)["releases"] if done.returncode == 0 else None
    except (ValueError, KeyError, TypeError):
        answers = None
    if isinstance(answers, list) and len(answers) == count and not done.truncated:
        return answers
    why = done.stderr.strip()[-2000:] or f"exit status {done.returncode}, no answer"
    return [{"error": f"{binary.RENDERER} failed: {why}"}] * count


def _output(answer: dict[str, Any], chart: Path, max_bytes: int) -> str | TemplateError:
    if answer.get("oversize"):
        return TemplateError(f"helm template's output is larger than {max_bytes:,} bytes; "
                             "nothing was read. Raise --max-file-size (spec.maxFileSize in a "
                             "Sync) if it is meant to be this large")
    if "manifest" in answer:
        return str(answer["manifest"])
    message = str(answer.get("error", "")).strip().replace(str(chart), "<chart>")
    return TemplateError(message[-2000:] or "the renderer answered neither output nor error")


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
