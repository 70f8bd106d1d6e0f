"""Sampling one GRPO round: distill-gui's KV-cache sampler (method.rlvr.sampler: distill) against TRL's.

Same policy, same prompts, same run, alternating rounds (each way's best counts): the demo teacher in
``distill_gui/assets/demo/teacher`` (or ``--model``), which writes step-by-step answers of varied
length and stops at EOS, samples ``--group`` answers to each of ``--questions`` demo questions at
temperature 1, up to ``--max-new-tokens``. TRL's way is ``GRPOTrainer``'s own generation
(transformers' ``generate`` on the left-padded batch: every row runs until the longest finishes); ours
is :class:`distill_gui.core.methods.rlvr.KVCacheRollout` (finished answers leave the batch). The last
line is ``rlvr_sampling_ratio_vs_trl: X`` (TRL's seconds / ours; above 1 means ours is faster).

    python benchmarks/bench_rlvr_sampling.py [--model DIR] [--questions 8] [--group 8] [--max-new-tokens 96] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    from distill_gui.resources import demo_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(demo_dir() / "teacher"))
    parser.add_argument("--data", default=str(demo_dir() / "test.jsonl"))
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from distill_gui.core.methods.rlvr import KVCacheRollout, make_grpo_trainer_class
    from distill_gui.demo.task import read_jsonl, render_prompt

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    rows = read_jsonl(Path(args.data))[: args.questions]
    questions = [render_prompt(r["question"]) for r in rows]
    prompts = [q for q in questions for _ in range(args.group)]
    with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = GRPOConfig(output_dir=out, num_generations=args.group, per_device_train_batch_size=args.group,
                            max_completion_length=args.max_new_tokens, temperature=1.0, use_cpu=not torch.cuda.is_available(),
                            report_to="none", disable_tqdm=True, log_completions=False)
        trainer = make_grpo_trainer_class()(model=model, reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
                                            args=config, train_dataset=Dataset.from_list([{"prompt": q} for q in questions]),
                                            processing_class=tokenizer)
    ours = KVCacheRollout(tokenizer, args.max_new_tokens, 1.0)
    prompt_ids = tokenizer(text=prompts)["input_ids"]

    def trl_way() -> list[list[int]]:
        return trainer._generate_single_turn(prompt_ids, None, {}, args.group)[0]

    def our_way() -> list[list[int]]:
        return ours(prompts, trainer)["completion_ids"]

    best = {"trl": float("inf"), "distill": float("inf")}
    lengths: dict[str, list[int]] = {}
    for round_ in range(args.rounds):
        for name, fn in (("trl", trl_way), ("distill", our_way)):
            start = time.perf_counter()
            answers = fn()
            seconds = time.perf_counter() - start
            best[name] = min(best[name], seconds)
            lengths[name] = [len(a) for a in answers]
            print(f"round {round_ + 1} {name:8s} {seconds:7.2f} s  answers {len(answers)}, mean length "
                  f"{sum(lengths[name]) / len(answers):.1f}, longest {max(lengths[name])}")
    print(f"best: trl {best['trl']:.2f} s, distill {best['distill']:.2f} s "
          f"({len(prompts)} answers, max {args.max_new_tokens} new tokens, {os.cpu_count()} CPUs, "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'})")
    print(f"rlvr_sampling_ratio_vs_trl: {best['trl'] / best['distill']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
