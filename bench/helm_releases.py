"""Helm render + restore of 20 releases, side by side with the same objects as plain YAML.

A repository holds one chart (`helm create web`) and 20 Flux HelmReleases of it (`--helm
render`: the local cluster serves no HelmRelease kind); a second repository holds exactly the
objects those releases render, as plain files (made by our own renderer, so they are the same
objects, ownership marks included). Each round restores both into fresh namespaces of one
local cluster, interleaved; the report gives the medians of the render phase and of the whole
restore, and the render's share of the Helm restore: rendering must not dominate it. A verify
of the Helm repository afterwards shows the render with the render cache warm (as in plan ->
restore -> verify, or the agent's next sync).
Run: `python -m bench.helm_releases --releases 20 --rounds 3`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.restore_throughput import GITOPS_RESTORE, destroy, provision
from sync_agent import engine
from sync_agent.helm import binary, process
from sync_agent.kube import Kube

ROOT = Path(__file__).resolve().parent
CLUSTER = "bench-helm"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def helm_repo(work: Path, namespace: str, releases: int) -> Path:
    repo = work / f"helm-{namespace}"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    helm = binary.helm_path()
    if helm is None:
        raise SystemExit("helm is not built: run `gitops-restore cluster-bin`")
    (repo / "charts").mkdir()
    created = process.run(helm, ["create", str(repo / "charts" / "web")], work, 60, 1 << 20)
    if created.returncode != 0:
        raise SystemExit(f"helm create: {created.stderr}")
    documents = [{
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": f"app-{n:02d}", "namespace": namespace},
        "spec": {"interval": "10m", "values": {"replicaCount": 1},
                 "chart": {"spec": {"chart": "./charts/web", "sourceRef": {
                     "kind": "GitRepository", "name": "flux-system",
                     "namespace": "flux-system"}}}},
    } for n in range(releases)]
    namespace_doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    (repo / "apps").mkdir()
    (repo / "apps" / "releases.yaml").write_text(yaml.safe_dump_all([namespace_doc,
                                                                     *documents]))
    _commit(repo)
    return repo


def plain_repo(work: Path, helm: Path, namespace: str, kubeconfig: str) -> Path:
    """The objects the Helm repository renders to, written out as plain YAML."""
    repo = work / f"plain-{namespace}"
    (repo / "apps").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    spec = engine.SourceSpec(repo=str(helm), path="apps")
    opened, revision = engine.fetch(spec)
    with Kube.from_kubeconfig(kubeconfig, None) as kube:
        context = engine.helm_context(kube, spec, engine.SyncOptions(namespace, namespace))
    rendered = engine.render_revision(opened, revision, spec, context)
    (repo / "apps" / "objects.yaml").write_text(
        yaml.safe_dump_all([r.body for r in rendered.resources]))
    _commit(repo)
    return repo


def _commit(repo: Path) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-q",
        "-m", "bench")


def restore(repo: Path, namespace: str, name: str, kubeconfig: str, verb: str = "restore"
            ) -> dict:
    started = time.monotonic()
    done = subprocess.run([GITOPS_RESTORE, verb, "--repo", str(repo), "--path", "apps",
                           "-n", namespace, "--sync", name, "--kubeconfig", kubeconfig,
                           "--output", "json"],
                          capture_output=True, text=True)
    wall = time.monotonic() - started
    report = json.loads(done.stdout) if done.stdout.startswith("{") else {}
    # verify may see a rollout's status move under it (exit 3); only its render time is used
    if done.returncode != 0 and not (verb == "verify" and done.returncode == 3):
        differing = [c for c in report.get("changes", []) if c["action"] != "unchanged"]
        raise SystemExit(f"{verb} of {repo} failed ({done.returncode}):\n"
                         f"{json.dumps(differing, indent=1)}\n{done.stderr[-3000:]}")
    phases = {p["phase"]: p["seconds"] for p in report["phases"]}
    return {"wall": wall, "render": phases.get("render", 0.0), "total": report["seconds"],
            "objects": len(report["changes"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    kubeconfig = provision(CLUSTER)
    rounds = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            run = secrets.token_hex(3)  # new names: no render of an earlier run is reused
            for n in range(args.rounds):
                ns_helm, ns_plain = f"helm-{run}-{n}", f"plain-{run}-{n}"
                charts = helm_repo(work, ns_helm, args.releases)
                plain = plain_repo(work, helm_repo(work, ns_plain, args.releases), ns_plain,
                                   kubeconfig)
                rounds.append({"helm": restore(charts, ns_helm, ns_helm, kubeconfig),
                               "plain": restore(plain, ns_plain, ns_plain, kubeconfig),
                               "helm_verify": restore(charts, ns_helm, ns_helm, kubeconfig,
                                                      "verify")})
    finally:
        destroy(CLUSTER)
    summary = _summary(rounds, args.releases)
    out = ROOT / "results" / f"helm-releases-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"rounds": rounds, "summary": summary}, indent=2))
    json.dump(summary, sys.stdout, indent=2)
    print(f"\nwritten to {out}")


def _summary(rounds: list[dict], releases: int) -> dict:
    def median(way: str, key: str) -> float:
        return round(statistics.median(r[way][key] for r in rounds), 3)

    return {
        "releases": releases, "rounds": len(rounds),
        "objects": rounds[0]["helm"]["objects"],
        "helm_render_s": median("helm", "render"), "helm_restore_s": median("helm", "total"),
        "plain_render_s": median("plain", "render"), "plain_restore_s": median("plain", "total"),
        "helm_wall_s": median("helm", "wall"), "plain_wall_s": median("plain", "wall"),
        "helm_verify_render_s (warm, cached)": median("helm_verify", "render"),
        "render_share_of_helm_restore": round(median("helm", "render")
                                              / median("helm", "total"), 3),
        "helm_over_plain": round(median("helm", "total") / median("plain", "total"), 3),
    }


if __name__ == "__main__":
    main()
