"""Reading what the probe container printed: nvidia-smi CSV sections, values like "[N/A]".

Pure functions, no I/O. The probe prints three sections (`@@gpus`, `@@apps`, `@@health`), each
the output of one `nvidia-smi --query-… --format=csv,noheader,nounits` followed by `@@rc N`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

GPU_QUERY = "index,uuid,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw"
APPS_QUERY = "gpu_uuid,pid,used_memory"
HEALTH_QUERY = "uuid,ecc.errors.uncorrected.volatile.total,retired_pages.pending"
_FORMAT = "--format=csv,noheader,nounits"
# What nvidia-smi prints instead of a value: nothing to know (None), or a GPU in trouble.
_ABSENT = {"[n/a]", "n/a", "[not supported]", "not supported", ""}
_TROUBLE = ("[gpu requires reset]", "[unknown error]", "err!", "[gpu is lost]")


def script() -> str:
    """The probe container's shell script: the three queries, each section marked."""
    queries = (
        ("gpus", "query-gpu=" + GPU_QUERY),
        ("apps", "query-compute-apps=" + APPS_QUERY),
        ("health", "query-gpu=" + HEALTH_QUERY),
    )
    return "; ".join(
        f'echo "@@{section}"; nvidia-smi --{query} {_FORMAT} 2>&1; echo "@@rc $?"'
        for section, query in queries
    )


class Trouble(ValueError):
    """A value nvidia-smi reported as an error (the GPU needs attention)."""


def _value(text: str) -> str | None:
    value = text.strip()
    low = value.lower()
    if low in _ABSENT:
        return None
    if low in _TROUBLE:
        raise Trouble(value)
    return value


def _number(text: str) -> float | None:
    value = _value(text)
    if value is None:
        return None
    try:
        return float(value.split()[0])  # "24564 MiB" when units slipped in
    except (ValueError, IndexError):
        return None


def _int(text: str) -> int | None:
    number = _number(text)
    return None if number is None else round(number)


@dataclass
class GpuRow:
    """One line of the GPU query."""

    index: int
    uuid: str
    name: str
    memory_total_mb: int | None = None
    memory_used_mb: int | None = None
    utilization_pct: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    errors: list[str] = field(default_factory=list)  # fields nvidia-smi reported in trouble


@dataclass
class AppRow:
    """One compute process on a GPU."""

    gpu_uuid: str
    pid: int | None
    used_memory_mb: int | None


@dataclass
class HealthRow:
    """ECC and page retirement counters of one GPU (None where the card has none)."""

    uuid: str
    ecc_uncorrected: int | None = None
    retired_pending: bool | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Everything one probe learned; `error` when the GPU query itself failed."""

    gpus: list[GpuRow] = field(default_factory=list)
    apps: list[AppRow] = field(default_factory=list)
    health: dict[str, HealthRow] = field(default_factory=dict)
    error: str | None = None
    exit_code: int | None = None  # of the GPU query


def _rows(lines: list[str]) -> list[list[str]]:
    return [row for row in csv.reader(lines, skipinitialspace=True) if any(c.strip() for c in row)]


class _Reader:
    """Reads values of one line, noting the fields nvidia-smi reported in trouble."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def number(self, name: str, text: str) -> float | None:
        try:
            return _number(text)
        except Trouble as exc:
            self.errors.append(f"{name} {exc}")
            return None

    def integer(self, name: str, text: str) -> int | None:
        number = self.number(name, text)
        return None if number is None else round(number)

    def text(self, name: str, text: str) -> str | None:
        try:
            return _value(text)
        except Trouble as exc:
            self.errors.append(f"{name} {exc}")
            return None


def parse_gpu_line(row: list[str]) -> GpuRow | None:
    """index, uuid, name…, memory.total, memory.used, utilization, temperature, power."""
    if len(row) < 8:
        return None
    head, name_parts, tail = row[:2], row[2:-5], row[-5:]  # a name may hold a comma
    try:
        index = int(head[0].strip())
    except ValueError:
        return None
    uuid = head[1].strip()
    if not uuid or uuid.lower() in _ABSENT or uuid.lower() in _TROUBLE:
        return None
    read = _Reader()
    return GpuRow(
        index=index,
        uuid=uuid,
        name=", ".join(p.strip() for p in name_parts),
        memory_total_mb=read.integer("memory.total", tail[0]),
        memory_used_mb=read.integer("memory.used", tail[1]),
        utilization_pct=read.integer("utilization.gpu", tail[2]),
        temperature_c=read.number("temperature.gpu", tail[3]),
        power_w=read.number("power.draw", tail[4]),
        errors=read.errors,
    )


def parse_app_line(row: list[str]) -> AppRow | None:
    """gpu_uuid, pid, used_memory."""
    if len(row) < 3 or not row[0].strip().upper().startswith("GPU-"):
        return None
    try:
        pid = _int(row[1])
        used = _int(row[2])
    except Trouble:
        pid, used = None, None
    return AppRow(gpu_uuid=row[0].strip(), pid=pid, used_memory_mb=used)


def parse_health_line(row: list[str]) -> HealthRow | None:
    """uuid, ecc.errors.uncorrected.volatile.total, retired_pages.pending."""
    if len(row) < 3 or not row[0].strip():
        return None
    read = _Reader()
    ecc = read.integer("ecc.errors.uncorrected.volatile.total", row[1])
    pending = read.text("retired_pages.pending", row[2])
    return HealthRow(
        uuid=row[0].strip(),
        ecc_uncorrected=ecc,
        retired_pending=None if pending is None else pending.lower() in ("yes", "1", "true"),
        errors=read.errors,
    )


def _sections(text: str) -> dict[str, tuple[list[str], int | None]]:
    out: dict[str, tuple[list[str], int | None]] = {}
    current: str | None = None
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if line.startswith("@@rc "):
            if current is not None:
                try:
                    code: int | None = int(line[5:].strip())
                except ValueError:
                    code = None
                out[current] = (lines, code)
            current, lines = None, []
        elif line.startswith("@@") and line[2:].strip().isalpha():
            current, lines = line[2:].strip(), []
        elif current is not None:
            lines.append(line)
    if current is not None:  # cut short: no rc
        out[current] = (lines, None)
    return out


def _first_line(lines: list[str]) -> str:
    text = next((line.strip() for line in lines if line.strip()), "")
    return text[:300] or "no output"


def parse(text: str) -> Report:
    """The probe's output as a Report (an unreadable or failed GPU query sets `error`)."""
    sections = _sections(text)
    report = Report()
    if "gpus" not in sections:
        report.error = "the probe printed no GPU section: " + _first_line(text.splitlines())
        return report
    lines, code = sections["gpus"]
    report.exit_code = code
    if code != 0:
        report.error = f"nvidia-smi failed (exit {code}): {_first_line(lines)}"
        return report
    report.gpus = [g for g in map(parse_gpu_line, _rows(lines)) if g is not None]
    apps, apps_code = sections.get("apps", ([], None))
    if apps_code == 0:
        report.apps = [a for a in map(parse_app_line, _rows(apps)) if a is not None]
    health, health_code = sections.get("health", ([], None))
    if health_code == 0:  # older drivers may not know these fields: then nothing is learned
        for h in map(parse_health_line, _rows(health)):
            if h is not None:
                report.health[h.uuid] = h
    return report
