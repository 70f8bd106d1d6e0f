"""Evaluate one model on a data file: perplexity, answer accuracy, speed and memory.

Perplexity is over completion tokens only (prompt tokens masked, as in training). Accuracy is
exact match of the final answer (``#### N``, ``\\boxed{N}`` or the last number, see
:mod:`distill_gui.core.verify`) on rows that carry a verifiable reference answer.

A run folder is evaluated with the prompt settings it was trained with (its ``data.format``,
``data.columns``, ``data.chat_template`` and ``data.system_prompt``) unless the caller overrides them.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Collection

from distill_gui.core.config import ModelConfig
from distill_gui.core.errors import UserError


class EvalError(UserError, ValueError):
    """The evaluation cannot run; the message names the model or file."""


@dataclass(frozen=True)
class EvalSettings:
    """How to evaluate."""

    max_new_tokens: int = 128
    batch_size: int = 16
    limit: int | None = None
    data_format: str = "auto"
    device: str = "auto"
    chat_template: str = "auto"
    system_prompt: str | None = None
    """System message for chat-formatted prompts (``data.system_prompt`` of a run)."""
    columns: dict[str, str] | None = None
    """Maps a data format's field to the column holding it (``data.columns`` of a run)."""
    max_length: int = 1024
    speed_rows: int = 32
    """Rows generated to measure speed when the data has no verifiable answers."""


@dataclass
class EvalResult:
    """Scores of one model on one data file."""

    model: str
    data: str
    rows: int
    accuracy: float | None
    correct: int
    answered: int
    perplexity: float | None
    tokens_per_s: float
    peak_memory_mb: float
    elapsed_s: float
    params: int = 0
    predictions: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self, with_predictions: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_predictions:
            data.pop("predictions")
        return data

    def summary(self) -> str:
        acc = f"{self.accuracy:.1%} ({self.correct}/{self.answered})" if self.accuracy is not None else "n/a (no verifiable answers)"
        ppl = f"{self.perplexity:.3f}" if self.perplexity is not None else "n/a"
        return "\n".join(
            [
                f"model:       {self.model} ({self.params:,} parameters)",
                f"data:        {self.data} ({self.rows} rows)",
                f"accuracy:    {acc}",
                f"perplexity:  {ppl}",
                f"speed:       {self.tokens_per_s:.1f} tokens/s",
                f"peak memory: {self.peak_memory_mb:.0f} MB",
            ]
        )


def reference_answer(example) -> str | None:
    """The verifiable answer of a row: after ``####``, in ``\\boxed{}``, or a bare number completion."""
    from distill_gui.core.verify import extract_answer

    if example.reference:
        return example.reference
    text = (example.completion or "").strip()
    if "\\boxed" in text or "####" in text:
        return extract_answer(text)
    try:
        float(text.replace(",", ""))
    except ValueError:
        return None
    return extract_answer(text)


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def perplexity(model, tokenizer, examples, settings: EvalSettings, progress=None, on_batch=None) -> float | None:
    """exp(mean NLL) over the completion tokens of ``examples``.

    ``on_batch(batch, logits)`` (optional) sees each collated batch and its logits, for measures that
    need the same forward pass (``distill-gui compare`` reads the top-1 next tokens from it).
    """
    import torch

    from distill_gui.core.data import DataCollator, tokenize_example

    features = [tokenize_example(e, tokenizer, settings.max_length, settings.chat_template, settings.system_prompt) for e in examples]
    features = [f for f in features if f is not None]
    if not features:
        return None
    collate = DataCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(features), settings.batch_size):
            batch = collate([f for f in features[start : start + settings.batch_size] if f is not None])
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
            labels = batch["labels"][:, 1:].to(device)
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total_nll += float(nll)
            total_tokens += int((labels != -100).sum())
            if on_batch is not None:
                on_batch(batch, logits)
            if progress is not None:
                progress(min(start + settings.batch_size, len(features)), len(features))
    return math.exp(min(total_nll / max(total_tokens, 1), 50.0))


def answer_accuracy(model, tokenizer, examples, settings: EvalSettings, progress=None) -> tuple[float | None, int, int, float, list[dict]]:
    """(accuracy, correct, answered, tokens_per_s, predictions) by greedy generation."""
    from distill_gui.core.data import render_prompt
    from distill_gui.core.generation import GenerationSettings, generate
    from distill_gui.core.verify import answers_match, extract_answer

    scored = [(e, reference_answer(e)) for e in examples]
    with_ref = [(e, r) for e, r in scored if r is not None]
    targets: list[tuple[Any, str | None]] = list(with_ref) or [(e, None) for e, _ in scored[: settings.speed_rows]]
    targets = [(e, r) for e, r in targets if e.prompt or e.messages]
    if not targets:
        return None, 0, 0, 0.0, []
    prompts = [render_prompt(e, tokenizer, settings.chat_template, settings.system_prompt) for e, _ in targets]
    gen = GenerationSettings(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size)
    start = time.perf_counter()
    outputs = generate(model, tokenizer, prompts, gen, progress=progress)
    seconds = time.perf_counter() - start
    texts = [o[0] for o in outputs]
    generated = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)
    predictions = []
    correct = 0
    for (example, ref), text in zip(targets, texts):
        ok = ref is not None and answers_match(text, ref)
        correct += ok
        predictions.append({"source": example.source, "prediction": extract_answer(text), "reference": ref, "correct": ok, "output": text})
    answered = len(with_ref)
    accuracy = correct / answered if answered else None
    return accuracy, correct, answered, generated / max(seconds, 1e-9), predictions


def evaluate_loaded(
    model, tokenizer, examples, settings: EvalSettings, *, model_name: str = "", data_name: str = "", progress: bool = False
) -> EvalResult:
    """Evaluate an already loaded model on parsed examples."""
    import torch

    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bar = _bar(progress)
    start = time.perf_counter()
    ppl = perplexity(model, tokenizer, examples, settings, progress=bar("perplexity"))
    accuracy, correct, answered, tps, predictions = answer_accuracy(model, tokenizer, examples, settings, progress=bar("answers"))
    return EvalResult(
        model=model_name,
        data=data_name,
        rows=len(examples),
        accuracy=accuracy,
        correct=correct,
        answered=answered,
        perplexity=ppl,
        tokens_per_s=tps,
        peak_memory_mb=_peak_memory_mb(device),
        elapsed_s=time.perf_counter() - start,
        params=sum(p.numel() for p in model.parameters()),
        predictions=predictions,
    )


# EvalSettings field <- the run's data.* field it takes when the caller does not set it.
RUN_DATA_SETTINGS = {"data_format": "format", "columns": "columns", "chat_template": "chat_template", "system_prompt": "system_prompt"}


def with_run_data_settings(model_path: str | Path, settings: EvalSettings, given: Collection[str] | None = None) -> EvalSettings:
    """``settings`` with the data settings of the run folder at ``model_path`` (unchanged for another path).

    The run's ``data.format``, ``data.columns``, ``data.chat_template`` and ``data.system_prompt`` fill
    the fields of :data:`RUN_DATA_SETTINGS` except those named in ``given`` (set on the command line).
    With ``given=None`` a field counts as given when it differs from the :class:`EvalSettings` default.
    """
    from distill_gui.core.runs import RunDir

    run = RunDir(Path(model_path))
    if not Path(model_path).is_dir() or not run.is_run():
        return settings
    data = run.load_config().data
    if given is None:
        defaults = {f.name: f.default for f in fields(EvalSettings)}
        given = {name for name in RUN_DATA_SETTINGS if getattr(settings, name) != defaults[name]}
    unknown = set(given) - {f.name for f in fields(EvalSettings)}
    if unknown:
        raise ValueError(f"given: {', '.join(sorted(unknown))} are not EvalSettings fields")
    taken = {name: getattr(data, key) for name, key in RUN_DATA_SETTINGS.items() if name not in given}
    if "columns" in taken:
        taken["columns"] = dict(taken["columns"] or {}) or None
    return replace(settings, **taken)


def evaluate_model(
    model_path: str | Path,
    data_path: str | Path,
    settings: EvalSettings | None = None,
    progress: bool = False,
    *,
    given: Collection[str] | None = None,
) -> EvalResult:
    """Load ``model_path`` (a model folder, GGUF file, hub id or run folder) and evaluate it on ``data_path``.

    A run folder brings its own data settings (see :func:`with_run_data_settings`; ``given`` names the
    settings fields the caller set and that the run must not replace).
    """
    from distill_gui.core.data import load_examples
    from distill_gui.core.models import load_model
    from distill_gui.core.runs import model_path_for

    settings = with_run_data_settings(model_path, settings or EvalSettings(), given)
    examples, report = load_examples(str(data_path), settings.data_format, settings.columns)
    if not examples:
        raise EvalError(f"{data_path}: no usable rows ({report.summary()})")
    if settings.limit:
        examples = examples[: settings.limit]
    path = model_path_for(model_path) if Path(model_path).exists() else model_path
    loaded = load_model(ModelConfig(path=str(path), device=settings.device), "student")
    return evaluate_loaded(
        loaded.model, loaded.tokenizer, examples, settings, model_name=str(model_path), data_name=str(data_path), progress=progress
    )


def _bar(enabled: bool):
    """A factory of ``progress(done, total)`` callables drawing a tqdm bar per phase (or None)."""

    def make(label: str):
        if not enabled:
            return None
        from tqdm import tqdm

        state: dict[str, Any] = {}

        def update(done: int, total: int) -> None:
            if "bar" not in state:
                state["bar"] = tqdm(total=total, desc=label, unit="row", file=sys.stderr, dynamic_ncols=True)
            state["bar"].n = done
            state["bar"].refresh()
            if done >= total:
                state["bar"].close()

        return update

    return make
