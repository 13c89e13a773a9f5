"""Reading nvidia-smi's CSV (noheader, nounits), "[N/A]" and error values included."""

from __future__ import annotations

from app.gpus.parse import parse, parse_gpu_line, script
from app.gpus.probe import cdi_devices, classify_start_failure, outcome_of

GPUS = """\
0, GPU-aaaaaaaa-0000-0000-0000-000000000000, NVIDIA GeForce RTX 4090, 24564, 1023, 3, 41, 35.12
1, GPU-bbbbbbbb-1111-1111-1111-111111111111, NVIDIA A100-SXM4-80GB, 81920, 0, 0, 30, [N/A]
2, GPU-cccccccc-2222-2222-2222-222222222222, Tesla K80, [Not Supported], [N/A], [N/A], [N/A], N/A
"""
APPS = "GPU-aaaaaaaa-0000-0000-0000-000000000000, 4242, 1000\n"
HEALTH = """\
GPU-aaaaaaaa-0000-0000-0000-000000000000, 0, No
GPU-bbbbbbbb-1111-1111-1111-111111111111, 3, Yes
GPU-cccccccc-2222-2222-2222-222222222222, [N/A], [N/A]
"""


def output(gpus: str = GPUS, apps: str = APPS, health: str = HEALTH, rc: int = 0) -> str:
    return f"@@gpus\n{gpus}@@rc {rc}\n@@apps\n{apps}@@rc 0\n@@health\n{health}@@rc 0\n"


def test_every_field_of_every_gpu() -> None:
    report = parse(output())
    assert report.error is None
    first, second, third = report.gpus
    assert (first.index, first.uuid, first.name) == (
        0,
        "GPU-aaaaaaaa-0000-0000-0000-000000000000",
        "NVIDIA GeForce RTX 4090",
    )
    assert (first.memory_total_mb, first.memory_used_mb, first.utilization_pct) == (24564, 1023, 3)
    assert (first.temperature_c, first.power_w) == (41.0, 35.12)
    assert second.power_w is None and second.memory_total_mb == 81920
    assert third.memory_total_mb is None and third.memory_used_mb is None  # [Not Supported]
    assert third.temperature_c is None and third.power_w is None and third.errors == []
    assert [(a.gpu_uuid[:12], a.pid, a.used_memory_mb) for a in report.apps] == [
        ("GPU-aaaaaaaa", 4242, 1000)
    ]
    health = report.health
    assert health[first.uuid].ecc_uncorrected == 0 and health[first.uuid].retired_pending is False
    assert health[second.uuid].ecc_uncorrected == 3 and health[second.uuid].retired_pending
    assert health[third.uuid].ecc_uncorrected is None and health[third.uuid].retired_pending is None


def test_a_name_with_a_comma_and_values_in_trouble() -> None:
    row = [
        "3",
        "GPU-dd",
        "Weird",
        " Card",
        "[GPU requires reset]",
        "ERR!",
        "5",
        "[Unknown Error]",
        "1",
    ]
    gpu = parse_gpu_line(row)
    assert gpu is not None and gpu.name == "Weird, Card"
    assert gpu.memory_total_mb is None and gpu.memory_used_mb is None
    assert gpu.errors == [
        "memory.total [GPU requires reset]",
        "memory.used ERR!",
        "temperature.gpu [Unknown Error]",
    ]


def test_lines_that_are_not_gpus_are_skipped() -> None:
    report = parse(output(gpus="\nnot, a, gpu\n" + GPUS, apps="No running processes found\n"))
    assert len(report.gpus) == 3 and report.apps == []


def test_no_gpus_at_all() -> None:
    report = parse(output(gpus="", apps="", health=""))
    assert report.error is None and report.gpus == [] and report.apps == []


def test_a_failing_nvidia_smi_is_an_error_with_its_message() -> None:
    text = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
    report = parse(output(gpus=text, rc=9))
    assert report.exit_code == 9 and report.gpus == []
    assert report.error == f"nvidia-smi failed (exit 9): {text.strip()}"


def test_health_fields_unknown_to_an_old_driver_are_ignored() -> None:
    text = "@@gpus\n" + GPUS + "@@rc 0\n@@apps\n@@rc 0\n@@health\nField is not valid\n@@rc 2\n"
    report = parse(text)
    assert report.error is None and report.health == {} and len(report.gpus) == 3


def test_output_cut_short_or_missing() -> None:
    assert parse("").error is not None
    cut = parse("@@gpus\n" + GPUS)  # no rc: the container died mid-way
    assert cut.error is not None and cut.exit_code is None


def test_the_script_runs_the_three_queries() -> None:
    text = script()
    assert "--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu," in text
    assert "temperature.gpu,power.draw --format=csv,noheader,nounits" in text
    assert "--query-compute-apps=gpu_uuid,pid,used_memory --format=csv,noheader,nounits" in text
    assert text.count('echo "@@rc $?"') == 3


def test_what_an_outcome_means() -> None:
    assert outcome_of(0, output(), "", 30).status == "ok"
    assert outcome_of(None, "", "", 30).error == "the probe did not finish within 30s"
    missing = outcome_of(0, "@@gpus\nsh: nvidia-smi: not found\n@@rc 127\n", "", 30)
    assert missing.status == "error" and "nvidia-smi was not found" in (missing.error or "")
    broken = outcome_of(0, output(gpus="Unable to determine the device handle\n", rc=15), "", 30)
    assert broken.status == "driver_error"
    no_sh = outcome_of(127, "", 'exec: "sh": executable file not found', 30)
    assert no_sh.status == "error" and "sh" in (no_sh.error or "")


def test_start_failures_tell_a_cpu_host_from_a_broken_driver() -> None:
    none = classify_start_failure(
        'container did not start: could not select device driver "nvidia" with capabilities'
    )
    assert none.status == "no_runtime"
    hook = classify_start_failure("error running hook #0: nvml error: driver not loaded")
    assert hook.status == "driver_error" and "driver not loaded" in (hook.error or "")


def test_cdi_devices_from_info() -> None:
    info = {
        "DiscoveredDevices": [
            {"Source": "cdi", "ID": "nvidia.com/gpu=0"},
            {"Source": "cdi", "ID": "nvidia.com/gpu=all"},
            {"Source": "other", "ID": "x"},
        ]
    }
    assert cdi_devices(info) == ["nvidia.com/gpu=0", "nvidia.com/gpu=all"]
    assert cdi_devices({}) == []
