"""Real-infrastructure test fleet for dockfleet: dockerd/sshd/TLS hosts in private netns.

Synchronous to start (`start_fleet()`), async helpers for assertions live in `tests.fleet.aio`.
"""

from .certs import TLSFiles
from .cleanup import cleanup_leftovers
from .daemons import Daemon
from .fleet import Fleet, start_fleet
from .sshd import SSHAccess

__all__ = ["Daemon", "Fleet", "SSHAccess", "TLSFiles", "cleanup_leftovers", "start_fleet"]
