"""helm-renderer renders as `helm template` does: both real, the same inputs, the same bytes.

The charts are made by the real helm (`helm create`, with CRDs, hooks, a vendored
subchart, capability checks and a packaged archive added); each is rendered once by the helm
binary, with the arguments rendering used before the renderer existed, and once by the renderer,
many releases in one request. No API server is involved: `helm template` needs none.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from sync_agent import render
from sync_agent.errors import RenderError
from sync_agent.helm import binary, capabilities, process, rendercache, template
from sync_agent.helm.context import Capabilities, HelmContext, HelmSettings
from sync_agent.objects import Revision
from tests.helmrepo import helm, make_chart, package

CAPS = Capabilities("v1.36.3", ("apps/v1", "apps/v1/Deployment", "example.io/v1",
                                "example.io/v1/Widget", "v1", "v1/ConfigMap"),
                    frozenset(), capabilities.CLUSTER_SCOPED)
WIDGET_CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.io}
spec:
  group: example.io
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}
"""
FILES = {
    "crds/widgets.yaml": WIDGET_CRD,
    "templates/caps.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-caps\n"
        "data:\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"
        "  widgets: {{ .Capabilities.APIVersions.Has \"example.io/v1/Widget\" | quote }}\n"
        "  namespace: {{ .Release.Namespace | quote }}\n"
        "  greeting: {{ .Values.greeting | default \"none\" | quote }}\n"
        "  count: {{ .Values.count | default 0 | quote }}\n"),
    "templates/pre-install.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-pre\n"
        "  annotations: {\"helm.sh/hook\": pre-install, \"helm.sh/hook-weight\": \"-5\"}\n"),
}
REVISION = Revision("repo", "HEAD", "0" * 40, "", "", "")


def renderer() -> Path:
    path = binary.renderer_path()
    assert path is not None, f"{binary.RENDERER} is not built: run `gitops-restore cluster-bin`"
    return path


def helm_template(job: template.Job, caps: Capabilities = CAPS) -> tuple[int, str, str]:
    """The helm binary, run as rendering ran it before the renderer: exit, stdout, stderr."""
    with tempfile.TemporaryDirectory() as scratch:
        values = Path(scratch) / "values.json"
        values.write_text(json.dumps(job.values))
        args = ["template", job.release, str(job.chart), "--namespace", job.namespace,
                "--kube-version", caps.kube_version, "--values", str(values),
                "--api-versions", ",".join(caps.api_versions)]
        done = process.run(helm(), args + (["--include-crds"] if job.include_crds else []),
                           Path(scratch), 120, 1 << 26)
    return done.returncode, done.stdout, done.stderr


def ask(jobs: list[template.Job], max_bytes: int = 1 << 26, timeout: float = 120) -> list[dict]:
    """The renderer's answers to one request for `jobs`."""
    request = {"workers": 4, "timeout": timeout, "maxBytes": max_bytes, "releases": [
        {"name": j.release, "namespace": j.namespace, "chart": str(j.chart), "values": j.values,
         "crds": j.include_crds, "kubeVersion": CAPS.kube_version,
         "apiVersions": list(CAPS.api_versions)} for j in jobs]}
    with tempfile.TemporaryDirectory() as scratch:
        done = process.run(renderer(), [], Path(scratch), 300, 1 << 28,
                           json.dumps(request).encode())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["releases"]


@pytest.fixture(scope="module")
def charts(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("charts")
    web = make_chart(base, "web", "1.2.0", FILES)
    db = make_chart(base / "sub", "db", "0.4.0")
    shop = make_chart(base, "shop", "2.0.0", {
        **FILES,
        "Chart.yaml": "apiVersion: v2\nname: shop\nversion: 2.0.0\ndependencies:\n"
                      "- {name: db, version: 0.4.0}\n"})
    package(db, shop / "charts")
    broken = make_chart(base, "broken", "0.3.0",
                        {"templates/bad.yaml": "value: {{ .Values.nope.missing }}\n"})
    return {"web": web, "shop": shop, "archive": package(web, base / "archives"),
            "broken": broken}


def test_many_releases_in_one_request_are_each_what_helm_template_prints(charts):
    jobs = [
        template.Job(charts["web"], "web", "shop", {}, True, ""),
        template.Job(charts["web"], "web-b", "other", {"greeting": "hi", "count": 3,
                                                       "replicaCount": 2}, False, ""),
        template.Job(charts["shop"], "shop", "shop", {"db": {"replicaCount": 4}}, True, ""),
        template.Job(charts["archive"], "packed", "shop", {"service": {"port": 8080}}, True,
                     ""),
    ]
    answers = ask(jobs)
    for job, answer in zip(jobs, answers, strict=True):
        code, expected, stderr = helm_template(job)
        assert code == 0, stderr
        assert answer == {"manifest": expected}, job.release
    shop = answers[2]["manifest"]
    # What the comparison covers: CRDs, hooks (after the manifest), the subchart, capabilities
    assert "# Source: shop/crds/widgets.yaml" in shop
    assert shop.index("# Source: shop/templates/pre-install.yaml") > shop.index(
        "# Source: shop/templates/deployment.yaml")
    assert "# Source: shop/charts/db/templates/deployment.yaml" in shop
    assert 'kube: "v1.36.3"' in shop and 'widgets: "true"' in shop
    assert "replicas: 4" in shop
    assert "crds/widgets.yaml" not in answers[1]["manifest"]


def test_a_template_error_is_helms_and_spoils_no_other_release(charts):
    broken = template.Job(charts["broken"], "broken", "shop", {}, False, "")
    web = template.Job(charts["web"], "web", "shop", {}, False, "")
    failed, fine = ask([broken, web])
    code, _, stderr = helm_template(broken)
    assert code == 1
    assert failed == {"error": stderr.strip().removeprefix("Error: ")}
    assert "template: broken/templates/bad.yaml:1:17" in failed["error"]
    assert "nil pointer" in failed["error"]
    assert fine == {"manifest": helm_template(web)[1]}


def test_the_renderer_bounds_each_release_and_times_it_out(charts):
    job = template.Job(charts["web"], "web", "shop", {}, False, "")
    assert ask([job], max_bytes=1000) == [{"oversize": True}]
    (late,) = ask([job], timeout=1e-6)
    assert late == {"error": "helm template did not finish in 1e-06s"}
    errors = template._run_renderer([job], CAPS, 1000)
    assert str(errors[0]).startswith("helm template's output is larger than 1,000 bytes; "
                                     "nothing was read. Raise --max-file-size")


def test_render_marks_objects_and_keeps_the_output_in_the_render_cache(charts, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(rendercache, "directory", lambda: tmp_path / "rendered")
    job = template.Job(charts["web"], "web", "shop", {"greeting": "hi"}, True, "web 1.2.0")
    broken = template.Job(charts["broken"], "broken", "shop", {}, False, "broken 0.3.0")
    out, failed = template.render([job, broken], CAPS)
    assert isinstance(failed, template.TemplateError) and "nil pointer" in str(failed)
    by_name = {body["metadata"]["name"]: body for body, _ in out.objects}
    assert by_name["web-caps"]["data"]["greeting"] == "hi"
    assert by_name["web-caps"]["metadata"]["annotations"][template.CHART_ANNOTATION] == \
        "web 1.2.0"
    assert by_name["web"]["metadata"]["namespace"] == "shop"
    assert out.skipped_hooks == ["Pod/web-test-connection (test hook, from "
                                 "web/templates/tests/test-connection.yaml)"]
    assert len(list((tmp_path / "rendered").glob("*.yaml"))) == 1  # the failure is not kept

    monkeypatch.setenv("PATH", "/nonexistent")  # no renderer, but the cache has the output
    monkeypatch.setattr(binary, "renderer_dir", lambda: tmp_path / "no-renderer")
    (again,) = template.render([job], CAPS)
    assert again.objects == out.objects


def test_without_the_renderer_each_release_is_named_with_how_to_get_it(charts, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setattr(rendercache, "directory", lambda: tmp_path / "rendered")
    monkeypatch.setattr(binary, "renderer_dir", lambda: tmp_path / "no-renderer")
    monkeypatch.setenv("PATH", "/nonexistent")
    tree = tmp_path / "tree"
    make_chart(tree / "apps", "web", "1.2.0")
    ctx = HelmContext(HelmSettings(mode="render"), lambda: CAPS, "repo", "default")
    with pytest.raises(RenderError) as caught:
        render.render(tree, "apps", REVISION, (), helm=ctx)
    (problem,) = caught.value.problems
    assert problem == ("apps/web/Chart.yaml: chart directory apps/web (release default/web): "
                       f"chart apps/web 1.2.0: helm-renderer (helm {binary.HELM_VERSION}) is "
                       "needed to render it and is not built; run `gitops-restore cluster-bin`")
