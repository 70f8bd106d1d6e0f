"""``distill-gui demo``: the built-in demo, from the shipped teacher to a recovery table, offline on a CPU."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="teacher eval -> verified traces -> 3 students x 3 methods -> recovery table (offline, CPU)",
        description=(
            "Run the built-in demo: evaluate the shipped teacher, let it write verified step-by-step traces, "
            "train three random-initialised students (about 1/4, 1/10 and 1/30 of its size) with answer-only SFT, "
            "trace SFT and trace SFT + logit KD on the same budget, and write recovery.md, recovery.csv and "
            "recovery.png into a new run folder."
        ),
    )
    p.add_argument("--quick", action="store_true", help="small budgets: shows the pipeline in about a minute, not the best numbers")
    p.add_argument("--runs-dir", type=Path, default=None, help="where the demo's folder goes (default: the user data dir)")
    p.add_argument("--demo-dir", type=Path, default=None, help="the demo files (teacher/, train.jsonl, test.jsonl); default: the shipped ones")
    p.add_argument("--steps", type=int, default=None, help="override the optimizer steps per student and method")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.set_defaults(func=cmd_demo)
    return p


def cmd_demo(args) -> int:
    from distill_gui.core.runs import default_runs_root
    from distill_gui.demo.pipeline import DemoPlan, format_result, run_demo

    plan = DemoPlan.create_quick() if args.quick else DemoPlan.full()
    if args.steps:
        plan.steps = args.steps
    runs_dir = args.runs_dir or default_runs_root()
    minutes = plan.estimate_seconds() / 60
    print(
        f"distill-gui demo{' --quick' if plan.quick else ''}: {len(plan.sizes)} students x 3 methods, "
        f"{plan.steps} steps x {plan.batch_size} rows each, {plan.test_rows} test problems.\n"
        f"This takes about {minutes:.0f} minute{'s' if round(minutes) != 1 else ''} on 2 free CPU cores "
        "(longer when the machine is busy).",
        flush=True,
    )
    result = run_demo(plan, runs_dir, args.demo_dir, log=lambda s: print(s, flush=True), progress=not args.no_progress and sys.stderr.isatty())
    print()
    print(format_result(result))
    print(f"demo finished in {result.seconds / 60:.1f} min")
    print(f"run folder: {result.folder}")
    return 0
