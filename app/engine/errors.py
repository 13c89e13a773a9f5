"""Translate aiodocker, aiohttp, asyncssh and OS errors into the app's EngineError tree."""

from __future__ import annotations

import re
import ssl

import aiodocker
import aiohttp
import asyncssh

from app.errors import DockerCallFailed, EngineError, HostUnreachable


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def scrub(text: str, secrets: list[str]) -> str:
    """Replace every secret (SSH/TLS settings) standing as a whole word in a message with ***."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = re.sub(rf"(?<![\w.-]){re.escape(secret)}(?![\w-])", "***", text)
    return text


def translate(
    exc: BaseException, host_name: str, secrets: list[str] | None = None, what: str | None = None
) -> EngineError:
    """The app error for a library exception (`what` names it), with secrets scrubbed."""
    if what:
        err: EngineError = HostUnreachable(f"{host_name}: {what} ({_short(exc)})")
    else:
        err = _translate(exc, host_name)
    if secrets:
        err.detail = scrub(str(err.detail), secrets)
    return err


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if seen is None:
            return False
        if isinstance(seen, kinds):
            return True
    return False


def _translate(exc: BaseException, host_name: str) -> EngineError:
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, TimeoutError):
        return HostUnreachable(f"{host_name}: timed out talking to Docker")
    if isinstance(exc, asyncssh.PermissionDenied):
        return HostUnreachable(f"{host_name}: SSH authentication failed ({_short(exc)})")
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostUnreachable(f"{host_name}: SSH host key not verifiable ({_short(exc)})")
    if isinstance(exc, asyncssh.ChannelOpenError):
        return HostUnreachable(f"{host_name}: SSH tunnel could not reach Docker ({_short(exc)})")
    if isinstance(exc, asyncssh.Error | asyncssh.KeyImportError):
        return HostUnreachable(f"{host_name}: SSH error ({_short(exc)})")
    if isinstance(exc, ssl.SSLError):
        return HostUnreachable(f"{host_name}: TLS error ({_short(exc)})")
    if isinstance(exc, aiodocker.DockerError):
        if exc.status == 900:  # aiodocker's code for a failed connection
            if _caused_by(exc, (ssl.SSLError, aiohttp.ClientSSLError)):
                return HostUnreachable(f"{host_name}: TLS error ({exc.message})")
            return HostUnreachable(f"{host_name}: cannot connect to Docker ({exc.message})")
        return DockerCallFailed(f"{host_name}: Docker said [{exc.status}] {exc.message}")
    if isinstance(exc, aiohttp.ClientError | ConnectionError):
        return HostUnreachable(f"{host_name}: cannot connect to Docker ({_short(exc)})")
    if isinstance(exc, FileNotFoundError | PermissionError):
        return HostUnreachable(f"{host_name}: {_short(exc)}")
    if isinstance(exc, OSError):
        return HostUnreachable(f"{host_name}: {_short(exc)}")
    return DockerCallFailed(f"{host_name}: {type(exc).__name__}: {_short(exc)}")
