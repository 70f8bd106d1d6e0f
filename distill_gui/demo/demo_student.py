"""Making the demo's student (its smallest random-initialised size, with the teacher's tokenizer) in a
child process of the app: ``python -m distill_gui.demo.demo_student TEACHER OUT``. Written to a
staging folder and renamed, so a half-made student is never taken for a model; exit 0 when ready, else
a one-line reason on stderr and exit 1."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def make_demo_student(teacher: str | Path, out: str | Path) -> Path:
    """The demo student in ``out`` (made unless it is already there)."""
    from distill_gui.demo.pipeline import STUDENT_SIZES, build_student

    target = Path(out)
    if (target / "config.json").is_file():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        build_student(STUDENT_SIZES[-1], Path(teacher), staging, seed=1)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m distill_gui.demo.demo_student TEACHER OUT", file=sys.stderr)
        return 2
    from distill_gui.core.errors import describe

    try:
        make_demo_student(args[0], args[1])
    except Exception as exc:  # noqa: BLE001 - the app shows the line
        print(describe(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
