"""A child process that writes checkpoints the way training does, until it is killed from outside.

Each round: sweep leftovers, write ``step-N`` aside and commit it, rotate to the newest two, then
replace ``final``. Every phase is announced on stdout first, so the killer knows where it struck.
File contents are derived from the step, so a file from one step found in another is caught.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from distill_gui.core import checkpoints as ckpt

FILES = {"model.safetensors": 8, "optimizer.pt": 8, "scheduler.pt": 1, "rng_state.pth": 1}  # name -> 128 KiB pieces
PIECE = 128 * 1024


def content(step: int, name: str) -> bytes:
    rng = random.Random(f"{step}-{name}")
    return rng.randbytes(PIECE) * FILES[name]


def write_files(folder: Path, step: int) -> None:
    for name, pieces in FILES.items():
        data = content(step, name)
        with open(folder / name, "wb") as fh:
            for i in range(pieces):
                fh.write(data[i * PIECE:(i + 1) * PIECE])
                fh.flush()


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(folder: Path) -> None:
    ckpt.sweep_partials(folder)
    found = ckpt.complete_step_checkpoints(folder)
    step = found[-1][0] + 1 if found else 1
    while True:
        say(f"write {step}")
        with ckpt.atomic_checkpoint(folder / ckpt.step_dir_name(step), {"step": step}) as staging:
            write_files(staging, step)
        say(f"rotate {step}")
        ckpt.rotate_checkpoints(folder, keep=2)
        say(f"final {step}")
        with ckpt.atomic_checkpoint(folder / ckpt.FINAL_NAME, {"step": step}) as staging:
            write_files(staging, step)
        say(f"done {step}")
        step += 1


if __name__ == "__main__":
    main(Path(sys.argv[1]))
