"""HTTPS remotes: how a username and token reach git without ever being written down.

A token comes from the URL's user part (https://user:token@host/repo.git, or the token alone,
https://TOKEN@host/repo.git, as GitHub takes it) or from GitAuth (the CLI fills it from
GITOPS_RESTORE_GIT_USERNAME and GITOPS_RESTORE_GIT_PASSWORD). git is given the URL without any
user part and reads both, when the server asks, from a GIT_ASKPASS helper that answers from
the environment of that one git process. So the clone cache's config and FETCH_HEAD, git's
messages and the command line (visible to every user in `ps`) never hold it. The user's own
credential helpers are switched off for such a run: they would otherwise store the token (the
`store` helper writes ~/.git-credentials) or answer with credentials of their own.

Server certificates are always verified, whatever http.sslVerify or GIT_SSL_NO_VERIFY say;
a private CA is trusted through GIT_SSL_CAINFO.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sync_agent.errors import SourceError

USERNAME_ENV = "GITOPS_RESTORE_GIT_USERNAME"
PASSWORD_ENV = "GITOPS_RESTORE_GIT_PASSWORD"
IGNORED_ENV = ("GIT_SSL_NO_VERIFY",)  # would switch certificate checks off: never passed on

_USER_PART = re.compile(r"^(https?://)[^/@]*@", re.IGNORECASE)
_ASKPASS_USERNAME = "GITOPS_RESTORE_ASKPASS_USERNAME"
_ASKPASS_PASSWORD = "GITOPS_RESTORE_ASKPASS_PASSWORD"
_ASKPASS_SCRIPT = f"""#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "${_ASKPASS_USERNAME}" ;;
  *) printf '%s\\n' "${_ASKPASS_PASSWORD}" ;;
esac
"""


def without_credentials(url: str) -> str:
    """An http(s) URL without its user part (username, password or token); others as given."""
    return _USER_PART.sub(r"\1", url)


def credentials(url: str, username: str | None, password: str | None
                ) -> tuple[str | None, str | None]:
    """The username and password for an http(s) URL: its own user part first, then the given
    ones. A user part without a password is a token (https://TOKEN@host): it is sent as the
    username with an empty password unless a password is given. (None, None) for other URLs."""
    if not url.lower().startswith(("https://", "http://")):
        return None, None
    parts = urlsplit(url)
    url_username = unquote(parts.username) if parts.username else None
    url_password = unquote(parts.password) if parts.password is not None else None
    if url_password is None:
        url_password = password if password is not None else ("" if url_username else None)
    return url_username or username, url_password


@contextmanager
def git_env(url: str, shown: str, ca_file: Path | None, username: str | None,
            password: str | None, scratch: Path) -> Iterator[dict[str, str]]:
    """Environment for the git commands that talk to `url` (messages name it as `shown`).

    The askpass helper lives in a private directory under `scratch` for as long as the block
    runs (not in /tmp, which is often mounted noexec).
    """
    settings = {"http.sslVerify": "true"}
    env = {"GIT_SSL_CAINFO": str(ca_file)} if ca_file else {}
    username, password = credentials(url, username, password)
    if password is None:
        yield {**env, **_config_env(settings)}
        return
    if not username:
        raise SourceError(f"{shown}: a token is given but no username: put it in the URL "
                          f"(https://USER:TOKEN@…) or set {USERNAME_ENV}")
    settings["credential.helper"] = ""  # an empty value empties the list of helpers
    with tempfile.TemporaryDirectory(dir=scratch, prefix="askpass-") as directory:
        helper = Path(directory) / "askpass"
        helper.write_text(_ASKPASS_SCRIPT)
        helper.chmod(0o700)
        yield {**env, **_config_env(settings), "GIT_ASKPASS": str(helper),
               _ASKPASS_USERNAME: username, _ASKPASS_PASSWORD: password}


def advice(detail: str) -> str | None:
    """What to do about an HTTPS failure that git reported as `detail`; None if it is not one."""
    if "Authentication failed" in detail or "could not read Password" in detail:
        return ("The server refused the username and token: check the token in the URL "
                f"(https://USER:TOKEN@…) or in {PASSWORD_ENV}, and the username")
    if "could not read Username" in detail:
        return ("The server asks for credentials: put them in the URL (https://USER:TOKEN@…) "
                f"or set {USERNAME_ENV} and {PASSWORD_ENV}")
    if "certificate" in detail.lower():
        return ("The server's TLS certificate is not trusted: give the CA that signed it with "
                "--ca-file PATH (certificates are always verified)")
    return None


def _config_env(settings: dict[str, str]) -> dict[str, str]:
    """Settings as `git -c` would make them, but through the environment (git 2.31+): never on
    a command line. They come after any the user passed the same way, so ours win."""
    start = os.environ.get("GIT_CONFIG_COUNT", "0")
    start_index = int(start) if start.isdigit() else 0
    env = {"GIT_CONFIG_COUNT": str(start_index + len(settings))}
    for index, (key, value) in enumerate(settings.items(), start_index):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    return env
