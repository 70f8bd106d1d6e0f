"""Cost of checkpoint checksums: committing a checkpoint with its checksums against the plain commit.

The plain commit (what checkpoints.commit did before checksums) fsyncs every file, writes the marker
and renames; the checksummed one reads each file once more while fsyncing it (xxh3-128) and lists it
in the marker. Both commit the same freshly written files (in the page cache, as after a save);
each way's best of ``--rounds`` counts. Also times verify() of the checkpoint, what a resume pays.
The last line is ``checksum_commit_ratio: X`` (checksummed / plain commit time).

    python benchmarks/bench_checkpoint_checksums.py [--mb 512] [--files 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill_gui.core import checkpoints as ckpt  # noqa: E402


def plain_commit(staging: Path, target: Path) -> None:
    """checkpoints.commit as it was before checksums: fsync each file, marker, rename."""
    for file in staging.rglob("*"):
        if file.is_file():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
    (staging / ckpt.COMPLETE_MARKER).write_text(json.dumps({"written_at": time.time()}), encoding="utf-8")
    staging.rename(target)


def write_files(folder: Path, mb: int, files: int) -> None:
    folder.mkdir()
    block = os.urandom(1 << 20)
    for i in range(files):
        with open(folder / f"part-{i}.safetensors", "wb") as fh:
            for _ in range(mb // files):
                fh.write(block)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=512, help="checkpoint size in MB")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    best = {"plain": float("inf"), "checksummed": float("inf"), "verify": float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for round_ in range(args.rounds):
            for way in ("plain", "checksummed"):  # alternating, same sizes, fresh files each time
                staging, target = root / f"staging-{way}-{round_}", root / f"target-{way}-{round_}"
                write_files(staging, args.mb, args.files)
                started = time.perf_counter()
                (plain_commit if way == "plain" else ckpt.commit)(staging, target)
                best[way] = min(best[way], time.perf_counter() - started)
                if way == "checksummed":
                    started = time.perf_counter()
                    ckpt.verify(target)
                    best["verify"] = min(best["verify"], time.perf_counter() - started)
                shutil.rmtree(target)
    print(f"checkpoint of {args.mb} MB in {args.files} files, best of {args.rounds}")
    print(f"plain commit:       {best['plain']:.3f} s")
    print(f"checksummed commit: {best['checksummed']:.3f} s ({args.mb / best['checksummed']:.0f} MB/s)")
    print(f"verify on resume:   {best['verify']:.3f} s ({args.mb / best['verify']:.0f} MB/s)")
    print(f"checksum_commit_ratio: {best['checksummed'] / best['plain']:.2f}")


if __name__ == "__main__":
    main()
