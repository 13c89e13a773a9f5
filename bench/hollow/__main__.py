"""`python -m bench.hollow --dir /tmp/hollow --hosts 1000 --latency-ms 2 --run-ms 200`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import signal
import sys

from bench.hollow.engine import Engine, Settings, normalise_image
from bench.hollow.server import HollowServer


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.hollow",
        description="Serve N hollow Docker daemons, one unix socket each, in one process.",
    )
    p.add_argument("--dir", required=True, help="directory for the sockets (<dir>/h0000.sock …)")
    p.add_argument("--hosts", type=int, default=10, help="number of simulated hosts (sockets)")
    p.add_argument("--prefix", default="h", help="host (and socket) name prefix")
    p.add_argument("--latency-ms", type=float, default=2.0, help="answer delay of every call")
    p.add_argument("--run-ms", type=float, default=200.0, help="how long a container runs")
    p.add_argument(
        "--images",
        default="busybox:1.36,busybox:latest",
        help="comma list of images every host has (inspect finds them, create uses them)",
    )
    p.add_argument("--no-pull", action="store_true", help="pulls of a missing image fail (404)")
    p.add_argument("--pull-ms", type=float, default=0.0, help="time a successful pull takes")
    p.add_argument("--ncpu", type=int, default=4, help="NCPU in /info")
    p.add_argument("--mem-total-mib", type=int, default=8192, help="MemTotal in /info")
    p.add_argument("--runtimes", default="runc", help="comma list of runtimes in /info")
    return p.parse_args(argv)


def raise_fd_limit() -> None:
    """Every host is a listening socket plus its clients' connections: lift the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(args: argparse.Namespace) -> None:
    settings = Settings(
        latency_s=args.latency_ms / 1000,
        run_s=args.run_ms / 1000,
        images={normalise_image(i) for i in args.images.split(",") if i},
        pull=not args.no_pull,
        pull_s=args.pull_ms / 1000,
        ncpu=args.ncpu,
        mem_total=args.mem_total_mib * 1024 * 1024,
        runtimes=[r for r in args.runtimes.split(",") if r],
    )
    server = HollowServer(Engine(settings), args.dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        paths = await server.start(args.hosts, prefix=args.prefix)
        print(f"hollow: ready, {len(paths)} hosts: {paths[0]} … {paths[-1]}", flush=True)
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await server.close()
    print("hollow: stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    raise_fd_limit()
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
