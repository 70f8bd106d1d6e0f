"""``distill-gui doctor``: everything a bug report or a support question needs, in one block of text.

Versions and devices come from :mod:`distill_gui.core.environment` (what ``distill-gui info`` shows);
on top of that: whether the installed torch build matches the GPU driver, free disk and memory, and
where the app, its environment, the runs, the logs and the settings are. ``problems`` lists what is
wrong, each with what to do; the command exits non-zero when there is any.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from distill_gui import __version__

LOW_DISK_BYTES = 5 * 2**30
"""Less free space than this where runs are written is reported: checkpoints of even small models fill it."""

APP_NAME = "distill-gui"


def user_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def installed_app_dir() -> Path:
    """Where the installers put the app (its environment, the installer's copy and logs)."""
    return user_data_dir() / "app"


def collect() -> dict:
    """The diagnostics as a plain mapping (JSON-friendly)."""
    from distill_gui.core import torch_builds
    from distill_gui.core.environment import environment_report
    from distill_gui.core.runs import default_runs_root

    report = environment_report()
    problems: list[str] = []
    try:
        import torch

        torch_cuda = torch.version.cuda
        torch_build = {"version": torch.__version__, "cuda": torch_cuda, "hip": getattr(torch.version, "hip", None)}
    except ImportError as exc:
        torch_cuda, torch_build = None, {"version": None, "error": str(exc)}
        problems.append(f"torch does not import ({exc}): reinstall with the installer's --repair")
    hardware = torch_builds.detect()
    match_ok, match_text = torch_builds.matches_driver(torch_cuda, hardware.nvidia_driver, hardware.system)
    if not match_ok:
        problems.append(match_text)
    recommended = torch_builds.choose(hardware)
    if torch_cuda is None and hardware.nvidia_driver and recommended.build != "cpu":
        problems.append(
            f"torch is a CPU build but this machine has {hardware.describe()}: reinstall with --torch {recommended.build} to train on the GPU"
        )
    if report["devices"]["cuda_available"] is False and torch_cuda and match_ok and hardware.nvidia_driver:
        problems.append(
            "torch is a CUDA build and the driver is new enough, yet CUDA is not available: check that the GPU is visible (CUDA_VISIBLE_DEVICES, nvidia-smi)"
        )

    runs = default_runs_root()
    probe = runs
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    if usage.free < LOW_DISK_BYTES:
        problems.append(f"only {usage.free / 2**30:.1f} GiB free at {probe}: free some space or choose another runs folder")
    app_dir = installed_app_dir()
    import platformdirs

    return {
        "distill_gui": __version__,
        "environment": report,
        "torch_build": torch_build,
        "driver": {
            "found": hardware.describe(),
            "nvidia": torch_builds.format_version(hardware.nvidia_driver) if hardware.nvidia_driver else None,
            "rocm": hardware.rocm,
            "notes": list(hardware.notes),
            "torch_matches": match_ok,
            "detail": match_text,
            "recommended_build": recommended.build,
        },
        "disk": {"path": str(probe), "free": usage.free, "total": usage.total},
        "paths": {
            "package": str(Path(__file__).resolve().parents[1]),
            "python": sys.executable,
            "environment": sys.prefix,
            "installed_app": str(app_dir) if app_dir.is_dir() else None,
            "install_logs": str(app_dir / "logs") if (app_dir / "logs").is_dir() else None,
            "runs": str(runs),
            "settings": platformdirs.user_config_dir(APP_NAME, appauthor=False),
        },
        "problems": problems,
    }


def format_diagnostics(data: dict) -> str:
    """The diagnostics as aligned lines, ready to paste into an issue."""
    from distill_gui.core.environment import format_report

    def line(key: str, value) -> str:
        return f"{key:<19} {value}"

    torch_build = data["torch_build"]
    if torch_build.get("version"):
        kind = (
            f"CUDA {torch_build['cuda']}"
            if torch_build.get("cuda")
            else (f"ROCm {torch_build['hip']}" if torch_build.get("hip") else "CPU")
        )
        torch_line = f"{torch_build['version']} ({kind} build)"
    else:
        torch_line = f"does not import: {torch_build.get('error')}"
    driver = data["driver"]
    disk = data["disk"]
    paths = data["paths"]
    lines = [
        f"distill-gui {data['distill_gui']}",
        format_report(data["environment"]),
        line("torch build", torch_line),
        line("gpu driver", driver["found"]),
        line("torch vs driver", ("ok: " if driver["torch_matches"] else "MISMATCH: ") + driver["detail"]),
        line("best torch here", driver["recommended_build"]),
    ]
    lines += [line("  note", note) for note in driver["notes"]]
    lines += [
        line("disk", f"{disk['free'] / 2**30:.1f} GiB free of {disk['total'] / 2**30:.1f} GiB at {disk['path']}"),
        line("package", paths["package"]),
        line("interpreter", paths["python"]),
        line("environment", paths["environment"]),
        line("installed app", paths["installed_app"] or "not installed by the installers (a pip or source install)"),
        line("install logs", paths["install_logs"] or "none"),
        line("runs", paths["runs"] + "  (each run keeps its own train.log)"),
        line("settings", paths["settings"]),
    ]
    if data["problems"]:
        lines.append("problems:")
        lines += [f"  - {p}" for p in data["problems"]]
    else:
        lines.append(line("problems", "none found"))
    return "\n".join(lines)
