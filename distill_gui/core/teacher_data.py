"""Teacher-written training data: generate answers or reasoning traces, keep the ones that verify.

This is the hard-label recipe behind DeepSeek-R1-Distill and OpenThinker: the teacher completes every
prompt (greedy, or ``num_samples`` sampled completions per prompt), each completion's final answer is
checked against the reference with :mod:`distill_gui.core.verify`, and the verified ones become a
dataset file the trainer reads directly (in the input's format, e.g. GSM8K ``question``/``answer``
rows whose answer is the teacher's trace).

Generation is resumable. Every batch of prompts is appended to ``<out>.generations.jsonl`` as one
write (one record per prompt: its index, the samples, kept / generated); on a restart the prompts whose
index is already there are skipped, and a last line cut short by a crash is dropped and regenerated.
The dataset file ``<out>`` is rebuilt from that log at the end (atomically), in prompt order, so rows
are never duplicated or lost however often the job was interrupted. The settings that change what is
generated are kept in ``<out>.generations.meta.json``; resuming with different ones is refused.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from distill_gui.core import atomic_files
from distill_gui.core.config import CHAT_TEMPLATE_CHOICES
from distill_gui.core.generation import GenerationSettings, generate
from distill_gui.core.verify import DEFAULT_CHECKER, answers_match, extract_answer, get_checker

_GENERATION_KEYS = (
    "max_new_tokens",
    "temperature",
    "top_p",
    "num_samples",
    "verify",
    "checker",
    "dedup",
    "max_per_prompt",
    "data_format",
    "columns",
    "chat_template",
    "system_prompt",
    "seed",
)


@dataclass
class TeacherDataConfig:
    """How to write a teacher dataset."""

    max_new_tokens: int = 256
    """Longest completion the teacher may write."""
    temperature: float = 0.0
    """0 is greedy; above 0 samples (rejection sampling usually uses 0.6-1.0)."""
    top_p: float = 1.0
    """Nucleus sampling threshold when sampling."""
    num_samples: int = 1
    """Completions per prompt (more than 1 needs temperature > 0 to differ)."""
    batch_size: int = 16
    """Prompts per generation batch (each batch is one append to the log)."""
    verify: bool = True
    """Keep only completions whose final answer matches the reference (rejection sampling)."""
    checker: str = DEFAULT_CHECKER
    """Answer checker (see verify.register_checker): numeric, steps, math or one you registered."""
    dedup: bool = True
    """Drop a completion identical to one already kept for the same prompt."""
    max_per_prompt: int = 0
    """Keep at most this many completions per prompt; 0 keeps all that pass."""
    data_format: str = "auto"
    """Format of the input rows (see core.data); the output rows keep it, with the teacher's text as the answer."""
    columns: dict[str, str] = field(default_factory=dict)
    """Column mapping from a format's field to your column name, e.g. {question: problem}."""
    chat_template: str = "auto"
    """auto: use the tokenizer's chat template when it has one; always; never (same as training)."""
    system_prompt: str | None = None
    """System message for chat-formatted prompts (same as training)."""
    limit: int = 0
    """Use only the first N rows of the input; 0 uses all."""
    seed: int = 0
    """Sampling seed (each batch is seeded from it and its first prompt's index, so resumes reproduce)."""

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("num_samples, batch_size and max_new_tokens must be at least 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
        if self.chat_template not in CHAT_TEMPLATE_CHOICES:
            raise ValueError("chat_template: choose auto, always or never")
        get_checker(self.checker)  # raises on an unknown name


@dataclass(frozen=True)
class SourceRow:
    """One input prompt: its position in the input, the rendered prompt, the reference and the output row's fields."""

    index: int
    prompt: str
    reference: str | None
    row: dict
    """The output row without the completion (the question, instruction or prompt turns, as in the input)."""
    format: str


@dataclass
class TeacherDataReport:
    """What a generation job did (totals over all its sessions, read back from the log)."""

    prompts: int = 0
    done: int = 0
    generated: int = 0
    kept: int = 0
    prompts_with_kept: int = 0
    resumed_from: int = 0
    stopped: bool = False
    seconds: float = 0.0
    new_tokens: int = 0
    out: str = ""
    log: str = ""
    kept_histogram: dict[int, int] = field(default_factory=dict)

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.generated if self.generated else 0.0

    def summary(self) -> str:
        parts = [
            f"{self.done}/{self.prompts} prompts",
            f"kept {self.kept}/{self.generated} completions ({self.kept_fraction:.1%})",
            f"{self.prompts_with_kept} prompts with at least one kept",
        ]
        if self.resumed_from:
            parts.append(f"resumed after {self.resumed_from} prompts")
        if self.seconds:
            parts.append(f"{self.new_tokens / self.seconds:.0f} new tokens/s")
        return "; ".join(parts)


# ---- Input and output rows ---------------------------------------------------------------------------


def _base_row(example) -> dict:
    """The fields of an output row that come from the input, in the input's format."""
    fmt = example.format
    if fmt == "question_answer":
        return {"question": example.prompt}
    if fmt == "alpaca":
        return {"instruction": example.prompt, "input": example.input}
    if fmt in ("messages", "sharegpt"):
        return {"messages": [dict(m) for m in example.messages or []]}
    return {"prompt": example.prompt}


def output_row(row: dict, fmt: str, text: str) -> dict:
    """A dataset row holding the teacher's ``text`` as the completion, in the format ``fmt`` of the input."""
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in row.items()}
    if fmt == "question_answer":
        out["answer"] = text
    elif fmt == "alpaca":
        out["output"] = text
    elif fmt in ("messages", "sharegpt"):
        out["messages"] = out["messages"] + [{"role": "assistant", "content": text}]
    else:
        out["completion"] = text
    return out


def load_source(path: str | Path, tokenizer, config: TeacherDataConfig) -> list[SourceRow]:
    """The prompts to complete (rendered exactly as training and ``distill-gui eval`` render them).

    Rows are read with :func:`distill_gui.core.data.load_examples`; the reference of a row is the text
    after ``####``, a ``\\boxed{}`` answer or a bare number (None when the row has none).
    """
    from distill_gui.core.data import DataError, load_examples, render_prompt
    from distill_gui.core.evaluation import reference_answer

    examples, report = load_examples(str(path), config.data_format, config.columns)
    if config.limit:
        examples = examples[: config.limit]
    if not examples:
        raise DataError(f"{path}: no usable rows ({report.summary()})")
    if examples[0].format == "text":
        raise DataError(f"{path}: plain text rows have no prompt to complete; use question/answer or prompt/completion rows")
    out = []
    for i, example in enumerate(examples):
        prompt = render_prompt(example, tokenizer, config.chat_template, config.system_prompt)
        out.append(SourceRow(i, prompt, reference_answer(example), _base_row(example), example.format))
    if config.verify and not any(r.reference is not None for r in out):
        raise DataError(f"{path}: no row has a reference answer (#### N, \\boxed{{}} or a number) to verify against; turn verify off")
    return out


# ---- The generation log ---------------------------------------------------------------------------


def log_path_for(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".generations.jsonl")


def read_log(path: str | Path, repair: bool = False) -> dict[int, dict]:
    """Records of the generation log by prompt index; a last line cut short by a crash is ignored.

    With ``repair`` the file is truncated to its last complete line, so the next append starts clean.
    """
    path = Path(path)
    records: dict[int, dict] = {}
    if not path.is_file():
        return records
    data = path.read_bytes()
    good_end = 0
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            break  # no newline: the write of this line never finished
        line = data[pos:nl].strip()
        if line:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn write; everything after it is regenerated
            records[int(record["index"])] = record
        pos = nl + 1
        good_end = pos
    if repair and good_end < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
            fh.flush()
            os.fsync(fh.fileno())
    return records


def _append_batch(path: Path, records: list[dict]) -> None:
    """Append a batch's records with one write, flushed to disk before the next batch starts."""
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    with open(path, "ab") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())


def judge_samples(row: SourceRow, texts: Sequence[str], config: TeacherDataConfig) -> dict:
    """The log record for one prompt: each sample with its extracted answer, whether it verified and whether it is kept."""
    samples, kept_texts = [], set()
    kept = 0
    for text in texts:
        correct = answers_match(text, row.reference, config.checker) if row.reference is not None else None
        keep = (bool(correct) if config.verify else True) and bool(text.strip())
        if keep and config.dedup and text.strip() in kept_texts:
            keep = False
        if keep and config.max_per_prompt and kept >= config.max_per_prompt:
            keep = False
        if keep:
            kept += 1
            kept_texts.add(text.strip())
        samples.append({"text": text, "answer": extract_answer(text), "correct": correct, "kept": keep})
    return {
        "index": row.index,
        "prompt": row.prompt,
        "reference": row.reference,
        "format": row.format,
        "row": row.row,
        "samples": samples,
        "generated": len(texts),
        "kept": kept,
    }


def write_dataset(records: dict[int, dict], out: str | Path) -> int:
    """Write the kept completions as a dataset file (atomically, in prompt order); returns the row count.

    Rows keep the input's format with the teacher's text as the answer, so the trainer renders their
    prompts exactly as the teacher saw them.
    """
    rows = (
        output_row(records[index]["row"], records[index]["format"], sample["text"])
        for index in sorted(records)
        for sample in records[index]["samples"]
        if sample["kept"]
    )
    return atomic_files.write_jsonl(out, rows)


def _check_meta(log_path: Path, config: TeacherDataConfig) -> None:
    """Record the generation settings beside a new log; refuse to resume a log made with other settings."""
    meta_path = log_path.with_name(log_path.name.removesuffix(".jsonl") + ".meta.json")
    settings = {k: getattr(config, k) for k in _GENERATION_KEYS}
    if log_path.is_file() and log_path.stat().st_size and meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        changed = [k for k in _GENERATION_KEYS if k in old and old[k] != settings[k]]
        if changed:
            raise ValueError(
                f"{log_path} was written with other settings ({', '.join(f'{k}: {old[k]!r}' for k in changed)}); "
                "use another output file, or delete the log to start over"
            )
        return
    atomic_files.write_json(meta_path, settings)


def report_from_log(records: dict[int, dict], prompts: int) -> TeacherDataReport:
    report = TeacherDataReport(prompts=prompts, done=len(records))
    for record in records.values():
        report.generated += record["generated"]
        report.kept += record["kept"]
        report.prompts_with_kept += record["kept"] > 0
        report.kept_histogram[record["kept"]] = report.kept_histogram.get(record["kept"], 0) + 1
    return report


# ---- Public API ------------------------------------------------------------------------------------


def write_completions(model, tokenizer, prompts: list[str], settings: GenerationSettings, seed: int) -> list[list[str]]:
    """``settings.num_samples`` completions per prompt from a local model, or from a served teacher
    (:class:`~distill_gui.core.served_teacher.ServedTeacher`: requests in flight at once, retried on 429/5xx)."""
    from distill_gui.core.served_teacher import ServedTeacher

    if isinstance(model, ServedTeacher):
        answers = model.complete_many(
            prompts,
            samples=settings.num_samples,
            seed=seed,
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
        )
        return [[c.text for c in row] for row in answers]
    return generate(model, tokenizer, prompts, settings, seed=seed)


def generate_dataset(
    model,
    tokenizer,
    source: Sequence[SourceRow],
    out: str | Path,
    config: TeacherDataConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> TeacherDataReport:
    """Complete every prompt in ``source`` not yet in the log, verify, and (re)write the dataset ``out``.

    ``model`` is a local model (with its ``tokenizer``) or a :class:`~distill_gui.core.served_teacher.ServedTeacher`
    (``tokenizer`` may then be None: new tokens are the server's count).

    ``progress(done, total)`` is called after each batch; setting ``stop`` ends the job after the
    current batch (the log keeps everything finished; run again to continue).
    """
    config = config or TeacherDataConfig()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = log_path_for(out)
    _check_meta(log_path, config)
    records = read_log(log_path, repair=True)
    known = {row.index for row in source}
    records = {i: r for i, r in records.items() if i in known}
    resumed_from = len(records)
    pending = [row for row in source if row.index not in records]
    settings = GenerationSettings(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        num_samples=config.num_samples,
        batch_size=config.batch_size,
    )
    started = time.time()
    new_tokens = 0
    stopped = False
    if progress is not None:
        progress(len(records), len(source))
    for start in range(0, len(pending), config.batch_size):
        if stop is not None and stop.is_set():
            stopped = True
            break
        batch = pending[start : start + config.batch_size]
        served_before = getattr(model, "completion_tokens", 0)
        outputs = write_completions(
            model, tokenizer, [row.prompt for row in batch], settings, seed=config.seed * 1_000_003 + batch[0].index
        )
        batch_records = [judge_samples(row, texts, config) for row, texts in zip(batch, outputs)]
        _append_batch(log_path, batch_records)
        for record in batch_records:
            records[record["index"]] = record
            if tokenizer is not None:
                new_tokens += sum(len(tokenizer(s["text"], add_special_tokens=False)["input_ids"]) for s in record["samples"])
        if tokenizer is None:  # a served teacher without a local tokenizer: the server's own count
            new_tokens += getattr(model, "completion_tokens", 0) - served_before
        if progress is not None:
            progress(len(records), len(source))
    write_dataset(records, out)
    report = report_from_log(records, len(source))
    report.resumed_from = resumed_from
    report.stopped = stopped
    report.seconds = time.time() - started
    report.new_tokens = new_tokens
    report.out = str(out)
    report.log = str(log_path)
    summary = {**asdict(report), "config": asdict(config), "finished": report.done == report.prompts}
    summary_path = out.with_name(out.name + ".summary.json")
    tmp = summary_path.with_name(summary_path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(summary_path)
    return report
