"""dockfleet: a registry of Docker worker hosts and a scheduler for containerised tasks."""

__version__ = "0.1.0"
