"""drill and demo end to end: real Git repositories, real clusters, the reports CI reads.

Drills that are not about provisioning run with `--provider existing` on the session cluster,
each in its own namespace and sync name; the demo repository drills run the default `local`
provider, which provisions a cluster of their own and destroys it (or keeps it, with --keep).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from kubernetes import client, config

from bootstrap import drill
from sync_agent import rollback_target, source
from tests import cli
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.testdata.gitrepos import clone_bundle, commit, git, new_repo

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "schemas" /
                     "drill-report.schema.json").read_text())
GUESTBOOK_ONLY_APP = ("--ignore", "all-in-one", "--ignore", "legacy")
PHASES = ["provision", "restore-from", "verify-from", "rollback-to", "verify-to",
          "roll-forward", "verify-forward", "teardown"]


def valid_report(path: Path) -> dict:
    report = json.loads(path.read_text())
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()
                                    ).validate(report)
    return report


def junit_cases(junit: Path) -> dict[str, ET.Element]:
    suites = ET.parse(junit).getroot()
    assert suites.tag == "testsuites" and len(suites.findall("testsuite")) == 1
    return {case.get("name"): case for case in suites.iter("testcase")}


def phase(report: dict, name: str) -> dict:
    return next(p for p in report["phases"] if p["name"] == name)


def clusters_known() -> list[str]:
    return [c["name"] for c in cli.run_json("clusters")]


def drill_existing(repo: Path, namespace: str, kubeconfig: str, tmp_path: Path, *args: str,
                   code: int) -> tuple[dict, Path]:
    """A drill in the session cluster; returns the validated JSON report and the JUnit path."""
    report, junit = tmp_path / "drill.json", tmp_path / "junit.xml"
    cli.run("drill", "--repo", str(repo), "--provider", "existing", "--kubeconfig", kubeconfig,
            "-n", namespace, "--sync", namespace, "--report", str(report), "--junit",
            str(junit), "--summary", str(tmp_path / "summary.md"), *args, check_code=code)
    return valid_report(report), junit


@pytest.fixture(scope="module")
def guestbook(tmp_path_factory):
    return clone_bundle("guestbook", tmp_path_factory.mktemp("fixtures") / "guestbook")


@pytest.fixture
def demo_repo(tmp_path) -> Path:
    return drill.build_demo_repo(tmp_path / "shop")


def test_guestbook_drill_rolls_back_across_the_moved_directory_and_passes(
        api_client, local_cluster, namespace, guestbook, tmp_path):
    report, junit = drill_existing(guestbook, namespace, local_cluster.kubeconfig, tmp_path,
                                   "--path", "web/guestbook", *GUESTBOOK_ONLY_APP,
                                   "--timeout", "2m", code=0)
    assert report["result"] == "passed"
    assert [p["name"] for p in report["phases"]] == PHASES
    assert {p["result"] for p in report["phases"]} == {"passed"}
    assert report["from"]["sha"] == git(guestbook, "rev-parse", "HEAD")
    assert report["from"]["path"] == "web/guestbook"
    # HEAD only moved guestbook/ to web/guestbook/: the previous state lives under guestbook/.
    assert report["to"]["sha"].startswith("8f3a985") and report["to"]["path"] == "guestbook"
    assert report["to"]["ref"] == rollback_target.PREVIOUS
    frontend = f"Deployment/{namespace}/frontend"
    assert phase(report, "rollback-to")["changes"] == [{"object": frontend,
                                                        "result": "configured"}]
    assert phase(report, "verify-to")["counts"] == {"in sync": 6}
    assert report["cluster"]["provider"] == "existing" and report["cluster"]["kept"]
    assert report["counts"]["failures"] == 0
    cases = junit_cases(junit)
    assert list(cases) == PHASES
    assert not any(case.findall("failure") for case in cases.values())
    summary = (tmp_path / "summary.md").read_text()
    assert report["to"]["sha"] in summary and "| rollback-to | recovery | ✅ passed" in summary
    head_image = client.AppsV1Api(api_client).read_namespaced_deployment(
        "frontend", namespace).spec.template.spec.containers[0].image
    assert "gb-frontend" in head_image
    assert SESSION_CLUSTER in clusters_known()  # the existing cluster is left alone


def test_drill_fails_and_names_the_workload_that_never_becomes_ready(
        api_client, local_cluster, namespace, tmp_path):
    repo = new_repo(tmp_path / "pinned")
    pinned = m.deployment("web", replicas=1).replace(
        "    spec:\n", "    spec:\n      nodeSelector: {disktype: none-such}\n")
    commit(repo, {"web.yaml": pinned, "settings.yaml": m.configmap("settings", v="1")},
           "web pinned to a node that does not exist")
    commit(repo, {"web.yaml": m.deployment("web", replicas=1)}, "web fixed")
    report, junit = drill_existing(repo, namespace, local_cluster.kubeconfig, tmp_path,
                                   "--timeout", "3s", code=1)
    assert report["result"] == "failed"
    results = {p["name"]: p["result"] for p in report["phases"]}
    assert results == {"provision": "passed", "restore-from": "passed",
                       "verify-from": "passed", "rollback-to": "failed", "verify-to": "failed",
                       "roll-forward": "passed", "verify-forward": "passed",
                       "teardown": "passed"}
    web = f"Deployment/{namespace}/web"
    for name in ("rollback-to", "verify-to"):
        (failure,) = phase(report, name)["failures"]
        assert failure["object"] == web and failure["kind"] == "unhealthy"
        assert "node affinity/selector" in failure["reason"]
        (element,) = junit_cases(junit)[name].findall("failure")
        assert element.get("type") == "unhealthy"
        assert web in element.get("message") and "Unschedulable" in element.get("message")
    assert report["counts"]["unhealthy"] == 2 and report["counts"]["phases_failed"] == 2
    assert web in (tmp_path / "summary.md").read_text()
    live = client.AppsV1Api(api_client).read_namespaced_deployment("web", namespace)
    assert live.spec.template.spec.node_selector is None  # rolled forward out of it


def test_default_drill_provisions_a_local_cluster_and_destroys_it(state_root, demo_repo,
                                                                  tmp_path):
    report_path = tmp_path / "drill.json"
    result = cli.run("drill", "--repo", str(demo_repo), "--path", drill.DEMO_PATH,
                     "--report", str(report_path), "--junit", str(tmp_path / "junit.xml"),
                     check_code=0)
    report = valid_report(report_path)
    assert [(p["name"], p["result"]) for p in report["phases"]] == [
        (name, "passed") for name in PHASES]
    shas = git(demo_repo, "log", "--format=%H").split()
    assert report["from"]["sha"] == shas[0] and report["to"]["sha"] == shas[1]  # r3 and r2
    assert report["cluster"]["provider"] == "local" and not report["cluster"]["kept"]
    rollback = {c["object"]: c["result"] for c in phase(report, "rollback-to")["changes"]}
    assert rollback == {"ConfigMap/shop/settings": "configured",
                        "ConfigMap/shop/worker": "deleted", "Deployment/shop/worker": "deleted"}
    forward = {c["object"]: c["result"] for c in phase(report, "roll-forward")["changes"]}
    assert forward["Deployment/shop/worker"] == "created"
    assert phase(report, "verify-forward")["counts"] == {"in sync": 8}
    assert report["cluster"]["name"] not in clusters_known()
    assert not (state_root / "kwok" / "clusters" / report["cluster"]["name"]).exists()
    assert "recovery time" in result.stdout


def test_demo_with_keep_leaves_the_cluster_up_and_prints_its_kubeconfig(state_root, tmp_path):
    result = cli.run("demo", "--keep", "--workdir", str(tmp_path), check_code=0)
    report = valid_report(tmp_path / "drill-report.json")
    name = report["cluster"]["name"]
    try:
        assert report["cluster"]["kept"]
        assert phase(report, "teardown")["result"] == "skipped"
        match = re.search(r"kubeconfig: (\S+)", result.stdout)
        assert match and match.group(1) == report["cluster"]["kubeconfig"]
        assert name in clusters_known()
        api = config.new_client_from_config(config_file=match.group(1))
        web = client.AppsV1Api(api).read_namespaced_deployment("web", "shop")
        assert web.status.ready_replicas == 3
        assert junit_cases(tmp_path / "drill-junit.xml")["teardown"].find("skipped") is not None
        assert "✅ passed" in (tmp_path / "drill-summary.md").read_text()
    finally:
        cli.run("destroy", "--cluster", name, check_code=0)
    assert name not in clusters_known()


def test_unknown_to_ref_exits_2_and_provisions_nothing(state_root, demo_repo):
    before = clusters_known()
    kwok_before = sorted((state_root / "kwok" / "clusters").glob("*"))
    result = cli.run("drill", "--repo", str(demo_repo), "--path", drill.DEMO_PATH,
                     "--to", "no-such-ref", check_code=2)
    assert "unknown ref 'no-such-ref'" in result.stderr
    assert "provision" not in result.stderr
    assert clusters_known() == before
    assert sorted((state_root / "kwok" / "clusters").glob("*")) == kwok_before


def test_other_bad_input_exits_2_before_provisioning(state_root, local_cluster, demo_repo):
    taken = cli.run("drill", "--repo", str(demo_repo), "--cluster", SESSION_CLUSTER,
                    check_code=2)
    assert "already exists" in taken.stderr  # the drill would destroy it at the end
    no_config = cli.run("drill", "--repo", str(demo_repo), "--provider", "existing",
                        env={"KUBECONFIG": ""}, check_code=2)
    assert "--kubeconfig" in no_config.stderr
    moved = cli.run("drill", "--repo", str(demo_repo), "--path", "apps/nowhere", check_code=2)
    assert "apps/nowhere" in moved.stderr
    assert clusters_known() == [SESSION_CLUSTER]


def test_a_path_with_a_single_commit_has_no_previous_state_and_needs_to(state_root, tmp_path):
    repo = new_repo(tmp_path / "single")
    commit(repo, {"app/cm.yaml": m.configmap("cm", v="1")}, "only commit")
    result = cli.run("drill", "--repo", str(repo), "--path", "app", check_code=2)
    assert "--to" in result.stderr and "no earlier commit" in result.stderr


def test_previous_state_follows_a_moved_directory(tmp_path):
    repo = new_repo(tmp_path / "moves")
    v1 = commit(repo, {"app/cm.yaml": m.configmap("cm", v="1")}, "v1")
    v2 = commit(repo, {"app/cm.yaml": m.configmap("cm", v="2")}, "v2")
    git(repo, "mv", "app", "apps")
    commit(repo, {}, "pure move: app -> apps")
    repo_obj = source.open_repository(str(repo))

    def previous(path: str) -> tuple[str, str] | None:
        found = rollback_target.previous_state(repo_obj, str(repo), path, "HEAD")
        return (found.revision.sha, found.path) if found else None

    assert previous("apps") == (v1, "app")  # the move changed nothing: v2's state is HEAD's
    git(repo, "mv", "apps", "web")
    moved_and_edited = {"web/cm.yaml": m.configmap("cm", v="3")}
    commit(repo, moved_and_edited, "move apps -> web and edit")
    assert previous("web") == (v2, "app")  # v2 made the state before the edit, under app/
    assert rollback_target.moved_from(repo_obj, v1, v2, "app") is None


def test_demo_repo_is_the_same_on_every_build(tmp_path):
    one = drill.build_demo_repo(tmp_path / "one")
    two = drill.build_demo_repo(tmp_path / "two")
    assert git(one, "log", "--format=%H %cI %s") == git(two, "log", "--format=%H %cI %s")
    assert len(git(one, "log", "--format=%H").split()) == len(drill.DEMO_HISTORY)


# --- the drill rehearses the real rollback: its flags, what it keeps, what differs ----------

def test_drill_of_guestbook_in_an_undeclared_namespace_passes_with_create_namespaces(
        api_client, local_cluster, namespace, guestbook, tmp_path):
    """Guestbook's manifests name no namespace: drilled into one that does not exist."""
    target = f"{namespace}-gb"
    try:
        report, _ = drill_existing(guestbook, target, local_cluster.kubeconfig, tmp_path,
                                   "--path", "web/guestbook", *GUESTBOOK_ONLY_APP,
                                   "--create-namespaces", "--timeout", "2m", code=0)
        assert {p["result"] for p in report["phases"]} == {"passed"}
        for name in ("verify-from", "verify-to", "verify-forward"):
            assert phase(report, name)["counts"] == {"kept": 1, "in sync": 6}
            assert {"object": f"Namespace/{target}", "result": "kept"} in \
                phase(report, name)["changes"]
        assert report["flags"] == {"given": [], "needed": []}
    finally:
        client.CoreV1Api(api_client).delete_namespace(target)


def relabelled_guestbook(guestbook: Path, dest: Path) -> Path:
    """Guestbook plus a commit that relabels the redis replicas in place (same Deployment
    name, new selector), as real histories do: rolling back across it needs --force."""
    repo = clone_bundle("guestbook", dest)
    for name in ("redis-replica-deployment.yaml", "redis-replica-service.yaml"):
        path = repo / "web" / "guestbook" / name
        path.write_text(path.read_text().replace("role: replica", "role: follower"))
    commit(repo, {}, "redis: select replicas by role=follower")
    return repo


def test_drill_rehearses_a_rollback_that_needs_force(api_client, local_cluster, namespace,
                                                     guestbook, tmp_path):
    repo = relabelled_guestbook(guestbook, tmp_path / "relabelled")
    args = ("--path", "web/guestbook", *GUESTBOOK_ONLY_APP, "--to", "HEAD~1", "--timeout", "2m")
    replicas = f"Deployment/{namespace}/redis-replica"

    report, _ = drill_existing(repo, namespace, local_cluster.kubeconfig, tmp_path / "bare",
                               *args, code=1)
    rollback = phase(report, "rollback-to")
    assert rollback["result"] == "failed"
    (need,) = rollback["needs"]
    assert need["flag"] == "--force" and not need["given"]
    assert replicas in need["reason"] and "spec.selector" in need["reason"]
    assert "--force" in rollback["note"]
    assert report["flags"] == {"given": [], "needed": ["--force"]}
    # verify-to says what differs from the older revision, not the rollback's error again.
    verify_to = phase(report, "verify-to")
    found = {f["object"]: f for f in verify_to["failures"]}
    assert found[replicas]["kind"] == "drifted" and "spec.selector" in found[replicas]["reason"]
    assert found[f"Service/{namespace}/redis-replica"]["kind"] == "drifted"
    assert {f["kind"] for f in verify_to["failures"]} == {"drifted"}
    assert phase(report, "verify-forward")["result"] == "passed"

    report, junit = drill_existing(repo, namespace, local_cluster.kubeconfig,
                                   tmp_path / "forced", *args, "--force", code=0)
    assert {p["result"] for p in report["phases"]} == {"passed"}
    assert {"object": replicas, "result": "recreated"} in phase(report, "rollback-to")["changes"]
    for name in ("rollback-to", "roll-forward"):
        assert [(n["flag"], n["given"]) for n in phase(report, name)["needs"]] == [
            ("--force", True)]
    assert report["flags"] == {"given": ["--force"], "needed": ["--force"]}
    assert "needed --force (given)" in junit_cases(junit)["rollback-to"].find("system-out").text
    assert "Safety flags given: `--force`; needed: `--force`" in \
        (tmp_path / "forced" / "summary.md").read_text()
    live = client.AppsV1Api(api_client).read_namespaced_deployment("redis-replica", namespace)
    assert live.spec.selector.match_labels["role"] == "follower"  # rolled forward


def test_drill_rehearses_a_mass_prune(local_cluster, namespace, tmp_path):
    repo = new_repo(tmp_path / "split")
    commit(repo, {"app/settings.yaml": m.configmap("settings", v="1")}, "one settings map")
    commit(repo, {f"app/settings-{i}.yaml": m.configmap(f"settings-{i}", v="1")
                  for i in range(4)}, "settings split per service")
    report, _ = drill_existing(repo, namespace, local_cluster.kubeconfig, tmp_path / "bare",
                               "--path", "app", code=1)
    (need,) = phase(report, "rollback-to")["needs"]
    assert (need["flag"], need["given"]) == ("--allow-mass-prune", False)
    assert "delete 4 of 5" in need["reason"]
    extra = {f["object"] for f in phase(report, "verify-to")["failures"]
             if f["kind"] == "extra"}
    assert extra == {f"ConfigMap/{namespace}/settings-{i}" for i in range(4)}

    report, _ = drill_existing(repo, namespace, local_cluster.kubeconfig, tmp_path / "allowed",
                               "--path", "app", "--allow-mass-prune", code=0)
    assert report["flags"] == {"given": ["--allow-mass-prune"], "needed": ["--allow-mass-prune"]}
    assert phase(report, "roll-forward")["needs"] == []  # creating is never a mass prune


def test_drill_keeps_a_database_claim_on_rollback_and_verifies_it_as_kept(
        api_client, local_cluster, namespace, tmp_path):
    volume = f"{namespace}-pv"
    pv = f"""apiVersion: v1
kind: PersistentVolume
metadata:
  name: {volume}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  hostPath: {{path: /tmp/{volume}}}
"""
    claim = m.pvc("postgres-data").replace(
        "  resources:", f"  storageClassName: \"\"\n  volumeName: {volume}\n  resources:")
    repo = new_repo(tmp_path / "db")
    commit(repo, {"app/web.yaml": m.deployment("web", replicas=1)}, "web")
    commit(repo, {"app/postgres.yaml": m.deployment("postgres", replicas=1, image="postgres:17"),
                  "app/data.yaml": pv + "---\n" + claim}, "add the database")
    try:
        report, _ = drill_existing(repo, namespace, local_cluster.kubeconfig, tmp_path,
                                   "--path", "app", "--timeout", "2m", code=0)
        rollback = {c["object"]: c["result"] for c in phase(report, "rollback-to")["changes"]}
        assert rollback == {f"Deployment/{namespace}/postgres": "deleted",
                            f"PersistentVolumeClaim/{namespace}/postgres-data": "kept",
                            f"PersistentVolume/{volume}": "kept"}
        assert phase(report, "verify-to")["counts"] == {"kept": 2, "in sync": 1}
        assert report["flags"] == {"given": [], "needed": []}
        assert phase(report, "verify-forward")["counts"] == {"in sync": 4}
    finally:
        client.CoreV1Api(api_client).delete_persistent_volume(volume)
