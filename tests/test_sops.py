"""SOPS-encrypted manifests: files encrypted by the real sops CLI for real age keys, decrypted
at render time (sync_agent/sops.py) and restored to the real local cluster."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from bootstrap import agent, clusters, sops_key
from bootstrap.errors import UserError
from sync_agent import conventions, digests, inventory, render, source
from sync_agent.agent import decryption, localproc, syncobject
from sync_agent.conventions import LEASE_RT, SECRET_RT, SYNC_LABEL
from sync_agent.errors import RenderError
from sync_agent.kube import Kube
from sync_agent.render_options import RenderOptions
from sync_agent.sops import AgeKeys, load_keys
from tests import cli
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.sopsfiles import AgeKey, age_key, encrypt, encrypt_binary, tamper
from tests.test_agent import wait_for
from tests.testdata.gitrepos import commit, new_repo

PASSWORD = "hunter2-plain-sops-value"
TOKEN = "tok-9f8e7d-sops-secret"

SECRET = f"""apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
stringData:
  password: {PASSWORD}
data:
  token: {base64.b64encode(TOKEN.encode()).decode()}
"""


@pytest.fixture
def key(tmp_path: Path) -> AgeKey:
    return age_key(tmp_path)


@pytest.fixture
def other_key(tmp_path: Path) -> AgeKey:
    return age_key(tmp_path, "other.txt")


def keys_of(key: AgeKey) -> AgeKeys:
    return load_keys(key.file, f"--sops-age-key {key.file}")


def rendered(tmp_path: Path, files: dict[str, str], keys: AgeKeys | None, path: str = ""):
    repo = new_repo(tmp_path / "repo")
    commit(repo, files, "manifests")
    opened = source.open_repository(str(repo))
    revision = source.resolve(opened, str(repo))
    tree = tmp_path / "tree"
    source.export_tree(opened, revision.sha, tree)
    return render.render(tree, path, revision, options=RenderOptions(sops_keys=keys))


def problems(tmp_path: Path, files: dict[str, str], keys: AgeKeys | None) -> list[str]:
    with pytest.raises(RenderError) as caught:
        rendered(tmp_path, files, keys)
    return caught.value.problems


# --- render: what comes out of an encrypted file -------------------------------------------

def test_a_whole_file_encrypted_secret_renders_with_its_plain_values(tmp_path, key):
    encrypted = encrypt(SECRET, key.recipient, tmp_path)
    assert PASSWORD not in encrypted and "ENC[AES256_GCM" in encrypted
    result = rendered(tmp_path, {"secret.yaml": encrypted, "cm.yaml": m.configmap("plain")},
                      keys_of(key))
    by_name = {r.name: r for r in result.resources}
    assert by_name["db"].body["stringData"] == {"password": PASSWORD}
    assert base64.b64decode(by_name["db"].body["data"]["token"]).decode() == TOKEN
    assert "sops" not in by_name["db"].body
    assert by_name["db"].decrypted and not by_name["plain"].decrypted


def test_partial_encryption_keeps_metadata_readable_and_decrypts_data(tmp_path, key):
    encrypted = encrypt(SECRET, key.recipient, tmp_path, "yaml",
                        "--encrypted-regex", "^(data|stringData)$")
    assert "name: db" in encrypted and PASSWORD not in encrypted
    result = rendered(tmp_path, {"secret.yaml": encrypted}, keys_of(key))
    assert result.resources[0].body["stringData"] == {"password": PASSWORD}


def test_unencrypted_suffix_style_decrypts(tmp_path, key):
    plain = SECRET.replace("type: Opaque", "type_unencrypted: Opaque")
    encrypted = encrypt(plain, key.recipient, tmp_path, "yaml",
                        "--unencrypted-suffix", "_unencrypted")
    assert "type_unencrypted: Opaque" in encrypted
    result = rendered(tmp_path, {"secret.yaml": encrypted}, keys_of(key))
    assert result.resources[0].body["stringData"] == {"password": PASSWORD}


def test_an_encrypted_json_file_and_a_multi_document_yaml_decrypt(tmp_path, key):
    as_json = json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "j"},
                          "stringData": {"password": PASSWORD}})
    two = m.configmap("one", k="v1") + "---\n" + m.configmap("two", k="v2")
    result = rendered(tmp_path, {"j.json": encrypt(as_json, key.recipient, tmp_path, "json"),
                                 "two.yaml": encrypt(two, key.recipient, tmp_path)},
                      keys_of(key))
    bodies = {r.name: r.body for r in result.resources}
    assert bodies["j"]["stringData"] == {"password": PASSWORD}
    assert bodies["one"]["data"] == {"k": "v1"} and bodies["two"]["data"] == {"k": "v2"}


def test_sops_reads_no_sops_config_around_it(tmp_path, key, monkeypatch):
    """sops looks for `.sops.yaml` up from its working directory; ours must not be read."""
    encrypted = encrypt(SECRET, key.recipient, tmp_path)
    around = tmp_path / "around"
    (around / "tmp").mkdir(parents=True)
    (around / ".sops.yaml").write_text("creation_rules: [\n")  # sops cannot load this
    monkeypatch.setattr(tempfile, "tempdir", str(around / "tmp"))
    result = rendered(tmp_path, {"secret.yaml": encrypted}, keys_of(key))
    assert result.resources[0].body["stringData"] == {"password": PASSWORD}


# --- render: refusals, each naming the file -------------------------------------------------

def test_a_tampered_value_fails_the_mac_naming_the_file(tmp_path, key):
    encrypted = encrypt(SECRET, key.recipient, tmp_path, "yaml",
                        "--encrypted-regex", "^(data|stringData)$")
    forged = tamper(encrypted, "name: db", "name: dbx")  # metadata is covered by the MAC too
    found = problems(tmp_path, {"apps/secret.yaml": forged}, keys_of(key))
    assert len(found) == 1
    assert found[0].startswith("apps/secret.yaml: ") and "MAC" in found[0]


def test_a_changed_ciphertext_is_refused(tmp_path, key):
    encrypted = encrypt(SECRET, key.recipient, tmp_path)
    marker = "password: ENC[AES256_GCM,data:"
    start = encrypted.index(marker) + len(marker)
    flipped = "A" if encrypted[start] != "A" else "B"
    forged = encrypted[:start] + flipped + encrypted[start + 1:]
    found = problems(tmp_path, {"secret.yaml": forged}, keys_of(key))
    assert found[0].startswith("secret.yaml: ")


def test_a_file_for_another_recipient_is_refused_naming_both(tmp_path, key, other_key):
    encrypted = encrypt(SECRET, key.recipient, tmp_path)
    found = problems(tmp_path, {"secret.yaml": encrypted}, keys_of(other_key))
    assert found[0].startswith("secret.yaml: ")
    assert key.recipient in found[0] and str(other_key.file) in found[0]


def test_an_encrypted_file_without_a_key_names_the_option(tmp_path, key):
    encrypted = encrypt(SECRET, key.recipient, tmp_path)
    found = problems(tmp_path, {"secret.yaml": encrypted}, None)
    assert found[0].startswith("secret.yaml: ") and "--sops-age-key" in found[0]


def test_a_pgp_only_file_says_pgp_is_not_supported_yet(tmp_path):
    pgp_only = SECRET.replace(PASSWORD, "ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]")
    pgp_only += ("sops:\n    pgp:\n        - created_at: \"2026-11-30T10:00:00Z\"\n"
                 "          enc: x\n          fp: ABCDEF\n    mac: ENC[AES256_GCM,data:AA]\n"
                 "    version: 3.11.0\n")
    with pytest.raises(RenderError) as caught:
        rendered(tmp_path, {"secret.yaml": pgp_only},
                 AgeKeys("AGE-SECRET-KEY-1X\n", "--sops-age-key k"))
    assert caught.value.problems[0].startswith("secret.yaml: ")
    assert "PGP" in caught.value.problems[0]


# --- the CLI on the real cluster -------------------------------------------------------------

def restore(verb: str, repo: Path, namespace: str, *args: str, code: int = 0,
            env: dict | None = None):
    return cli.run(verb, "--repo", str(repo), "--cluster", SESSION_CLUSTER, "-n", namespace,
                   "--sync", namespace, "--output", "json", *args, check_code=code, env=env)


def test_restore_decrypts_into_the_cluster_and_keeps_values_out_of_everything(
        tmp_path, key, local_cluster, api_client, namespace):
    repo = new_repo(tmp_path / "repo")
    partial = encrypt(SECRET, key.recipient, tmp_path, "yaml",
                      "--encrypted-regex", "^(data|stringData)$")
    commit(repo, {"app/secret.yaml": partial, "app/cm.yaml": m.configmap("settings")}, "v1")
    done = restore("restore", repo, namespace, "--path", "app", "--sops-age-key", str(key.file))
    core = client.CoreV1Api(api_client)
    live = core.read_namespaced_secret("db", namespace)
    assert base64.b64decode(live.data["password"]).decode() == PASSWORD
    assert base64.b64decode(live.data["token"]).decode() == TOKEN

    # The inventory remembers the Secret by a digest keyed by the cluster's digest key, not by
    # a plain hash of its values.
    sent = {**yaml.safe_load(SECRET), "metadata": {
        "name": "db", "namespace": namespace, "labels": {SYNC_LABEL: namespace}}}
    with Kube.from_kubeconfig(local_cluster.kubeconfig) as kube:
        entry = next(e for e in inventory.load(kube, namespace).entries if e.ref.kind == "Secret")
        stored = kube.get(SECRET_RT, conventions.NAMESPACE, digests.KEY_SECRET)
    cluster_key = base64.b64decode(stored["data"]["key"])
    assert len(cluster_key) == 32
    assert entry.digest == digests.keyed(sent, cluster_key)
    assert entry.digest != digests.plain(sent)

    # The same revision again is unchanged; a changed value shows as <encrypted>, no field.
    again = restore("plan", repo, namespace, "--path", "app",  # the key by sops' variable
                    env={"SOPS_AGE_KEY_FILE": str(key.file)})
    changed = encrypt(SECRET.replace(PASSWORD, PASSWORD + "-2"), key.recipient, tmp_path,
                      "yaml", "--encrypted-regex", "^(data|stringData)$")
    commit(repo, {"app/secret.yaml": changed}, "v2")
    plan = restore("plan", repo, namespace, "--path", "app", "--sops-age-key", str(key.file),
                   code=3)
    verify = restore("verify", repo, namespace, "--path", "app", "--sops-age-key",
                     str(key.file), code=3)
    secret_change = [c for c in json.loads(plan.stdout)["changes"]
                     if c["object"] == f"Secret/{namespace}/db"]
    assert secret_change == [{"object": f"Secret/{namespace}/db", "action": "update",
                              "detail": "<encrypted> (changes)"}]
    assert {c["action"] for c in json.loads(again.stdout)["changes"]} == {"unchanged"}

    maps = core.list_namespaced_config_map(
        conventions.NAMESPACE, label_selector=f"gitops-restore.io/inventory={namespace}").items
    stored = json.dumps([cm.to_dict() for cm in maps], default=str)
    assert maps, "no inventory ConfigMap found to scan"
    for text in (done.stdout, done.stderr, again.stdout, plan.stdout, plan.stderr,
                 verify.stdout, verify.stderr, stored):
        for value in (PASSWORD, TOKEN, base64.b64encode(PASSWORD.encode()).decode()):
            assert value not in text


def test_a_rejected_decrypted_object_is_reported_without_its_values(
        tmp_path, key, api_client, namespace):
    """The API server echoes a value it refuses; for a decrypted object we do not."""
    bad = "bad label value from sops!"
    configmap = m.configmap("settings", k=PASSWORD).replace(
        "metadata:\n", f"metadata:\n  labels: {{tier: '{bad}'}}\n", 1)
    repo = new_repo(tmp_path / "repo")
    commit(repo, {"app/cm.yaml": encrypt(configmap, key.recipient, tmp_path)}, "v1")
    result = cli.run("restore", "--repo", str(repo), "--cluster", SESSION_CLUSTER, "-n",
                     namespace, "--sync", namespace, "--path", "app", "--sops-age-key",
                     str(key.file), check_code=2)
    assert "app/cm.yaml" in result.stderr and "<encrypted>" in result.stderr
    assert bad not in result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize("case", ["tampered", "wrong key"])
def test_a_bad_encrypted_file_stops_the_restore_before_anything_is_applied(
        tmp_path, key, other_key, api_client, namespace, case):
    encrypted = encrypt(SECRET, key.recipient, tmp_path, "yaml",
                        "--encrypted-regex", "^(data|stringData)$")
    if case == "tampered":
        encrypted = tamper(encrypted, "name: db", "name: dbx")
    used = other_key if case == "wrong key" else key
    repo = new_repo(tmp_path / "repo")
    commit(repo, {"app/secret.yaml": encrypted, "app/cm.yaml": m.configmap("settings")}, "v1")
    result = cli.run("restore", "--repo", str(repo), "--cluster", SESSION_CLUSTER, "-n",
                     namespace, "--sync", namespace, "--path", "app", "--sops-age-key",
                     str(used.file), check_code=2)
    assert "app/secret.yaml" in result.stderr
    core = client.CoreV1Api(api_client)
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items
            if c.metadata.name == "settings"] == []
    assert [s.metadata.name for s in core.list_namespaced_secret(namespace).items
            if s.metadata.name in ("db", "dbx")] == []


# --- encrypted resources of a kustomization: transformed by kustomize, MAC checked as written

@pytest.mark.parametrize("style", [("--encrypted-regex", "^(data|stringData)$"),
                                   ("--unencrypted-regex", "^(apiVersion|kind|metadata|type)$")],
                         ids=["encrypted-regex", "unencrypted-regex"])
def test_an_encrypted_resource_of_a_kustomization_gets_transformed_and_decrypted(
        tmp_path, key, style):
    two = SECRET + "---\n" + m.configmap("settings", color=TOKEN)
    kustomization = ("namespace: apps\nnamePrefix: prod-\nlabels:\n- pairs: {team: x}\n"
                     "resources: [../base/secrets.enc.yaml]\n")
    result = rendered(tmp_path, {"base/secrets.enc.yaml": encrypt(two, key.recipient, tmp_path,
                                                                   "yaml", *style),
                                 "overlay/kustomization.yaml": kustomization}, keys_of(key),
                      "overlay")
    bodies = {r.name: r for r in result.resources}
    assert set(bodies) == {"prod-db", "prod-settings"}
    secret = bodies["prod-db"]
    assert secret.decrypted and "sops" not in secret.body
    assert secret.body["stringData"] == {"password": PASSWORD}
    assert secret.body["metadata"]["namespace"] == "apps"
    assert secret.body["metadata"]["labels"] == {"team": "x"}
    assert bodies["prod-settings"].body["data"] == {"color": TOKEN}


def test_a_whole_file_encrypted_resource_of_a_kustomization_says_what_to_encrypt(
        tmp_path, key):
    found = problems(tmp_path, {"k/secret.enc.yaml": encrypt(SECRET, key.recipient, tmp_path),
                                "k/kustomization.yaml": "resources: [secret.enc.yaml]\n"},
                     keys_of(key))
    assert len(found) == 1 and found[0].startswith("k/secret.enc.yaml: ")
    assert "--encrypted-regex" in found[0]


def test_a_tampered_resource_of_a_kustomization_is_refused_naming_it(tmp_path, key):
    encrypted = encrypt(SECRET, key.recipient, tmp_path, "yaml",
                        "--encrypted-regex", "^(data|stringData)$")
    found = problems(tmp_path, {"k/secret.enc.yaml": tamper(encrypted, "name: db", "name: x"),
                                "k/kustomization.yaml": "resources: [secret.enc.yaml]\n"},
                     keys_of(key))
    assert len(found) == 1 and found[0].startswith("k/secret.enc.yaml: ") and "MAC" in found[0]


# --- secretGenerator inputs: decrypted into memory, kustomize builds the Secret -------------

def test_encrypted_secret_generator_env_and_file_build_without_plaintext_on_disk(
        tmp_path, key):
    env = encrypt(f"PASSWORD={PASSWORD}\nUSER=admin\n", key.recipient, tmp_path, "dotenv")
    blob = b"\x00\x01binary-" + TOKEN.encode()
    (tmp_path / "blob.bin").write_bytes(blob)
    binary = encrypt_binary(tmp_path / "blob.bin", key.recipient, tmp_path)
    kustomization = ("namespace: apps\nsecretGenerator:\n- name: app\n  envs: [app.env]\n"
                     "  files: [cert=blob.bin.enc]\nresources: [deploy.yaml]\n")
    deploy = m.deployment("web").replace("containers:", "volumes:\n      - name: s\n"
                                         "        secret: {secretName: app}\n      containers:")
    result = rendered(tmp_path, {"k/kustomization.yaml": kustomization, "k/app.env": env,
                                 "k/blob.bin.enc": binary, "k/deploy.yaml": deploy},
                      keys_of(key))
    secret = next(r for r in result.resources if r.kind == "Secret")
    assert secret.name.startswith("app-")  # kustomize's hash suffix, so references follow
    assert secret.decrypted
    data = {k: base64.b64decode(v) for k, v in secret.body["data"].items()}
    assert data == {"PASSWORD": PASSWORD.encode(), "USER": b"admin", "cert": blob}
    web = next(r for r in result.resources if r.kind == "Deployment")
    assert web.body["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] \
        == secret.name
    # What is on disk in the exported tree is still only ciphertext.
    for file in (tmp_path / "tree").rglob("*"):
        if file.is_file():
            assert PASSWORD.encode() not in file.read_bytes()
            assert TOKEN.encode() not in file.read_bytes()


def test_an_encrypted_generator_file_for_another_key_names_the_file(tmp_path, key, other_key):
    env = encrypt(f"PASSWORD={PASSWORD}\n", key.recipient, tmp_path, "dotenv")
    found = problems(tmp_path, {"k/kustomization.yaml": "secretGenerator:\n- name: app\n"
                                                        "  envs: [app.env]\n",
                                "k/app.env": env}, keys_of(other_key))
    assert len(found) == 1 and found[0].startswith("k/app.env: ")
    assert "secretGenerator envs of k" in found[0]


def test_an_encrypted_file_in_a_config_map_generator_is_refused_naming_it(tmp_path, key):
    """Flux decrypts secretGenerator inputs only; a ConfigMap would carry the ciphertext."""
    env = encrypt(f"PASSWORD={PASSWORD}\n", key.recipient, tmp_path, "dotenv")
    found = problems(tmp_path, {"k/kustomization.yaml": "configMapGenerator:\n- name: app\n"
                                                        "  envs: [app.env]\n"
                                                        "  files: [plain.txt]\n",
                                "k/app.env": env, "k/plain.txt": "not a secret\n"},
                     keys_of(key))
    assert found == ["k/app.env: SOPS-encrypted, but read by configMapGenerator envs of k: a "
                     "ConfigMap would hold its ciphertext; list it under secretGenerator "
                     "instead"]


# --- the agent: the age key bootstrap stores, read from the Secret the Sync names ------------

@pytest.fixture
def agent_sync(local_cluster, namespace: str, tmp_path: Path):
    """A Sync of `app/` of a local repository, nothing started; cleaned up afterwards."""
    kube = Kube.from_kubeconfig(local_cluster.kubeconfig)
    name = namespace[:52].strip("-")
    processes: list[subprocess.Popen] = []
    yield kube, name, processes
    for process in processes:
        process.kill()
        process.wait(10)
    for rt, obj in ((syncobject.SYNC_RT, name), (LEASE_RT, f"agent-{name}"),
                    (agent.DEPLOYMENT_RT, f"agent-{name}"),
                    (SECRET_RT, decryption.secret_name(name))):
        kube.delete(rt, conventions.NAMESPACE, obj)
    inventory.delete(kube, name)
    kube.close()


def test_the_agent_decrypts_with_the_stored_key_and_rotation_replaces_it(
        local_cluster, agent_sync, tmp_path, key, other_key, api_client, namespace):
    kube, name, processes = agent_sync
    repo = new_repo(tmp_path / "repo")
    commit(repo, {"app/secret.yaml": encrypt(SECRET, key.recipient, tmp_path)}, "v1")

    assert sops_key.store(kube, name, keys_of(key), rotate=False)[0]
    assert not sops_key.store(kube, name, keys_of(key), rotate=False)[0]  # same key: unchanged
    with pytest.raises(UserError, match="--rotate"):
        sops_key.store(kube, name, keys_of(other_key), rotate=False)
    request = agent.InstallRequest(sync=name, repo=str(repo), path="app", interval="2s",
                                   default_namespace=namespace,
                                   decryption_secret=decryption.secret_name(name))
    agent.install(agent.Target(kube, local_cluster.kubeconfig, None), request, start=False)
    log = tmp_path / "agent.log"
    with open(log, "ab") as handle:
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "sync_agent", "--sync", name, "--kubeconfig",
             local_cluster.kubeconfig, "--interval", "2s", "--listen", "127.0.0.1:0"],
            stdout=handle, stderr=handle, stdin=subprocess.DEVNULL))
    core = client.CoreV1Api(api_client)

    def password() -> str:
        found = [s for s in core.list_namespaced_secret(namespace).items
                 if s.metadata.name == "db"]
        return base64.b64decode(found[0].data["password"]).decode() if found else ""

    def sync_status() -> dict:
        return syncobject.parse(syncobject.read(kube, conventions.NAMESPACE, name)).status

    wait_for(lambda: password() == PASSWORD, "the agent to apply the decrypted Secret",
             explain=lambda: log.read_text(errors="replace")[-3000:])

    # Rotated to a key the file is not encrypted for: the next commit is refused, naming the
    # file, and the last applied state stays.
    assert sops_key.store(kube, name, keys_of(other_key), rotate=True)[0]
    changed = encrypt(SECRET.replace(PASSWORD, "rotated-value-x"), key.recipient, tmp_path)
    v2 = commit(repo, {"app/secret.yaml": changed}, "v2")
    wait_for(lambda: v2[:12] in json.dumps(sync_status())
             and "app/secret.yaml" in json.dumps(sync_status()),
             "the agent to refuse v2", explain=lambda: json.dumps(sync_status(), indent=1))
    assert password() == PASSWORD

    events = core.list_namespaced_event(conventions.NAMESPACE).items
    seen = (log.read_text(errors="replace") + json.dumps(sync_status())
            + json.dumps([e.message for e in events]))
    for value in (PASSWORD, TOKEN, "rotated-value-x", keys_of(key).text.strip()):
        assert value not in seen


def test_agent_install_stores_the_key_and_a_rerun_without_it_keeps_decrypting(
        local_cluster, agent_sync, tmp_path, key, api_client, namespace):
    """`agent install --sops-age-key` on the local provider: the Secret, the Sync's
    decryption, the local agent applying the decrypted Secret; re-running install without
    the option keeps spec.decryption (an apply would otherwise drop it)."""
    kube, name, _ = agent_sync
    repo = new_repo(tmp_path / "repo")
    commit(repo, {"app/secret.yaml": encrypt(SECRET, key.recipient, tmp_path)}, "v1")
    args = ("agent", "install", "--repo", str(repo), "--path", "app", "--interval", "2s",
            "--cluster", SESSION_CLUSTER, "--sync", name, "-n", namespace)
    directory = clusters.cluster_dir(SESSION_CLUSTER)
    try:
        installed = cli.run_json(*args, "--sops-age-key", str(key.file), check_code=0)
        assert installed["started"] is True
        core = client.CoreV1Api(api_client)
        wait_for(lambda: [s for s in core.list_namespaced_secret(namespace).items
                          if s.metadata.name == "db"], "the local agent to apply the Secret",
                 explain=lambda: Path(installed["agent"]["local"]["log"]).read_text())
        live = core.read_namespaced_secret("db", namespace)
        assert base64.b64decode(live.data["password"]).decode() == PASSWORD
        cli.run_json(*args, check_code=0)  # again, without the key
        spec = syncobject.parse(syncobject.read(kube, conventions.NAMESPACE, name)).spec
        assert spec.decryption_secret == decryption.secret_name(name)
        log = Path(installed["agent"]["local"]["log"]).read_text()
        assert PASSWORD not in log and keys_of(key).text.strip() not in log
    finally:
        localproc.stop(directory, name)


def test_a_key_file_without_age_identities_is_refused_naming_it(tmp_path, key):
    repo = new_repo(tmp_path / "repo")
    commit(repo, {"app/secret.yaml": encrypt(SECRET, key.recipient, tmp_path)}, "v1")
    bad = tmp_path / "not-a-key.txt"
    bad.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    result = cli.run("history", "--repo", str(repo), "--path", "app", "--sops-age-key",
                     str(bad), check_code=2)
    assert str(bad) in result.stderr and "AGE-SECRET-KEY-1" in result.stderr
    assert "Traceback" not in result.stderr
    listed = cli.run("history", "--repo", str(repo), "--path", "app", "--sops-age-key",
                     str(key.file), "--output", "json", check_code=0)
    assert "Secret/db" in listed.stdout and PASSWORD not in listed.stdout


def test_bootstrap_with_a_bad_key_file_changes_nothing(tmp_path, state_root):
    bad = tmp_path / "not-a-key.txt"
    bad.write_text("AGE-SECRET-KEY-1 but not really\n")
    repo = new_repo(tmp_path / "repo")
    commit(repo, {"app/cm.yaml": m.configmap("a")}, "v1")
    result = cli.run("bootstrap", "--provider", "local", "--cluster", "never-made-sops", "--repo",
                     str(repo), "--path", "app", "--sops-age-key", str(bad), "--yes",
                     check_code=2)
    assert str(bad) in result.stderr and "age key file" in result.stderr
    assert not clusters.cluster_dir("never-made-sops").exists()
