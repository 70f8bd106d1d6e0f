"""CPU time of one cross-tokenizer KD step (``method.kind: cross_kd``, ``gold`` and ``uld``) against one
same-tokenizer KD step (``method.kind: kd``, forward KL) on the same pair size.

Student: a random Llama (h=128, 2 layers) with the tiny test tokenizer (digits split). Same-tokenizer
teacher: a random Llama (h=192, 3 layers) with the student's tokenizer; cross-tokenizer teacher: the
same size with another tokenizer (digits not split, more merges). Batches of ``--batch`` rows of the
math prompt/completion data, one forward, backward and AdamW step each, through each method's own
``loss``; steps alternate between the variants and each variant's figure is the median CPU time
(``time.process_time``) over its steps after the first two. The alignment is made once before
training (``prepare``), as in a run, and not counted.

Last line: ``cross_kd_gold_step_ratio: X`` = gold step CPU time / KD step CPU time (the line before
it gives uld's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    import tiny_models
    import torch
    from datasets import Dataset

    from distill_gui.core.config import config_from_dict
    from distill_gui.core.data import DataCollator
    from distill_gui.core.methods import StepContext, get

    torch.manual_seed(0)
    s_tok = tiny_models.build_tokenizer(600)
    t_tok = tiny_models.build_tokenizer(700, digits=False)
    student = tiny_models.build_llama(s_tok, hidden=128, layers=2, heads=4, seed=1)
    same_teacher = tiny_models.build_llama(s_tok, hidden=192, layers=3, heads=4, seed=2).eval()
    cross_teacher = tiny_models.build_llama(t_tok, hidden=192, layers=3, heads=4, seed=3).eval()

    rows = []
    for i in range(args.batch * 4):
        a, b = i % 9 + 1, i % 7 + 2
        prompt = s_tok(f"Question: Alice has {a} apples and buys {b} more. How many apples? Answer:", add_special_tokens=False)["input_ids"]
        completion = s_tok(f" She has {a} + {b} = {a + b} apples. #### {a + b}</s>", add_special_tokens=False)["input_ids"]
        rows.append(
            {
                "input_ids": prompt + completion,
                "attention_mask": [1] * (len(prompt) + len(completion)),
                "labels": [-100] * len(prompt) + completion,
            }
        )
    collate = DataCollator(s_tok.pad_token_id)

    def config(kind: str, alignment: str = "gold"):
        section = {"loss": "forward_kl", "alpha": 0.5} if kind == "kd" else {"alignment": alignment, "alpha": 0.5}
        return config_from_dict(
            {"student": {"path": "x"}, "teacher": {"path": "y"}, "data": {"train": "z"}, "method": {"kind": kind, kind: section}}
        )

    variants = {}
    kd_cfg = config("kd")
    variants["kd"] = (
        get("kd"),
        StepContext(config=kd_cfg, teacher=same_teacher, teacher_device=torch.device("cpu"), shared_vocab_size=len(s_tok)),
        Dataset.from_list(rows).add_column("row", list(range(len(rows)))),
    )
    for alignment in ("gold", "uld"):
        cfg = config("cross_kd", alignment)
        method = get("cross_kd")
        setup = SimpleNamespace(
            config=cfg,
            teacher=cross_teacher,
            student=student,
            tokenizer=s_tok,
            teacher_tokenizer=t_tok,
            log=lambda text: print(text, flush=True),
            teacher_cache=None,
        )
        prepared = SimpleNamespace(train=Dataset.from_list(rows), eval=None)
        method.check(setup)
        method.prepare(setup, prepared)
        variants[alignment] = (
            method,
            StepContext(config=cfg, teacher=cross_teacher, teacher_device=torch.device("cpu"), teacher_cache=setup.teacher_cache),
            prepared.train,
        )

    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for step in range(args.steps):
        for name, (method, ctx, data) in variants.items():
            start = (step * args.batch) % len(rows)
            batch = collate([data[i] for i in range(start, start + args.batch)])
            cpu = time.process_time()
            result = method.loss(ctx, student, batch)
            result.total.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times[name].append(time.process_time() - cpu)
    median = {name: statistics.median(values[2:]) for name, values in times.items()}
    for name, value in median.items():
        print(f"{name}: {value * 1000:.1f} ms CPU per step (median of {len(times[name]) - 2})")
    print(f"cross_kd_uld_step_ratio: {median['uld'] / median['kd']:.2f}")
    print(f"cross_kd_gold_step_ratio: {median['gold'] / median['kd']:.2f}")


if __name__ == "__main__":
    main()
