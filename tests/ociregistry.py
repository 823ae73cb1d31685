"""A real OCI registry over HTTPS on loopback, for Helm's OCI chart sources.

tests/ociregistry/main.go wraps go-containerregistry's registry (pkg/registry) in TLS (a
throwaway CA from `httpsgit.make_ca`) and basic auth; it is built once from the Go module into
the cache directory. Charts are pushed with the real `helm push`, after `helm registry login`,
both in a clean helm environment.

    with OciRegistry(tmp_path) as registry:
        registry.push(chart_archive)            # oci://127.0.0.1:PORT/charts/<name>:<version>
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from sync_agent.helm import process
from sync_agent.paths import cache_root
from tests.helmrepo import helm
from tests.httpsgit import HOST, make_ca

SOURCE = Path(__file__).resolve().parent / "ociregistry"


def build() -> Path:
    target = cache_root() / "tests" / "ociregistry"
    if not os.access(target, os.X_OK):
        target.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        done = subprocess.run(["go", "build", "-o", str(target), "."], cwd=SOURCE, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, f"building the test OCI registry failed:\n{done.stderr}"
    return target


class OciRegistry:
    def __init__(self, base: Path, username: str = "pusher"):
        self.root = Path(tempfile.mkdtemp(prefix="ociregistry-", dir=base))
        self.ca = make_ca(self.root / "ca", "ociregistry test CA")
        self._chain = self.ca.issue_server_cert(self.root)
        self.username, self.token = username, f"tok-{secrets.token_hex(12)}"
        self.port = 0
        self._process: subprocess.Popen | None = None

    @property
    def ca_file(self) -> Path:
        return self.ca.cert_file

    @property
    def url(self) -> str:
        return f"oci://{HOST}:{self.port}/charts"

    def start(self) -> OciRegistry:
        chain, key = self._chain
        self._process = subprocess.Popen(
            [str(build()), "-cert", str(chain), "-key", str(key), "-user", self.username],
            env={"OCIREGISTRY_PASSWORD": self.token, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.port = int(self._process.stdout.readline())
        return self

    def push(self, archive: Path) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            env = process.environment(Path(scratch))
            for args, stdin in (
                    (["registry", "login", f"{HOST}:{self.port}", "--username", self.username,
                      "--password-stdin", "--ca-file", str(self.ca_file)], self.token),
                    (["push", str(archive), self.url, "--ca-file", str(self.ca_file)], None)):
                done = subprocess.run([str(helm()), *args], env=env, input=stdin,
                                      capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, f"helm {args[0]}: {done.stderr}"

    def close(self) -> None:
        if self._process:
            self._process.terminate()
            self._process.wait(10)
            self._process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> OciRegistry:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
