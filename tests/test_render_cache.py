"""The render cache: a commit rendered before comes back from disk, equal to a fresh render, and
nothing unsafe (decrypted values, Helm output, remote bases, failed renders) is ever kept.
Real Git repositories, real `engine.render_revision`; no cluster."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sync_agent import engine, render_cache, source
from sync_agent.errors import RenderError
from sync_agent.helm.context import HelmContext, HelmSettings
from sync_agent.render_options import RenderOptions
from sync_agent.sops import load_keys
from tests import manifests as m
from tests.sopsfiles import age_key, encrypt
from tests.testdata.gitrepos import commit, new_repo

PASSWORD = "hunter2-render-cache-plain"

A_LIST = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: listed-1}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: listed-2, namespace: team}
"""

HELM_RELEASE = """apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: web, namespace: apps}
spec:
  chart:
    spec:
      chart: web
      sourceRef: {kind: HelmRepository, name: charts}
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "render-cache"
    monkeypatch.setattr(render_cache, "directory", lambda: folder)
    return folder


def repository(tmp_path: Path, files: dict[str, str]):
    repo = new_repo(tmp_path / "repo")
    commit(repo, files, "manifests")
    opened = source.open_repository(str(repo))
    return str(repo), opened, source.resolve(opened, str(repo))


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.json")) if cache.exists() else []


def test_a_revision_rendered_before_comes_from_the_cache_equal_to_the_first(tmp_path, cache):
    url, opened, revision = repository(tmp_path, {
        "apps/two.yaml": m.configmap("one", a="1") + "---\n" + m.deployment("web"),
        "apps/list.yaml": A_LIST,
        "apps/svc.json": '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},'
                         ' "spec": {"ports": [{"port": 80}], "x": 1.5, "y": null}}',
        "apps/chart/Chart.yaml": "apiVersion: v2\nname: chart\nversion: 1.0.0\n",
    })
    spec = engine.SourceSpec(repo=url, path="apps")
    first = engine.render_revision(opened, revision, spec)
    assert len(entries(cache)) == 1
    assert first.skipped and "chart" in first.skipped[0]  # no Helm context: listed, not rendered
    # The same commit asked for by another name; no repository at all: nothing is exported.
    asked = dataclasses.replace(revision, ref=revision.sha)
    second = engine.render_revision(None, asked, spec)
    assert second.revision == asked
    assert second.resources == first.resources  # bodies, origins (line, List item), decrypted
    assert [str(r.origin) for r in second.resources] == [str(r.origin) for r in first.resources]
    assert (second.path, second.skipped, second.helm) == (first.path, first.skipped, first.helm)
    # With a Helm context and nothing left for Helm to render, that render is cached too.
    helm = HelmContext(HelmSettings(), _no_cluster, url, "default")
    no_chart = dataclasses.replace(spec, ignore=("apps/chart/",))
    with_helm = engine.render_revision(opened, revision, no_chart, helm)
    assert (len(with_helm.resources), with_helm.skipped) == (len(first.resources), ())
    assert engine.render_revision(None, revision, no_chart, helm) == with_helm


def _no_cluster():
    raise AssertionError("the cluster is asked only when Helm renders something")


def test_a_changed_option_is_another_entry_not_the_old_result(tmp_path, cache):
    url, opened, revision = repository(tmp_path, {"a.yaml": m.configmap("a"),
                                                  "b.yaml": m.configmap("b")})
    spec = engine.SourceSpec(repo=url)
    assert len(engine.render_revision(opened, revision, spec).resources) == 2
    ignoring = dataclasses.replace(spec, ignore=("b.yaml",))
    assert [r.name for r in engine.render_revision(opened, revision, ignoring).resources] == ["a"]
    tight = dataclasses.replace(spec, render=RenderOptions(max_file_bytes=10))
    with pytest.raises(RenderError):
        engine.render_revision(opened, revision, tight)
    other_path = dataclasses.replace(spec, path="b.yaml")
    assert [r.name for r in engine.render_revision(opened, revision, other_path).resources] == \
        ["b"]
    assert len(entries(cache)) == 3  # the failed render left none


def test_a_sops_decrypted_secret_leaves_no_cache_file_and_no_plaintext(tmp_path, cache):
    key = age_key(tmp_path)
    secret = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\n"
              f"stringData:\n  password: {PASSWORD}\n")
    url, opened, revision = repository(tmp_path, {
        "secret.yaml": encrypt(secret, key.recipient, tmp_path),
        "cm.yaml": m.configmap("plain")})
    keys = load_keys(key.file, f"--sops-age-key {key.file}")
    spec = engine.SourceSpec(repo=url, render=RenderOptions(sops_keys=keys))
    for _ in range(2):
        result = engine.render_revision(opened, revision, spec)
        by_name = {r.name: r for r in result.resources}
        assert by_name["db"].body["stringData"] == {"password": PASSWORD}
    assert entries(cache) == []
    written = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert not any(PASSWORD.encode() in p.read_bytes() for p in written)


def test_sops_keys_given_or_not_are_two_entries(tmp_path, cache):
    key = age_key(tmp_path)
    url, opened, revision = repository(tmp_path, {"cm.yaml": m.configmap("plain")})
    keys = load_keys(key.file, f"--sops-age-key {key.file}")
    spec = engine.SourceSpec(repo=url, render=RenderOptions(sops_keys=keys))
    first = engine.render_revision(opened, revision, spec)
    assert len(entries(cache)) == 1
    assert engine.render_revision(None, revision, spec).resources == first.resources
    engine.render_revision(opened, revision, engine.SourceSpec(repo=url))
    assert len(entries(cache)) == 2

def test_a_corrupt_cache_file_is_rendered_again_and_replaced(tmp_path, cache):
    url, opened, revision = repository(tmp_path, {"a.yaml": m.configmap("a", k="v")})
    spec = engine.SourceSpec(repo=url)
    first = engine.render_revision(opened, revision, spec)
    [entry] = entries(cache)
    entry_of = b'{"format": 1, "path": ".", "skipped": [], "resources": %s}'
    for bad in (b"{not json", b"", b"[1]", b'{"format": 1}', entry_of % b'[[{}, ["a.yaml"]]]',
                entry_of % b'[["x", ["a.yaml", 1, 1, 0]]]'):
        entry.write_bytes(bad)
        assert engine.render_revision(opened, revision, spec) == first
        assert engine.render_revision(None, revision, spec) == first  # replaced: a good entry


def test_helm_output_remote_bases_and_failed_renders_are_never_kept(tmp_path, cache):
    url, opened, revision = repository(tmp_path, {"release.yaml": HELM_RELEASE,
                                                  "bad.yaml": "a: [\n"})
    helm = HelmContext(HelmSettings(mode="controller"), _no_cluster, url, "default")
    spec = engine.SourceSpec(repo=url, path="release.yaml")
    rendered = engine.render_revision(opened, revision, spec, helm)
    assert rendered.helm  # left to its controller: a decision about the cluster, not cached
    remote = dataclasses.replace(spec, render=RenderOptions(allow_remote_bases=True))
    engine.render_revision(opened, revision, remote)
    with pytest.raises(RenderError):
        engine.render_revision(opened, revision, engine.SourceSpec(repo=url))
    assert entries(cache) == []


@pytest.mark.parametrize("spec_yaml, spec", [("{1: one}", {1: "one"}),
                                              ("{x: .inf}", {"x": float("inf")})])
def test_values_json_would_change_are_rendered_every_time(tmp_path, cache, spec_yaml, spec):
    """YAML holds what JSON cannot (integer keys, infinity): such a revision is not cached, so
    what the cache gives back is always exactly what rendering gives."""
    url, opened, revision = repository(tmp_path, {"w.yaml": (
        f"apiVersion: example.io/v1\nkind: Widget\nmetadata: {{name: w}}\nspec: {spec_yaml}\n")})
    source_spec = engine.SourceSpec(repo=url)
    assert engine.render_revision(opened, revision, source_spec).resources[0].body["spec"] == spec
    assert entries(cache) == []


def test_only_the_newest_entries_are_kept(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(render_cache, "MAX_ENTRIES", 2)
    repo = new_repo(tmp_path / "repo")
    url = str(repo)
    shas = [commit(repo, {"a.yaml": m.configmap("a", n=str(n))}, f"commit {n}") for n in range(3)]
    opened = source.open_repository(url)
    spec = engine.SourceSpec(repo=url)
    for sha in shas:
        engine.render_revision(opened, source.resolve(opened, url, ref=sha), spec)
    assert len(entries(cache)) == 2
    kept = {render_cache.key(render_cache.Inputs(url, sha, "", (), RenderOptions(), None))
            for sha in shas[1:]}
    assert {p.stem for p in entries(cache)} == kept
    newest = source.resolve(opened, url, ref=shas[-1])
    assert engine.render_revision(None, newest, spec).resources[0].body["data"] == {"n": "2"}
