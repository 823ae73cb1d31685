"""`deploy-key create` and `deploy-key show`: declare options, call bootstrap.deploy_key, print.

The public key goes to stdout (so it can be piped into a forge's CLI); progress and the next
step go to stderr. The private key is never printed, in any output mode or error.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from bootstrap import deploy_key as dk
from bootstrap import deploy_key_forge as forges
from bootstrap import sync_names
from bootstrap.cli import deprecated
from bootstrap.cli import options as opt
from bootstrap.cli.output import Output, emit_json, exits_cleanly, progress_printer, stderr, stdout
from bootstrap.errors import UserError
from sync_agent.conventions import NAMESPACE

SshRepo = Annotated[str, typer.Option(
    "--repo", help="SSH URL of the repository: ssh://git@host[:port]/path.git or git@host:path.")]
GitHub = Annotated[str | None, typer.Option(
    "--github", metavar="OWNER/REPO", help="Register the key read-only on this GitHub repo.")]
GitLab = Annotated[str | None, typer.Option(
    "--gitlab", metavar="PROJECT", help="Register the key read-only on this GitLab project.")]
Rotate = Annotated[bool, typer.Option(
    "--rotate", help="Replace an existing key (the new one is registered before the old one "
                     "is deleted).")]
TokenEnv = Annotated[str | None, typer.Option(
    "--token-env", metavar="VAR", help="Environment variable holding the forge API token.")]
ApiUrl = Annotated[str | None, typer.Option(
    "--api-url", help="Forge API base (default https://api.github.com, https://gitlab.com).")]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Deploy keys the sync agent reads Git with.", no_args_is_help=True,
                        pretty_exceptions_show_locals=False)
    for command in (create, show):
        group.command(cls=deprecated.renamed(deprecated.DEPLOY_KEY))(command)
    app.add_typer(group, name="deploy-key")


@exits_cleanly
def create(repo: SshRepo, deploy_key: opt.DeployKeyName = None,
           known_hosts: opt.KnownHosts = None, accept_host_key: opt.AcceptHostKey = None,
           private_key_file: opt.PrivateKeyFile = None,
           rotate: Rotate = False, github: GitHub = None, gitlab: GitLab = None,
           token_env: TokenEnv = None, api_url: ApiUrl = None,
           kubeconfig: opt.Kubeconfig = None, context: opt.Context = None,
           cluster: opt.ClusterName = None, output: opt.OutputOpt = Output.text) -> None:
    """Make a read-only deploy key for the sync agent; store it with the pinned host key.

    The Secret is <name>-deploy-key in namespace gitops-restore-system (identity, identity.pub,
    known_hosts). An existing one is replaced only with --rotate.

    Example: gitops-restore deploy-key create --repo ssh://git@github.com/org/fleet.git
    --accept-host-key SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU
    --github org/fleet --token-env GITHUB_TOKEN
    """
    if known_hosts and accept_host_key:
        raise UserError("give either --known-hosts or --accept-host-key, not both")
    request = dk.DeployKeyRequest(
        repo=repo, name=sync_names.key_name(deploy_key, repo), known_hosts_file=known_hosts,
        accept_host_key=accept_host_key, private_key_file=private_key_file, rotate=rotate,
        forge=_forge(github, gitlab, token_env, api_url))
    confirm = _ask if sys.stdin.isatty() and not (known_hosts or accept_host_key) else None
    with opt.connect(kubeconfig, context, cluster) as kube:
        result = dk.create_deploy_key(kube, request, confirm, progress_printer())
    if output is Output.json:
        emit_json(result.to_json())
        return
    stdout.print(result.key.public_key, markup=False)
    stored = "stored in" if result.stored else "already in"
    stderr.print(f"deploy key {result.key.fingerprint} {stored} Secret {result.secret}"
                 f"{' (replacing the previous key)' if result.replaced else ''}; "
                 f"host key pinned: {', '.join(result.host_fingerprints)}", markup=False)
    if result.registration is None and private_key_file is None:
        stderr.print("Next: add the public key above to the repository as a READ-ONLY deploy "
                     "key (or rerun with --github/--gitlab to do it through the API).")


@exits_cleanly
def show(deploy_key: Annotated[str, typer.Option(
             "--deploy-key", help="The name given to create (the Secret <name>-deploy-key).")],
         kubeconfig: opt.Kubeconfig = None, context: opt.Context = None,
         cluster: opt.ClusterName = None, output: opt.OutputOpt = Output.text) -> None:
    """Print the public key, its fingerprint and the pinned host keys of a deploy key.

    Example: gitops-restore deploy-key show --deploy-key fleet
    """
    with opt.connect(kubeconfig, context, cluster) as kube:
        key = dk.load_deploy_key(kube, deploy_key)
    hosts = dk.host_fingerprints(key.known_hosts)
    if output is Output.json:
        emit_json({"name": key.name, "secret": f"{NAMESPACE}/{dk.secret_name(key.name)}",
                   "public_key": key.public_key, "fingerprint": key.fingerprint,
                   "host_fingerprints": list(hosts)})
        return
    stdout.print(key.public_key, markup=False)
    stderr.print(f"fingerprint {key.fingerprint}; host keys pinned: {', '.join(hosts)}",
                 markup=False)


def _forge(github: str | None, gitlab: str | None, token_env: str | None,
           api_url: str | None) -> forges.Forge | None:
    if github and gitlab:
        raise UserError("give either --github or --gitlab, not both")
    if not (github or gitlab):
        if token_env or api_url:
            raise UserError("--token-env and --api-url need --github or --gitlab")
        return None
    if not token_env:
        raise UserError("--github/--gitlab need --token-env VAR: the name of an environment "
                        "variable holding the API token (never the token itself)")
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise UserError(f"--token-env {token_env}: that environment variable is empty or unset")
    kind, project = ("github", github) if github else ("gitlab", gitlab)
    return forges.Forge(kind, project or "", token, api_url or "")


def _ask(host: str, fingerprint: str, kind: str) -> bool:
    stderr.print(f"{host} presents host key {fingerprint} ({kind}).", markup=False)
    return typer.confirm("Is this the server's real key (checked with its operator)?",
                         default=False, err=True)
