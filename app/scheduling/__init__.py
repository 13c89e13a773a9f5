"""Placement (pure), the scheduler loop, the supervisor of containers, and the reconciler."""
