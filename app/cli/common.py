"""What every command shares: the client, consoles, --json, id-or-name lookups, K=V options."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, TextIO

import typer
from pydantic import BaseModel
from rich.console import Console

from app.client import DockfleetClient, DockfleetError

PIPE_WIDTH = 200

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]


@dataclass
class Env:
    """The global options, and the client built from them on first use."""

    url: str | None = None
    token: str | None = None
    _client: DockfleetClient | None = field(default=None, repr=False)

    def client(self) -> DockfleetClient:
        """The client for --url/--token (or $DOCKFLEET_URL/$DOCKFLEET_API_TOKEN)."""
        if self._client is None:
            self._client = DockfleetClient(self.url, self.token)
        return self._client

    def close(self) -> None:
        """Close the client's connections, if it was made."""
        if self._client is not None:
            self._client.close()
            self._client = None


def env(ctx: typer.Context) -> Env:
    """The Env of this invocation (made by the root callback)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Env):
        root.obj = Env()
    return root.obj


def client(ctx: typer.Context) -> DockfleetClient:
    """The client of this invocation."""
    return env(ctx).client()


def _width(stream: TextIO) -> int | None:
    """Off a terminal (pipes, files) tables get room instead of rich's 80 columns."""
    return None if stream.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH


def out() -> Console:
    """Console for results (stdout); rich drops colours off a TTY and under NO_COLOR."""
    return Console(highlight=False, width=_width(sys.stdout))


def err() -> Console:
    """Console for errors and progress (stderr); messages are not wrapped."""
    return Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)  # as the server sent it
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    """Write a model, a list of models or plain data to stdout as JSON (no colours, no wrap)."""
    sys.stdout.write(json.dumps(_plain(value), indent=2) + "\n")


def print_line(value: Any) -> None:
    """Write `value` as one line of JSON (a stream for machines), flushed at once."""
    sys.stdout.write(json.dumps(_plain(value)) + "\n")
    sys.stdout.flush()


def emit(value: Any, json: bool, human: Callable[[], Any]) -> None:
    """`value` as JSON for machines, else what `human()` renders, for people."""
    if json:
        print_json(value)
    else:
        out().print(human())


@contextlib.contextmanager
def ends_on_ctrl_c(cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """A command that follows a stream until Ctrl-C ends at the first one, whatever it does.

    Python raises KeyboardInterrupt wherever the main thread happens to be, and one raised
    inside a finaliser (a connection closed by the garbage collector) is printed and
    swallowed, so the command would go on following. Here SIGINT runs `cleanup` (restore the
    terminal), flushes what was printed and exits 0 at once."""

    def stop(_signum: int, _frame: Any) -> None:
        with contextlib.suppress(Exception):
            if cleanup is not None:
                cleanup()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a write it interrupted may hold the buffer
                stream.flush()
        os._exit(0)

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` to stderr; the caller raises the returned Exit."""
    err().print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def escape(text: str) -> str:
    """Text shown verbatim by rich (no [markup] interpreted)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def is_id(key: str) -> bool:
    """An all-digit key is an id; anything else is a name."""
    return key.isdigit()


def host_id(ctx: typer.Context, key: str) -> int:
    """The id of the host named or numbered `key` (404 DockfleetError when there is none)."""
    return int(key) if is_id(key) else client(ctx).hosts.get_by_name(key).id


def directive_id(ctx: typer.Context, key: str) -> int:
    """The id of the directive named or numbered `key`."""
    return int(key) if is_id(key) else client(ctx).directives.get_by_name(key).id


def key_values(pairs: Iterable[str] | None, option: str) -> dict[str, str]:
    """`K=V` options as a dict; a usage error (exit 2) names the bad one."""
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        result[key] = value
    return result


def split_names(values: Iterable[str] | None) -> list[str] | None:
    """Repeated and/or comma-separated names as one list (None when none were given)."""
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
    return names or None


def report(exc: DockfleetError) -> typer.Exit:
    """Print a DockfleetError for a person (with a 503's reasons per host); exit 1."""
    message = str(exc)
    for host in exc.body.get("hosts", []) if isinstance(exc.body, dict) else []:
        if isinstance(host, dict):
            reasons = "; ".join(str(r) for r in host.get("reasons", []))
            message += f"\n  {host.get('name')} (#{host.get('host_id')}): {reasons}"
    return fail(message)
