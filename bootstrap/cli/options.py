"""Options shared by several commands, declared once, and how they become the engine's
SourceSpec and SyncOptions.

Names follow one rule (see `deprecated.py`): `--cluster` a cluster of this machine, `--sync` a
sync, `--deploy-key` a deploy key; `--name` is only provision's. Every `--kubeconfig` reads
KUBECONFIG, as kubectl does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from bootstrap import clusters
from bootstrap.cli.output import Output
from bootstrap.errors import UserError
from sync_agent import git_https, signatures, sops, source
from sync_agent import render_options as render_options_mod
from sync_agent.engine import SourceSpec
from sync_agent.helm.context import MODES, HelmSettings
from sync_agent.kube import Kube
from sync_agent.render_options import DEFAULTS, RenderOptions

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
    "--known-hosts", help="known_hosts pinning the Git server's SSH host key (\\[host]:port "
                          "for port != 22).")]
AcceptHostKey = Annotated[str | None, typer.Option(
    "--accept-host-key", metavar="SHA256:FINGERPRINT",
    help="Scan the Git server and pin its host key only if it has this fingerprint.")]
PrivateKeyFile = Annotated[Path | None, typer.Option(
    "--private-key-file", help="Use this unencrypted key pair (FILE, FILE.pub) as the deploy "
                               "key instead of generating an ed25519 one.")]
DeployKeyName = Annotated[str | None, typer.Option(
    "--deploy-key", help="Deploy key name: the Secret <name>-deploy-key (default: from the "
                         "repository URL; SSH repositories only).")]
CaFile = Annotated[Path | None, typer.Option(
    "--ca-file", help="PEM file of the CA that signed the HTTPS Git server's certificate. "
                      "HTTPS credentials: https://USER:TOKEN@HOST/… or the environment "
                      f"variables {git_https.USERNAME_ENV} and {git_https.PASSWORD_ENV}.")]
HELM_USERNAME_ENV = "GITOPS_RESTORE_HELM_USERNAME"
HELM_PASSWORD_ENV = "GITOPS_RESTORE_HELM_PASSWORD"
HelmMode = Annotated[str, typer.Option(
    "--helm", help="HelmReleases: auto (render unless the cluster serves HelmRelease), render "
                   "(always render to plain objects) or controller (apply them as-is). Chart "
                   f"repository credentials: {HELM_USERNAME_ENV} and {HELM_PASSWORD_ENV}; "
                   "--ca-file is trusted for chart repositories too.")]
Offline = Annotated[bool, typer.Option(
    "--offline", help="Take Helm charts and repository indexes only from the cache.")]
Kubeconfig = Annotated[str | None, typer.Option(
    "--kubeconfig", envvar="KUBECONFIG", help="Kubeconfig file (kubectl's rules).")]
Context = Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")]
ClusterName = Annotated[str | None, typer.Option(
    "--cluster", help="A cluster made by `provision` (instead of --kubeconfig).")]
SyncName = Annotated[str | None, typer.Option(
    "--sync", help="Sync name owning the inventory (default: from repo and path).")]
Provider = Annotated[str, typer.Option(
    "--provider", help="local, kind, or existing (a running cluster: --kubeconfig, --context).")]
Nodes = Annotated[int, typer.Option(
    "--nodes", help="Nodes of a local (simulated) or kind (worker) cluster.")]
ExistingKubeconfig = Annotated[str | None, typer.Option(
    "--kubeconfig", envvar="KUBECONFIG", help="For --provider existing: its kubeconfig.")]
ExistingContext = Annotated[str | None, typer.Option(
    "--context", help="For --provider existing: the kubeconfig context.")]
Namespace = Annotated[str, typer.Option(
    "--namespace", "-n", help="Namespace for namespaced objects that name none.")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json")]
Workers = Annotated[int, typer.Option("--workers", help="Concurrent API requests.")]
CreateNamespaces = Annotated[bool, typer.Option(
    "--create-namespaces", help="Create namespaces the revision uses but does not declare.")]
PruneData = Annotated[bool, typer.Option(
    "--prune-data", help="Let prune delete PVCs, PVs and Namespaces too.")]
MassPrune = Annotated[bool, typer.Option(
    "--allow-mass-prune", help="Allow a prune of more than half the owned objects.")]
Force = Annotated[bool, typer.Option(
    "--force", help="Delete and recreate objects whose immutable fields changed.")]
LockTimeout = Annotated[str, typer.Option(
    "--lock-timeout", help="How long to wait while another writer (a command or the sync "
                           "agent) holds the sync's lock, e.g. 30s; then exit 2 naming it.")]
VerifySignatures = Annotated[str | None, typer.Option(
    "--verify-signatures", help="Refuse unless signed by a trusted key: head (the resolved "
                                "commit, or its signed tag) or chain (also every first-parent "
                                "commit since the last applied one).")]
AllowedSigners = Annotated[Path | None, typer.Option(
    "--allowed-signers", help="Trusted SSH signing keys (OpenSSH allowed_signers file).")]
TrustedKeys = Annotated[Path | None, typer.Option(
    "--trusted-keys", help="Trusted OpenPGP public keys: an .asc file or a directory of them.")]


def source_spec(repo: str, ref: str | None, at: str | None, path: str,
                ignore: list[str] | None, ssh_key: Path | None,
                known_hosts: Path | None, ca_file: Path | None = None,
                render: RenderOptions = DEFAULTS,
                verify: signatures.Policy | None = None, helm: str = "auto",
                offline: bool = False) -> SourceSpec:
    return SourceSpec(repo=repo, ref=ref, at=source.parse_time(at) if at else None,
                      path=path, ignore=tuple(ignore or ()),
                      auth=git_auth(ssh_key, known_hosts, ca_file), render=render,
                      verify=verify, helm=helm_settings(helm, offline, ca_file))


def helm_settings(mode: str, offline: bool, ca_file: Path | None) -> HelmSettings:
    """--helm and --offline, and chart repository credentials from the environment."""
    if mode not in MODES:
        raise UserError(f"--helm {mode!r}: use one of {', '.join(MODES)}")
    return HelmSettings(mode=mode, offline=offline, ca_file=ca_file,
                        username=os.environ.get(HELM_USERNAME_ENV) or None,
                        password=os.environ.get(HELM_PASSWORD_ENV) or None)


def render_options(
    allow_remote_bases: Annotated[bool, typer.Option(
        "--allow-remote-bases", help="Let kustomize fetch remote bases and files (https://…, "
                                     "github.com/…//dir, git@…) with your own git setup; "
                                     "refused by default.")] = False,
    max_file_size: Annotated[str, typer.Option(
        "--max-file-size", help="Largest manifest, kustomization or kustomize output read, "
                                "e.g. 64Mi (the default) or 200Mi.")] = "64Mi",
    max_yaml_nodes: Annotated[int, typer.Option(
        "--max-yaml-nodes", help="Most YAML nodes one file may hold once its aliases are "
                                 "expanded.")] = DEFAULTS.max_yaml_nodes,
    sops_age_key: Annotated[Path | None, typer.Option(
        "--sops-age-key", envvar=sops.KEY_FILE_ENV, show_envvar=True,
        help="Age key file (age-keygen's format, as sops reads it) that decrypts "
             "SOPS-encrypted manifests and secretGenerator files.")] = None,
) -> RenderOptions:
    """The options that bound and decrypt rendering, declared here only: commands take them
    as a group (see option_groups)."""
    if max_yaml_nodes < 1:
        raise UserError(f"--max-yaml-nodes {max_yaml_nodes}: give a positive number")
    try:
        max_file_bytes = render_options_mod.parse_size(max_file_size)
    except ValueError as e:
        raise UserError(f"--max-file-size {e}") from None
    return RenderOptions(allow_remote_bases=allow_remote_bases, max_file_bytes=max_file_bytes,
                         max_yaml_nodes=max_yaml_nodes, sops_keys=age_keys(sops_age_key))


def age_keys(path: Path | None) -> sops.AgeKeys | None:
    """The identities of --sops-age-key (or SOPS_AGE_KEY_FILE), read once, kept in memory."""
    if path is None:
        return None
    try:
        return sops.load_keys(path, f"--sops-age-key {path}")
    except sops.KeyFileError as e:
        raise UserError(str(e)) from None


def signature_policy(verify_signatures: VerifySignatures = None,
                     allowed_signers: AllowedSigners = None,
                     trusted_keys: TrustedKeys = None) -> signatures.Policy | None:
    """--verify-signatures and its keys (a group: see option_groups); keys without a mode are
    a mistake, not a default."""
    if verify_signatures is None:
        if allowed_signers or trusted_keys:
            raise UserError("--allowed-signers/--trusted-keys are used only with "
                            "--verify-signatures head|chain: add it")
        return None
    return signatures.Policy(verify_signatures,
                             signatures.Keys.from_files(allowed_signers, trusted_keys))


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

