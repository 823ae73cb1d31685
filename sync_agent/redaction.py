"""Credentials out of text: every spelling of a secret in a URL or a header, as `***`.

Called through `source.redact` by everything that shows a repository URL or a message that
may quote one (errors, reports, the inventory, the agent's status, Events, logs and metrics).
The spellings are a table, each a pattern and what replaces it, so that a new one is a line:

  https://user:TOKEN@host/…        the password part (also oauth2:TOKEN@, x-access-token:TOKEN@,
                                   and ssh://user:PASSWORD@…)
  https://TOKEN@host/…             an http(s) user part without a password: forges take a token
                                   there (GitHub), so the whole user part goes
  …?access_token=TOKEN&…           query parameters that carry credentials (access_token,
                                   private_token, token, password, secret, api_key, sig, …)
  Authorization: Bearer TOKEN      header lines a library might quote (Authorization,
  PRIVATE-TOKEN: TOKEN             PRIVATE-TOKEN, X-…-Token, Cookie)

A URL may stand anywhere in the text (git quotes it inside its own messages), and the user part
of an ssh URL (git@) is kept: it names an account, not a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MASK = "***"

_USERINFO = r"[^/@\s'\"<>]*"  # up to the '@': no slash, space or quote
_Replacement = str | Callable[[re.Match[str]], str]
_SPELLINGS: tuple[tuple[re.Pattern[str], _Replacement], ...] = (
    # scheme://user:secret@  ->  scheme://user:***@
    (re.compile(rf"\b([a-z][a-z0-9+.-]*://[^/@:\s'\"<>]*):{_USERINFO}@", re.IGNORECASE),
     rf"\1:{MASK}@"),
    # http(s)://secret@  ->  http(s)://***@  (the user part is the token on GitHub)
    (re.compile(r"\b(https?://)(?!\*\*\*@)[^/@:\s'\"<>]+@", re.IGNORECASE), rf"\1{MASK}@"),
    # ?access_token=secret&…  ->  ?access_token=***&…
    (re.compile(r"([?&;](?:[\w.-]*(?:token|password|passwd|secret|api[_-]?key|apikey|"
                r"auth|credential|signature|sig))=)[^&#\s'\"<>]+", re.IGNORECASE),
     rf"\1{MASK}"),
    # Authorization: Bearer secret / PRIVATE-TOKEN: secret  ->  …: ***
    (re.compile(r"(?<![\w/@.-])((?:proxy-)?authorization|private-token|x-[\w-]*token|cookie)"
                r"(\s*[:=]\s*)(?:(basic|bearer|token)\s+)?[^\s'\"]+", re.IGNORECASE),
     lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) + ' ' if m.group(3) else ''}{MASK}"),
)


def redact(text: str) -> str:
    """`text` with every credential spelling above replaced by ***."""
    for pattern, replacement in _SPELLINGS:
        text = pattern.sub(replacement, text)
    return text
