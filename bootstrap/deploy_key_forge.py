"""Register a deploy key with GitHub or GitLab through their REST APIs, read-only.

Called by `bootstrap.deploy_key.create_deploy_key` in three steps, so that it can store the
Secret between them: `check` (list the repository's keys, find the one of our title, refuse a
different key of that title unless rotating), `add` (only when the key is not there yet), and
after the Secret holds the new key, `delete` the old ones. The new key is thus accepted before
the old one goes away, and a failure before the Secret is written leaves the old key working.

Plain urllib (no new dependency). The token is sent only over HTTPS (or plain HTTP to a
loopback address, for tests), follows a redirect only for a read and only to the same scheme,
host and port (anything else stops with an error, the token unsent), and never appears in a
message.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from bootstrap.errors import OperationFailed, UserError
from sync_agent import redaction

DEFAULT_API = {"github": "https://api.github.com", "gitlab": "https://gitlab.com"}
_HINTS = {
    401: "the token was rejected (expired or mistyped?)",
    403: "the token may not manage deploy keys (GitHub: Administration write or `repo` scope; "
         "GitLab: Maintainer role and `api` scope)",
    404: "no such repository, or the token cannot see it",
    422: "the server refused the key (on GitHub a key can be registered only once)",
}


@dataclass(frozen=True)
class Forge:
    """Where to register: GitHub OWNER/REPO or a GitLab project (id or group/path)."""

    kind: str  # "github" or "gitlab"
    project: str
    token: str = field(repr=False)
    api_url: str = ""  # default https://api.github.com / https://gitlab.com

    @property
    def label(self) -> str:
        return f"{'GitHub' if self.kind == 'github' else 'GitLab'} {self.project}"


@dataclass(frozen=True)
class Registration:
    """What the forge holds after create: our key's id, whether it was added, what was removed."""

    forge: str
    project: str
    title: str
    key_id: int
    created: bool
    removed: tuple[int, ...] = ()

    def to_json(self) -> dict:
        return {"forge": self.forge, "project": self.project, "title": self.title,
                "id": self.key_id, "created": self.created, "removed": list(self.removed)}


class ForgeKeys:
    """The deploy keys of one repository on GitHub or GitLab."""

    def __init__(self, forge: Forge):
        if forge.kind not in DEFAULT_API:
            raise UserError(f"forge {forge.kind!r}: use github or gitlab")
        if forge.kind == "github" and not re.fullmatch(r"[\w.-]+/[\w.-]+", forge.project):
            raise UserError(f"--github {forge.project!r}: give OWNER/REPO")
        self.forge = forge
        self.base = (forge.api_url or DEFAULT_API[forge.kind]).rstrip("/")
        _check_transport(self.base)
        if forge.kind == "github":
            self.collection = f"/repos/{forge.project}/keys"
            self.headers = {"Authorization": f"Bearer {forge.token}",
                            "Accept": "application/vnd.github+json",
                            "X-GitHub-Api-Version": "2022-11-28"}
        else:
            self.collection = f"/api/v4/projects/{quote(forge.project, safe='')}/deploy_keys"
            self.headers = {"PRIVATE-TOKEN": forge.token, "Accept": "application/json"}
        self._opener = urllib.request.build_opener(_SameHostRedirects)

    def check(self, title: str, public_key: str, rotate: bool) -> tuple[int | None, list[int]]:
        """(id of this key if registered under `title`, ids of other keys titled `title`)."""
        present, others = None, []
        for entry in self._list():
            if entry.get("title") != title:
                continue
            if str(entry.get("key", "")).split()[:2] == public_key.split()[:2]:
                present = int(entry["id"])
            else:
                others.append(int(entry["id"]))
        if others and not rotate:
            raise UserError(f"{self.forge.label}: a deploy key titled {title!r} already exists "
                            "with another key; pass --rotate to replace it (nothing was changed)")
        return present, others

    def add(self, title: str, public_key: str) -> int:
        """Register the key read-only; returns its id."""
        key = " ".join(public_key.split()[:2])
        body: dict[str, Any] = {"title": title, "key": key}
        body.update({"read_only": True} if self.forge.kind == "github" else {"can_push": False})
        created, _ = self._call("POST", self.collection, body)
        return int(created["id"])

    def delete(self, key_id: int) -> None:
        try:
            self._call("DELETE", f"{self.collection}/{key_id}")
        except UserError as e:
            if "HTTP 404" not in str(e):  # already gone is what we wanted
                raise

    def _list(self) -> list[dict]:
        entries: list[dict] = []
        url: str | None = f"{self.collection}?per_page=100"
        while url:
            page, headers = self._call("GET", url)
            entries += page if isinstance(page, list) else []
            match = re.search(r'<([^>]+)>;\s*rel="next"', headers.get("Link", ""))
            url = match.group(1) if match else None
        return entries

    def _call(self, method: str, path: str, body: Any = None) -> tuple[Any, Any]:
        url = path if "://" in path else self.base + path
        if _origin(url) != _origin(self.base):
            raise UserError(f"{self.forge.label}: the API pointed to another host or scheme; "
                            "stopped (the token was not sent there)")
        data = None if body is None else json.dumps(body).encode()
        headers = {**self.headers, "User-Agent": "gitops-restore"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        shown = f"{method} {urlsplit(url).path}"
        try:
            with self._opener.open(request, timeout=30) as response:
                raw = response.read()
                return (json.loads(raw) if raw.strip() else None), response.headers
        except UserError as e:
            raise UserError(f"{self.forge.label}: {e}") from None
        except urllib.error.HTTPError as e:
            detail = self._scrub(_error_detail(e))
            hint = _HINTS.get(e.code, "")
            raise UserError(f"{self.forge.label}: {shown}: HTTP {e.code} {detail}"
                            f"{'; ' + hint if hint else ''}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = self._scrub(str(getattr(e, "reason", e)))
            raise OperationFailed(f"{self.forge.label}: {shown}: cannot reach {self.base}: "
                                  f"{reason}") from None
        except ValueError:
            raise OperationFailed(f"{self.forge.label}: {shown}: the answer is not JSON"
                                  ) from None

    def _scrub(self, text: str) -> str:
        return text.replace(self.forge.token, "***") if self.forge.token else text


def register(keys: ForgeKeys, title: str, public_key: str, rotate: bool,
             log: Callable[[str], None]) -> tuple[Registration, list[int]]:
    """Check, then add if needed; returns the registration and the ids to delete afterwards."""
    present, stale = keys.check(title, public_key, rotate)
    created = present is None
    key_id = keys.add(title, public_key) if created else present
    log(f"{keys.forge.label}: deploy key {title!r} {'added' if created else 'already there'}"
        f" (id {key_id}, read-only)")
    return Registration(keys.forge.kind, keys.forge.project, title, key_id, created), stale


def remove_old(keys: ForgeKeys, registration: Registration, stale: list[int],
               log: Callable[[str], None]) -> Registration:
    """Delete the replaced keys, once the Secret holds the new one."""
    for key_id in stale:
        try:
            keys.delete(key_id)
        except (UserError, OperationFailed) as e:
            raise OperationFailed(f"{e}. The new key (id {registration.key_id}) is registered "
                                  f"and stored; delete the old key id {key_id} by hand") from None
        log(f"{keys.forge.label}: old deploy key id {key_id} deleted")
    return Registration(registration.forge, registration.project, registration.title,
                        registration.key_id, registration.created, tuple(stale))


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect (a renamed repository) only for a read and only to the same origin
    (scheme, host and port), since the token goes along. Anything else stops before a byte is
    sent there: another host, plain http after https, a POST or DELETE that urllib would
    silently turn into a GET."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urljoin(req.full_url, newurl)
        where = _origin(target)
        if where != _origin(req.full_url) or req.get_method() not in ("GET", "HEAD"):
            shown = f"{where[0]}://{where[1]}:{where[2]}{urlsplit(target).path}"
            raise UserError(f"{req.get_method()} {urlsplit(req.full_url).path}: the API "
                            f"redirected (HTTP {code}) to {redaction.redact(shown)}; the token "
                            "was not sent there. Give the API's own address with --api-url "
                            "(https://, the host that serves it)")
        return super().redirect_request(req, fp, code, msg, headers, target)


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the port filled in from the scheme."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or default


def _check_transport(base: str) -> None:
    parts = urlsplit(base)
    if parts.scheme == "https":
        return
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback:
        raise UserError(f"--api-url {base}: use https:// (plain http only to a loopback "
                        "address, where the token cannot be overheard)")


def _error_detail(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        return error.reason or ""
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or error.reason or "")
    return str(error.reason or "")
