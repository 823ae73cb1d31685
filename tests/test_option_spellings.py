"""One naming rule across commands, the old spellings still working for one release, and
KUBECONFIG read wherever --kubeconfig is.

The rule is read from the real command tree; the old spellings are run as a user would, with
values each command refuses by name before it touches a cluster, so the error shows which
option the value reached.
"""

from __future__ import annotations

import json

import pytest
import typer

from bootstrap.cli import app
from tests import cli
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.testdata.gitrepos import commit, new_repo


def commands(group=None, path=()):
    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def flags(command) -> dict[str, object]:
    return {flag: p for p in command.params for flag in getattr(p, "opts", ())
            if flag.startswith("--")}


def test_every_command_follows_one_naming_rule():
    named = {path: flags(command) for path, command in commands()}
    assert [path for path, f in named.items() if "--name" in f] == ["provision"]
    assert not [path for path, f in named.items() if {"--sync-name", "--cluster-name"} & set(f)]
    takes_sync = {path for path, f in named.items() if "--sync" in f}
    assert {"restore", "plan", "rollback", "verify", "status", "drill", "bootstrap",
            "agent install", "agent status", "agent pin"} <= takes_sync
    assert {"destroy", "bootstrap", "drill", "restore", "agent status",
            "deploy-key show"} <= {path for path, f in named.items() if "--cluster" in f}


def test_every_kubeconfig_option_reads_KUBECONFIG():
    kubeconfigs = {path: f["--kubeconfig"] for path, command in commands()
                   if "--kubeconfig" in (f := flags(command))}
    assert {"provision", "bootstrap", "drill", "restore", "deploy-key create"} <= set(kubeconfigs)
    assert {path: o.envvar for path, o in kubeconfigs.items() if o.envvar != "KUBECONFIG"} == {}


@pytest.fixture
def repo(tmp_path):
    path = new_repo(tmp_path / "fleet")
    commit(path, {"app/a.yaml": m.configmap("a")}, "v1")
    return str(path)


OLD_SPELLINGS = {
    "destroy --name": (["destroy", "--name", "no-such-cluster"], "--cluster",
                       "cluster 'no-such-cluster'"),
    "plan --name": (["plan", "--repo", "{repo}", "--name", "Not A Name"], "--sync",
                    "--sync 'Not A Name'"),
    "verify --name=": (["verify", "--repo", "{repo}", "--name=Not A Name"], "--sync",
                       "--sync 'Not A Name'"),
    "bootstrap --name": (["bootstrap", "--name", "Not_A_Name", "--repo", "{repo}"], "--cluster",
                         "cluster name 'Not_A_Name'"),
    "bootstrap --sync-name": (["bootstrap", "--cluster", "x", "--sync-name", "Not A Name",
                               "--repo", "{repo}"], "--sync", "--sync 'Not A Name'"),
    "drill --cluster-name": (["drill", "--repo", "{repo}", "--cluster-name", "Not_A_Name"],
                             "--cluster", "cluster name 'Not_A_Name'"),
    "drill --name": (["drill", "--repo", "{repo}", "--name", "Not A Name"], "--sync",
                     "--sync 'Not A Name'"),
    "deploy-key create --name": (["deploy-key", "create", "--repo",
                                  "ssh://git@git.example/fleet.git", "--name", "Not A Name"],
                                 "--deploy-key", "--deploy-key 'Not A Name'"),
}


@pytest.mark.parametrize("case", sorted(OLD_SPELLINGS))
def test_an_old_spelling_still_works_and_names_the_new_one(case, repo, state_root):
    args, new, error = OLD_SPELLINGS[case]
    old = case.split()[-1].rstrip("=")
    result = cli.run(*(a.format(repo=repo) for a in args), check_code=2)
    assert f"warning: {old} is deprecated; use {new}" in result.stderr
    assert error in result.stderr  # the value reached the new option, which refused it


def test_a_value_that_looks_like_an_old_spelling_is_left_alone(state_root, tmp_path):
    result = cli.run("plan", "--repo", "--name", "--kubeconfig", str(tmp_path / "none"))
    assert "deprecated" not in result.stderr
    assert str(tmp_path / "none") in result.stderr  # --repo took "--name"; the run went on


@pytest.mark.parametrize("command", [
    ["provision", "--provider", "existing", "--name", "theirs"],
    ["bootstrap", "--provider", "existing", "--cluster", "theirs", "--repo", "{repo}"],
    ["drill", "--provider", "existing", "--repo", "{repo}"],
])
def test_kubeconfig_comes_from_KUBECONFIG_too(command, repo, state_root, tmp_path):
    missing = str(tmp_path / "their-kubeconfig")
    result = cli.run(*(a.format(repo=repo) for a in command), env={"KUBECONFIG": missing},
                     check_code=2)
    assert f"{missing}: no such" in result.stderr


def test_old_sync_and_deploy_key_spellings_work_against_a_cluster(local_cluster, namespace,
                                                                  repo):
    cli.run("restore", "--repo", repo, "--path", "app", "--cluster", SESSION_CLUSTER,
            "-n", namespace, "--sync", namespace, check_code=0)
    status = cli.run("status", "--name", namespace, "--cluster", SESSION_CLUSTER,
                     "--output", "json", check_code=0)
    assert "warning: --name is deprecated; use --sync" in status.stderr
    assert [row["sync"] for row in json.loads(status.stdout)] == [namespace]
    agent = cli.run("agent", "status", "--name", namespace, "--cluster", SESSION_CLUSTER,
                    check_code=2)
    assert f"Sync gitops-restore-system/{namespace}: not found" in agent.stderr
    key = cli.run("deploy-key", "show", "--name", namespace, "--cluster", SESSION_CLUSTER,
                  check_code=2)
    assert "warning: --name is deprecated; use --deploy-key" in key.stderr
    assert f"deploy-key create --deploy-key {namespace} " in key.stderr
