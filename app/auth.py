"""Who may call the API: bearer tokens, checked before anything else reads the request.

The API is root on the whole fleet (it runs any container on every host), so it is closed by
default: `dockfleet serve` listens on 127.0.0.1, and on any other address it refuses to start
without DOCKFLEET_API_TOKEN (or an explicit, logged `--insecure-no-token`). Several tokens may
be given (comma-separated, or one per line in DOCKFLEET_API_TOKEN_FILE) so one can be rotated
while the other still works; each request is compared against all of them in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets

from starlette.types import ASGIApp, Receive, Scope, Send

from app.ingress import send_json

OPEN_PATHS = ("/healthz", "/docs", "/redoc", "/openapi.json")
UNAUTHORIZED = {"detail": "missing or wrong bearer token", "code": "unauthorized"}


def new_token() -> str:
    """A strong token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def parse_tokens(text: str) -> list[str]:
    """Tokens from a comma- or newline-separated text; ValueError for an empty one."""
    parts = [p.strip() for p in text.strip().replace("\n", ",").split(",")]
    if any(not p for p in parts):
        raise ValueError(
            "is set but empty (or has an empty entry): give a token (dockfleet token new "
            "prints one) or unset it"
        )
    if any(any(c.isspace() for c in p) for p in parts):
        raise ValueError("a token may not contain spaces")
    return parts


def matches(given: str | None, tokens: list[bytes]) -> bool:
    """Whether `given` is one of the tokens, compared in constant time against every one."""
    if given is None:
        return False
    candidate = given.encode()
    found = False
    for token in tokens:
        found |= hmac.compare_digest(candidate, token)
    return found


def bearer(scope: Scope) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def is_loopback(host: str) -> bool:
    """Whether a listen address only takes connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TokenGate:
    """401 (with `WWW-Authenticate: Bearer`) for /api and /metrics without a right token,
    before the request body is read. /healthz and the docs stay open."""

    def __init__(self, app: ASGIApp, tokens: list[str], metrics_public: bool) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens]
        self.metrics_public = metrics_public

    def _guarded(self, path: str) -> bool:
        if path.startswith("/api/") or path == "/api":
            return True
        return path.rstrip("/") == "/metrics" and not self.metrics_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.tokens
            and self._guarded(scope["path"])
            and not matches(bearer(scope), self.tokens)
        ):
            await send_json(send, 401, UNAUTHORIZED, **{"WWW-Authenticate": "Bearer"})
            return
        await self.app(scope, receive, send)

    def allows(self, scope: Scope) -> bool:
        """Whether this request carries a right token (or no token is needed at all)."""
        return not self.tokens or matches(bearer(scope), self.tokens)
