"""Where a host's key and certificate files may live: under DOCKFLEET_SECRETS_DIR, nowhere else.

A caller who could name any file the server can read could make the server use its own
identity (its ~/.ssh keys) against a host of their choosing. So every path in ssh_config and
tls_config must resolve — symlinks followed — inside the secrets directory, with no `..`, and
the server's own ~/.ssh is never acceptable; for an enabled host the file must be readable.
"""

from __future__ import annotations

import os
from pathlib import Path


class SecretPathError(ValueError):
    """A key or certificate path the policy refuses (the message names no path)."""


def secrets_root(configured: str) -> Path:
    """The secrets directory, resolved; ValueError when it would expose the server's home."""
    root = Path(configured).expanduser().resolve()
    home = Path.home().resolve()
    if root == Path("/") or root == home or home.is_relative_to(root):
        raise ValueError(
            f"{configured!r} is / or holds the server's home directory; give a directory of "
            "its own (e.g. ./secrets or /etc/dockfleet/secrets)"
        )
    return root


def check(path: str, root: Path, must_read: bool) -> Path:
    """The resolved path, if it is acceptable; SecretPathError saying why not (without it)."""
    if not os.path.isabs(path):
        raise SecretPathError("must be an absolute path")
    if ".." in Path(path).parts:
        raise SecretPathError("may not contain '..'")
    real = Path(path).resolve()
    ssh_dir = (Path.home() / ".ssh").resolve()
    if real.is_relative_to(ssh_dir):
        raise SecretPathError("the server's own ~/.ssh is never used for a host")
    if not real.is_relative_to(root):
        raise SecretPathError(
            "must lie in DOCKFLEET_SECRETS_DIR (symlinks are followed; none may lead out of it)"
        )
    if must_read and not (real.is_file() and os.access(real, os.R_OK)):
        raise SecretPathError("is not a readable file in DOCKFLEET_SECRETS_DIR")
    return real
