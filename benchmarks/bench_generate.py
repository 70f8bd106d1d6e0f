"""Tokens/s of batched generation (batch 16, KV cache, left padding) against one prompt at a time.

Same model, same prompts, same run: the demo teacher in ``distill_gui/assets/demo/teacher`` (or, with
``--model``, any local model folder) completes the demo's test questions greedily, first one prompt at
a time, then 16 at a time. The last line is ``generate_batch_speedup: X`` (target: X >= 4).

    python benchmarks/bench_generate.py [--model DIR] [--prompts 32] [--max-new-tokens 48] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _generated_tokens(tokenizer, texts: list[str]) -> int:
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)


def measure(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int) -> tuple[float, int, float]:
    """(tokens/s, generated tokens, seconds) for greedy generation of ``prompts`` in batches of ``batch_size``."""
    from distill_gui.core.generation import GenerationSettings, generate

    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)
    start = time.perf_counter()
    outputs = generate(model, tokenizer, prompts, settings)
    seconds = time.perf_counter() - start
    tokens = _generated_tokens(tokenizer, [o[0] for o in outputs])
    return tokens / seconds, tokens, seconds


def main(argv: list[str] | None = None) -> int:
    from distill_gui.resources import demo_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(demo_dir() / "teacher"))
    parser.add_argument("--data", default=str(demo_dir() / "test.jsonl"))
    parser.add_argument("--prompts", type=int, default=32, help="prompts per mode (a multiple of 16)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; each mode's best counts")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill_gui.demo.task import make_splits, read_jsonl, render_prompt

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    if Path(args.data).is_file():
        questions = [row["question"] for row in read_jsonl(args.data)]
    else:
        questions = [p.question for p in make_splits(0)[1]]
    prompts = [render_prompt(q) for q in questions[: args.prompts]]
    print(f"model: {args.model} ({sum(p.numel() for p in model.parameters()):,} parameters), {torch.get_num_threads()} threads")
    print(f"{len(prompts)} prompts, greedy, up to {args.max_new_tokens} new tokens")

    measure(model, tokenizer, prompts[:2], 2, 4)  # warm-up
    # Alternate the two modes for a few rounds and keep each mode's best: on a shared machine the
    # best of several short runs is the least disturbed measurement of both.
    best_one = best_batch = 0.0
    for round_ in range(1, args.rounds + 1):
        one_rate, one_tokens, one_s = measure(model, tokenizer, prompts, 1, args.max_new_tokens)
        batch_rate, batch_tokens, batch_s = measure(model, tokenizer, prompts, args.batch_size, args.max_new_tokens)
        print(f"round {round_}: one at a time {one_tokens} tokens in {one_s:.2f}s = {one_rate:.1f} tokens/s; "
              f"batch {args.batch_size} {batch_tokens} tokens in {batch_s:.2f}s = {batch_rate:.1f} tokens/s")
        best_one, best_batch = max(best_one, one_rate), max(best_batch, batch_rate)
    print(f"best: one at a time {best_one:.1f} tokens/s, batch {args.batch_size} {best_batch:.1f} tokens/s")
    print(f"generate_batch_speedup: {best_batch / best_one:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
