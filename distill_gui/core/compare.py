"""Compare local models on the same rows, with the same prompt format and the same decoding.

``compare`` reads top to bottom: resolve the models (folders, GGUF files, hub ids, run folders), pick
the reference, load the data once, then for each model either take its cached score or load it and
score it with the code of ``distill-gui eval`` (:func:`distill_gui.core.evaluation.perplexity` and
:func:`~distill_gui.core.evaluation.answer_accuracy`, so accuracy and perplexity equal ``eval`` on
the same rows), free it, and write the results folder again. Measures against the reference (recovery
of accuracy, perplexity ratio, answer agreement, top-1 next-token agreement) are computed from the
stored scores, so a cached score serves any reference. A served model (``http://host:port/v1#MODEL``, an
OpenAI-compatible server) is scored by its answers alone (:mod:`distill_gui.core.compare_served`).

Progress goes to ``on_event`` as plain frozen dataclasses (``Compare*`` / ``Model*``); ``stop`` is a
``threading.Event`` polled between batches. A model that cannot be scored gets a one-line ``error``
and the others go on; what was scored is cached at once, so a rerun continues an interrupted one.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from distill_gui.core.compare_cache import ScoreCache, data_fingerprint
from distill_gui.core.compare_events import (
    CompareEvent,
    CompareFinished,
    CompareStarted,
    ModelFailed,
    ModelProgress,
    ModelScored,
    ModelStarted,
)
from distill_gui.core.compare_memory import MemoryMeter, check_memory, disk_facts
from distill_gui.core.errors import is_user_error
from distill_gui.core.evaluation import EvalError, EvalSettings
from distill_gui.core.model_refs import ModelRef, ModelRefError, fingerprint, resolve, short_name, unique_labels
from distill_gui.core.served_teacher_config import is_served_spec, served_spec_label


class CompareError(EvalError):
    """The comparison cannot run at all (no data, no models, bad settings); the message says why."""


class CompareStopped(Exception):
    """Raised inside a model's scoring when a stop was requested."""


# ---- Settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompareSettings:
    """How every model is scored (the same for all of them)."""

    max_new_tokens: int = 128
    batch_size: int = 16
    limit: int | None = None
    data_format: str = "auto"
    device: str = "auto"
    chat_template: str = "auto"
    max_length: int = 1024
    samples: int = 1
    """Sampled answers per question for pass@k and majority vote (1: greedy accuracy only)."""
    temperature: float = 0.0
    """Sampling temperature of the ``samples`` answers (must be > 0 when samples > 1)."""
    top_p: float = 1.0
    seed: int = 0
    api_key_env: str = ""
    """The environment variable holding the API key of the served models (``URL#MODEL``); empty: no key."""

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise CompareError(f"--samples {self.samples}: give 1 or more")
        if self.samples > 1 and self.temperature <= 0:
            raise CompareError(f"--samples {self.samples} needs --temperature > 0 (greedy decoding gives the same answer every time)")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise CompareError("--batch-size and --max-new-tokens must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise CompareError(f"--limit {self.limit}: give 1 or more rows")

    def eval_settings(self) -> EvalSettings:
        """The settings ``distill-gui eval`` would use for the same scores."""
        return EvalSettings(
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            limit=self.limit,
            data_format=self.data_format,
            device=self.device,
            chat_template=self.chat_template,
            max_length=self.max_length,
        )

    def cache_dict(self) -> dict[str, Any]:
        """What decides a score besides the model and the data (the row limit is part of the data's key)."""
        data = asdict(self)
        data.pop("limit")
        data.pop("api_key_env")  # which key reaches a server does not change a local model's score
        if self.samples == 1:
            for name in ("temperature", "top_p", "seed"):
                data.pop(name)
        return data


# ---- Scores --------------------------------------------------------------------------------------


@dataclass
class ModelScore:
    """What was measured for one model (stored in the cache as it is)."""

    label: str
    spec: str
    path: str
    adapter: str | None = None
    run: str | None = None
    checkpoint: str = ""
    fingerprint: str = ""
    params: int = 0
    disk_bytes: int = 0
    rows: int = 0
    accuracy: float | None = None
    correct: int = 0
    answered: int = 0
    perplexity: float | None = None
    tokens_per_s: float = 0.0
    peak_memory_mb: float = 0.0
    """Memory the model took while scored: the peak GPU allocation, or on a CPU its weights plus the
    growth of the process's peak RSS during scoring (see :class:`~distill_gui.core.compare_memory.MemoryMeter`)."""
    mean_answer_tokens: float | None = None
    pass_at_k: float | None = None
    majority_accuracy: float | None = None
    samples: int = 1
    load_s: float = 0.0
    elapsed_s: float = 0.0
    error: str | None = None
    cached: bool = False
    predictions: list[dict] = field(default_factory=list, repr=False)
    top1: list[dict] = field(default_factory=list, repr=False)
    """Per perplexity row: ``key`` (digest of its token ids) and ``ids`` (the argmax next token at each answer position)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("cached")
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], **override: Any) -> "ModelScore":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in record.items() if k in known}, **override})


def _normalized(answer: str | None) -> str | None:
    from distill_gui.core.verify import normalize_number

    return None if answer is None else normalize_number(answer)


def relative_to(score: ModelScore, reference: ModelScore) -> dict[str, float | None]:
    """Recovery % of accuracy, perplexity ratio, answer agreement and top-1 agreement against ``reference``."""
    out: dict[str, float | None] = {"recovery_pct": None, "perplexity_ratio": None, "answer_agreement": None, "top1_agreement": None}
    if not (score.ok and reference.ok):
        return out
    if score.accuracy is not None and reference.accuracy:
        out["recovery_pct"] = 100.0 * score.accuracy / reference.accuracy
    if score.perplexity is not None and reference.perplexity:
        out["perplexity_ratio"] = score.perplexity / reference.perplexity
    theirs = {p["source"]: _normalized(p.get("prediction")) for p in reference.predictions}
    pairs = [(_normalized(p.get("prediction")), theirs[p["source"]]) for p in score.predictions if p["source"] in theirs]
    if pairs:
        out["answer_agreement"] = sum(a is not None and a == b for a, b in pairs) / len(pairs)
    ref_rows: dict[str, list[int]] = {}
    for row in reference.top1:
        ref_rows.setdefault(row["key"], row["ids"])
    same = total = 0
    for row in score.top1:
        other = ref_rows.get(row["key"])
        if other is None or len(other) != len(row["ids"]):
            continue
        same += sum(a == b for a, b in zip(row["ids"], other))
        total += len(other)
    if total:
        out["top1_agreement"] = same / total
    return out


# ---- The comparison ------------------------------------------------------------------------------


@dataclass
class Comparison:
    """A comparison's scores, reference first, and where its files are."""

    data: str
    rows: int
    settings: CompareSettings
    reference: str
    scores: list[ModelScore]
    folder: Path | None = None
    state: str = "running"
    questions: dict[str, dict] = field(default_factory=dict, repr=False)
    """Per row source: its question text and reference answer (for the per-question view)."""

    def reference_score(self) -> ModelScore | None:
        return next((s for s in self.scores if s.label == self.reference), None)

    def table(self) -> list[dict[str, Any]]:
        """One row per model, with the measures against the reference."""
        ref = self.reference_score()
        return [table_row(s, ref) for s in self.scores]


TABLE_FIELDS = (
    "label",
    "params",
    "disk_bytes",
    "accuracy",
    "correct",
    "answered",
    "pass_at_k",
    "majority_accuracy",
    "perplexity",
    "mean_answer_tokens",
    "tokens_per_s",
    "peak_memory_mb",
    "recovery_pct",
    "perplexity_ratio",
    "answer_agreement",
    "top1_agreement",
    "cached",
    "error",
    "path",
    "run",
    "checkpoint",
)


def table_row(score: ModelScore, reference: ModelScore | None) -> dict[str, Any]:
    row = {name: getattr(score, name) for name in TABLE_FIELDS if hasattr(score, name)}
    rel = relative_to(score, reference) if reference is not None else {}
    for name in ("recovery_pct", "perplexity_ratio", "answer_agreement", "top1_agreement"):
        row[name] = rel.get(name)
    row["reference"] = reference is not None and score.label == reference.label
    return row


def _order(refs: list[ModelRef], reference: str | None) -> tuple[list[ModelRef], ModelRef]:
    """The refs with the reference first (added when it is not among them).

    Without ``reference``: when the first model is a run folder, the teacher of the first run that
    had one (runs of SFT methods may have none); otherwise the first model.
    """
    if reference:
        wanted = resolve(reference)
        for ref in refs:
            if ref.spec == reference or (ref.path == wanted.path and ref.adapter == wanted.adapter):
                return [ref] + [r for r in refs if r is not ref], ref
        return [wanted] + refs, wanted
    first = refs[0]
    teacher_path = next((r.teacher for r in refs if r.run and r.teacher), None) if first.run else None
    if teacher_path:
        for ref in refs:
            if ref.kind == "model" and Path(ref.path).expanduser().resolve() == Path(teacher_path).expanduser().resolve():
                return [ref] + [r for r in refs if r is not ref], ref
        teacher = dataclasses.replace(resolve(teacher_path), label="teacher")
        return [teacher] + refs, teacher
    return refs, first


def load_ref(ref: ModelRef, settings: CompareSettings):
    """Load a resolved model (base + LoRA adapter merged, when it has one) frozen in eval mode."""
    from distill_gui.core.config import ModelConfig
    from distill_gui.core.models import ModelError, load_model

    loaded = load_model(ModelConfig(path=ref.path, device=settings.device, tokenizer=ref.tokenizer), "student")
    if ref.adapter:
        try:
            from peft import PeftModel

            model = PeftModel.from_pretrained(loaded.model, ref.adapter).merge_and_unload()
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelError(f"{ref.adapter}: could not apply the LoRA adapter to {ref.path} ({str(exc).splitlines()[0]})") from None
        model.requires_grad_(False)
        model.eval()
        loaded.model = model
    return loaded


def score_loaded(
    model, tokenizer, examples, settings: CompareSettings, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Every measure of one loaded model on ``examples`` (the fields of :class:`ModelScore` it fills)."""
    from distill_gui.core.evaluation import answer_accuracy, perplexity

    eval_settings = settings.eval_settings()
    top1: list[dict] = []

    def on_batch(batch, logits) -> None:
        labels = batch["labels"][:, 1:]
        best = logits[:, :-1].argmax(-1).cpu()
        for row in range(labels.shape[0]):
            mask = labels[row] != -100
            ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
            key = hashlib.sha1(json.dumps(ids).encode("ascii")).hexdigest()[:16]
            top1.append({"key": key, "ids": best[row][mask].tolist()})

    phase = (lambda name: lambda done, total: progress(name, done, total)) if progress else (lambda name: None)
    ppl = perplexity(model, tokenizer, examples, eval_settings, progress=phase("perplexity"), on_batch=on_batch)
    accuracy, correct, answered, tps, predictions = answer_accuracy(model, tokenizer, examples, eval_settings, progress=phase("answers"))
    lengths = [len(tokenizer(p["output"], add_special_tokens=False)["input_ids"]) for p in predictions]
    result: dict[str, Any] = {
        "rows": len(examples),
        "accuracy": accuracy,
        "correct": correct,
        "answered": answered,
        "perplexity": ppl,
        "tokens_per_s": tps,
        "mean_answer_tokens": sum(lengths) / len(lengths) if lengths else None,
        "predictions": predictions,
        "top1": top1,
        "samples": settings.samples,
    }
    if settings.samples > 1 and answered:
        result.update(_sampled(model, tokenizer, examples, settings, predictions, phase("samples")))
    return result


def _sampled(model, tokenizer, examples, settings: CompareSettings, predictions: list[dict], progress) -> dict[str, Any]:
    """pass@k (any of k sampled answers right) and majority vote over the k answers."""
    from distill_gui.core.data import render_prompt
    from distill_gui.core.evaluation import reference_answer
    from distill_gui.core.generation import GenerationSettings, generate

    targets = [(e, reference_answer(e)) for e in examples]
    targets = [(e, r) for e, r in targets if r is not None and (e.prompt or e.messages)]
    prompts = [render_prompt(e, tokenizer, settings.chat_template) for e, _ in targets]
    gen = GenerationSettings(
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        num_samples=settings.samples,
        batch_size=settings.batch_size,
    )
    outputs = generate(model, tokenizer, prompts, gen, progress=progress, seed=settings.seed)
    return vote_samples(targets, outputs, predictions)


def vote_samples(targets: list, outputs: list[list[str]], predictions: list[dict]) -> dict[str, Any]:
    """pass@k and majority accuracy of the sampled ``outputs`` of ``targets`` ((example, reference) pairs); each
    question's entry in ``predictions`` gets its sampled answers and verdicts."""
    from distill_gui.core.verify import answers_match, extract_answer

    by_source = {p["source"]: p for p in predictions}
    passed = voted = 0
    for (example, ref), texts in zip(targets, outputs):
        answers = [extract_answer(t) for t in texts]
        rights = [answers_match(t, ref) for t in texts]
        counts = Counter(_normalized(a) for a in answers if a is not None)
        majority = counts.most_common(1)[0][0] if counts else None
        majority_ok = majority is not None and answers_match(majority, ref)
        passed += any(rights)
        voted += majority_ok
        entry = by_source.get(example.source)
        if entry is not None:
            entry.update(sample_answers=answers, pass_at_k=any(rights), majority=majority, majority_correct=majority_ok)
    n = max(len(targets), 1)
    return {"pass_at_k": passed / n, "majority_accuracy": voted / n}


def _warm_up(model, tokenizer, examples, settings: CompareSettings) -> None:
    """One short generation before the timed one: the first call of a process pays one-time costs
    (kernel selection, lazy imports) that would otherwise count against the first model's tokens/s."""
    from distill_gui.core.data import render_prompt
    from distill_gui.core.generation import GenerationSettings, generate

    example = next((e for e in examples if e.prompt or e.messages), None)
    if example is not None:
        prompt = render_prompt(example, tokenizer, settings.chat_template)
        generate(model, tokenizer, [prompt], GenerationSettings(max_new_tokens=4, batch_size=1))


def _score(ref: ModelRef, index: int, examples, settings: CompareSettings, emit, stop: threading.Event) -> ModelScore:
    import torch

    base = ModelScore(
        label=ref.label, spec=ref.spec, path=ref.path, adapter=ref.adapter, run=ref.run, checkpoint=ref.checkpoint, samples=settings.samples
    )
    if is_served_spec(ref.path):
        return _score_served(base, index, examples, settings, emit, stop)
    disk, params = disk_facts(ref)
    base.disk_bytes, base.params = disk, params
    problem = check_memory(ref, settings, params)
    if problem:
        base.error = problem
        return base

    def progress(phase: str, done: int, total: int) -> None:
        if stop.is_set():
            raise CompareStopped()
        emit(ModelProgress(index=index, phase=phase, done=done, total=total))

    start = time.perf_counter()
    emit(ModelProgress(index=index, phase="loading", done=0, total=1))
    loaded = load_ref(ref, settings)
    base.load_s = time.perf_counter() - start
    base.params = loaded.num_params
    emit(ModelProgress(index=index, phase="loading", done=1, total=1))
    try:
        _warm_up(loaded.model, loaded.tokenizer, examples, settings)
        meter = MemoryMeter(loaded.model)
        measured = score_loaded(loaded.model, loaded.tokenizer, examples, settings, progress)
        base.peak_memory_mb = meter.peak_mb()
    finally:
        del loaded
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    for name, value in measured.items():
        setattr(base, name, value)
    base.elapsed_s = time.perf_counter() - start
    return base


def _score_served(base: ModelScore, index: int, examples, settings: CompareSettings, emit, stop: threading.Event) -> ModelScore:
    """A served model (``URL#MODEL``): its answers only (:mod:`distill_gui.core.compare_served`)."""
    from distill_gui.core.compare_served import score_served

    def progress(phase: str, done: int, total: int) -> None:
        if stop.is_set():
            raise CompareStopped()
        emit(ModelProgress(index=index, phase=phase, done=done, total=total))

    start = time.perf_counter()
    for name, value in score_served(base.path, examples, settings, progress).items():
        setattr(base, name, value)
    base.elapsed_s = time.perf_counter() - start
    return base


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    expected = isinstance(exc, (ValueError, OSError)) or is_user_error(exc)  # e.g. a served model's one-line error
    return message if expected else f"{type(exc).__name__}: {message}"


def default_folder(runs_root: str | Path | None, name: str) -> Path:
    """A new ``comparisons/<time>-<name>`` folder beside the runs (under the runs root)."""
    from distill_gui.core.runs import default_runs_root

    root = Path(runs_root) if runs_root is not None else default_runs_root()
    base = root / "comparisons"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in name).strip("-.")[:40] or "compare"
    for n in range(1000):
        candidate = base / (f"{stamp}-{slug}" if n == 0 else f"{stamp}-{slug}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise CompareError(f"could not create a comparison folder under {base}")


def default_cache_dir(runs_root: str | Path | None = None) -> Path:
    from distill_gui.core.runs import default_runs_root

    root = Path(runs_root) if runs_root is not None else default_runs_root()
    return root / "comparisons" / ".cache"


def compare(
    models: list[str],
    data: str,
    settings: CompareSettings | None = None,
    *,
    reference: str | None = None,
    out: str | Path | None = None,
    runs_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    name: str = "",
    on_event: Callable[[CompareEvent], None] | None = None,
    stop: threading.Event | None = None,
) -> Comparison:
    """Score every model on ``data`` (the reference first) and write the results folder; see the module doc."""
    from distill_gui.core.compare_report import write_report
    from distill_gui.core.data import load_examples
    from distill_gui.core.evaluation import reference_answer

    settings = settings or CompareSettings()
    stop = stop or threading.Event()
    emit = on_event or (lambda event: None)
    if not models:
        raise CompareError("give at least one model to compare")
    refs: list[ModelRef] = []
    unresolved: list[tuple[str, str]] = []
    for spec in models:
        try:
            found = resolve(spec)
            refs.append(dataclasses.replace(found, label=served_spec_label(spec)) if is_served_spec(spec) else found)
        except ModelRefError as exc:
            unresolved.append((spec, str(exc)))
    if not refs:
        raise CompareError(unresolved[0][1])
    try:
        ordered, _ = _order(refs, reference)
    except ModelRefError as exc:
        raise CompareError(f"--reference: {exc}") from None
    ordered = unique_labels(ordered)
    ref_label = ordered[0].label

    examples, report = load_examples(str(data), settings.data_format)
    if not examples:
        raise CompareError(f"{data}: no usable rows ({report.summary()})")
    if settings.limit:
        examples = examples[: settings.limit]
    questions = {e.source: {"question": e.prompt or _transcript(e), "reference": reference_answer(e)} for e in examples}

    folder = Path(out) if out else default_folder(runs_root, name or _default_name(ordered))
    folder.mkdir(parents=True, exist_ok=True)
    cache = ScoreCache(cache_dir or default_cache_dir(runs_root))
    data_key = data_fingerprint(str(data), settings.data_format, settings.limit)
    result = Comparison(
        data=str(data), rows=len(examples), settings=settings, reference=ref_label, scores=[], folder=folder, questions=questions
    )
    failed = [ModelScore(label=short_name(spec), spec=spec, path=spec, error=reason) for spec, reason in unresolved]
    emit(
        CompareStarted(
            folder=str(folder),
            labels=[r.label for r in ordered] + [f.label for f in failed],
            reference=ref_label,
            rows=len(examples),
            data=str(data),
        )
    )

    for index, ref in enumerate(ordered):
        if stop.is_set():
            result.state = "stopped"
            break
        try:
            model_key = fingerprint(ref)
        except OSError as exc:
            model_key = ""
            score = ModelScore(label=ref.label, spec=ref.spec, path=ref.path, error=_one_line(exc))
        key = ScoreCache.key(model_key, data_key, settings.cache_dict())
        cacheable = use_cache and not is_served_spec(ref.path)  # what a URL serves can change
        record = cache.get(key) if (cacheable and model_key) else None
        emit(ModelStarted(index=index, label=ref.label, cached=record is not None))
        if record is not None:
            score = ModelScore.from_record(record, label=ref.label, spec=ref.spec, run=ref.run, checkpoint=ref.checkpoint, cached=True)
        elif model_key:
            try:
                score = _score(ref, index, examples, settings, emit, stop)
            except CompareStopped:
                result.state = "stopped"
                break
            except Exception as exc:  # noqa: BLE001 - one model failing never ends the comparison
                score = ModelScore(
                    label=ref.label,
                    spec=ref.spec,
                    path=ref.path,
                    adapter=ref.adapter,
                    run=ref.run,
                    checkpoint=ref.checkpoint,
                    error=_one_line(exc),
                )
            score.fingerprint = model_key
            if score.ok and cacheable:
                cache.put(key, score.to_record())
        result.scores.append(score)
        if score.ok:
            emit(ModelScored(index=index, label=score.label, row=table_row(score, result.reference_score())))
        else:
            emit(ModelFailed(index=index, label=score.label, reason=score.error or ""))
        write_report(result, folder)
    else:
        result.state = "finished"
    for offset, score in enumerate(failed):
        result.scores.append(score)
        emit(ModelFailed(index=len(ordered) + offset, label=score.label, reason=score.error or ""))
    write_report(result, folder)
    emit(
        CompareFinished(
            folder=str(folder), state=result.state, scored=sum(s.ok for s in result.scores), failed=sum(not s.ok for s in result.scores)
        )
    )
    return result


def _transcript(example) -> str:
    return "\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" for m in (example.messages or []))


def _default_name(refs: list[ModelRef]) -> str:
    return f"{refs[0].label}-vs-{len(refs) - 1}" if len(refs) > 1 else refs[0].label
