"""`dockfleet hosts …`: register, inspect, check, enable/disable, drain and remove worker hosts."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from app.cli import render, render_gpus
from app.cli.common import JsonOpt, client, emit, host_id, key_values, out, print_json
from app.client import HostRead

app = typer.Typer(help="Worker hosts: the Docker daemons runs are placed on.", no_args_is_help=True)

HostArg = Annotated[str, typer.Argument(help="The host's id or name.", show_default=False)]
_SSH = "SSH tunnel (with --tcp)"
_TLS = "TLS (with --tcp)"


@app.command("list")
def list_hosts(
    ctx: typer.Context,
    json: JsonOpt = False,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Only enabled (or disabled) hosts.")
    ] = None,
    healthy: Annotated[
        bool | None,
        typer.Option("--healthy/--unhealthy", help="Only healthy (or unhealthy) hosts."),
    ] = None,
) -> None:
    """List every host with its health, staleness, load and why it cannot take runs."""
    hosts = list(client(ctx).hosts.iter(enabled=enabled, healthy=healthy))
    if json:
        print_json(hosts)
    elif not hosts:
        out().print(
            "no hosts: add one with dockfleet hosts add NAME --socket unix:///var/run/docker.sock"
        )
    else:
        out().print(render.hosts_table(hosts))


def _socket_url(value: str) -> str:
    return value if "://" in value else f"unix://{value}"


def _tcp_url(value: str) -> str:
    return value if "://" in value else f"tcp://{value}"


def _ssh_config(
    tcp: str, host: str | None, port: int, user: str | None, key: str | None, known: str | None
) -> dict[str, Any] | None:
    if not any((host, user, key, known)):
        return None
    if not user or not key:
        raise typer.BadParameter("an SSH tunnel needs --ssh-user and --ssh-key", param_hint="ssh")
    ssh: dict[str, Any] = {
        "host": host or urlsplit(tcp).hostname or "",
        "port": port,
        "user": user,
        "key_path": key,
    }
    if known:
        ssh["known_hosts"] = known
    return ssh


def _tls_config(ca: str | None, cert: str | None, key: str | None) -> dict[str, str] | None:
    given = [v for v in (ca, cert, key) if v]
    if not given:
        return None
    if len(given) != 3:
        raise typer.BadParameter("TLS needs all of --tls-ca, --tls-cert and --tls-key")
    assert ca and cert and key
    return {"ca_cert": ca, "client_cert": cert, "client_key": key}


def _gpu_capabilities(gpus: str) -> dict[str, Any]:
    if gpus.strip().lower() == "auto":
        return {"gpus": "auto"}
    if not gpus.strip().isdigit():
        raise typer.BadParameter('a count of GPUs, or "auto"', param_hint="--gpus")
    count = int(gpus)
    return {"gpus": count > 0, "gpu_count": count}


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A unique name, e.g. Unraid.", show_default=False)],
    socket: Annotated[
        str | None,
        typer.Option(help="Local Docker socket: unix:///var/run/docker.sock (or just the path)."),
    ] = None,
    tcp: Annotated[
        str | None, typer.Option(help="Remote Docker over TCP: tcp://HOST:PORT.")
    ] = None,
    ssh_host: Annotated[
        str | None,
        typer.Option(
            help="SSH server to tunnel through (default: the --tcp host).", rich_help_panel=_SSH
        ),
    ] = None,
    ssh_port: Annotated[int, typer.Option(help="SSH port.", rich_help_panel=_SSH)] = 22,
    ssh_user: Annotated[str | None, typer.Option(help="SSH user.", rich_help_panel=_SSH)] = None,
    ssh_key: Annotated[
        str | None,
        typer.Option(
            help="Absolute path of the private key (on the server).", rich_help_panel=_SSH
        ),
    ] = None,
    known_hosts: Annotated[
        str | None,
        typer.Option(
            help="known_hosts file; the host key is checked when given.", rich_help_panel=_SSH
        ),
    ] = None,
    tls_ca: Annotated[
        str | None, typer.Option(help="CA certificate path.", rich_help_panel=_TLS)
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option(help="Client certificate path.", rich_help_panel=_TLS)
    ] = None,
    tls_key: Annotated[
        str | None, typer.Option(help="Client key path.", rich_help_panel=_TLS)
    ] = None,
    gpus: Annotated[
        str,
        typer.Option(
            help='GPUs on the host: a count (0 = none; checked by discovery), or "auto" to use '
            "what the GPU probe finds."
        ),
    ] = "0",
    gpu_probe_image: Annotated[
        str | None,
        typer.Option(help="Image of the GPU probe (default: the gpu_report task's image)."),
    ] = None,
    max_concurrency: Annotated[
        int, typer.Option(min=1, help="Runs the host may hold at once.")
    ] = 1,
    label: Annotated[list[str] | None, typer.Option(help="A label KEY=VALUE (repeatable).")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Register it disabled.")] = False,
    json: JsonOpt = False,
) -> None:
    """Register a host: --socket for a local daemon, --tcp (+ SSH or TLS options) for a remote one.

    Examples:

      dockfleet hosts add Unraid --socket unix:///var/run/docker.sock --gpus 2 --max-concurrency 5

      dockfleet hosts add gpubox --socket unix:///var/run/docker.sock --gpus auto

      dockfleet hosts add vm --tcp tcp://10.0.0.15:2375 --ssh-user vmadmin --ssh-key /secrets/vm_key
    """
    if bool(socket) == bool(tcp):
        raise typer.BadParameter("give exactly one of --socket or --tcp", param_hint="address")
    body: dict[str, Any] = {
        "name": name,
        "enabled": not disabled,
        "capabilities": {
            **_gpu_capabilities(gpus),
            "max_concurrency": max_concurrency,
            "labels": key_values(label, "--label"),
        },
    }
    if gpu_probe_image:
        body["capabilities"]["gpu_probe_image"] = gpu_probe_image
    if socket:
        if any((ssh_host, ssh_user, ssh_key, known_hosts, tls_ca, tls_cert, tls_key)):
            raise typer.BadParameter("SSH and TLS options need --tcp, not --socket")
        body |= {"type": "docker_socket", "base_url": _socket_url(socket)}
    else:
        assert tcp is not None
        body |= {"type": "docker_tcp", "base_url": _tcp_url(tcp)}
        ssh = _ssh_config(body["base_url"], ssh_host, ssh_port, ssh_user, ssh_key, known_hosts)
        tls = _tls_config(tls_ca, tls_cert, tls_key)
        if ssh and tls:
            raise typer.BadParameter("use either the SSH options or the TLS options, not both")
        body |= {"ssh_config": ssh} if ssh else {}
        body |= {"tls_config": tls} if tls else {}
    host = client(ctx).hosts.create(body)
    if json:
        print_json(host)
    else:
        state = "enabled" if host.enabled else "disabled"
        out().print(f"registered host {host.name} (#{host.id}), {state}: {host.base_url}")
        if host.enabled:
            out().print(f"check it now with: dockfleet hosts check {host.id}")


@app.command("show")
def show(ctx: typer.Context, host: HostArg, json: JsonOpt = False) -> None:
    """Show one host: configuration, health, load, Docker facts."""
    found = client(ctx).hosts.get(host_id(ctx, host))
    emit(found, json, lambda: render.host_detail(found))


@app.command("gpus")
def gpus_of(
    ctx: typer.Context,
    host: HostArg,
    probe: Annotated[
        bool, typer.Option("--probe", help="Run the GPU probe now (…/gpus/probe/).")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """The host's GPUs as its last probe found them (declared vs found, each GPU's memory,
    utilisation, temperature, processes and use); --probe probes them now."""
    fleet = client(ctx)
    key = host_id(ctx, host)
    inventory = fleet.gpus.probe(key) if probe else fleet.gpus.get(key)
    emit(inventory, json, lambda: render_gpus.inventory(inventory))


@app.command("health")
def health(ctx: typer.Context, host: HostArg, json: JsonOpt = False) -> None:
    """Heartbeat: mark the host seen now (GET …/health/); Docker is not contacted."""
    answer = client(ctx).hosts.health(host_id(ctx, host))
    emit(answer, json, lambda: render.health_detail(answer))


@app.command("check")
def check(ctx: typer.Context, host: HostArg, json: JsonOpt = False) -> None:
    """Live check: ping the host's Docker now (…/health/?check=true). Exit 1 when it fails."""
    answer = client(ctx).hosts.health(host_id(ctx, host), check=True)
    emit(answer, json, lambda: render.health_detail(answer))
    if answer.check is not None and not answer.check.ok:
        raise typer.Exit(1)


def _changed(host: HostRead, json: bool, verb: str) -> None:
    emit(host, json, lambda: f"host {host.name} (#{host.id}) {verb}")


@app.command("enable")
def enable(ctx: typer.Context, host: HostArg, json: JsonOpt = False) -> None:
    """Enable a host: it is checked and takes runs again."""
    _changed(client(ctx).hosts.update(host_id(ctx, host), enabled=True), json, "enabled")


@app.command("disable")
def disable(ctx: typer.Context, host: HostArg, json: JsonOpt = False) -> None:
    """Disable a host: no checks, no new runs."""
    _changed(client(ctx).hosts.update(host_id(ctx, host), enabled=False), json, "disabled")


@app.command("drain")
def drain(ctx: typer.Context, host: HostArg, json: JsonOpt = False) -> None:
    """Drain a host for maintenance: no new runs; running ones finish."""
    _changed(client(ctx).hosts.drain(host_id(ctx, host)), json, "draining")


@app.command("undrain")
def undrain(ctx: typer.Context, host: HostArg, json: JsonOpt = False) -> None:
    """Undrain a host: it takes new runs again."""
    _changed(client(ctx).hosts.undrain(host_id(ctx, host)), json, "undrained")


@app.command("accept-key")
def accept_key(
    ctx: typer.Context,
    host: HostArg,
    fingerprint: Annotated[
        str, typer.Argument(help="The new key's fingerprint (SHA256:...), as the error shows.")
    ],
    json: JsonOpt = False,
) -> None:
    """Accept a changed SSH host key, after checking its fingerprint on the host itself
    (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)."""
    _changed(
        client(ctx).hosts.accept_host_key(host_id(ctx, host), fingerprint), json, "key accepted"
    )


@app.command("rm")
def remove(
    ctx: typer.Context,
    host: HostArg,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also release slots held for containers never confirmed gone."
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Remove a host (refused while it has active runs: drain it first)."""
    key = host_id(ctx, host)
    client(ctx).hosts.delete(key, force=force)
    emit({"id": key, "deleted": True}, json, lambda: f"host {host} removed")
