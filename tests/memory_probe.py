"""Measure the peak memory of a short real training run, next to distill-gui's estimate.

    python tests/memory_probe.py OUT_DIR KIND [cache] [bf16]

Builds a teacher/student pair with a 32,000-word vocabulary (large enough that logits dominate, as
in real models), trains 2 steps in this process, and prints one JSON line: the measured peak RSS
growth from just before training, and the estimate of :func:`distill_gui.core.memory.estimate_for_config`.
"""

from __future__ import annotations

import gc
import json
import os
import random
import resource
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

VOCAB = 32_000
SEQ = 256
BATCH = 8


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(out: Path) -> tuple[Path, Path, Path]:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(VOCAB - 4)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    paths = []
    for name, hidden, layers in (("teacher", 256, 2), ("student", 128, 2)):
        config = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=SEQ * 2,
                             pad_token_id=0, bos_token_id=2, eos_token_id=3, tie_word_embeddings=False)
        folder = out / name
        LlamaForCausalLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        paths.append(folder)
    rng = random.Random(0)
    data = out / "train.jsonl"
    with data.open("w") as fh:
        for _ in range(BATCH * 3):
            prompt = " ".join(f"w{rng.randrange(4, VOCAB - 4)}" for _ in range(16))
            completion = " ".join(f"w{rng.randrange(4, VOCAB - 4)}" for _ in range(SEQ))  # cut to max_length
            fh.write(json.dumps({"prompt": prompt, "completion": " " + completion}) + "\n")
    return paths[0], paths[1], data


def main() -> None:
    out, kind = Path(sys.argv[1]), sys.argv[2]
    cache = "cache" in sys.argv[3:]
    precision = "bf16" if "bf16" in sys.argv[3:] else "fp32"
    out.mkdir(parents=True, exist_ok=True)
    teacher, student, data = build(out)
    import datasets  # noqa: F401  (imported before the baseline: not the run's memory)
    import transformers.trainer  # noqa: F401

    from distill_gui.core.config import config_from_dict
    from distill_gui.core.memory import estimate_for_config
    from distill_gui.core.model_info import describe_model
    from distill_gui.core.training import train

    config = config_from_dict({
        "teacher": {"path": str(teacher), "device": "cpu", "dtype": "fp32"},
        "student": {"path": str(student), "device": "cpu", "dtype": "fp32"},
        "data": {"train": str(data), "max_length": SEQ},
        "method": {"kind": kind, "kd": {"chunk_size": 512, "top_k": 32 if cache else 0, "cache_teacher": cache}},
        "training": {"max_steps": 2, "batch_size": BATCH, "save_steps": 0, "precision": precision, "logging_steps": 1},
    })
    estimate = estimate_for_config(config, describe_model(config.teacher, "teacher"), describe_model(config.student, "student"))
    gc.collect()
    base = _rss()
    outcome = train(config, runs_root=out / "runs")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"kind": kind, "cache": cache, "precision": precision, "state": outcome.state,
                      "measured": peak - base, "estimate": estimate.total, "parts": dict(estimate.parts())}))


if __name__ == "__main__":
    main()
