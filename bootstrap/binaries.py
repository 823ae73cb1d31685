"""Build the local provider's control plane from Go modules and cache it outside the checkout.

Nothing can be downloaded from release pages on our machines, but the Go module proxy is
reachable: kube-apiserver, kube-controller-manager, kube-scheduler and kubectl come from
`k8s.io/kubernetes`, etcd from `go.etcd.io/etcd/server/v3`, kwok and kwokctl from
`sigs.k8s.io/kwok`, helm from `helm.sh/helm/v3` (into its own versioned directory: it renders
charts for any cluster, so it is not tied to the control plane's version), and beside it
`helm-renderer`, this repository's own Go module (sync_agent/helm/renderer, with its go.sum)
linking the same Helm. Each tool gets its own module directory so that Go's version selection
never mixes their dependencies. Called by `gitops-restore cluster-bin` and `make cluster-bin`,
and by `scripts/engine-programs`, which builds the engine's programs (kubectl, helm,
helm-renderer) the same way into the agent's image (Dockerfile).
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from bootstrap.errors import UserError
from sync_agent import paths
from sync_agent.helm import binary as helm_binary
from sync_agent.paths import K8S_VERSION, cache_root, k8s_bin_dir

GO_VERSION = "1.26"  # the `go` line of every generated go.mod; the image's Go toolchain matches
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"

GOPROXY_DEFAULT = "https://proxy.golang.org"


@dataclass(frozen=True)
class GoTool:
    """One Go module to build, the commands in it, and the ldflags that make `--version` true."""

    module: str
    version: str
    packages: dict[str, str]  # binary name -> Go package path
    ldflags: str = "-s -w"
    go_mod_extra: str = ""  # extra go.mod lines (replace directives)
    source: Path | None = None  # a module of this repository, built where it lies

    @property
    def build_dir(self) -> Path:
        return cache_root() / "build" / f"{self.module.replace('/', '_')}@{self.version}"


REQUIRED = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
            "etcd", "kwok", "kwokctl")


def missing_binaries(directory: Path | None = None) -> list[str]:
    directory = directory or k8s_bin_dir()
    return [name for name in REQUIRED if not os.access(directory / name, os.X_OK)]


def _goproxy() -> str:
    for entry in os.environ.get("GOPROXY", GOPROXY_DEFAULT).split(","):
        if entry.startswith("http"):
            return entry.rstrip("/")
    return GOPROXY_DEFAULT


def _fetch_go_mod(module: str, version: str) -> str:
    url = f"{_goproxy()}/{module}/@v/{version}.mod"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read().decode()
    except OSError as e:
        raise UserError(f"{module}@{version}: the Go module proxy did not serve {url}: {e}") from e


def staging_replaces(kubernetes_go_mod: str, k8s_version: str) -> str:
    """`replace` lines pointing k8s.io/kubernetes' staging modules at their published versions.

    k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at
    v0.0.0 and replaces them with local paths, which only work inside its own repository. The
    published copies are tagged v0.<minor>.<patch>. Only modules it requires are replaced: some
    replaced-only ones (sample-cli-plugin) are not published.
    """
    _, minor, patch = k8s_version.lstrip("v").split(".")
    staging = set()
    in_replace = False
    for line in kubernetes_go_mod.splitlines():
        stripped = line.strip()
        if stripped.startswith("replace ("):
            in_replace = True
        elif in_replace and stripped == ")":
            in_replace = False
        elif in_replace and "=> ./staging/" in stripped:
            staging.add(stripped.split()[0])
    required = {line.split()[0] for line in kubernetes_go_mod.splitlines()
                if line.startswith("\t") and " v0.0.0" in line}
    modules = sorted(staging & required)
    return "\n".join(f"replace {m} => {m} v0.{minor}.{patch}" for m in modules)


def _kubernetes_tool() -> GoTool:
    major, minor, _ = K8S_VERSION.lstrip("v").split(".")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    version_pkg = "k8s.io/component-base/version"
    ldflags = " ".join([
        "-s -w",
        f"-X {version_pkg}.gitVersion={K8S_VERSION}",
        f"-X {version_pkg}.gitMajor={major}",
        f"-X {version_pkg}.gitMinor={minor}",
        f"-X {version_pkg}.gitTreeState=clean",
        f"-X {version_pkg}.buildDate={stamp}",
    ])
    return GoTool(
        module="k8s.io/kubernetes",
        version=K8S_VERSION,
        packages={name: f"k8s.io/kubernetes/cmd/{name}" for name in
                  ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")},
        ldflags=ldflags,
        go_mod_extra=staging_replaces(_fetch_go_mod("k8s.io/kubernetes", K8S_VERSION), K8S_VERSION),
    )


def _other_tools() -> list[GoTool]:
    return [
        GoTool(module="go.etcd.io/etcd/server/v3", version=ETCD_VERSION,
               packages={"etcd": "go.etcd.io/etcd/server/v3"}),
        GoTool(module="sigs.k8s.io/kwok", version=KWOK_VERSION,
               packages={"kwok": "sigs.k8s.io/kwok/cmd/kwok",
                         "kwokctl": "sigs.k8s.io/kwok/cmd/kwokctl"},
               ldflags=f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION}"),
    ]


def _helm_tool() -> GoTool:
    return GoTool(module=helm_binary.HELM_MODULE, version=helm_binary.HELM_VERSION,
                  packages={"helm": helm_binary.HELM_PACKAGE}, ldflags=helm_binary.HELM_LDFLAGS)


def _renderer_tool() -> GoTool:
    return GoTool(module=helm_binary.RENDERER_MODULE, version=helm_binary.renderer_digest(),
                  packages={helm_binary.RENDERER: "."}, source=helm_binary.RENDERER_SOURCE)


def ensure_helm(log=print) -> Path:
    """Build the pinned helm, and the renderer linking it, if the cache lacks them; return
    helm's path."""
    target = helm_binary.bin_dir()
    if helm_binary.cached() is None:
        target.mkdir(parents=True, exist_ok=True)
        build_tool(_helm_tool(), target, log)
    else:
        log(f"helm {helm_binary.HELM_VERSION} cached in {target}")
    renderer = helm_binary.renderer_dir()
    if not os.access(renderer / helm_binary.RENDERER, os.X_OK):
        renderer.mkdir(parents=True, exist_ok=True)
        build_tool(_renderer_tool(), renderer, log)
    else:
        log(f"{helm_binary.RENDERER} cached in {renderer}")
    return target / "helm"


def build_tool(tool: GoTool, target: Path, log=print) -> None:
    """`go build` each of the tool's commands into `target`: in a generated module that
    requires the tool's, or, for a module of this repository, where it lies, with the go.sum
    it carries (`-mod=readonly`: the build never edits the checkout)."""
    workdir, flags = (tool.source, "-mod=readonly -buildvcs=false") if tool.source else \
        (_generated_module(tool), "-mod=mod")
    env = {**os.environ, "GOFLAGS": flags, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
    with tempfile.TemporaryDirectory(dir=target.parent) as out:
        for name, package in tool.packages.items():
            log(f"building {name} from {tool.module}@{tool.version}")
            command = ["go", "build", "-trimpath", "-ldflags", tool.ldflags,
                       "-o", str(Path(out) / name), package]
            result = subprocess.run(command, cwd=workdir, env=env,
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise UserError(f"{name}: `go build {package}` in {workdir} failed:\n"
                                f"{result.stderr[-4000:]}")
            os.replace(Path(out) / name, target / name)


def _generated_module(tool: GoTool) -> Path:
    tool.build_dir.mkdir(parents=True, exist_ok=True)
    (tool.build_dir / "go.mod").write_text(
        f"module gitops-restore.local/build\n\ngo {GO_VERSION}\n\n"
        f"require {tool.module} {tool.version}\n\n{tool.go_mod_extra}\n"
    )
    return tool.build_dir


def go_tools() -> list[GoTool]:
    """Every Go module we build, at its pinned version."""
    return [_kubernetes_tool(), *_other_tools(), _helm_tool(), _renderer_tool()]


def engine_tools(programs: Iterable[str] | None = None) -> list[GoTool]:
    """The tools (from `go_tools`) that build `programs` (default: the engine's Go programs,
    `sync_agent.paths.GO_PROGRAMS`), each cut down to those commands."""
    wanted = set(paths.GO_PROGRAMS if programs is None else programs)
    tools = go_tools()
    unknown = wanted - {name for tool in tools for name in tool.packages}
    if unknown:
        raise UserError(f"{', '.join(sorted(unknown))}: the engine runs it, but no Go module in "
                        "bootstrap/binaries.py builds it; add a GoTool for it")
    return [replace(tool, packages={name: package for name, package in tool.packages.items()
                                    if name in wanted})
            for tool in tools if tool.packages.keys() & wanted]


def build_engine_programs(target: Path, log=print) -> list[str]:
    """Build every Go program the engine runs into `target` (the agent image's bin dir)."""
    _need_go()
    target.mkdir(parents=True, exist_ok=True)
    built = []
    for tool in engine_tools():
        build_tool(tool, target, log)
        built.extend(tool.packages)
    return built


def _need_go() -> None:
    if shutil.which("go") is None:
        raise UserError("`go` is not on PATH: the control plane is built from Go modules; "
                        f"install Go {GO_VERSION} or newer")


def ensure_binaries(log=print) -> Path:
    """Build whatever of the control plane is missing from the cache; return the bin dir."""
    _need_go()
    target = k8s_bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    missing = set(missing_binaries(target))
    if not missing:
        log(f"control plane binaries cached in {target}")
    for tool in go_tools() if missing else []:
        if missing & tool.packages.keys():
            build_tool(tool, target, log)
    ensure_helm(log)
    return target
