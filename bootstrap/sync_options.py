"""Options shared by restore, plan, rollback, verify and history, and how they become the
engine's SourceSpec and SyncOptions."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Annotated

import typer

from bootstrap import clusters
from bootstrap.errors import UserError
from bootstrap.output import Output
from sync_agent import git_https, source, sync_identity
from sync_agent.engine import SourceSpec
from sync_agent.kube import Kube

Repo = Annotated[str, typer.Option("--repo", help="Git URL or local path of the GitOps repo.")]
Ref = Annotated[str | None, typer.Option(
    "--ref", help="Branch, tag, SHA or HEAD~N (default HEAD).")]
At = Annotated[str | None, typer.Option(
    "--at", help="The last commit at or before this time, e.g. 2026-11-01T12:00Z "
                 "(on the branch --ref names, else HEAD's).")]
PathOpt = Annotated[str, typer.Option("--path", help="Directory in the repo to apply.")]
Ignore = Annotated[list[str] | None, typer.Option(
    "--ignore", help="Leave files out (gitignore syntax); repeatable.")]
SshKey = Annotated[Path | None, typer.Option("--ssh-key", help="Private key for SSH remotes.")]
KnownHosts = Annotated[Path | None, typer.Option(
    "--known-hosts", help="known_hosts pinning the SSH server's host key.")]
CaFile = Annotated[Path | None, typer.Option(
    "--ca-file", help="PEM file of the CA that signed the HTTPS Git server's certificate. "
                      "HTTPS credentials: https://USER:TOKEN@HOST/… or the environment "
                      f"variables {git_https.USERNAME_ENV} and {git_https.PASSWORD_ENV}.")]
Kubeconfig = Annotated[str | None, typer.Option(
    "--kubeconfig", envvar="KUBECONFIG", help="Kubeconfig file (kubectl's rules).")]
Context = Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")]
ClusterName = Annotated[str | None, typer.Option(
    "--cluster", help="A cluster made by `provision` (instead of --kubeconfig).")]
SyncName = Annotated[str | None, typer.Option(
    "--name", help="Sync name owning the inventory (default: from repo and path).")]
Namespace = Annotated[str, typer.Option(
    "--namespace", "-n", help="Namespace for namespaced objects that name none.")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json")]
Workers = Annotated[int, typer.Option("--workers", help="Concurrent API requests.")]


def source_spec(repo: str, ref: str | None, at: str | None, path: str,
                ignore: list[str] | None, ssh_key: Path | None,
                known_hosts: Path | None, ca_file: Path | None = None) -> SourceSpec:
    return SourceSpec(repo=repo, ref=ref, at=source.parse_time(at) if at else None,
                      path=path, ignore=tuple(ignore or ()),
                      auth=git_auth(ssh_key, known_hosts, ca_file))


def git_auth(ssh_key: Path | None, known_hosts: Path | None,
             ca_file: Path | None = None) -> source.GitAuth | None:
    """The options' key files, and an HTTPS username and token from the environment (never an
    option: a token on the command line would show in `ps`)."""
    username = os.environ.get(git_https.USERNAME_ENV) or None
    password = os.environ.get(git_https.PASSWORD_ENV) or None
    if not any((ssh_key, known_hosts, ca_file, username, password)):
        return None
    return source.GitAuth(ssh_key, known_hosts, ca_file, username, password)


def connect(kubeconfig: str | None, context: str | None, cluster: str | None) -> Kube:
    if cluster:
        record = clusters.load(cluster)
        kubeconfig, context = record.kubeconfig, context or record.context or None
    return Kube.from_kubeconfig(kubeconfig, context)


def sync_name(name: str | None, repo: str, path: str) -> str:
    """--name, else the default: readable, and unique per repository and path.

    The default is the repository's name and the path, cut to 43 characters, then 8 hex digits
    of a hash of the repository and path (spelled as `sync_identity` records them), so two
    repositories called `fleet`, `apps/web` and `apps-web`, or long paths that differ only at
    the end never share an inventory. Syncs started before (named without the hash) keep their
    name: see `sync_lookup.continued`.
    """
    if name:
        return check_sync_name(name)
    repo = sync_identity.repo_of(repo)  # also: no credentials in the name
    tag = hashlib.sha256(f"{repo}\n{sync_identity.path_of(path)}".encode()).hexdigest()[:8]
    stem = _slug(repo, path)[:43].strip("-")
    return f"{stem}-{tag}" if stem else f"sync-{tag}"


def legacy_sync_name(repo: str, path: str) -> str:
    """The default sync name before it carried a hash (collides; read only to continue)."""
    return _slug(repo, path)[:52].strip("-") or "default"


def key_name(name: str | None, repo: str) -> str:
    """A deploy key's name: --name, else the repository's name (unchanged, so existing keys
    are found again)."""
    return check_sync_name(name) if name else legacy_sync_name(repo, "")


def check_sync_name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", name):
        raise UserError(f"--name {name!r}: use lowercase letters, digits and '-' "
                        "(at most 52), starting and ending with a letter or digit")
    return name


def _slug(repo: str, path: str) -> str:
    shown = source.redact(repo)  # a URL without a path would otherwise lend its token
    stem = re.sub(r"\.git$", "", shown.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
    raw = f"{stem}-{path}" if path.strip("./") else stem
    return re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not match:
        raise UserError(f"--timeout {text!r}: use a duration such as 90s, 10m or 1h")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
