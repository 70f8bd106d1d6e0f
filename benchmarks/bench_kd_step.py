"""Speed of one forward-KL KD training step: a plain PyTorch loop vs distill-gui's trainer vs TRL's GKDTrainer.

Same tiny random teacher (Llama h=256, 4 layers) and student (h=128, 2 layers), vocab 8000, batches of
8 x 256 tokens, AdamW, fp32, pure KD (alpha=1, T=1), all in one process and one run. Each variant runs
``--steps`` steps per round, rounds alternate between variants, and the per-step time of a variant
is the median over its steps after the first two (warm-up), best round kept.

Last line: ``kd_step_ratio_vs_reference: X ratio_vs_trl: Y`` where X = reference time / ours and
Y = TRL time / ours (above 1 means distill-gui is faster). Target X >= 0.95. The line before it,
``teacher_cache_step_speedup: Z``, is our step with the live teacher / our step with the offline
teacher cache (``method.cache_teacher``, top-32), whose one pass of the teacher happens before step 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402

VOCAB, SEQ, BATCH = 8000, 256, 8


def build_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for i in range(VOCAB - len(vocab)):
        vocab[f"w{i}"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def build_model(hidden: int, layers: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=SEQ + 8,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def make_files(root: Path, rows: int):
    tok = build_tokenizer()
    teacher, student = root / "teacher", root / "student"
    for path, model in ((teacher, build_model(256, 4, 1)), (student, build_model(128, 2, 2))):
        model.save_pretrained(path)
        tok.save_pretrained(path)
    rng = random.Random(0)
    lines = [json.dumps({"text": " ".join(f"w{rng.randrange(VOCAB - 4)}" for _ in range(SEQ - 1))}) for _ in range(rows)]
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return teacher, student, root / "train.jsonl"


def batches(data_file: Path, tok, steps: int):
    from distill_gui.core.data import DataCollator, load_examples, tokenize_example

    examples, _ = load_examples(str(data_file))
    features = [tokenize_example(e, tok, SEQ) for e in examples]
    collate = DataCollator(tok.pad_token_id)
    return [collate(features[(i * BATCH) % len(features):][:BATCH]) for i in range(steps)]


def median_step(stamps: list[float]) -> float:
    gaps = [b - a for a, b in zip(stamps, stamps[1:])][2:]
    return statistics.median(gaps)


# ---- (a) the plain PyTorch reference loop ----------------------------------------------------------


def run_reference(teacher_dir, student_dir, data, steps) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(student_dir)
    student = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    stamps = [time.perf_counter()]
    for batch in batches(data, tok, steps):
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        s_logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        with torch.no_grad():
            t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        t_logp = torch.log_softmax(t_logits.float(), -1)
        s_logp = torch.log_softmax(s_logits.float(), -1)
        kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1)
        loss = kl[mask].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    return median_step(stamps)


# ---- (b) distill-gui's trainer ----------------------------------------------------------------------


def run_ours(teacher_dir, student_dir, data, steps, runs_root, cached: bool = False) -> float:
    from distill_gui.core.config import config_from_dict
    from distill_gui.core.events import StepLogged
    from distill_gui.core.training import train

    config = config_from_dict(
        {
            "name": "bench",
            "teacher": {"path": str(teacher_dir)},
            "student": {"path": str(student_dir)},
            "data": {"train": str(data), "max_length": SEQ},
            "method": {"kind": "kd", "loss": "forward_kl", "alpha": 1.0, "temperature": 1.0,
                       **({"cache_teacher": True, "top_k": 32} if cached else {})},
            "training": {"max_steps": steps, "batch_size": BATCH, "learning_rate": 1e-4, "save_steps": 0, "precision": "fp32", "lr_scheduler": "constant"},
        }
    )
    stamps = []

    def on_event(event):
        if isinstance(event, StepLogged):
            stamps.append(time.perf_counter())

    train(config, runs_root=runs_root, on_event=on_event)
    return median_step(stamps)


# ---- (c) TRL's GKDTrainer (lambda=0, beta=0: off-policy forward KL) ----------------------------------


def run_trl(teacher_dir, student_dir, data, steps, out_dir) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from distill_gui.core.data import DataCollator, load_examples, tokenize_example

    tok = AutoTokenizer.from_pretrained(student_dir)
    examples, _ = load_examples(str(data))
    features = [tokenize_example(e, tok, SEQ) for e in examples]
    dataset = Dataset.from_list(features)
    stamps = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    args = GKDConfig(
        output_dir=str(out_dir), max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=1e-4,
        lmbda=0.0, beta=0.0, temperature=1.0, save_strategy="no", report_to="none", logging_steps=1,
        disable_tqdm=True, use_cpu=True, bf16=False, max_length=SEQ, dataloader_num_workers=0, lr_scheduler_type="constant",
    )
    trainer = GKDTrainer(
        model=AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32),
        teacher_model=AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32),
        args=args, train_dataset=dataset, processing_class=tok, data_collator=DataCollator(tok.pad_token_id), callbacks=[Stamp()],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return median_step(stamps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher, student, data = make_files(root, rows=BATCH * args.steps)
        times = {"reference": [], "distill-gui": [], "trl": [], "cached": []}
        for r in range(args.rounds):
            times["reference"].append(run_reference(teacher, student, data, args.steps))
            times["distill-gui"].append(run_ours(teacher, student, data, args.steps, root / f"runs{r}"))
            times["trl"].append(run_trl(teacher, student, data, args.steps, root / f"trl{r}"))
            times["cached"].append(run_ours(teacher, student, data, args.steps, root / f"cached{r}", cached=True))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1] * 1000:.0f} ms/step" for k, v in times.items()), file=sys.stderr)
    best = {k: min(v) for k, v in times.items()}
    print(f"per step (best of {args.rounds} rounds, median of {args.steps - 3} steps): " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in best.items()))
    print(f"teacher_cache_step_speedup: {best['distill-gui'] / best['cached']:.3f} (cached top-32 teacher vs the live teacher, per step)")
    print(f"kd_step_ratio_vs_reference: {best['reference'] / best['distill-gui']:.3f} ratio_vs_trl: {best['trl'] / best['distill-gui']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
