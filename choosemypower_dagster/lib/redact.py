"""Secrets out of text: credentials stripped from URLs, tokens cut out of upstream messages.

Anything the code location prints, logs, stores or attaches as metadata about the API passes
through here first. A URL keeps its scheme, host, port and path but never a user or password;
text from upstream (an error body) is cut short and loses the configured key, bearer tokens,
`key=value` secrets and long token-like strings, so an API that echoes the request's
`Authorization` header cannot put the key into the event log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

#: Upstream text kept in a message: enough to recognise the error, too little to hold much.
UPSTREAM_TEXT_LIMIT = 160
MASK = "***"

_BEARER = re.compile(r"(?i)\b(bearer|basic|token|apikey)(\s+|=|:\s*)[^\s\"',;}]+")
_KEY_VALUE = re.compile(
    r"(?i)([\"']?\b(?:api[_-]?key|access[_-]?token|auth(?:orization)?|password|passwd|secret"
    r"|token|key)\b[\"']?\s*[:=]\s*[\"']?)([^\s\"',;}&]+)"
)
# Long runs of token characters (JWTs, hex or base64 keys). 24-hex ObjectIds are left
# alone: they are plan ids, not secrets, and messages name them.
_TOKEN_LIKE = re.compile(r"(?<![A-Za-z0-9_\-.+/=])[A-Za-z0-9_\-.+/=]{32,}")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]*@")


def strip_credentials(url: str) -> str:
    """`url` without a user or password (`https://u:p@host/x` -> `https://host/x`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _URL_USERINFO.sub(r"\1", url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def strip_url_credentials(text: str) -> str:
    """Every URL in `text` without its user and password (the rest of the text untouched)."""
    return _URL_USERINFO.sub(r"\1", text)


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with each of `secrets`, URL credentials, bearer tokens and token-like runs masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(r"\1", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return _TOKEN_LIKE.sub(MASK, text)


def upstream_excerpt(text: str, secrets: Iterable[str | None] = ()) -> str:
    """An upstream body fit for a message: one line, cut to UPSTREAM_TEXT_LIMIT, scrubbed.

    Cutting happens after scrubbing, so a secret can never survive by being cut in half.
    """
    flat = " ".join(scrub(text, secrets).split())
    if len(flat) > UPSTREAM_TEXT_LIMIT:
        flat = flat[:UPSTREAM_TEXT_LIMIT].rstrip() + "…"
    return flat
