"""The agent's image carries every program the engine runs, built the way the local ones are.

There is no Docker engine on our machines, so the image itself is never built here. Instead the
Dockerfile is read and checked against the engine's lists (sync_agent/paths.py GO_PROGRAMS,
DEBIAN_PROGRAMS), and each stage's build step is run for real outside Docker, on exactly the
files that stage copies: the `programs` stage's Go build, and the final stage's pip install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bootstrap import binaries
from bootstrap.errors import UserError
from sync_agent import paths, render, source
from sync_agent.helm import binary as helm_binary
from sync_agent.helm import capabilities
from tests.testdata.gitrepos import commit, new_repo

ROOT = Path(__file__).resolve().parents[1]
BUILD = "python scripts/engine-programs /out"  # the `programs` stage's build step
INSTALL = "COPY --from=programs /out/ /usr/local/bin/"  # the final stage takes its output
IMAGE_PATH = ["/usr/local/bin", "/usr/local/sbin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]


@dataclass
class Stage:
    base: str
    name: str
    steps: list[str] = field(default_factory=list)  # "INSTRUCTION arguments", one space apart

    def args(self, instruction: str) -> list[str]:
        return [step.split(" ", 1)[1] for step in self.steps if step.startswith(instruction + " ")]

    def copied_into(self, context: Path, dest_root: Path) -> None:
        """Put the files this stage COPYs from the build context where they land (WORKDIR
        relative destinations, as in the Dockerfile)."""
        for args in self.args("COPY"):
            if args.startswith("--from="):
                continue
            *sources, dest = args.split()
            target = dest_root / dest
            for name in sources:
                origin = context / name
                into = target / origin.name if dest.endswith("/") else target
                into.parent.mkdir(parents=True, exist_ok=True)
                if origin.is_dir():
                    shutil.copytree(origin, into, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(origin, into)


def read_stages() -> list[Stage]:
    stages: list[Stage] = []
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            stages.append(Stage(words[1], words[3] if len(words) == 4 else ""))
        else:
            stages[-1].steps.append(" ".join(words))
    return stages


def stage(name: str) -> Stage:
    stages = read_stages()
    return next(s for s in stages if s.name == name) if name else stages[-1]


def test_the_image_builds_the_engines_go_programs_with_the_code_cluster_bin_uses():
    programs, final = stage("programs"), stage("")
    assert programs.args("RUN") == [BUILD.removeprefix("RUN ")]
    toolchain = [a for a in programs.args("COPY") if a.startswith("--from=golang:")]
    assert toolchain == [f"--from=golang:{binaries.GO_VERSION} /usr/local/go /usr/local/go"]
    assert INSTALL in final.steps
    assert not any(a.startswith("PATH=") for a in final.args("ENV"))  # the base image's PATH

    built = {name: tool for tool in binaries.engine_tools() for name in tool.packages}
    assert sorted(built) == sorted(paths.GO_PROGRAMS)
    local = {name: tool for tool in binaries.go_tools() for name in tool.packages}
    for name, tool in built.items():
        assert (tool.module, tool.version, tool.packages[name], tool.go_mod_extra) == (
            local[name].module, local[name].version, local[name].packages[name],
            local[name].go_mod_extra)
    assert built["kubectl"].version == paths.K8S_VERSION
    assert (built["helm"].module, built["helm"].version) == (helm_binary.HELM_MODULE,
                                                             helm_binary.HELM_VERSION)
    assert built["helm"].ldflags == helm_binary.HELM_LDFLAGS
    renderer = built[helm_binary.RENDERER]
    assert (renderer.module, renderer.source) == (helm_binary.RENDERER_MODULE,
                                                  helm_binary.RENDERER_SOURCE)
    assert f"\thelm.sh/helm/v3 {helm_binary.HELM_VERSION}\n" in (
        helm_binary.RENDERER_SOURCE / "go.mod").read_text()  # links the helm it sits beside


def test_a_program_the_engine_runs_without_a_go_module_stops_the_build():
    with pytest.raises(UserError) as caught:
        binaries.engine_tools([*paths.GO_PROGRAMS, "frobctl"])
    assert str(caught.value).startswith("frobctl: the engine runs it, but no Go module")


def test_the_image_installs_the_debian_package_of_every_other_program():
    installs = [run for run in stage("").args("RUN") if "apt-get install" in run]
    assert len(installs) == 1
    for program, package in paths.DEBIAN_PROGRAMS.items():
        assert f" {package} " in f"{installs[0]} ", f"{program}: {package} is not installed"


def test_the_programs_stage_builds_the_go_programs_the_engine_finds_and_renders_with(
        tmp_path, monkeypatch):
    src, out, cache = tmp_path / "src", tmp_path / "out", tmp_path / "cache"
    stage("programs").copied_into(ROOT, src)
    # `-S`: the standard library only, as in the python image; nothing from this venv.
    done = subprocess.run([sys.executable, "-S", *BUILD.split()[1:-1], str(out)], cwd=src,
                          env={**os.environ, "GITOPS_RESTORE_CACHE": str(cache)},
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(paths.GO_PROGRAMS)
    version = subprocess.run([out / "kubectl", "version", "--client", "-o", "json"],
                             capture_output=True, text=True, check=True).stdout
    assert json.loads(version)["clientVersion"]["gitVersion"] == paths.K8S_VERSION
    helm_version = subprocess.run([out / "helm", "version", "--template", "{{.Version}}"],
                                  capture_output=True, text=True, check=True).stdout
    assert helm_version == helm_binary.HELM_VERSION

    # In the image there is no control-plane cache: the engine finds kubectl on PATH.
    monkeypatch.setenv("GITOPS_RESTORE_CACHE", str(cache))
    monkeypatch.setenv("PATH", os.pathsep.join([str(out), *IMAGE_PATH]))
    assert paths.kubectl() == str(out / "kubectl")
    assert helm_binary.cached() is None and helm_binary.helm_path() == out / "helm"
    assert helm_binary.renderer_path() == out / helm_binary.RENDERER
    repo = new_repo(tmp_path / "repo")
    commit(repo, {
        "app/kustomization.yaml": "resources:\n- cm.yaml\nnamespace: shop\nnameSuffix: -prod\n",
        "app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n",
        "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.2.0\n",
        "charts/web/values.yaml": "greeting: hello\n",
        "charts/web/templates/cm.yaml": (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cfg\n"
            "data:\n  greeting: {{ .Values.greeting }}\n"),
    }, "a kustomization and a chart")
    opened = source.open_repository(str(repo))
    revision = source.resolve(opened, str(repo))
    source.export_tree(opened, revision.sha, tmp_path / "tree")
    result = render.render(tmp_path / "tree", "app", revision)
    assert [str(r.ref) for r in result.resources] == ["ConfigMap/shop/web-prod"]
    charts = render.render(tmp_path / "tree", "charts", revision,
                           helm=capabilities.without_cluster(str(repo)))
    assert [(str(r.ref), r.body["data"]) for r in charts.resources] == [
        ("ConfigMap/default/web-cfg", {"greeting": "hello"})]


def test_the_final_stage_installs_the_package_from_the_files_it_copies(tmp_path):
    src = tmp_path / "src"
    stage("").copied_into(ROOT, src)
    assert stage("").args("RUN")[-1] == "pip install --no-cache-dir . && rm -rf /src"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
                           "--quiet", "-w", str(tmp_path / "wheel"), "."],
                          cwd=src, capture_output=True, text=True, timeout=600)
    assert (done.returncode, done.stderr) == (0, "")  # and quiet: no metadata warnings
    wheel, = (tmp_path / "wheel").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sync_agent/__main__.py" in names
    assert "sync_agent/helm/renderer/go.sum" in names  # so `cluster-bin` can build it
    assert any(n.endswith(".data/data/share/gitops-restore/deploy/crd-sync.yaml") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
