"""Signed commits: prove, offline, that what a run is about to deploy was signed by a trusted key.

Called by the engine right after fetch/resolve (before anything is rendered), by `history` for
its signer column, and by the agent. Verification uses the machine's git, gpg and ssh-keygen
with a keyring made for the run: a temporary GNUPGHOME holding only the trusted OpenPGP keys
and a temporary allowed_signers file holding only the trusted SSH keys. The user's keyring and
git configuration are never read or changed (GIT_CONFIG_GLOBAL=/dev/null,
GIT_CONFIG_NOSYSTEM=1, the programs and the allowed-signers file set with `-c`).

What is verified, as Flux and Argo CD users expect:
- `head`: the resolved commit. When `--ref` names a signed annotated tag, the tag's signature
  is verified instead: a signed release tag vouches for the commit it names.
- `chain`: the resolved commit (or its tag), and every first-parent commit between the sync's
  last applied commit and it, i.e. the first-parent commits of the target that the last
  applied commit does not contain. Side branches merged into the chain are not verified on
  their own: the merge commit on the first-parent line vouches for them, since the branch's
  states were the only ones ever deployed (see source.py). When nothing was applied yet, or
  the target is older than the last applied commit (a rollback), the chain is the target
  alone. When the last applied commit is no longer in the repository (history was
  rewritten), the chain cannot be known and the run is refused.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sync_agent.errors import Refused, SourceError

MODES = ("head", "chain")
PGP_SUFFIX = ".asc"
SSH_SUFFIX = ".sshpub"  # Flux's key for SSH public keys in a verification Secret

# git's %G? letters: why a signature is not accepted, and what to do about it.
_REFUSED = {
    "N": ("unsigned", "sign it (git commit -S) with a trusted key, or deploy a signed commit"),
    "B": ("bad signature: the content was changed after it was signed (rewritten history?)",
          "find out who rewrote it; deploy a commit signed by a trusted key"),
    "U": ("signed by an SSH key that is not in the allowed signers",
          "add the signer's key to --allowed-signers if it is trusted"),
    "E": ("signed by a key that is not among the trusted keys",
          "add the signer's public key to --trusted-keys (.asc) or --allowed-signers"),
    "X": ("the signature has expired", "re-sign it with a valid trusted key"),
    "Y": ("signed by an expired key", "re-sign it with a valid trusted key"),
    "R": ("signed by a revoked key", "re-sign it with a valid trusted key"),
}
_SEP = "\x1f"
_LOG_FORMAT = _SEP.join(("%H", "%G?", "%GS", "%GK", "%GF", "%an <%ae>", "%s"))
_SSH_GOOD = re.compile(r'Good "git" signature for (\S+) with \S+ key (\S+)')
_PGP_VALID = re.compile(r"^\[GNUPG:\] VALIDSIG (\S+)", re.MULTILINE)
_PGP_GOOD = re.compile(r"^\[GNUPG:\] GOODSIG \S+ (.*)$", re.MULTILINE)
_KEY = re.compile(r"(^|\s)((?:ssh-|ecdsa-|sk-)\S+\s+[A-Za-z0-9+/=]{20,})")
_SIGNATURE_BLOCK = re.compile(r"-----BEGIN (PGP|SSH) SIGNATURE-----")


class SignatureError(Refused):
    """A commit or tag the run would deploy is not signed by a trusted key (a refusal that
    only a new commit or other keys change, unlike the SourceErrors of fetching it).

    Carries one problem per refused commit, so every one is named at once.
    """

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Keys:
    """Trusted public keys: armored OpenPGP keys (name, text) and allowed_signers lines."""

    pgp: tuple[tuple[str, str], ...] = ()
    allowed_signers: tuple[str, ...] = ()

    @classmethod
    def from_files(cls, allowed_signers: Path | None, trusted_keys: Path | None) -> Keys:
        """`--allowed-signers FILE` and `--trusted-keys DIR|FILE` (`*.asc` in a directory)."""
        lines: tuple[str, ...] = ()
        if allowed_signers is not None:
            lines = _signer_lines(_read(allowed_signers, "--allowed-signers"),
                                  str(allowed_signers))
        pgp: list[tuple[str, str]] = []
        if trusted_keys is not None:
            files = _asc_files(trusted_keys)
            pgp = [(str(f), _read(f, "--trusted-keys")) for f in files]
        return cls(tuple(pgp), lines)

    @classmethod
    def from_secret(cls, name: str, data: Mapping[str, bytes]) -> Keys:
        """Keys from a Secret in Flux's shape: `*.asc` OpenPGP keys, `*.sshpub` SSH public
        keys (each becomes an allowed signer whose principal is the key's name)."""
        pgp, lines = [], []
        for key, value in sorted(data.items()):
            text = value.decode("utf-8", "replace")
            if key.endswith(PGP_SUFFIX):
                pgp.append((f"Secret {name} key {key}", text))
            elif key.endswith(SSH_SUFFIX):
                principal = key[: -len(SSH_SUFFIX)] or "signer"
                lines += [f"{principal} {k.strip()}" for k in text.splitlines()
                          if k.strip() and not k.lstrip().startswith("#")]
        keys = cls(tuple(pgp), tuple(lines))
        if not keys:
            raise SourceError(f"Secret {name}: no `*{PGP_SUFFIX}` or `*{SSH_SUFFIX}` keys; add "
                              "the trusted public keys under such names")
        return keys

    def __bool__(self) -> bool:
        return bool(self.pgp or self.allowed_signers)

    def secret_data(self) -> dict[str, str]:
        """The keys in Flux's Secret shape (`from_secret` reads them back): an SSH key's
        principal becomes its entry's name, so the agent reports the same signer."""
        data: dict[str, str] = {}
        for number, (name, text) in enumerate(self.pgp, 1):
            data[f"{_entry_name(Path(name).stem, number)}{PGP_SUFFIX}"] = text
        for number, line in enumerate(self.allowed_signers, 1):
            key = _KEY.search(line)
            if key is None:
                continue  # only lines that _signer_lines checked reach here
            entry = f"{_entry_name(line.split()[0].split(',')[0], number)}{SSH_SUFFIX}"
            data[entry] = data.get(entry, "") + key.group(2) + "\n"
        return data


def _entry_name(stem: str, number: int) -> str:
    """A Secret data key (letters, digits, `-`, `_`, `.`) for a key's name."""
    return re.sub(r"[^-._a-zA-Z0-9]", "_", stem).strip(".") or f"key{number}"


@dataclass(frozen=True)
class Policy:
    """What to verify (`head` or `chain`) and against which keys."""

    mode: str
    keys: Keys

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SourceError(f"--verify-signatures {self.mode!r}: use one of {', '.join(MODES)}")
        if not self.keys:
            raise SourceError(f"--verify-signatures {self.mode}: no trusted keys; give "
                              "--allowed-signers FILE (SSH) and/or --trusted-keys DIR|FILE "
                              "(OpenPGP .asc)")


@dataclass(frozen=True)
class Signed:
    """A commit (or tag) whose signature was verified, and who signed it."""

    sha: str
    author: str
    signer: str  # the SSH principal or the OpenPGP user id
    key: str  # SHA256:... for SSH, the fingerprint for OpenPGP
    subject: str = ""
    tag: str = ""  # the annotated tag that was verified in place of the commit, if any

    def __str__(self) -> str:
        what = f"tag {self.tag} ({self.sha[:12]})" if self.tag else self.sha[:12]
        return f"{what} signed by {self.signer} ({self.key})"

    def to_json(self) -> dict:
        return {"sha": self.sha, "tag": self.tag, "author": self.author, "signer": self.signer,
                "key": self.key}


def verify(git_dir: str, target: str, policy: Policy, ref: str | None = None,
           last_applied: str = "") -> list[Signed]:
    """Verify what a run deploying commit `target` (resolved from `ref`) must have signed.

    Returns the verified commits, target first; raises SignatureError naming each refusal.
    """
    with Keyring(policy.keys) as keyring:
        tagged = keyring.tag(git_dir, ref) if ref else None
        shas = [target] if policy.mode == "head" else chain(git_dir, target, last_applied)
        if tagged is not None:
            shas = shas[1:]  # the signed tag stands for the target commit
        signed, problems = keyring.commits(git_dir, shas)
    if tagged is not None:
        signed.insert(0, tagged)
    if problems:
        raise SignatureError(problems)
    return signed


def chain(git_dir: str, target: str, last_applied: str) -> list[str]:
    """The target, then the first-parent commits back to (excluding) `last_applied`."""
    if not last_applied or last_applied == target:
        return [target]
    if _git(git_dir, "cat-file", "-e", f"{last_applied}^{{commit}}").returncode != 0:
        raise SignatureError([
            f"commit {last_applied[:12]}, the last one applied, is not in the repository "
            "(was history rewritten?): the chain of commits since then cannot be verified. "
            "Check the repository's history; to deploy anyway, verify with "
            "--verify-signatures head"])
    listed = _git(git_dir, "rev-list", "--first-parent", target, f"^{last_applied}", "--")
    if listed.returncode != 0:
        raise SourceError(f"{git_dir}: git rev-list failed: {listed.stderr.strip()}")
    shas = listed.stdout.split()
    return shas if shas and shas[0] == target else [target, *shas]


def signers(git_dir: str, shas: Sequence[str], keys: Keys) -> dict[str, str]:
    """For `history`: each commit's signer, or why it has none that is trusted."""
    with Keyring(keys) as keyring:
        found = {}
        for line in keyring.log(git_dir, shas):
            sha, status, signer, key, fingerprint, _, _ = line.split(_SEP, 6)
            if status == "G":
                found[sha] = f"{signer} ({fingerprint or key})"
            elif status in ("U", "E") and key:
                found[sha] = f"untrusted key {fingerprint or key}"
            else:
                found[sha] = _REFUSED.get(status, ("unverifiable",))[0].split(":")[0]
    return found


class Keyring:
    """A temporary GNUPGHOME and allowed_signers file for one run; removed on exit."""

    def __init__(self, keys: Keys):
        self.keys = keys

    def __enter__(self) -> Keyring:
        _need_programs(self.keys)
        # gpg's sockets live in GNUPGHOME, whose path must stay short: use /tmp, not TMPDIR.
        self.home = Path(tempfile.mkdtemp(prefix="gr-sig-", dir="/tmp"))
        self.gnupg = self.home / "gnupg"
        self.gnupg.mkdir(mode=0o700)
        # The keyring holds only trusted keys, so every key in it is valid; never go online.
        (self.gnupg / "gpg.conf").write_text("trust-model always\nno-auto-key-retrieve\n")
        self.allowed = self.home / "allowed_signers"
        self.allowed.write_text("".join(line + "\n" for line in self.keys.allowed_signers))
        try:
            for name, text in self.keys.pgp:
                self._import(name, text)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if shutil.which("gpgconf"):  # no agent should run (--no-autostart); never leave one
            subprocess.run(["gpgconf", "--kill", "all"], env=self._env(), capture_output=True,
                           stdin=subprocess.DEVNULL)
        shutil.rmtree(self.home, ignore_errors=True)

    def _env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("GIT_", "GNUPG", "GPG_"))}
        return {**inherited, "GNUPGHOME": str(self.gnupg), "GIT_CONFIG_GLOBAL": "/dev/null",
                "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}

    def _import(self, name: str, text: str) -> None:
        done = subprocess.run(["gpg", "--batch", "--no-autostart", "--status-fd", "1", "--import"],
                              input=text, env=self._env(), capture_output=True, text=True)
        if done.returncode != 0 or "IMPORT_OK" not in done.stdout:
            detail = (done.stderr.strip().splitlines() or ["no key found"])[-1]
            raise SourceError(f"{name}: not an OpenPGP public key ({detail}); export one with "
                              "`gpg --armor --export KEYID > key.asc`")

    def git(self, git_dir: str, *args: str) -> subprocess.CompletedProcess:
        config = ["-c", "gpg.program=gpg", "-c", "gpg.openpgp.program=gpg",
                  "-c", "gpg.ssh.program=ssh-keygen",
                  "-c", f"gpg.ssh.allowedSignersFile={self.allowed}",
                  "-c", "gpg.ssh.revocationFile=/dev/null", "-c", "log.showSignature=false"]
        return subprocess.run(["git", "--git-dir", git_dir, *config, *args], env=self._env(),
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)

    def log(self, git_dir: str, shas: Sequence[str]) -> list[str]:
        if not shas:
            return []
        done = self.git(git_dir, "log", "--no-walk=unsorted", f"--format={_LOG_FORMAT}",
                        *shas, "--")
        if done.returncode != 0:
            raise SourceError(f"{git_dir}: git log failed: {done.stderr.strip()}")
        return [line for line in done.stdout.splitlines() if line]

    def commits(self, git_dir: str, shas: Sequence[str]) -> tuple[list[Signed], list[str]]:
        signed, problems = [], []
        for line in self.log(git_dir, shas):
            sha, status, signer, key, fingerprint, author, subject = line.split(_SEP, 6)
            if status == "G":
                signed.append(Signed(sha, author, signer, fingerprint or key, subject))
                continue
            reason, fix = _REFUSED.get(status, (f"signature status {status!r}", "re-sign it"))
            if key and status in ("U", "E"):
                reason += f" ({fingerprint or key})"
            problems.append(f"commit {sha[:12]} by {author} ({subject!r}): {reason}; nothing "
                            f"was applied. Fix: {fix}")
        return signed, problems

    def tag(self, git_dir: str, ref: str) -> Signed | None:
        """The verified signature of `ref` when it names a signed annotated tag, else None."""
        name = ref.removeprefix("refs/tags/")
        full = f"refs/tags/{name}"
        kind = self.git(git_dir, "cat-file", "-t", full)
        if kind.returncode != 0 or kind.stdout.strip() != "tag":
            return None  # not a tag, or a lightweight one: the commit is verified
        body = self.git(git_dir, "cat-file", "tag", full).stdout
        if not _SIGNATURE_BLOCK.search(body):
            return None  # an unsigned annotated tag: the commit is verified
        target = self.git(git_dir, "rev-parse", f"{full}^{{commit}}").stdout.strip()
        head = self.git(git_dir, "log", "-1", "--format=%an <%ae>%x1f%s", target, "--")
        author, _, subject = head.stdout.strip().partition(_SEP)
        done = self.git(git_dir, "verify-tag", "--raw", full)
        signer, key = _tag_signer(done.stderr)
        if done.returncode != 0 or not key:
            reason = _tag_reason(done.stderr)
            raise SignatureError([
                f"tag {name} (commit {target[:12]} by {author}, {subject!r}): {reason}; "
                "nothing was applied. Fix: sign the tag with a trusted key "
                "(git tag -s), or add its signer to --allowed-signers/--trusted-keys"])
        return Signed(target, author, signer, key, subject, tag=name)


def _need_programs(keys: Keys) -> None:
    needed = [("gpg", "--trusted-keys", "gpg")] if keys.pgp else []
    if keys.allowed_signers:
        needed.append(("ssh-keygen", "--allowed-signers", "openssh-client"))
    for program, option, package in needed:
        if shutil.which(program) is None:
            raise SourceError(f"{option}: verifying signatures needs `{program}` on PATH; "
                              f"install it (Debian: apt-get install {package})")


def _tag_signer(output: str) -> tuple[str, str]:
    ssh = _SSH_GOOD.search(output)
    if ssh:
        return ssh.group(1), ssh.group(2)
    valid, good = _PGP_VALID.search(output), _PGP_GOOD.search(output)
    if valid and good:
        return good.group(1).strip(), valid.group(1)
    return "", ""


def _tag_reason(output: str) -> str:
    if "BADSIG" in output or "Signature verification failed" in output \
            or "incorrect signature" in output:
        return _REFUSED["B"][0]
    if "NO_PUBKEY" in output or "No principal matched" in output \
            or "allowed signers" in output.lower():
        return "signed by a key that is not among the trusted keys"
    lines = [line for line in output.splitlines() if line.strip()]
    return f"signature not verified ({lines[-1].strip() if lines else 'no detail'})"


def _git(git_dir: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(["git", "--git-dir", git_dir, *args], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)


def _read(path: Path, option: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise SourceError(f"{option} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{option} {path}: cannot be read ({e})") from None


def _asc_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == PGP_SUFFIX and p.is_file())
        if not files:
            raise SourceError(f"--trusted-keys {path}: no *{PGP_SUFFIX} files in the directory; "
                              "export keys with `gpg --armor --export KEYID > NAME.asc`")
        return files
    if not path.exists():
        raise SourceError(f"--trusted-keys {path}: no such file or directory")
    return [path]


def _signer_lines(text: str, where: str) -> tuple[str, ...]:
    """allowed_signers lines: `principals [options] keytype key`; comments and blanks dropped."""
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not _KEY.search(line) or len(line.split()) < 3:
            raise SourceError(f"--allowed-signers {where}, line {number}: not an allowed_signers "
                              "line; write `PRINCIPAL KEYTYPE KEY`, e.g. "
                              "`dana@example.com ssh-ed25519 AAAA...` (man ssh-keygen)")
        lines.append(line)
    if not lines:
        raise SourceError(f"--allowed-signers {where}: no signers in the file; add lines "
                          "`PRINCIPAL KEYTYPE KEY`")
    return tuple(lines)
