"""Real signing keys for tests: an SSH key made with ssh-keygen and an OpenPGP key made with gpg
(--batch, no passphrase) in a GNUPGHOME of the test's own, and commits and tags signed with
them through the git command. Nothing here touches the user's keys or git configuration."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.testdata.gitrepos import git


@dataclass(frozen=True)
class SshSigner:
    private: Path
    public: Path
    principal: str

    def allowed_signers(self, dest: Path) -> Path:
        dest.write_text(f"{self.principal} {self.public.read_text().strip()}\n")
        return dest

    def sign_args(self) -> list[str]:
        return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.public}"]


@dataclass(frozen=True)
class PgpSigner:
    home: Path  # the GNUPGHOME holding the secret key
    fingerprint: str
    uid: str

    def export(self, dest: Path) -> Path:
        out = subprocess.run(["gpg", "--batch", "--armor", "--export", self.fingerprint],
                             env=self.env(), capture_output=True, check=True)
        dest.write_bytes(out.stdout)
        return dest

    def env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.home)}

    def sign_args(self) -> list[str]:
        return ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={self.fingerprint}"]


def ssh_signer(directory: Path, principal: str) -> SshSigner:
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / f"{principal.split('@')[0]}_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal,
                    "-f", str(key)], check=True, capture_output=True)
    return SshSigner(key, key.with_suffix(".pub"), principal)


def pgp_signer(home: Path, uid: str) -> PgpSigner:
    home.mkdir(mode=0o700, parents=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519",
                    "sign", "never"], env=env, check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--batch", "--list-keys", "--with-colons", uid], env=env,
                             check=True, capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                       if line.startswith("fpr:"))
    return PgpSigner(home, fingerprint, uid)


def stop_agent(signer: PgpSigner) -> None:
    subprocess.run(["gpgconf", "--kill", "all"], env=signer.env(), capture_output=True)


def signed_commit(repo: Path, signer: SshSigner | PgpSigner | None, files: dict[str, str],
                  message: str) -> str:
    """Write files and commit them, signed by `signer` (None: unsigned); return the SHA."""
    for name, text in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(repo, "add", "-A")
    _signed_git(repo, signer, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def signed_tag(repo: Path, signer: SshSigner | PgpSigner, name: str, target: str = "HEAD") -> None:
    _signed_git(repo, signer, "tag", "-s", "-m", f"release {name}", name, target)


def _signed_git(repo: Path, signer: SshSigner | PgpSigner | None, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dana Ops", "GIT_AUTHOR_EMAIL": "dana@example.com",
           "GIT_COMMITTER_NAME": "Dana Ops", "GIT_COMMITTER_EMAIL": "dana@example.com",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
    extra: list[str] = []
    if isinstance(signer, PgpSigner):
        env["GNUPGHOME"] = str(signer.home)
    if signer is not None:
        extra = signer.sign_args()
        args = (args[0], "-S", *args[1:]) if args[0] == "commit" else args
    else:
        extra = ["-c", "commit.gpgSign=false"]
    subprocess.run(["git", "-C", str(repo), *extra, *args], env=env, check=True,
                   capture_output=True)


def tamper(repo: Path, sha: str, new_message: str) -> str:
    """Rewrite commit `sha`'s message keeping its signature header, point the current branch at
    the forged commit and return its SHA: a signature that no longer matches its content."""
    raw = git(repo, "cat-file", "commit", sha)
    head, _, message = raw.partition("\n\n")
    forged = subprocess.run(["git", "-C", str(repo), "hash-object", "-t", "commit", "-w",
                             "--stdin", "--literally"],
                            input=f"{head}\n\n{new_message}\n", capture_output=True, text=True,
                            check=True).stdout.strip()
    git(repo, "update-ref", "HEAD", forged)
    return forged
