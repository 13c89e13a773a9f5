"""The OpenAPI page: every runbook call is documented with its example, responses and errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from app.client import sync
from app.config import Settings
from app.main import create_app
from tests.readme import curl_calls, python_blocks

ROOT = Path(__file__).resolve().parents[1]
SHARED_RUNBOOK = Path("/work/shared/spec/WORKERHOST_RUNBOOK.md")

# Every call of the runbook (WORKERHOST_RUNBOOK.md), bodies verbatim.
RUNBOOK_CALLS: list[tuple[str, str, Any]] = [
    (
        "POST",
        "/api/worker-hosts/",
        {
            "name": "Unraid",
            "type": "docker_socket",
            "base_url": "unix:///var/run/docker.sock",
            "enabled": True,
            "capabilities": {"gpus": True, "gpu_count": 2, "max_concurrency": 5},
        },
    ),
    (
        "POST",
        "/api/worker-hosts/",
        {
            "name": "VM-192.168.1.15",  # documentation only: nothing here is ever contacted
            "type": "docker_tcp",
            "base_url": "tcp://192.168.1.15:2376",  # documentation only
            "enabled": True,
            "capabilities": {"gpus": False, "max_concurrency": 3},
            "ssh_config": {
                "host": "192.168.1.15",  # documentation only
                "port": 22,
                "user": "vmadmin",
                "key_path": "/secrets/vm_ssh_key",
            },
        },
    ),
    ("GET", "/api/worker-hosts/1/health/", None),
    ("GET", "/api/worker-hosts/1/health/?check=true", None),
    ("POST", "/api/runs/launch/", {"directive_id": 1}),
    ("POST", "/api/runs/launch/", {"directive_id": 1, "tasks": ["log_triage", "gpu_report"]}),
    (
        "POST",
        "/api/runs/launch/",
        {"directive_id": 1, "tasks": ["log_triage"], "target_host_id": 2},
    ),
    (
        "POST",
        "/api/directives/",
        {"name": "default", "description": "Default orchestrator directive"},
    ),
    ("GET", "/api/worker-hosts/", None),
    ("GET", "/api/worker-hosts/1/health/", None),
    ("GET", "/api/worker-hosts/1/health/", None),
    ("GET", "/api/worker-hosts/1/health/?check=true", None),
    ("GET", "/api/worker-hosts/", None),
    ("GET", "/api/worker-hosts/1/", None),
    ("GET", "/api/runs/?status=running", None),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    db = tmp_path_factory.mktemp("openapi") / "db"
    return create_app(Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{db}"))  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def schema(api: FastAPI) -> dict[str, Any]:
    return api.openapi()


def operation(schema: dict[str, Any], method: str, url: str) -> tuple[str, dict[str, Any]]:
    """The schema path template and operation a concrete runbook URL is served by."""
    path = url.split("?")[0]
    for template, item in schema["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", r"[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {url} is not in the OpenAPI schema")


def resolve(schema: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """A component schema from its $ref."""
    name = ref["$ref"].rsplit("/", 1)[-1]
    component: dict[str, Any] = schema["components"]["schemas"][name]
    return component


def test_runbook_list_matches_the_runbook_file() -> None:
    if not SHARED_RUNBOOK.exists():
        pytest.skip("the shared runbook is not on this machine")
    assert curl_calls(SHARED_RUNBOOK.read_text()) == RUNBOOK_CALLS


@pytest.mark.parametrize(("method", "url", "body"), RUNBOOK_CALLS)
def test_every_runbook_call_is_documented(
    schema: dict[str, Any], method: str, url: str, body: Any
) -> None:
    _, op = operation(schema, method, url)
    assert op["tags"] and op["summary"] and op["description"]
    ok = next(code for code in op["responses"] if code.startswith("2"))
    assert "$ref" in op["responses"][ok]["content"]["application/json"]["schema"]
    assert {"401", "422"} <= op["responses"].keys()
    query = urlsplit(url).query
    if query:
        names = {p["name"] for p in op["parameters"] if p["in"] == "query"}
        assert query.split("=")[0] in names
    if body is not None:
        examples = op["requestBody"]["content"]["application/json"]["examples"]
        assert body in [e["value"] for e in examples.values()], f"{url}: runbook body missing"


def test_every_operation_has_tag_summary_description_and_errors(schema: dict[str, Any]) -> None:
    for template, item in schema["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {template}"
            assert op.get("tags") and op.get("summary") and op.get("description"), where
            if not template.startswith("/api/"):
                continue
            for code, response in op["responses"].items():
                if code.startswith("4") or code.startswith("5"):
                    content = response["content"]["application/json"]
                    assert "$ref" in content["schema"], where
            if "{" in template:
                assert "404" in op["responses"], where
            if method in ("post", "patch") and "requestBody" in op:
                assert op["requestBody"]["content"]["application/json"]["examples"], where


def test_error_bodies_have_detail_and_code(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["ErrorBody"]
    assert {"detail", "code"} <= error["properties"].keys()
    _, launch = operation(schema, "POST", "/api/runs/launch/")
    assert {"404", "409", "422", "503"} <= launch["responses"].keys()
    no_hosts = resolve(schema, launch["responses"]["503"]["content"]["application/json"]["schema"])
    assert {"detail", "code", "hosts"} <= no_hosts["properties"].keys()
    _, get_host = operation(schema, "GET", "/api/worker-hosts/1/")
    example = get_host["responses"]["404"]["content"]["application/json"]["example"]
    assert example["code"] == "not_found"


def test_enums_are_enums(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["HostType"]["enum"] == ["docker_socket", "docker_tcp"]
    assert set(components["RunStatus"]["enum"]) == {
        "pending",
        "starting",
        "running",
        "cancelling",
        "succeeded",
        "failed",
        "cancelled",
    }
    assert components["HostRead"]["properties"]["type"] == {"$ref": "#/components/schemas/HostType"}
    assert components["RunRead"]["properties"]["status"] == {
        "$ref": "#/components/schemas/RunStatus"
    }


def test_readme_curl_commands_are_api_calls(schema: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    calls = curl_calls(readme)
    assert len(calls) >= len(RUNBOOK_CALLS)
    for method, url, _ in calls:
        if url.startswith("/api/"):
            operation(schema, method, url)
    for method, url, body in RUNBOOK_CALLS:  # the runbook's operations are all in the README
        assert (method, url, body) in calls, f"README lacks the runbook's {method} {url}"


def test_readme_python_snippets_compile_and_use_real_methods() -> None:
    rooms = {"hosts": sync.Hosts, "directives": sync.Directives, "tasks": sync.Tasks}
    rooms |= {"runs": sync.Runs, "gpus": sync.Gpus}
    rooms |= {"schedules": sync.Schedules, "notifiers": sync.Notifiers}
    blocks = python_blocks()
    assert len(blocks) >= 8
    for block in blocks:
        compile(block, "README.md", "exec")
        for room, method in re.findall(r"fleet\.(\w+)\.(\w+)\(", block):
            assert method in vars(rooms[room]), f"README uses fleet.{room}.{method}"
        for method in re.findall(r"fleet\.(\w+)\(", block):
            assert hasattr(sync.DockfleetClient, method), f"README uses fleet.{method}"


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        row = f"| `DOCKFLEET_{name.upper()}` |"
        assert row in readme, f"README's configuration table lacks {row}"
        if field.default is not None:
            line = next(line for line in readme.splitlines() if line.startswith(row))
            assert f"`{field.default}`" in line, f"README's default of {name} is wrong"


async def test_docs_pages_are_served(api: FastAPI) -> None:
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for page in ("/docs", "/redoc"):
            response = await http.get(page)
            assert response.status_code == 200
            assert "text/html" in response.headers["content-type"]
        spec = (await http.get("/openapi.json")).json()
    assert spec["info"]["title"] == "dockfleet"
    assert spec["openapi"].startswith("3.")
