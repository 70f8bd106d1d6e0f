"""Hardware detection -> torch build, on recorded ``nvidia-smi`` outputs (no GPU or vendor index needed)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from distill_gui.core import torch_builds
from distill_gui.core.torch_builds import choose, detect, matches_driver

RECORDED = Path(__file__).with_name("nvidia_smi")


def recorded_runner(new_query: str | None, old_query: str | None = None, missing: bool = False):
    """A command runner answering ``nvidia-smi`` from recorded files: ``name.csv`` prints it with exit 0,
    ``name.err`` with the given exit code (``name.err:6``)."""
    calls = []

    def answer(spec: str | None) -> tuple[int, str]:
        if spec is None:
            raise AssertionError("nvidia-smi asked a query this recording does not have")
        name, _, code = spec.partition(":")
        return (int(code) if code else 0 if name.endswith(".csv") else 2), (RECORDED / name).read_text()

    def run(command: list[str]) -> tuple[int, str]:
        calls.append(command)
        assert command[0] == "nvidia-smi"
        if missing:
            return 127, ""
        return answer(new_query if command[1] == torch_builds.QUERY else old_query)

    run.calls = calls
    return run


CASES = [
    # (recording for the new query, for the old query, system, expected build, words in the reason)
    ("rtx5090-linux-580.82.07.csv", None, "Linux", "cu130", "newest CUDA build"),
    ("rtx4090-linux-570.124.06.csv", None, "Linux", "cu128", "newest CUDA build"),
    ("a100x2-linux-535.183.01.csv", None, "Linux", "cu126", "minor-version compatibility"),
    ("gtx1080ti-linux-575.64.03.csv", None, "Linux", "cu126", "newest CUDA build"),  # Pascal: no cu128/cu130 kernels
    ("rtx3060-windows-572.16.csv", None, "Windows", "cu128", "newest CUDA build"),
    ("t4-linux-470.256.02-new-query.err:2", "t4-linux-470.256.02-old-query.csv", "Linux", "cpu", "update the NVIDIA driver"),
    ("failing-driver.err:9", "failing-driver.err:9", "Linux", "cpu", "no NVIDIA or AMD GPU"),
    ("no-devices.err:6", "no-devices.err:6", "Windows", "cpu", "no NVIDIA or AMD GPU"),
]


@pytest.mark.parametrize("new_query, old_query, system, build, reason", CASES)
def test_recorded_nvidia_smi_outputs_choose_the_build(new_query, old_query, system, build, reason):
    hardware = detect(recorded_runner(new_query, old_query), system=system, machine="x86_64", rocm_version="")
    choice = choose(hardware)
    assert choice.build == build
    assert reason in choice.reason
    assert choice.index_url == f"https://download.pytorch.org/whl/{build}"


def test_detection_reads_driver_gpus_and_capabilities():
    hardware = detect(recorded_runner("a100x2-linux-535.183.01.csv"), system="Linux", machine="x86_64")
    assert hardware.nvidia_driver == (535, 183, 1)
    assert [g.capability for g in hardware.gpus] == [(8, 0), (8, 0)]
    assert hardware.gpus[0].memory_mib == 81920
    assert hardware.describe() == "NVIDIA driver 535.183.01; NVIDIA A100-SXM4-80GB (80 GiB), NVIDIA A100-SXM4-80GB (80 GiB)"


def test_an_old_driver_is_asked_again_without_compute_cap():
    run = recorded_runner("t4-linux-470.256.02-new-query.err:2", "t4-linux-470.256.02-old-query.csv")
    hardware = detect(run, system="Linux", machine="x86_64", rocm_version="")
    assert [c[1] for c in run.calls] == [torch_builds.QUERY, torch_builds.QUERY_OLD]
    assert hardware.nvidia_driver == (470, 256, 2) and hardware.gpus[0].capability is None
    assert "470.256.02 is older than 525.60.13" in choose(hardware).reason


def test_a_failing_nvidia_smi_is_noted_not_fatal():
    hardware = detect(recorded_runner("failing-driver.err:9", "failing-driver.err:9"), system="Linux", machine="x86_64", rocm_version="")
    assert hardware.nvidia_driver is None
    assert hardware.notes and "couldn't communicate with the NVIDIA driver" in hardware.notes[0]


def test_no_nvidia_smi_rocm_apple_and_overrides():
    run = recorded_runner(None, missing=True)
    assert choose(detect(run, system="Linux", machine="x86_64", rocm_version="")).build == "cpu"
    rocm = detect(run, system="Linux", machine="x86_64", rocm_version="6.4.1")
    assert choose(rocm).build == torch_builds.ROCM_BUILD and choose(rocm).index_url.endswith("/rocm6.4")
    mac = detect(run, system="Darwin", machine="arm64")
    assert run.calls == [["nvidia-smi", torch_builds.QUERY, "--format=csv,noheader,nounits"]] * 2  # never on macOS
    assert choose(mac) == torch_builds.TorchChoice("default", None, choose(mac).reason) and "Metal" in choose(mac).reason
    assert choose(mac, "cpu").index_url == "https://download.pytorch.org/whl/cpu"
    with pytest.raises(ValueError, match="--torch cu999: choose one of auto, cpu, cu130"):
        choose(mac, "cu999")


def test_installed_torch_against_the_driver():
    linux = "Linux"
    assert matches_driver(None, None, linux)[0]
    assert matches_driver("12.8", (570, 124, 6), linux) == (True, "driver 570.124.06 runs CUDA 12.8 (needs 570.26)")
    ok, text = matches_driver("12.8", (535, 183, 1), linux)
    assert ok and "minor-version compatibility" in text
    ok, text = matches_driver("13.0", (535, 183, 1), linux)
    assert not ok and text.endswith("reinstall with --torch cu126")
    assert matches_driver("12.6", None, linux) == (False, "torch is built for CUDA 12.6 but no NVIDIA driver was found")
    assert not matches_driver("12.6", (528, 24), "Windows")[0]


def test_the_module_is_standard_library_only():
    """The bootstrapper carries a copy of it and runs before anything is installed."""
    tree = ast.parse(Path(torch_builds.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported - set(sys.stdlib_module_names)
