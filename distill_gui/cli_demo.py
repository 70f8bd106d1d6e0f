"""``distill-gui demo``: the built-in demo, from the shipped teacher to a recovery table, offline on a CPU."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill_gui.demo.plan import METHODS, STUDENT_SIZES


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="teacher eval -> verified traces -> 3 students x 8 methods -> recovery table (offline, CPU)",
        description=(
            "Run the built-in demo: evaluate the shipped teacher, let it write verified step-by-step traces, "
            "train three random-initialised students (about 1/4, 1/10 and 1/30 of its size) with answer-only SFT, "
            "trace SFT and trace SFT + logit KD on the same budget, continue each trace-SFT student with RLVR, "
            "on-policy KD, self-distillation, synthetic data and (the control) more trace SFT for the same extra steps, "
            "and write recovery.md, recovery.csv and recovery.png into a new run folder."
        ),
    )
    p.add_argument("--quick", action="store_true", help="small budgets: shows the pipeline in about a minute, not the best numbers")
    p.add_argument("--runs-dir", type=Path, default=None, help="where the demo's folder goes (default: the user data dir)")
    p.add_argument("--demo-dir", type=Path, default=None, help="the demo files (teacher/, train.jsonl, test.jsonl); default: the shipped ones")
    p.add_argument("--steps", type=int, default=None, help="override the optimizer steps per student and method")
    p.add_argument("--continue-steps", type=int, default=None, help="override the extra optimizer steps of each continued method")
    p.add_argument("--seeds", type=int, default=None,
                   help="initialisation seeds per student (default 1); the table reports the mean and min-max over them")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated methods to train (default: all): {', '.join(METHODS)}; "
                        "the continued ones also train trace_sft, their starting point")
    p.add_argument("--sizes", default=None,
                   help="comma-separated student sizes to train (default: all): " + ", ".join(s.name for s in STUDENT_SIZES))
    p.add_argument("--jobs", type=int, default=None,
                   help="students trained at the same time, each in its own process (default 0: one per CPU core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.set_defaults(func=cmd_demo)
    return p


def cmd_demo(args) -> int:
    from distill_gui.core.runs import default_runs_root
    from distill_gui.demo.pipeline import DemoPlan, format_result, run_demo

    plan = DemoPlan.create_quick() if args.quick else DemoPlan.full()
    if args.steps:
        plan.steps = args.steps
    if args.continue_steps is not None:
        plan.continue_steps = args.continue_steps
    if args.seeds is not None:
        plan.seeds = args.seeds
    if args.jobs is not None:
        plan.jobs = args.jobs
    if args.methods:
        plan.methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.sizes:
        names = [s.strip() for s in args.sizes.split(",") if s.strip()]
        unknown = [n for n in names if n not in {s.name for s in STUDENT_SIZES}]
        if unknown:
            print(f"distill-gui demo: --sizes: unknown {', '.join(unknown)}; choose from "
                  f"{', '.join(s.name for s in STUDENT_SIZES)}", file=sys.stderr)
            return 2
        plan.sizes = tuple(s for s in STUDENT_SIZES if s.name in names)
    try:
        plan.validate()
    except ValueError as exc:
        print(f"distill-gui demo: {exc}", file=sys.stderr)
        return 2
    runs_dir = args.runs_dir or default_runs_root()
    minutes = plan.estimate_seconds() / 60
    print(
        f"distill-gui demo{' --quick' if plan.quick else ''}: {len(plan.sizes)} students x {len(plan.trained_methods)} methods"
        f"{f' x {plan.seeds} seeds' if plan.seeds > 1 else ''}, {plan.steps} steps x {plan.batch_size} rows each"
        f"{f' (+{plan.continue_steps} for the continued methods)' if plan.continued_methods else ''}, "
        f"{plan.test_rows} test problems.\n"
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
