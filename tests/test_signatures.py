"""Signed commits verified with the machine's git, gpg and ssh-keygen (no cluster needed):
real keys made by the tests, real signed commits and tags, a keyring made per run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sync_agent import errors, signatures
from sync_agent.errors import SourceError
from sync_agent.signatures import Keys, Policy, SignatureError
from tests.testdata import signing
from tests.testdata.gitrepos import git, new_repo

FILE = {"app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n"}


@pytest.fixture(scope="module")
def signers(tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys")
    pgp = signing.pgp_signer(keys / "gnupg", "Rel Eng <releng@example.com>")
    yield {
        "ssh": signing.ssh_signer(keys / "ssh", "dana@example.com"),
        "stranger": signing.ssh_signer(keys / "stranger", "mallory@example.com"),
        "pgp": pgp,
    }
    signing.stop_agent(pgp)


def _ssh_policy(signers, tmp_path, mode="head") -> Policy:
    allowed = signers["ssh"].allowed_signers(tmp_path / "allowed_signers")
    return Policy(mode, Keys.from_files(allowed, None))


def _pgp_policy(signers, tmp_path, mode="head") -> Policy:
    keys = tmp_path / "trusted"
    keys.mkdir(parents=True, exist_ok=True)
    signers["pgp"].export(keys / "releng.asc")
    return Policy(mode, Keys.from_files(None, keys))


def _git_dir(repo: Path) -> str:
    return str(repo / ".git")


def test_a_commit_signed_by_an_allowed_ssh_key_is_verified_and_names_its_signer(
        signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    sha = signing.signed_commit(repo, signers["ssh"], FILE, "ssh signed")
    [signed] = signatures.verify(_git_dir(repo), sha, _ssh_policy(signers, tmp_path))
    assert signed.sha == sha
    assert signed.signer == "dana@example.com"
    assert signed.key.startswith("SHA256:")
    assert signed.author == "Dana Ops <dana@example.com>"


def test_a_commit_signed_by_a_trusted_openpgp_key_is_verified(signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    sha = signing.signed_commit(repo, signers["pgp"], FILE, "pgp signed")
    [signed] = signatures.verify(_git_dir(repo), sha, _pgp_policy(signers, tmp_path))
    assert signed.signer == "Rel Eng <releng@example.com>"
    assert signed.key == signers["pgp"].fingerprint


def test_unsigned_commit_is_refused_naming_commit_author_reason_and_fix(signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    sha = signing.signed_commit(repo, None, FILE, "not signed")
    with pytest.raises(SignatureError) as caught:
        signatures.verify(_git_dir(repo), sha, _ssh_policy(signers, tmp_path))
    message = str(caught.value)
    assert f"commit {sha[:12]} by Dana Ops <dana@example.com>" in message
    assert "unsigned" in message and "Fix: sign it" in message
    assert errors.kind(caught.value) is errors.Refused  # the agent stalls, not retries


def test_commit_signed_by_an_unknown_key_is_refused(signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    sha = signing.signed_commit(repo, signers["stranger"], FILE, "stranger")
    with pytest.raises(SignatureError, match="not in the allowed signers.*SHA256:"):
        signatures.verify(_git_dir(repo), sha, _ssh_policy(signers, tmp_path))
    # An OpenPGP-signed commit when only SSH keys are trusted: the key is unknown too.
    sha = signing.signed_commit(repo, signers["pgp"], FILE, "pgp, untrusted here")
    with pytest.raises(SignatureError, match="not among the trusted keys"):
        signatures.verify(_git_dir(repo), sha, _ssh_policy(signers, tmp_path))


def test_tampered_commit_fails_with_a_bad_signature(signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    sha = signing.signed_commit(repo, signers["ssh"], FILE, "deploy v1")
    forged = signing.tamper(repo, sha, "deploy v1 (rewritten)")
    assert forged != sha
    with pytest.raises(SignatureError, match=f"commit {forged[:12]} .*bad signature"):
        signatures.verify(_git_dir(repo), forged, _ssh_policy(signers, tmp_path))


def test_signed_annotated_tag_is_verified_in_place_of_its_commit(signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    sha = signing.signed_commit(repo, None, FILE, "merged in the web UI, unsigned")
    signing.signed_tag(repo, signers["pgp"], "v1.4.0")
    [signed] = signatures.verify(_git_dir(repo), sha, _pgp_policy(signers, tmp_path),
                                 ref="v1.4.0")
    assert (signed.tag, signed.sha) == ("v1.4.0", sha)
    assert signed.key == signers["pgp"].fingerprint
    # The same commit by its SHA has no signature of its own.
    with pytest.raises(SignatureError, match="unsigned"):
        signatures.verify(_git_dir(repo), sha, _pgp_policy(signers, tmp_path / "b"), ref=sha)


def test_tag_signed_by_an_unknown_key_is_refused(signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    sha = signing.signed_commit(repo, signers["ssh"], FILE, "signed")
    signing.signed_tag(repo, signers["stranger"], "v2.0.0")
    with pytest.raises(SignatureError, match=f"tag v2.0.0 \\(commit {sha[:12]}.*not among"):
        signatures.verify(_git_dir(repo), sha, _ssh_policy(signers, tmp_path), ref="v2.0.0")


def test_chain_follows_first_parents_so_a_signed_merge_vouches_for_its_side_branch(
        signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    applied = signing.signed_commit(repo, signers["ssh"], FILE, "applied")
    git(repo, "checkout", "-q", "-b", "feature")
    side = signing.signed_commit(repo, None, {"side.yaml": "a: 1\n"}, "unsigned side commit")
    git(repo, "checkout", "-q", "main")
    middle = signing.signed_commit(repo, signers["ssh"], {"b.yaml": "b: 1\n"}, "middle")
    git(repo, "-c", "commit.gpgSign=false", "merge", "-q", "--no-ff", "--no-commit", "feature")
    merge = signing.signed_commit(repo, signers["ssh"], {}, "merge feature")
    assert git(repo, "rev-parse", f"{merge}^2") == side
    chain = signatures.chain(_git_dir(repo), merge, applied)
    assert chain == [merge, middle]
    verified = signatures.verify(_git_dir(repo), merge, _ssh_policy(signers, tmp_path, "chain"),
                                 last_applied=applied)
    assert [s.sha for s in verified] == [merge, middle]


def test_chain_refuses_an_unsigned_commit_below_a_signed_head(signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    applied = signing.signed_commit(repo, signers["ssh"], FILE, "applied")
    sneaked = signing.signed_commit(repo, None, {"b.yaml": "b: 1\n"}, "sneaked in")
    head = signing.signed_commit(repo, signers["ssh"], {"c.yaml": "c: 1\n"}, "head")
    policy = _ssh_policy(signers, tmp_path, "chain")
    with pytest.raises(SignatureError, match=f"commit {sneaked[:12]} .*unsigned"):
        signatures.verify(_git_dir(repo), head, policy, last_applied=applied)
    # head mode looks at the resolved commit only
    assert len(signatures.verify(_git_dir(repo), head, Policy("head", policy.keys),
                                 last_applied=applied)) == 1
    # nothing applied yet: the chain is the target alone; a rollback target likewise
    assert signatures.chain(_git_dir(repo), head, "") == [head]
    assert signatures.chain(_git_dir(repo), applied, head) == [applied]


def test_chain_over_rewritten_history_verifies_every_rewritten_commit(signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    base = signing.signed_commit(repo, signers["ssh"], FILE, "base")
    applied = signing.signed_commit(repo, signers["ssh"], {"b.yaml": "b: 1\n"}, "applied")
    git(repo, "reset", "-q", "--hard", base)  # force-push style rewrite from base
    rewritten = signing.signed_commit(repo, None, {"b.yaml": "b: 2\n"}, "rewritten, unsigned")
    head = signing.signed_commit(repo, signers["ssh"], {"c.yaml": "c: 1\n"}, "signed on top")
    assert signatures.chain(_git_dir(repo), head, applied) == [head, rewritten]
    with pytest.raises(SignatureError, match=f"commit {rewritten[:12]}"):
        signatures.verify(_git_dir(repo), head, _ssh_policy(signers, tmp_path, "chain"),
                          last_applied=applied)
    gone = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(SignatureError, match="0123456789ab, the last one applied, is not in"):
        signatures.chain(_git_dir(repo), head, gone)


def test_the_users_keyring_and_git_config_are_not_read(signers, tmp_path, monkeypatch):
    """A user config that would trust every key (and a GNUPGHOME holding the stranger's key)
    changes nothing: verification uses only the keys given."""
    repo = new_repo(tmp_path / "repo")
    sha = signing.signed_commit(repo, signers["pgp"], FILE, "pgp")
    home = tmp_path / "home"
    home.mkdir()
    everyone = signers["stranger"].allowed_signers(tmp_path / "everyone")
    (home / ".gitconfig").write_text(f"[gpg \"ssh\"]\n\tallowedSignersFile = {everyone}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GNUPGHOME", str(signers["pgp"].home))  # holds the signing key
    before = sorted(os.listdir(signers["pgp"].home))
    with pytest.raises(SignatureError, match="not among the trusted keys"):
        signatures.verify(_git_dir(repo), sha, _ssh_policy(signers, tmp_path))
    assert sorted(os.listdir(signers["pgp"].home)) == before


def test_bad_key_inputs_are_named_with_the_fix(tmp_path):
    bad = tmp_path / "allowed"
    bad.write_text("dana@example.com not-a-key\n")
    with pytest.raises(SourceError, match=r"--allowed-signers .*line 1: .*PRINCIPAL KEYTYPE KEY"):
        Keys.from_files(bad, None)
    empty = tmp_path / "keys"
    empty.mkdir()
    with pytest.raises(SourceError, match=r"--trusted-keys .*no \*\.asc files"):
        Keys.from_files(None, empty)
    junk = tmp_path / "junk.asc"
    junk.write_text("not a key\n")
    with pytest.raises(SourceError, match="junk.asc: not an OpenPGP public key"), \
            signatures.Keyring(Keys.from_files(None, junk)):
        pass
    with pytest.raises(SourceError, match="no trusted keys"):
        Policy("head", Keys())
    with pytest.raises(SourceError, match="use one of head, chain"):
        Policy("all", Keys(allowed_signers=("x",)))


def test_keys_from_a_flux_style_secret(signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    ssh_sha = signing.signed_commit(repo, signers["ssh"], FILE, "ssh")
    pgp_sha = signing.signed_commit(repo, signers["pgp"], {"b.yaml": "b: 1\n"}, "pgp")
    asc = signers["pgp"].export(tmp_path / "k.asc").read_bytes()
    keys = Keys.from_secret("signing-keys", {"dana.sshpub": signers["ssh"].public.read_bytes(),
                                             "releng.asc": asc, "README": b"ignored"})
    verified = signatures.verify(_git_dir(repo), pgp_sha, Policy("chain", keys),
                                 last_applied=ssh_sha)
    assert [(s.sha, s.key) for s in verified] == [(pgp_sha, signers["pgp"].fingerprint)]
    [ssh] = signatures.verify(_git_dir(repo), ssh_sha, Policy("head", keys))
    assert ssh.signer == "dana"  # the Secret's key name is the principal
    with pytest.raises(SourceError, match="Secret empty: no `\\*.asc`"):
        Keys.from_secret("empty", {"other": b""})


def test_signers_for_history(signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    good = signing.signed_commit(repo, signers["ssh"], FILE, "good")
    plain = signing.signed_commit(repo, None, {"b.yaml": "b: 1\n"}, "plain")
    other = signing.signed_commit(repo, signers["stranger"], {"c.yaml": "c: 1\n"}, "other")
    allowed = signers["ssh"].allowed_signers(tmp_path / "allowed")
    found = signatures.signers(_git_dir(repo), [good, plain, other],
                               Keys.from_files(allowed, None))
    assert found[good].startswith("dana@example.com (SHA256:")
    assert found[plain] == "unsigned"
    assert found[other].startswith("untrusted key SHA256:")


def test_secret_data_round_trips_through_the_flux_shape(signers, tmp_path):
    repo = new_repo(tmp_path / "repo")
    sha = signing.signed_commit(repo, signers["ssh"], FILE, "ssh")
    allowed = signers["ssh"].allowed_signers(tmp_path / "allowed")
    keys = Keys.from_files(allowed, None)
    data = keys.secret_data()
    assert list(data) == ["dana_example.com.sshpub"]
    back = Keys.from_secret("s", {k: v.encode() for k, v in data.items()})
    [signed] = signatures.verify(_git_dir(repo), sha, Policy("head", back))
    assert signed.signer == "dana_example.com"
