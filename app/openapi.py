"""OpenAPI furniture: the error body, error responses per route, and request examples."""

from __future__ import annotations

from typing import Any

from fastapi import Body
from pydantic import BaseModel


class ErrorBody(BaseModel):
    """Every error: `detail` says what is wrong; `code` is stable for scripts."""

    detail: Any
    code: str | None = None
    reason: str | None = None


_DESCRIPTIONS = {
    401: "Missing or wrong bearer token (only when DOCKFLEET_API_TOKEN is set)",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body over DOCKFLEET_MAX_BODY_BYTES (refused before it is read)",
    422: "Invalid input; `detail` names the field",
    503: "No host can take the run; `hosts` says why per host",
}

# One error body per status, shown on the docs page next to each route's errors.
_ERROR_EXAMPLES: dict[int, dict[str, Any]] = {
    401: {"detail": "missing or wrong bearer token", "code": "unauthorized"},
    404: {"detail": "worker host 9 not found", "code": "not_found"},
    409: {"detail": "a worker host named 'Unraid' already exists", "code": "conflict"},
    422: {
        "detail": [
            {
                "loc": ["body", "base_url"],
                "msg": "docker_socket needs base_url unix:///absolute/path",
                "type": "value_error",
            }
        ],
        "code": "invalid",
    },
    413: {"detail": "request body over 1048576 bytes", "code": "payload_too_large"},
    503: {
        "detail": "No available hosts found",
        "code": "no_available_hosts",
        "hosts": [{"host_id": 1, "name": "Unraid", "reasons": ["stale: last seen 412s ago"]}],
    },
}


# Every /api route can answer these, whatever it does.
COMMON: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": _DESCRIPTIONS[401],
        "content": {"application/json": {"example": _ERROR_EXAMPLES[401]}},
    },
    413: {
        "model": ErrorBody,
        "description": _DESCRIPTIONS[413],
        "content": {"application/json": {"example": _ERROR_EXAMPLES[413]}},
    },
    503: {
        "model": ErrorBody,
        "description": "The database is unavailable (locked, full, gone): nothing was written; "
        "try again (`Retry-After`)",
        "content": {
            "application/json": {
                "example": {
                    "detail": "database unavailable",
                    "code": "database_unavailable",
                    "reason": "database is locked (another writer holds it)",
                }
            }
        },
    },
}


def ERRORS(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that can fail with these status codes."""
    return {
        c: {
            "model": ErrorBody,
            "description": _DESCRIPTIONS[c],
            "content": {"application/json": {"example": _ERROR_EXAMPLES[c]}},
        }
        for c in codes
    }


# Request bodies from the runbook (addresses there are documentation, never targets).
EXAMPLES: dict[str, dict[str, Any]] = {
    "host_socket": {
        "summary": "Local Docker socket (Unraid)",
        "value": {
            "name": "Unraid",
            "type": "docker_socket",
            "base_url": "unix:///var/run/docker.sock",
            "enabled": True,
            "capabilities": {"gpus": True, "gpu_count": 2, "max_concurrency": 5},
        },
    },
    "host_tcp_ssh": {
        "summary": "Remote Docker TCP through an SSH tunnel (VM)",
        "value": {
            "name": "VM-192.168.1.15",  # runbook example: documentation, never contacted
            "type": "docker_tcp",
            "base_url": "tcp://192.168.1.15:2376",  # example only
            "enabled": True,
            "capabilities": {"gpus": False, "max_concurrency": 3},
            "ssh_config": {
                "host": "192.168.1.15",  # example only
                "port": 22,
                "user": "vmadmin",
                "key_path": "/secrets/vm_ssh_key",
            },
        },
    },
    "host_tcp_tls": {
        "summary": "Remote Docker TCP with mutual TLS",
        "value": {
            "name": "nas",
            "type": "docker_tcp",
            "base_url": "tcp://nas.lan:2376",
            "capabilities": {"max_concurrency": 2},
            "tls_config": {
                "ca_cert": "/secrets/nas/ca.pem",
                "client_cert": "/secrets/nas/cert.pem",
                "client_key": "/secrets/nas/key.pem",
            },
        },
    },
    "host_patch": {"summary": "Disable a host", "value": {"enabled": False}},
    "host_key": {
        "summary": "Accept the key the SSH server now offers",
        "value": {"fingerprint": "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"},
    },
    "directive": {
        "summary": "Default directive",
        "value": {"name": "default", "description": "Default orchestrator directive"},
    },
    "directive_patch": {"summary": "Change the default tasks", "value": {"tasks": ["log_triage"]}},
    "task": {
        "summary": "A task definition",
        "value": {
            "name": "disk_report",
            "description": "Disk usage of the host's root filesystem",
            "image": "busybox:1.36",
            "command": ["df", "-h", "/"],
            "timeout_seconds": 60,
        },
    },
    "task_patch": {"summary": "Disable a task", "value": {"enabled": False}},
    "schedule": {
        "summary": "Every night at 02:30 in Berlin",
        "value": {
            "name": "nightly-triage",
            "directive_id": 1,
            "tasks": ["log_triage"],
            "cron": "30 2 * * *",
            "timezone": "Europe/Berlin",
        },
    },
    "schedule_queue": {
        "summary": "Every 15 minutes on weekdays, queued behind a slow run",
        "value": {
            "name": "quarter-hourly",
            "directive_id": 1,
            "cron": "*/15 * * * mon-fri",
            "overlap": "queue",
            "catch_up": "latest",
        },
    },
    "schedule_patch": {"summary": "Pause a schedule", "value": {"enabled": False}},
    "notifier_webhook": {
        "summary": "A signed webhook on the LAN for failures",
        "value": {
            "name": "home-assistant",
            "kind": "webhook",
            "url": "http://192.168.1.20:8123/api/webhook/dockfleet",  # example only
            "secret": "change-me",
            "event_types": ["run.failed", "schedule.failed", "host.unhealthy"],
        },
    },
    "notifier_ntfy": {
        "summary": "ntfy: a schedule's runs start failing, and recover",
        "value": {
            "name": "phone",
            "kind": "ntfy",
            "url": "http://192.168.1.30/dockfleet",  # example only
            "event_types": ["run.failed", "run.succeeded"],
            "schedule_ids": [1],
            "on_change_only": True,
        },
    },
    "notifier_patch": {"summary": "Also tell me about hosts", "value": {"event_types": ["host.*"]}},
    "launch_default": {
        "summary": "Launch with default task selection",
        "value": {"directive_id": 1},
    },
    "launch_tasks": {
        "summary": "Launch specific tasks",
        "value": {"directive_id": 1, "tasks": ["log_triage", "gpu_report"]},
    },
    "launch_target": {
        "summary": "Launch on a specific host",
        "value": {"directive_id": 1, "tasks": ["log_triage"], "target_host_id": 2},
    },
}


def examples(*names: str) -> Any:
    """A Body() carrying the named examples for the docs page."""
    chosen: dict[str, Any] = {n: EXAMPLES[n] for n in names}
    return Body(openapi_examples=chosen)
