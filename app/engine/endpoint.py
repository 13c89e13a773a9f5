"""Endpoint: what the engine needs to reach one host's Docker, free of the ORM."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.hosts.models import SSHConfig, TLSConfig

_TLS_FILES = ("ca_cert", "client_cert", "client_key")


@dataclass(frozen=True)
class Endpoint:
    """One host's Docker address and how to get there."""

    host_id: int
    name: str
    type: str
    base_url: str
    ssh: SSHConfig | None = None
    tls: TLSConfig | None = None
    ssh_host_key: str | None = None  # fingerprint pinned on first use (no known_hosts)

    @classmethod
    def of(cls, host: Any) -> Endpoint:
        """Build from a WorkerHost row."""
        return cls(
            host_id=host.id,
            name=host.name,
            type=host.type,
            base_url=host.base_url,
            ssh=SSHConfig.model_validate(host.ssh_config) if host.ssh_config else None,
            tls=TLSConfig.model_validate(host.tls_config) if host.tls_config else None,
            ssh_host_key=getattr(host, "ssh_host_key_fingerprint", None),
        )

    def fingerprint(self) -> str:
        """Changes whenever anything about how we connect changes."""
        blob = json.dumps(
            [
                self.type,
                self.base_url,
                self.ssh.model_dump() if self.ssh else None,
                self.tls.model_dump() if self.tls else None,
                self.ssh_host_key,
            ],
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def secrets(self) -> list[str]:
        """Strings that must never appear in a message: the SSH and TLS settings."""
        out: list[str] = []
        if self.ssh is not None:
            out += [self.ssh.key_path, self.ssh.known_hosts or "", self.ssh.host, self.ssh.user]
        if self.tls is not None:
            out += [self.tls.ca_cert, self.tls.client_cert, self.tls.client_key]
        return [s for s in out if s]

    def secret_files(self) -> list[tuple[str, str]]:
        """(field, path) of every file this host's connection reads."""
        out: list[tuple[str, str]] = []
        if self.ssh is not None:
            out.append(("ssh_config.key_path", self.ssh.key_path))
            if self.ssh.known_hosts:
                out.append(("ssh_config.known_hosts", self.ssh.known_hosts))
        if self.tls is not None:
            out += [(f"tls_config.{k}", getattr(self.tls, k)) for k in _TLS_FILES]
        return out

    def tcp_target(self) -> tuple[str, int]:
        """host and port of a docker_tcp base_url."""
        parts = urlsplit(self.base_url)
        assert parts.hostname and parts.port
        return parts.hostname, parts.port

    def socket_path(self) -> str:
        """Path of a docker_socket base_url."""
        return urlsplit(self.base_url).path
