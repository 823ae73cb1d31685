"""provision / destroy through each provider's playbook, run as the user runs the command."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import yaml

from sync_agent import paths
from tests import cli
from tests.conftest import SESSION_CLUSTER


def ready_nodes(kubeconfig: str) -> list[str]:
    out = subprocess.run(
        [paths.kubectl(), "--kubeconfig", kubeconfig, "get", "nodes", "--no-headers"],
        check=True, capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1] == "Ready"]


def server_of(kubeconfig: str) -> str:
    return yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]["server"]


def test_second_provision_of_a_running_cluster_changes_nothing(local_cluster):
    result = cli.run("provision", "--name", SESSION_CLUSTER, "--nodes", "3", check_code=0)
    assert "already running" in result.stderr
    assert result.stdout.strip() == local_cluster.kubeconfig


def test_destroy_of_an_unknown_cluster_is_a_clear_error(local_cluster):
    result = cli.run("destroy", "--cluster", "no-such-cluster", check_code=2)
    assert "no-such-cluster" in result.stderr
    assert SESSION_CLUSTER in result.stderr  # lists the clusters that do exist


def test_two_clusters_run_side_by_side_and_destroy_removes_everything(local_cluster):
    second = cli.run_json("provision", "--name", "second", "--nodes", "2", check_code=0)
    kubeconfig = second["kubeconfig"]
    assert server_of(kubeconfig) != server_of(local_cluster.kubeconfig)
    assert len(ready_nodes(kubeconfig)) == 2
    assert len(ready_nodes(local_cluster.kubeconfig)) == 3

    workdir = paths.state_root() / "kwok" / "clusters" / "second"
    assert subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True).returncode == 0

    cli.run("destroy", "--cluster", "second", check_code=0)
    assert subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True).returncode == 1
    assert not workdir.exists()
    assert not Path(kubeconfig).parent.exists()
    assert len(ready_nodes(local_cluster.kubeconfig)) == 3  # the other cluster is untouched


def test_existing_provider_checks_the_api_server_answers(local_cluster):
    record = cli.run_json("provision", "--provider", "existing", "--name", "theirs",
                          "--kubeconfig", local_cluster.kubeconfig, check_code=0)
    assert record["kubeconfig"] == local_cluster.kubeconfig
    cli.run("destroy", "--cluster", "theirs", check_code=0)
    assert len(ready_nodes(local_cluster.kubeconfig)) == 3  # forgetting it stopped nothing


def test_existing_provider_takes_the_kubeconfig_from_KUBECONFIG(local_cluster):
    record = cli.run_json("provision", "--provider", "existing", "--name", "theirs-env",
                          env={"KUBECONFIG": local_cluster.kubeconfig}, check_code=0)
    assert record["kubeconfig"] == local_cluster.kubeconfig
    cli.run("destroy", "--cluster", "theirs-env", check_code=0)


def test_existing_provider_rejects_a_missing_kubeconfig(local_cluster, tmp_path):
    result = cli.run("provision", "--provider", "existing", "--name", "ghost",
                     "--kubeconfig", str(tmp_path / "nope"), check_code=2)
    assert str(tmp_path / "nope") in result.stderr


def test_kind_provider_calls_kind_create_cluster_with_a_config(local_cluster, tmp_path):
    """kind needs Docker, absent here: a stand-in `kind` records its arguments and hands back
    the local cluster's kubeconfig, so the playbook's real calls and result handling are tested."""
    stand_in = tmp_path / "bin" / "kind"
    stand_in.parent.mkdir()
    calls = tmp_path / "calls"
    stand_in.write_text(f"""#!/bin/sh
echo "$@" >> {calls}
case "$1 $2" in
  "version "*) echo "kind v0.32.0 stand-in" ;;
  "get clusters") cat {tmp_path}/clusters 2>/dev/null; true ;;
  "delete cluster") : > {tmp_path}/clusters ;;
  "create cluster")
    while [ $# -gt 0 ]; do
      case "$1" in
        --name) echo "$2" >> {tmp_path}/clusters ;;
        --config) cp "$2" {tmp_path}/config.yaml ;;
        --kubeconfig) cp {local_cluster.kubeconfig} "$2" ;;
      esac
      shift
    done ;;
esac
""")
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{stand_in.parent}:{os.environ['PATH']}"}

    record = cli.run_json("provision", "--provider", "kind", "--name", "ci", "--nodes", "2",
                          env=env, check_code=0)
    lines = calls.read_text().splitlines()
    create = next(line for line in lines if line.startswith("create cluster"))
    assert "--name ci" in create and "--config" in create
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker", "worker"]
    assert record["context"] == "kind-ci"
    assert len(ready_nodes(record["kubeconfig"])) == 3  # the handed-back kubeconfig works

    again = cli.run_json("provision", "--provider", "kind", "--name", "ci", env=env, check_code=0)
    assert again["already_running"] is True
    assert sum(line.startswith("create cluster") for line in calls.read_text().splitlines()) == 1

    cli.run("destroy", "--cluster", "ci", env=env, check_code=0)
    assert any(line.startswith("delete cluster --name ci")
               for line in calls.read_text().splitlines())
