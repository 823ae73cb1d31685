"""Every error is of one kind (sync_agent/errors.py), and the kind alone decides the CLI's exit
code and whether the agent reports a failed sync Stalled or retrying."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import typer

import bootstrap
import sync_agent
from bootstrap.cli.output import exits_cleanly
from bootstrap.errors import OperationFailed, UserError
from sync_agent import digests, errors, inventory, lock, signatures, sync_identity
from sync_agent.agent import attempts, config, decryption, deploykey, syncobject, verifykeys
from sync_agent.apply import ApplyError
from sync_agent.git_process import GitTimeout
from sync_agent.kube import ApiError, Unreachable
from sync_agent.prune import PruneError
from tests.testdata.gitrepos import commit, new_repo


def every_error_class() -> list[type[errors.SyncError]]:
    for package in (sync_agent, bootstrap):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            importlib.import_module(module.name)
    found, todo = {}, [errors.SyncError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found[sub] = None  # a class with two bases of ours is found twice
            todo.append(sub)
    return list(found)


def test_every_error_class_is_of_a_kind_and_none_carries_its_own_exit_code():
    classes = every_error_class()
    assert len(classes) > 25  # every module was imported
    assert [c.__name__ for c in classes if not issubclass(c, errors.KINDS)] == []
    assert [c.__name__ for c in classes if "exit_code" in vars(c)] == []
    # Only a Failed family has members of another kind, so isinstance(e, Refused) is exact.
    mixed = [c.__name__ for c in classes
             if sum(issubclass(c, k) for k in (errors.Transient, errors.Conflict,
                                                errors.Refused)) > 1]
    assert mixed == []


def error(name: str) -> Exception:
    """One error of each class a run can end with, as the engine raises it."""
    return {
        "ValidationError": errors.ValidationError(["apps/web.yaml, document 1: bad"]),
        "SignatureError": signatures.SignatureError(["commit 0123 is unsigned"]),
        "SourceMismatch": sync_identity.SourceMismatch("inventory 'x' records another repo"),
        "CorruptInventoryError": inventory.CorruptInventoryError("x", "inventory-x", "bad"),
        "DigestKeyError": digests.DigestKeyError("Secret x/key holds no usable digest key"),
        "InvalidSyncName": inventory.InvalidSyncName("inventory 'X': invalid sync name"),
        "InvalidSpec": syncobject.InvalidSpec("spec.interval: not a duration"),
        "ConfigError": config.ConfigError("--sync NAME is required"),
        "UserError": UserError("--path: no such directory"),
        "SourceError": errors.SourceError("git@example.com:fleet.git: Connection refused"),
        "DeployKeyError": deploykey.DeployKeyError("Secret agents/key: not found"),
        "DecryptionKeyError": decryption.DecryptionKeyError("Secret agents/age: not found"),
        "VerifyKeysError": verifykeys.VerifyKeysError("Secret agents/keys: not found"),
        "LockTimeout": lock.LockTimeout("sync x: held by restore@host for 2m"),
        "InventoryConflict": inventory.InventoryConflict("x", "10", "11"),
        "LockLost": lock.LockLost("sync x: the lock was taken over"),
        "GitTimeout": GitTimeout("git@example.com:fleet.git: no answer within 300s"),
        "Unreachable": Unreachable("https://127.0.0.1:6443", 30, "connection refused"),
        "ApiError": ApiError(403, "Forbidden", "deployments.apps is forbidden"),
        "ApplyError": ApplyError(["apps/web.yaml, document 1: Deployment/x/web: denied"], [],
                                 []),
        "PruneError": PruneError(["ConfigMap/x/old: delete failed"], []),
        "InventoryError": inventory.InventoryError("inventory 'x': cannot write"),
        "OperationFailed": OperationFailed("cluster 'x' did not become ready"),
    }[name]


REFUSED = ["ValidationError", "SignatureError", "SourceMismatch", "CorruptInventoryError",
           "DigestKeyError", "InvalidSyncName", "InvalidSpec", "ConfigError", "UserError"]
UNAVAILABLE = ["SourceError", "DeployKeyError", "DecryptionKeyError", "VerifyKeysError",
               "LockTimeout"]
RUN_AGAIN = ["InventoryConflict", "LockLost", "GitTimeout", "Unreachable", "ApiError",
             "ApplyError", "PruneError", "InventoryError", "OperationFailed"]


def exit_code_of(raised: Exception) -> int:
    @exits_cleanly
    def command() -> None:
        raise raised

    with pytest.raises(typer.Exit) as caught:
        command()
    return caught.value.exit_code


@pytest.mark.parametrize("name, code", [(n, 2) for n in REFUSED + UNAVAILABLE]
                         + [(n, 1) for n in RUN_AGAIN])
def test_refused_input_exits_2_and_everything_else_1(name, code):
    assert exit_code_of(error(name)) == code


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> syncobject.SyncSpec:
    repo = new_repo(tmp_path_factory.mktemp("fleet") / "fleet")
    commit(repo, {"app/settings.yaml": "kind: ConfigMap\n"}, "v1")
    return syncobject.SyncSpec(repo=str(repo))


@pytest.mark.parametrize("name", REFUSED)
def test_agent_reports_refused_input_stalled(name, spec):
    assert attempts.failed(error(name), spec).stalled is True


@pytest.mark.parametrize("name", UNAVAILABLE + RUN_AGAIN)
def test_agent_retries_what_can_clear_by_itself(name, spec):
    assert attempts.failed(error(name), spec).stalled is False


@pytest.mark.parametrize("name, reason", [
    ("GitTimeout", "GitOperationFailed"), ("SourceError", "GitOperationFailed"),
    ("SignatureError", "SignatureVerificationFailed"), ("Unreachable", "APIServerError"),
    ("InventoryConflict", "InventoryError"), ("CorruptInventoryError", "InventoryError"),
    ("ValidationError", "ValidationFailed"), ("SourceMismatch", "SyncFailed"),
])
def test_agent_reason_names_what_failed(name, reason, spec):
    assert attempts.failed(error(name), spec).reason == reason


def test_a_bug_is_no_kind_and_retried(spec):
    bug = KeyError("spec")
    assert errors.kind(bug) is None
    assert attempts.failed(bug, spec).reason == "InternalError"
    assert attempts.failed(bug, spec).stalled is False
