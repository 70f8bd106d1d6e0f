"""Wall time of ``distill-gui compare`` of 4 models against 4 sequential ``distill-gui eval`` calls.

The demo teacher and three students of the demo's sizes (random-initialised, so they write to the
token limit) are scored on the same rows with the same settings, each way as a user would run it:
four ``distill-gui eval`` processes one after the other, then one ``distill-gui compare`` process
without the score cache (alternating rounds; each way's best time counts). Process start-up, imports, model loads and data loading all count. The script
checks that both ways give the same accuracy and perplexity, then times a second ``compare`` that adds
a fifth model (the first four come from the cache). The last line is ``compare_speedup_vs_eval: X``
(eval total / compare, target X >= 1.5).

    python benchmarks/bench_compare.py [--rows 200] [--max-new-tokens 48] [--batch-size 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _cli(args: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "distill_gui", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"distill-gui {args[0]} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return seconds, done.stdout


def main(argv: list[str] | None = None) -> int:
    from distill_gui.demo.pipeline import STUDENT_SIZES, build_student
    from distill_gui.resources import demo_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; each way's best counts (the machine may be busy)")
    args = parser.parse_args(argv)

    demo = demo_dir()
    data = str(demo / "test.jsonl")
    common = ["--data", data, "--limit", str(args.rows), "--max-new-tokens", str(args.max_new_tokens),
              "--batch-size", str(args.batch_size), "--device", "cpu"]
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        models = [str(demo / "teacher")]
        for seed, size in enumerate(STUDENT_SIZES):
            out = Path(tmp) / size.name
            build_student(size, demo / "teacher", out, seed=seed + 1)
            models.append(str(out))
        extra = Path(tmp) / "student-extra"
        build_student(STUDENT_SIZES[-1], demo / "teacher", extra, seed=99)

        runs = str(Path(tmp) / "runs")
        eval_times, compare_times = [], []
        for round_ in range(args.rounds):
            evals = {}
            eval_total = 0.0
            for model in models:
                seconds, out = _cli(["eval", model, *common, "--json"])
                eval_total += seconds
                evals[model] = json.loads(out.strip().splitlines()[-1])
                print(f"round {round_ + 1}: eval {Path(model).name}: {seconds:.1f} s (accuracy {evals[model]['accuracy']:.3f})", flush=True)
            eval_times.append(eval_total)
            # The first round starts with an empty cache and fills it; later rounds do not use it.
            cache = [] if round_ == 0 else ["--no-cache"]
            compare_s, out = _cli(["compare", *models, *common, "--runs-dir", runs, *cache, "--json"])
            compare_times.append(compare_s)
            result = json.loads(out.strip().splitlines()[-1])
            for row, model in zip(result["models"], models):
                if row["accuracy"] != evals[model]["accuracy"] or row["perplexity"] != evals[model]["perplexity"]:
                    raise SystemExit(f"{row['label']}: compare and eval disagree ({row['accuracy']} vs {evals[model]['accuracy']})")
            print(f"round {round_ + 1}: eval x{len(models)} {eval_total:.1f} s; compare of {len(models)} models (no cache): "
                  f"{compare_s:.1f} s, same accuracy and perplexity as eval", flush=True)

        again_s, out = _cli(["compare", *models, str(extra), *common, "--runs-dir", runs, "--json"])
        cached = sum(m["cached"] for m in json.loads(out.strip().splitlines()[-1])["models"])
        print(f"compare again with a fifth model ({cached} scores from the cache): {again_s:.1f} s", flush=True)

    eval_total, compare_s = min(eval_times), min(compare_times)
    print(f"eval x{len(models)}: {eval_total:.1f} s; compare: {compare_s:.1f} s")
    print(f"compare_speedup_vs_eval: {eval_total / compare_s:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
