"""Cross-tokenizer KD on the demo task: a student with its **own** tokenizer (another vocabulary size, trained
on the demo data) learns from the demo teacher's verified traces alone, and from the traces plus
cross-tokenizer logit KD (``method.kind: cross_kd``, GOLD alignment) — same budget, several initialisation
seeds, at about 1/10 of the teacher's parameters.

    python benchmarks/bench_cross_tokenizer_demo.py [--traces DEMO_FOLDER/traces.jsonl] [--seeds 3] [--steps 2000]

Without ``--traces`` the teacher writes them first (as ``distill-gui demo`` does). Prints a table with the
mean and min-max test accuracy of both methods; last line
``cross_tokenizer_demo: traces A (lo-hi) cross_kd B (lo-hi) gain G points``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

METHODS = ("trace_sft", "trace_sft_cross_kd")


def run_config(method: str, student: Path, teacher: Path, traces: Path, steps: int, seed: int, name: str):
    from distill_gui.core.config import config_from_dict
    from distill_gui.demo.plan import STUDENT_SIZES

    cross = method == "trace_sft_cross_kd"
    return config_from_dict({
        "name": name,
        "teacher": {"path": str(teacher) if cross else "", "device": "cpu", "dtype": "fp32", "attn_implementation": "eager"},
        "student": {"path": str(student), "device": "cpu", "dtype": "fp32", "attn_implementation": "eager"},
        "data": {"train": str(traces), "format": "question_answer", "max_length": 160},
        "method": {"kind": "cross_kd", "cross_kd": {"alignment": "gold", "alpha": 0.5, "temperature": 1.0, "top_k": 16,
                                                   "cache_teacher": True}} if cross else {"kind": "sft"},
        "training": {
            "max_steps": steps, "batch_size": 32, "learning_rate": STUDENT_SIZES[1].learning_rate, "weight_decay": 0.1,
            "warmup_steps": 50, "lr_scheduler": "cosine", "precision": "auto", "seed": seed,
            "logging_steps": max(1, steps // 20), "save_steps": 0, "save_total_limit": 1, "sample_steps": 0,
        },
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=None, help="verified traces (a demo folder's traces.jsonl)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1 (to split a run)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--vocab-size", type=int, default=384, help="the student's own vocabulary (the teacher's is 512)")
    parser.add_argument("--test-rows", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_cross_tokenizer_demo"))
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from distill_gui.core.data import load_examples
    from distill_gui.core.training import train
    from distill_gui.core.vocab import check_compatibility
    from distill_gui.demo.pipeline import STUDENT_SIZES, DemoPlan, _evaluate, _load, build_student
    from distill_gui.demo.tokenizer import build_tokenizer, corpus
    from distill_gui.resources import demo_dir

    started = time.time()
    shipped = demo_dir()
    teacher = shipped / "teacher"
    args.out.mkdir(parents=True, exist_ok=True)
    plan = DemoPlan(test_rows=args.test_rows)
    traces = args.traces
    if traces is None:
        from distill_gui.core.teacher_data import TeacherDataConfig, generate_dataset, load_source

        model, tokenizer, _ = _load(teacher, "teacher")
        gen = TeacherDataConfig(max_new_tokens=plan.max_new_tokens, batch_size=plan.gen_batch_size, limit=plan.trace_prompts, seed=0)
        traces = args.out / "traces.jsonl"
        generate_dataset(model, tokenizer, load_source(shipped / "train.jsonl", tokenizer, gen), traces, gen)
        del model
    tokenizer_dir = args.out / "own-tokenizer"
    build_tokenizer(corpus(seed=1), args.vocab_size).save_pretrained(tokenizer_dir)
    t_tok, s_tok = AutoTokenizer.from_pretrained(teacher), AutoTokenizer.from_pretrained(tokenizer_dir)
    verdict = check_compatibility(t_tok, s_tok, len(t_tok), len(s_tok))
    print(f"teacher vocabulary {len(t_tok)}, the student's own {len(s_tok)}: tokenizers {verdict.verdict}", flush=True)
    test, _ = load_examples(str(shipped / "test.jsonl"))
    test = test[: args.test_rows]
    _, _, teacher_params = _load(teacher, "teacher")
    results: dict[str, list[float]] = {m: [] for m in METHODS}
    params = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        init = args.out / f"seed{seed}" / "init"
        # The demo's student builder takes its tokenizer from the folder it is given: here the student's own.
        params = build_student(STUDENT_SIZES[1], tokenizer_dir, init, seed=100 + seed)
        for method in METHODS:
            config = run_config(method, init, teacher, traces, args.steps, seed, f"own-tok-{method}-seed{seed}")
            outcome = train(config, runs_root=args.out / "runs")
            if outcome.final_path is None:
                raise SystemExit(f"{method} seed {seed}: {outcome.state}: {outcome.reason}")
            model, tokenizer, _ = _load(outcome.final_path, "student")
            accuracy, _ = _evaluate(model, tokenizer, test, plan)
            results[method].append(accuracy)
            print(f"seed {seed} {method}: accuracy {accuracy:.1%}  [{outcome.run.path.name}]", flush=True)
    print(f"\nstudent: {params:,} parameters (1/{teacher_params / params:.1f} of the teacher), own tokenizer of {args.vocab_size}; "
          f"{args.steps} steps x 32 rows; {len(test)} test problems; {args.seeds} seeds; {(time.time() - started) / 60:.1f} min")
    print("| method | accuracy, mean | min-max |\n|---|---:|---:|")
    for method, accs in results.items():
        label = {"trace_sft": "traces (SFT)", "trace_sft_cross_kd": "traces + cross-tokenizer KD (gold)"}[method]
        print(f"| {label} | {statistics.mean(accs):.1%} | {100 * min(accs):.1f}-{100 * max(accs):.1f} |")
    a, b = results["trace_sft"], results["trace_sft_cross_kd"]
    print(f"cross_tokenizer_demo: traces {100 * statistics.mean(a):.1f} ({100 * min(a):.1f}-{100 * max(a):.1f}) "
          f"cross_kd {100 * statistics.mean(b):.1f} ({100 * min(b):.1f}-{100 * max(b):.1f}) "
          f"gain {100 * (statistics.mean(b) - statistics.mean(a)):+.1f} points")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
