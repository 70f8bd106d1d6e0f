"""Which build of torch fits this machine: the GPU driver decides (standard library only).

The installers' bootstrapper carries a copy of this module (it runs before distill-gui or torch are
installed), and ``distill-gui doctor`` uses it to say whether the installed torch matches the driver.
So it imports nothing outside the standard library.

A CUDA build of torch runs fully on an NVIDIA driver at least as new as the one its CUDA toolkit
shipped with (NVIDIA's "CUDA Toolkit and Corresponding Driver Versions" table, the toolkit-driver
column), and on any driver of the same CUDA major version through minor-version compatibility (the
family minimum: 525.60.13 for CUDA 12 on Linux). It also needs a GPU its kernels were compiled for.
A CUDA build on a driver below both is the install failure users of fine-tuning apps report most.
We pick the newest build whose toolkit driver and GPUs qualify; failing that, the oldest build of a
CUDA major version the driver runs by compatibility; failing that, the CPU build and a line saying
which driver to install.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Callable

INDEX_ROOT = "https://download.pytorch.org/whl"
"""The torch project's own package index; each build has its own folder (``/cu128``, ``/cpu``, ...)."""


@dataclass(frozen=True)
class CudaBuild:
    """One CUDA build of torch on the torch index."""

    tag: str
    cuda: tuple[int, int]
    linux_driver: tuple[int, ...]
    """The oldest Linux driver that runs this CUDA toolkit fully (toolkit-driver column)."""
    windows_driver: tuple[int, ...]
    family_linux_driver: tuple[int, ...]
    """The oldest Linux driver of this CUDA major version (minor-version compatibility)."""
    family_windows_driver: tuple[int, ...]
    min_capability: tuple[int, int]
    """The oldest GPU architecture (compute capability) these wheels carry kernels for."""


CUDA_BUILDS = (
    CudaBuild("cu130", (13, 0), (580, 65, 6), (580, 88), (580, 65, 6), (580, 88), (7, 5)),
    CudaBuild("cu128", (12, 8), (570, 26), (570, 65), (525, 60, 13), (528, 33), (7, 0)),
    CudaBuild("cu126", (12, 6), (560, 28, 3), (560, 76), (525, 60, 13), (528, 33), (5, 0)),
)
"""The CUDA builds published for the torch releases distill-gui supports, newest first."""

ROCM_BUILD = "rocm6.4"
"""The ROCm build (Linux only) for AMD GPUs."""

CHOICES = ("auto", "cpu", *(b.tag for b in CUDA_BUILDS), ROCM_BUILD, "default")
"""What ``--torch`` accepts: ``default`` is the package index's own torch (macOS: Metal)."""

Runner = Callable[[list[str]], "tuple[int, str]"]
"""Runs a command, returns (exit code, stdout); tests pass recorded outputs instead."""


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_mib: int
    capability: tuple[int, int] | None


@dataclass(frozen=True)
class Hardware:
    """What the machine offers torch, as found by :func:`detect`."""

    system: str
    """``Linux``, ``Windows`` or ``Darwin``."""
    machine: str
    """``x86_64``, ``arm64``, ``aarch64``, ``AMD64`` ..."""
    nvidia_driver: tuple[int, ...] | None = None
    gpus: tuple[Gpu, ...] = ()
    rocm: str | None = None
    """The ROCm version when an AMD GPU stack is installed (Linux)."""
    notes: tuple[str, ...] = field(default=())
    """What went wrong while looking (``nvidia-smi failed: ...``), for the log."""

    @property
    def apple_silicon(self) -> bool:
        return self.system == "Darwin" and self.machine in ("arm64", "aarch64")

    def describe(self) -> str:
        """One line for a person: what was found."""
        if self.nvidia_driver:
            gpus = ", ".join(f"{g.name} ({g.memory_mib / 1024:.0f} GiB)" for g in self.gpus) or "no GPU listed"
            return f"NVIDIA driver {format_version(self.nvidia_driver)}; {gpus}"
        if self.rocm:
            return f"AMD ROCm {self.rocm}"
        if self.apple_silicon:
            return "Apple Silicon (Metal)"
        return f"no supported GPU ({self.system} {self.machine})"


@dataclass(frozen=True)
class TorchChoice:
    """Which torch to install and from where."""

    build: str
    """``cpu``, ``cu128``, ``rocm6.4`` or ``default``."""
    index_url: str | None
    """The package index for torch; None: the default index (PyPI)."""
    reason: str


# ---- Parsing ---------------------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, ...] | None:
    """``"570.124.06"`` -> ``(570, 124, 6)``; None when it is not a dotted version."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)*)\s*", text or "")
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def format_version(version: tuple[int, ...]) -> str:
    """``(580, 65, 6)`` -> ``"580.65.06"``: NVIDIA writes the parts after the first with two digits."""
    return ".".join([str(version[0]), *(f"{p:02d}" for p in version[1:])]) if version else ""


def parse_nvidia_smi(csv_text: str) -> tuple[tuple[int, ...] | None, tuple[Gpu, ...]]:
    """Parse ``nvidia-smi --query-gpu=name,driver_version,memory.total[,compute_cap] --format=csv,noheader,nounits``."""
    driver, gpus = None, []
    for line in csv_text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 3 or not parse_version(cells[1]):
            continue
        driver = driver or parse_version(cells[1])
        memory = int(cells[2]) if cells[2].isdigit() else 0
        capability = None
        if len(cells) > 3 and re.fullmatch(r"\d+\.\d+", cells[3]):
            major, minor = cells[3].split(".")
            capability = (int(major), int(minor))
        gpus.append(Gpu(cells[0], memory, capability))
    return driver, tuple(gpus)


# ---- Detection -------------------------------------------------------------------------------------


def run_command(command: list[str]) -> tuple[int, str]:
    """Run ``command`` (15 s at most); (exit code, stdout). A missing program is exit code 127."""
    if shutil.which(command[0]) is None:
        return 127, ""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, f"{type(exc).__name__}: {exc}"
    return done.returncode, done.stdout if done.returncode == 0 else (done.stdout + done.stderr)


QUERY = "--query-gpu=name,driver_version,memory.total,compute_cap"
QUERY_OLD = "--query-gpu=name,driver_version,memory.total"
"""Drivers older than 510 do not know ``compute_cap``."""


def detect(run: Runner = run_command, system: str | None = None, machine: str | None = None, rocm_version: str | None = None) -> Hardware:
    """Look at the machine: NVIDIA driver and GPUs (``nvidia-smi``), ROCm, Apple Silicon."""
    system = system or platform.system()
    machine = machine or platform.machine()
    notes = []
    driver: tuple[int, ...] | None = None
    gpus: tuple[Gpu, ...] = ()
    if system in ("Linux", "Windows"):
        code, out = run(["nvidia-smi", QUERY, "--format=csv,noheader,nounits"])
        if code != 0 and code != 127:
            code, out = run(["nvidia-smi", QUERY_OLD, "--format=csv,noheader,nounits"])
        if code == 0:
            driver, gpus = parse_nvidia_smi(out)
            if driver is None:
                notes.append(f"nvidia-smi printed no GPU: {out.strip()[:200]!r}")
        elif code != 127:
            notes.append(f"nvidia-smi failed (exit {code}): {out.strip().splitlines()[0][:200] if out.strip() else 'no output'}")
    rocm = None
    if system == "Linux" and driver is None:
        rocm = rocm_version if rocm_version is not None else _rocm_version()
    return Hardware(system, machine, driver, gpus, rocm, tuple(notes))


def _rocm_version() -> str | None:
    """The installed ROCm version (``/opt/rocm/.info/version``), when there is one."""
    from pathlib import Path

    for path in (Path("/opt/rocm/.info/version"), Path("/opt/rocm/.info/version-dev")):
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        match = re.match(r"\d+\.\d+(\.\d+)?", text)
        if match:
            return match.group(0)
    return None


# ---- Choice ----------------------------------------------------------------------------------------


def driver_supports(build: CudaBuild, driver: tuple[int, ...], system: str) -> bool:
    """The driver runs this build's CUDA toolkit fully."""
    return driver >= (build.windows_driver if system == "Windows" else build.linux_driver)


def driver_compatible(build: CudaBuild, driver: tuple[int, ...], system: str) -> bool:
    """The driver runs this build through CUDA minor-version compatibility (same major version)."""
    return driver >= (build.family_windows_driver if system == "Windows" else build.family_linux_driver)


def gpus_supported(build: CudaBuild, gpus: tuple[Gpu, ...]) -> bool:
    return all(g.capability is None or g.capability >= build.min_capability for g in gpus)


def choose(hardware: Hardware, requested: str = "auto") -> TorchChoice:
    """The torch build for ``hardware``; ``requested`` (``--torch``) overrides the detection."""
    if requested not in CHOICES:
        raise ValueError(f"--torch {requested}: choose one of {', '.join(CHOICES)}")
    if requested != "auto":
        return TorchChoice(requested, index_url(requested), f"asked for with --torch {requested}")
    if hardware.system == "Darwin":
        why = "Apple Silicon: the default build uses the GPU through Metal (MPS)" if hardware.apple_silicon else "macOS: the default build"
        return TorchChoice("default", None, why)
    if hardware.nvidia_driver:
        driver = hardware.nvidia_driver
        for build in CUDA_BUILDS:
            if driver_supports(build, driver, hardware.system) and gpus_supported(build, hardware.gpus):
                return TorchChoice(
                    build.tag,
                    index_url(build.tag),
                    f"the newest CUDA build (CUDA {build.cuda[0]}.{build.cuda[1]}) that driver {format_version(driver)} runs",
                )
        for build in reversed(CUDA_BUILDS):
            if driver_compatible(build, driver, hardware.system) and gpus_supported(build, hardware.gpus):
                return TorchChoice(
                    build.tag,
                    index_url(build.tag),
                    f"CUDA {build.cuda[0]}.{build.cuda[1]} through minor-version compatibility: driver "
                    f"{format_version(driver)} is older than the toolkit's; a newer driver gives a newer build",
                )
        oldest = CUDA_BUILDS[-1]
        need = oldest.family_windows_driver if hardware.system == "Windows" else oldest.family_linux_driver
        if driver < need:
            why = f"driver {format_version(driver)} is older than {format_version(need)}, which CUDA {oldest.cuda[0]}.{oldest.cuda[1]} needs: update the NVIDIA driver to use the GPU"
        else:
            why = "no CUDA build of torch has kernels for this GPU"
        return TorchChoice("cpu", index_url("cpu"), why)
    if hardware.rocm and hardware.system == "Linux":
        return TorchChoice(ROCM_BUILD, index_url(ROCM_BUILD), f"ROCm {hardware.rocm} found")
    return TorchChoice("cpu", index_url("cpu"), "no NVIDIA or AMD GPU found: the CPU build (smaller download)")


def index_url(build: str) -> str | None:
    """The package index of a build; None for ``default`` (PyPI)."""
    return None if build == "default" else f"{INDEX_ROOT}/{build}"


def matches_driver(torch_cuda: str | None, driver: tuple[int, ...] | None, system: str) -> tuple[bool, str]:
    """Whether a torch built for CUDA ``torch_cuda`` (``torch.version.cuda``) runs on ``driver``."""
    if not torch_cuda:
        return True, "CPU build: no driver needed"
    if driver is None:
        return False, f"torch is built for CUDA {torch_cuda} but no NVIDIA driver was found"
    cuda = parse_version(torch_cuda) or ()
    for build in CUDA_BUILDS:
        if cuda[:2] == build.cuda:
            need = build.windows_driver if system == "Windows" else build.linux_driver
            if driver_supports(build, driver, system):
                return True, f"driver {format_version(driver)} runs CUDA {torch_cuda} (needs {format_version(need)})"
            if driver_compatible(build, driver, system):
                return (
                    True,
                    f"driver {format_version(driver)} runs CUDA {torch_cuda} through minor-version compatibility (full support from {format_version(need)})",
                )
            family = build.family_windows_driver if system == "Windows" else build.family_linux_driver
            return False, (
                f"driver {format_version(driver)} is older than {format_version(family)}, which CUDA {torch_cuda} needs: "
                f"update the driver or reinstall with --torch {choose(Hardware(system, '', driver)).build}"
            )
    return True, f"CUDA {torch_cuda} is not in distill-gui's table; driver {format_version(driver)}"
