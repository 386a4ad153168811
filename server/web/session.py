"""Who may use the web page: the server's token, once, then a session cookie; and where requests come from.

A person signs in with the token (the login form, or the ``?token=`` link printed at start) and
gets an HttpOnly, SameSite=Strict cookie holding a digest of the token, never the token itself.
Scripts may send the token as a bearer header instead. Requests that change something must also
carry an Origin of this server: a page elsewhere cannot make a signed-in browser act for it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from starlette.requests import HTTPConnection

COOKIE = "agent_jobs_session"
#: Long enough for a working week; the token itself never expires, so this only bounds a stolen cookie.
COOKIE_MAX_AGE_S = 7 * 24 * 3600


def session_value(token: str) -> str:
    """The cookie's value: a keyed digest of the token, so the cookie does not reveal it."""
    return hmac.new(token.encode(), b"agent-jobs web session", hashlib.sha256).hexdigest()


class Gate:
    """The checks every web request goes through; ``token`` None means ``--no-auth``."""

    def __init__(self, token: str | None, hosts: Sequence[str], origins: Sequence[str]) -> None:
        self.token = token
        self._session = session_value(token) if token is not None else None
        self._hosts = list(hosts)
        self._origins = list(origins)

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def signed_in(self, conn: HTTPConnection) -> bool:
        """A valid session cookie or bearer header (always, without a token)."""
        if self._session is None:
            return True
        cookie = conn.cookies.get(COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), self._session.encode()):
            return True
        scheme, _, given = conn.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(given.strip())

    def host_allowed(self, conn: HTTPConnection) -> bool:
        """The Host header names this server (a DNS-rebinding page's foreign Host does not)."""
        return _allowed(conn.headers.get("host", ""), self._hosts)

    def origin_allowed(self, conn: HTTPConnection) -> bool:
        """A state-changing request comes from this server's own page (or is a script with the bearer header).

        Browsers send Origin on every POST; a request without one is accepted only with the bearer
        header, which no page can make a browser add on its own.
        """
        origin = conn.headers.get("origin")
        if origin is None:
            return "authorization" in conn.headers
        return _allowed(origin, self._origins)

    @property
    def session(self) -> str | None:
        return self._session


def _allowed(value: str, allowed: Sequence[str]) -> bool:
    """``value`` is on the list, where ``name:*`` on the list stands for any port (as the SDK reads it)."""
    if value in allowed:
        return True
    base, _, port = value.rpartition(":")
    return bool(base) and port.isdigit() and f"{base}:*" in allowed
