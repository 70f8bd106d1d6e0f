"""Speed of one on-policy KD step (the student samples, the teacher scores, the loss and its update):
distill-gui's ``method.kd.on_policy: 1`` vs TRL's ``GKDTrainer`` with ``lmbda=1``.

Same tiny random teacher (Llama h=256, 4 layers) and student (h=128, 2 layers), vocab 8000, batches of 8
prompts of ``--prompt`` tokens, ``--new`` sampled tokens per row at temperature 1, generalized JSD with
beta 0.5 at temperature 1 (GKD's defaults), AdamW, fp32, all in one process. Both trainers run
``--steps`` steps per round through their own training loops; rounds alternate, the per-step time is the
median over a round's steps after the first two (warm-up), best round kept. A step is generation +
teacher scoring + loss + backward + optimizer step, on both sides.

With random weights the student almost never writes EOS (1 in 8000 per token), so every row samples all
``--new`` tokens on both sides: the measurement does not profit from our finished rows leaving the batch.

Last line: ``onpolicy_step_ratio_vs_trl: X`` with X = TRL's time per step / ours (above 1: distill-gui is
faster). Target X >= 1.2.
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

VOCAB, BATCH = 8000, 8


def build_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for i in range(VOCAB - len(vocab)):
        vocab[f"w{i}"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def build_model(hidden: int, layers: int, seed: int, positions: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=positions,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def make_files(root: Path, rows: int, prompt: int, new: int):
    tok = build_tokenizer()
    teacher, student = root / "teacher", root / "student"
    positions = prompt + new + 16
    for path, model in ((teacher, build_model(256, 4, 1, positions)), (student, build_model(128, 2, 2, positions))):
        model.save_pretrained(path)
        tok.save_pretrained(path)
    rng = random.Random(0)

    def words(n):
        return " ".join(f"w{rng.randrange(VOCAB - 4)}" for _ in range(n))

    lines = [json.dumps({"prompt": words(prompt), "completion": " " + words(new)}) for _ in range(rows)]
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return teacher, student, root / "train.jsonl"


def median_step(stamps: list[float]) -> float:
    gaps = [b - a for a, b in zip(stamps, stamps[1:])][2:]
    return statistics.median(gaps)


# ---- distill-gui: method.kd.on_policy = 1 -----------------------------------------------------------


def run_ours(teacher_dir, student_dir, data, steps, new, runs_root) -> float:
    from distill_gui.core.config import config_from_dict
    from distill_gui.core.events import StepLogged
    from distill_gui.core.training import train

    config = config_from_dict({
        "name": "bench",
        "teacher": {"path": str(teacher_dir)},
        "student": {"path": str(student_dir)},
        "data": {"train": str(data), "max_length": 1024},
        "method": {"kind": "kd", "kd": {"loss": "jsd", "beta": 0.5, "temperature": 1.0, "on_policy": 1.0,
                                        "on_policy_temperature": 1.0, "max_new_tokens": new}},
        "training": {"max_steps": steps, "batch_size": BATCH, "learning_rate": 1e-4, "save_steps": 0, "precision": "fp32",
                     "lr_scheduler": "constant", "max_grad_norm": 1.0, "logging_steps": 1},
    })
    stamps = []

    def on_event(event):
        if isinstance(event, StepLogged):
            stamps.append(time.perf_counter())

    outcome = train(config, runs_root=runs_root, on_event=on_event)
    assert outcome.state == "finished", outcome
    return median_step(stamps)


# ---- TRL: GKDTrainer, lmbda = 1 ---------------------------------------------------------------------


def run_trl(teacher_dir, student_dir, data, steps, new, out_dir) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from distill_gui.core.data import DataCollator, load_examples, tokenize_example
    from distill_gui.core.methods.kd_on_policy import prompt_tokens

    tok = AutoTokenizer.from_pretrained(student_dir)
    examples, _ = load_examples(str(data))
    dataset = Dataset.from_list([tokenize_example(e, tok, 1024) for e in examples])
    collate = DataCollator(tok.pad_token_id)

    def collate_with_prompts(features):
        """The same batch plus the left-padded prompts GKDTrainer generates from."""
        batch = collate(features)
        prompts = prompt_tokens(batch["input_ids"], batch["attention_mask"], batch["labels"])
        width = max(len(p) for p in prompts)
        batch["prompts"] = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
        batch["prompt_attention_mask"] = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        return batch

    stamps = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    args = GKDConfig(
        output_dir=str(out_dir), max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=1e-4,
        lmbda=1.0, beta=0.5, temperature=1.0, max_new_tokens=new, save_strategy="no", report_to="none", logging_steps=1,
        disable_tqdm=True, use_cpu=True, bf16=False, max_length=1024, dataloader_num_workers=0, lr_scheduler_type="constant",
        max_grad_norm=1.0, seed=3,
    )
    trainer = GKDTrainer(
        model=AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32),
        teacher_model=AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32),
        args=args, train_dataset=dataset, processing_class=tok, data_collator=collate_with_prompts, callbacks=[Stamp()],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return median_step(stamps)


def generation_only(student_dir, prompt: int, new: int, repeats: int = 5) -> tuple[float, float]:
    """Median seconds to sample ``new`` tokens for 8 prompts: our sampler vs transformers' ``generate`` with
    GKDTrainer's settings (do_sample, top_k 0, top_p 1, temperature 1), alternating."""
    from transformers import AutoModelForCausalLM

    from distill_gui.core.generation import sample_token_ids

    model = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32).eval()
    rng = random.Random(1)
    prompts = [[rng.randrange(4, VOCAB) for _ in range(prompt)] for _ in range(BATCH)]
    ids = torch.tensor(prompts)
    ours, theirs = [], []
    for i in range(repeats):
        start = time.perf_counter()
        sample_token_ids(model, prompts, max_new_tokens=new, temperature=1.0, stop_ids=[2], pad_id=0,
                         generator=torch.Generator().manual_seed(i))
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=True, top_k=0, top_p=1.0,
                           temperature=1.0, pad_token_id=0, eos_token_id=2)
        theirs.append(time.perf_counter() - start)
    return statistics.median(ours), statistics.median(theirs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens per row")
    parser.add_argument("--new", type=int, default=64, help="tokens the student samples per row")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher, student, data = make_files(root, rows=BATCH * args.steps, prompt=args.prompt, new=args.new)
        times: dict[str, list[float]] = {"distill-gui": [], "trl": []}
        for r in range(args.rounds):
            times["distill-gui"].append(run_ours(teacher, student, data, args.steps, args.new, root / f"runs{r}"))
            times["trl"].append(run_trl(teacher, student, data, args.steps, args.new, root / f"trl{r}"))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1] * 1000:.0f} ms/step" for k, v in times.items()), file=sys.stderr)
        sampler, generate = generation_only(student, args.prompt, args.new)
    best = {k: min(v) for k, v in times.items()}
    print(f"generation alone ({BATCH} x {args.new} tokens, median of 5): distill-gui sampler {sampler * 1000:.0f} ms, "
          f"transformers generate {generate * 1000:.0f} ms")
    print(f"device: {torch.get_num_threads()} CPU threads; batch {BATCH}, prompt {args.prompt}, new {args.new} tokens")
    print(f"per step (best of {args.rounds} rounds, median of {args.steps - 3} steps): "
          + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in best.items()))
    print(f"onpolicy_step_ratio_vs_trl: {best['trl'] / best['distill-gui']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
