"""Wires the rooms beyond hosts into the app: their routers and background services."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import AppState


def routers() -> list[APIRouter]:
    """Routers of directives, tasks and runs."""
    return []


async def start_services(state: AppState) -> None:
    """Start the scheduler and reconciler."""


async def stop_services(state: AppState) -> None:
    """Stop what start_services started."""
