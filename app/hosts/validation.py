"""Checks on a host's whole configuration that no single field can make alone."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from app.config import Network, address_allowed
from app.errors import InvalidField
from app.hosts.models import Capabilities, HostType, SSHConfig, TLSConfig, check_base_url
from app.hosts.secrets import SecretPathError, check


def _literal_ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def check_secret_files(
    ssh: SSHConfig | None, tls: TLSConfig | None, root: Path, enabled: bool
) -> None:
    """422 naming the field when a key or certificate path is outside the secrets directory
    (or, for an enabled host, not a readable file)."""
    fields: list[tuple[list[str], str]] = []
    if ssh is not None:
        fields.append((["ssh_config", "key_path"], ssh.key_path))
        if ssh.known_hosts:
            fields.append((["ssh_config", "known_hosts"], ssh.known_hosts))
    if tls is not None:
        fields += [
            (["tls_config", k], getattr(tls, k)) for k in ("ca_cert", "client_cert", "client_key")
        ]
    for field, path in fields:
        try:
            check(path, root, must_read=enabled)
        except SecretPathError as exc:
            raise InvalidField(field, str(exc)) from None


def validate_config(
    type_: HostType,
    base_url: str,
    ssh: SSHConfig | None,
    tls: TLSConfig | None,
    networks: list[Network | str],
) -> None:
    """422 naming the field when type, base_url, ssh_config and tls_config do not fit."""
    problem = check_base_url(type_, base_url)
    if problem:
        raise InvalidField("base_url", problem)
    if type_ == HostType.docker_socket:
        for name, value in (("ssh_config", ssh), ("tls_config", tls)):
            if value is not None:
                raise InvalidField(name, f"{name} applies only to docker_tcp hosts")
        return
    if ssh is not None and tls is not None:
        raise InvalidField("tls_config", "use either ssh_config or tls_config, not both")
    # The address dockfleet itself connects to must be in the allow-list.
    field, target = ("ssh_config", ssh.host) if ssh else ("base_url", urlsplit(base_url).hostname)
    ip = _literal_ip(target or "")
    if ip is not None and not address_allowed(ip, networks):
        where = "ssh_config.host" if ssh else ip  # the SSH address is never echoed back
        raise InvalidField(field, f"{where} is outside DOCKFLEET_ALLOWED_NETWORKS")


def merge_capabilities(stored: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """A PATCH changes only the capabilities it names; the result is checked as a whole."""
    merged = {**stored, **given}
    if "gpus" in given and "gpu_count" not in given:
        merged.pop("gpu_count", None)  # let the default follow the new `gpus`
    try:
        return Capabilities.model_validate(merged).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidField(["capabilities", *map(str, err["loc"])], err["msg"]) from None
