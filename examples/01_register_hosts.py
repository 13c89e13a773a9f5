"""Register the runbook's two worker hosts: the local Docker socket (Unraid) and a VM over SSH.

    python examples/01_register_hosts.py
    python examples/01_register_hosts.py --vm-address 10.0.0.15 --ssh-key /secrets/vm_ssh_key

Without --vm-address the runbook's VM (192.168.1.15) is registered *disabled*: nothing will
ever contact it until you enable it (`dockfleet hosts enable VM-192.168.1.15`).
Every option also reads an environment variable (shown in --help); DOCKFLEET_URL and
DOCKFLEET_API_TOKEN say where the server is. Hosts already registered are left as they are.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from app.client import DockfleetClient, DockfleetError, HostRead

RUNBOOK_VM = "192.168.1.15"  # the runbook's example address: registered disabled, never contacted


def options() -> argparse.Namespace:
    """Command-line options, each defaulting to an environment variable."""
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--unraid-name", default=env("UNRAID_NAME", "Unraid"), help="$UNRAID_NAME")
    p.add_argument(
        "--unraid-socket",
        default=env("UNRAID_SOCKET", "unix:///var/run/docker.sock"),
        help="$UNRAID_SOCKET",
    )
    p.add_argument("--unraid-gpus", type=int, default=int(env("UNRAID_GPUS", "2")))
    p.add_argument("--unraid-max-concurrency", type=int, default=5)
    p.add_argument(
        "--vm-address",
        default=env("VM_ADDRESS"),
        help="$VM_ADDRESS: the VM (and its SSH server); without it the VM is registered disabled",
    )
    p.add_argument("--vm-docker-url", default=env("VM_DOCKER_URL"), help="$VM_DOCKER_URL "
                   "[tcp://ADDRESS:2376], as seen from the SSH server")  # fmt: skip
    p.add_argument("--ssh-port", type=int, default=int(env("VM_SSH_PORT", "22")))
    p.add_argument("--ssh-user", default=env("VM_SSH_USER", "vmadmin"), help="$VM_SSH_USER")
    p.add_argument(
        "--ssh-key", default=env("VM_SSH_KEY", "/secrets/vm_ssh_key"), help="$VM_SSH_KEY"
    )
    p.add_argument("--known-hosts", default=env("VM_KNOWN_HOSTS"), help="$VM_KNOWN_HOSTS")
    return p.parse_args()


def unraid_body(o: argparse.Namespace) -> dict[str, Any]:
    """The runbook's first body: the local Docker socket."""
    return {
        "name": o.unraid_name,
        "type": "docker_socket",
        "base_url": o.unraid_socket,
        "enabled": True,
        "capabilities": {
            "gpus": o.unraid_gpus > 0,
            "gpu_count": o.unraid_gpus,
            "max_concurrency": o.unraid_max_concurrency,
        },
    }


def vm_body(o: argparse.Namespace) -> dict[str, Any]:
    """The runbook's second body: Docker on a VM, reached through an SSH tunnel."""
    address = o.vm_address or RUNBOOK_VM
    ssh: dict[str, Any] = {"host": address, "port": o.ssh_port, "user": o.ssh_user}
    ssh["key_path"] = o.ssh_key
    if o.known_hosts:
        ssh["known_hosts"] = o.known_hosts
    return {
        "name": f"VM-{address}",
        "type": "docker_tcp",
        "base_url": o.vm_docker_url or f"tcp://{address}:2376",
        "enabled": bool(o.vm_address),  # the runbook's own address is only an example
        "capabilities": {"gpus": False, "max_concurrency": 3},
        "ssh_config": ssh,
    }


def register(fleet: DockfleetClient, body: dict[str, Any]) -> HostRead:
    """Register a host, or find it when a host of that name exists already."""
    try:
        host = fleet.hosts.create(body)
        verb = "registered"
    except DockfleetError as exc:
        if exc.status != 409:
            raise
        host = fleet.hosts.get_by_name(body["name"])
        verb = "already registered"
    state = "enabled" if host.enabled else "disabled"
    print(f"{verb} {host.name} (#{host.id}): {host.type.value} {host.base_url}, {state}")
    return host


def main() -> int:
    o = options()
    with DockfleetClient() as fleet:  # DOCKFLEET_URL, DOCKFLEET_API_TOKEN
        register(fleet, unraid_body(o))
        vm = register(fleet, vm_body(o))
    if not vm.enabled:
        print(f"{vm.name} stays disabled: pass --vm-address (or VM_ADDRESS) for a real VM")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DockfleetError as exc:
        raise SystemExit(f"error: {exc}") from None
