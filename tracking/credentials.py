"""Credentials in URIs: shown and stored only redacted.

A backend store such as ``postgresql://user:PASSWORD@host/db`` carries its password in the URI. Whatever
``hpo`` prints, logs or writes to disk (``server.json``, ``hpo server --status``, process records) goes
through :func:`redact` first; the usable URI travels only in a child process's environment (see
:func:`tracking.server.server_command`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: What a redacted secret reads as.
MASK = "***"

# Query parameters that carry a password in libpq and SQLAlchemy URIs (``...?password=...``).
_SECRET_QUERY = re.compile(r"(?i)([?&](?:password|passwd|pwd)=)[^&#]*")
# Something that looks like a URI with an authority, inside free text (a command line argument, a message).
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")


def redact(uri: str) -> str:
    """``uri`` with its password (``user:PASSWORD@``, ``?password=``) replaced by ``***``.

    Everything else is kept byte for byte: a URI without user info or without a password, a plain file
    path and a string that is no URI at all come back unchanged. A password containing ``/``, ``?`` or
    ``#`` must be percent-encoded in a URI (RFC 3986), as libpq requires too; ``@`` may stay as it is.

    >>> redact("postgresql://mlflow:s3cret@db.example.org:5432/mlflow")
    'postgresql://mlflow:***@db.example.org:5432/mlflow'
    """
    try:
        netloc = urlsplit(uri).netloc
    except ValueError:  # e.g. an unbalanced "[" in the host: no usable URI, but mask what looks like one
        netloc = ""
    head, sep, rest = uri.partition("//")
    if netloc and sep and rest.startswith(netloc) and "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            uri = f"{head}//{user}:{MASK}@{hostport}{rest[len(netloc):]}"
    return _SECRET_QUERY.sub(rf"\g<1>{MASK}", uri)


def redact_text(text: str) -> str:
    """``text`` with every URI in it redacted (:func:`redact`): for command lines and messages, where a URI
    may follow ``--set tracking.uri=`` or sit inside a sentence."""
    return _URI_IN_TEXT.sub(lambda match: redact(match.group(0)), text)


def has_password(uri: str) -> bool:
    """Whether ``uri`` carries a password (what :func:`redact` would hide)."""
    return redact(uri) != uri
