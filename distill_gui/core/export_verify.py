"""Proof that an exported GGUF file is the model: loaded back, it answers the probe prompts as the merged model does.

The GGUF file is loaded back with transformers (``gguf_file=``, its own tokenizer from the file's
metadata) and both models answer each prompt greedily. A prompt passes when the file's tokenizer splits
it into the same tokens and the two answers are the same tokens — or, where they part, the merged
model's two candidates were a near tie: the logit of its own choice exceeds the file's choice by at most
:data:`TIE_MARGINS` (f16 rounding or q8_0 quantization may flip a tie, and from there the texts part
for good). q4_k_m is checked for loading and tokenization; its answers are reported, not required equal.
The result is written next to the file as ``<file>.verify.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TIE_MARGINS: dict[str, float | None] = {"f16": 0.05, "q8_0": 0.25, "q4_k_m": None}
"""Largest logit gap (the merged model's choice over the file's) at which two greedy answers may part."""

DEFAULT_PROMPTS = ("The capital of France is", "Question: What is 12 plus 7? Answer:", "Once upon a time")


@dataclass
class PromptCheck:
    """One prompt answered by the merged model and by the GGUF file."""

    prompt: str
    merged: str
    gguf: str
    same_tokenization: bool
    same_answer: bool
    parted_at: int | None = None
    """The answer token at which the two answers part, when they do."""
    tie_margin: float | None = None
    """The merged model's logit gap between its token and the file's token where they part."""
    max_logit_diff: float | None = None
    """Largest |logit difference| over the prompt and the merged model's answer (same tokens fed to both)."""
    passed: bool = False


@dataclass
class Verification:
    """Whether a GGUF file answers as the merged model does, per prompt."""

    file: str
    quant: str
    rule: str
    checks: list[PromptCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def summary(self) -> str:
        same = sum(c.same_answer for c in self.checks)
        verdict = "verified" if self.passed else "NOT verified"
        return f"GGUF {self.quant} {verdict}: {same}/{len(self.checks)} greedy answers identical to the merged model's ({self.rule})"

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "quant": self.quant,
            "rule": self.rule,
            "passed": self.passed,
            "summary": self.summary(),
            "checks": [asdict(c) for c in self.checks],
        }

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path


def rule_for(quant: str) -> str:
    margin = TIE_MARGINS.get(quant)
    if margin is None:
        return "q4_k_m is lossy: loading and tokenization must match, answers are reported"
    return f"same prompt tokens; same greedy answer tokens, or a first difference at a near tie (logit gap <= {margin})"


def _encode(tokenizer: Any, prompt: str) -> list[int]:
    bos = tokenizer.bos_token
    add = not (bos and prompt.startswith(bos))
    return list(tokenizer(prompt, add_special_tokens=add)["input_ids"])


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if value is not None:
            ids.extend(value if isinstance(value, (list, tuple)) else [value])
    return sorted(set(ids))


def _greedy(model: Any, tokenizer: Any, ids: list[int], max_new_tokens: int) -> list[int]:
    from distill_gui.core.generation import sample_token_ids

    stop = _stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop[0] if stop else 0)
    return sample_token_ids(model, [ids], max_new_tokens=max_new_tokens, temperature=0.0, stop_ids=stop, pad_id=pad)[0]


def _logits(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def check_prompt(
    merged: Any, tokenizer: Any, gguf_model: Any, gguf_tokenizer: Any, prompt: str, quant: str, max_new_tokens: int
) -> PromptCheck:
    ids = _encode(tokenizer, prompt)
    gguf_ids = _encode(gguf_tokenizer, prompt)
    reference = _greedy(merged, tokenizer, ids, max_new_tokens)
    answer = _greedy(gguf_model, gguf_tokenizer, gguf_ids, max_new_tokens)
    check = PromptCheck(
        prompt=prompt,
        merged=tokenizer.decode(reference, skip_special_tokens=True),
        gguf=gguf_tokenizer.decode(answer, skip_special_tokens=True),
        same_tokenization=ids == gguf_ids,
        same_answer=reference == answer,
    )
    if check.same_tokenization:
        full = ids + reference
        check.max_logit_diff = round(float((_logits(merged, full) - _logits(gguf_model, full)).abs().max()), 6)
    if not check.same_answer:
        k = next((i for i, (a, b) in enumerate(zip(reference, answer)) if a != b), min(len(reference), len(answer)))
        check.parted_at = k
        if k < len(reference) and k < len(answer):
            last = _logits(merged, ids + reference[:k])[-1]
            check.tie_margin = round(float(last[reference[k]] - last[answer[k]]), 6)
    margin = TIE_MARGINS.get(quant)
    if margin is None:
        check.passed = check.same_tokenization
    else:
        near_tie = check.tie_margin is not None and check.tie_margin <= margin
        check.passed = check.same_tokenization and (check.same_answer or near_tie)
    return check


def verify_gguf(merged: Any, tokenizer: Any, gguf_file: Path, prompts: list[str], quant: str, max_new_tokens: int = 32) -> Verification:
    """Load ``gguf_file`` back and compare its greedy answers with ``merged``'s on ``prompts``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    gguf_model.eval()
    gguf_tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    result = Verification(file=name, quant=quant, rule=rule_for(quant))
    for prompt in prompts or list(DEFAULT_PROMPTS):
        result.checks.append(check_prompt(merged, tokenizer, gguf_model, gguf_tokenizer, prompt, quant, max_new_tokens))
    return result
