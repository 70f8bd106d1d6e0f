"""``distill-gui doctor``: versions, the torch build against the GPU driver, disk, memory and paths."""

from __future__ import annotations

import argparse
import json

EXIT_PROBLEMS = 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``doctor`` subcommand."""
    p = subparsers.add_parser(
        "doctor",
        help="check this installation: torch build vs GPU driver, CUDA/MPS, bitsandbytes, disk, memory, paths",
        description=(
            "Print what a support question needs: versions, the torch build and whether it matches the GPU "
            "driver, CUDA and MPS, bitsandbytes, free disk and memory, and where the app, its environment, "
            "runs, logs and settings are. Exits 1 when it finds a problem (each comes with what to do)."
        ),
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_doctor)
    return p


def cmd_doctor(args) -> int:
    from distill_gui.core.diagnostics import collect, format_diagnostics

    data = collect()
    print(json.dumps(data, default=str) if args.json else format_diagnostics(data))
    return EXIT_PROBLEMS if data["problems"] else 0
