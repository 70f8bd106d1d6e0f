"""Training data: read rows from files, detect their format, render prompts and tokenize them.

This module loads and prepares; the formats are in ``data_formats``, the readers in ``data_readers``, prompt
rendering and tokenization in ``data_render`` and the result types in ``data_types`` (all re-exported here).

Sources
    ``.jsonl`` / ``.ndjson`` (one JSON object a line), ``.json`` (a list of objects, or an object holding
    one under ``data``, ``train`` or ``rows``; a ``.json`` file that is really JSON lines is read as such),
    ``.csv`` / ``.tsv`` (a header row, then one row per example), ``.parquet``, ``.txt`` (plain text: one
    example per paragraph, paragraphs separated by blank lines), a folder written by
    ``datasets.Dataset.save_to_disk`` (its ``train`` split when it holds several), or a hub id loaded
    with ``datasets.load_dataset(id, split="train")`` when the string is not an existing path.

Formats and their fields (``DataConfig.columns`` maps a field to your column name)
    ``prompt_completion``  prompt, completion
    ``alpaca``             instruction, input (optional), output
    ``messages``           messages: a list of {role, content}
    ``sharegpt``           conversations: a list of {from: human/gpt/system, value}
    ``question_answer``    question, answer (GSM8K style; the text after ``####`` is the reference answer)
    ``text``               text (loss on every token)

For ``messages`` and ``sharegpt`` the model learns the LAST assistant turn; every turn before it is the
prompt. A turn may be written either as {role, content} or as {from, value} in both formats.
A completion that holds ``####`` gives the text after the last ``####`` as the reference answer.

Bad rows (broken JSON, missing or wrongly typed fields, empty text, invalid UTF-8 bytes, JSON nested too
deeply, rows over :data:`MAX_ROW_BYTES`) are skipped and listed in the :class:`DataReport` with file, line
(``item N`` for the N-th element, counted from 0, of a JSON list; ``row N`` for Parquet and ``datasets``
rows) and reason; rows kept by cutting them to ``max_length`` are listed too. Nothing is dropped or cut
silently. JSON lines are read one line at a time and an over-long line is skipped unread, so a hostile
file cannot take memory in proportion to its longest line.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from distill_gui.core.data_formats import (
    FORMAT_FIELDS,
    SUPPORTED_EXTENSIONS,
    _detect_format,
    _formats_help,
    _mapping,
    _parse_row,
    _RowError,
)
from distill_gui.core.data_readers import _rows
from distill_gui.core.data_render import _tokenize_all, render_prompt, tokenize_example, turn_end_text
from distill_gui.core.data_types import MAX_ROW_BYTES, BadRow, DataError, DataReport, Example, PreparedData

__all__ = [
    "FORMAT_FIELDS",
    "MAX_ROW_BYTES",
    "SUPPORTED_EXTENSIONS",
    "BadRow",
    "DataCollator",
    "DataError",
    "DataReport",
    "Example",
    "PreparedData",
    "load_examples",
    "prepare_data",
    "render_prompt",
    "tokenize_example",
    "turn_end_text",
]

# ---- Loading ---------------------------------------------------------------------------------------


def load_examples(path: str, format: str = "auto", columns: dict | None = None) -> tuple[list[Example], DataReport]:
    """Read every row of ``path`` as an :class:`Example`; bad rows are skipped and listed in the report.

    ``format`` is one of the names in :data:`FORMAT_FIELDS` or ``auto`` (detect from the columns);
    ``columns`` maps a format's field to the column holding it. Raises :class:`DataError` when the
    source is missing or unreadable, or the format cannot be determined.
    """
    columns = dict(columns or {})
    if format != "auto" and format not in FORMAT_FIELDS:
        raise DataError(f"{path}: unknown format {format!r}; use auto or one of {', '.join(FORMAT_FIELDS)}")
    path = str(path)
    name = Path(path).name or path
    report = DataReport(file=name)
    forced, reader = _rows(path, report)
    if forced and format not in ("auto", forced):
        raise DataError(f"{path}: a .txt file is plain text; set data.format to auto or text (not {format})")
    rows = list(reader)  # readers raise file-level DataErrors as they go
    seen: set[str] = set()
    for _, _, row in rows[:1000]:
        if isinstance(row, dict):
            seen.update(map(str, row))
    fmt = forced or format
    if fmt == "auto" and not seen:
        # Not one row could be read as an object (or there are none): report each row's own problem.
        report.total = len(rows)
        report.bad_rows = [BadRow(name, pos, str(row) if isinstance(row, _RowError) else "no fields", unit) for unit, pos, row in rows]
        return [], report
    if fmt == "auto":
        detected = _detect_format(seen, columns)
        if detected is None:
            raise DataError(
                f"{path}: cannot tell the data format from the columns seen "
                f"({', '.join(sorted(seen)) or 'none'}). Known formats and their fields: {_formats_help()}. "
                "Set data.format, and data.columns when your columns have other names "
                "(e.g. {prompt: question, completion: solution})."
            )
        fmt = detected
    unknown = set(columns) - set(sum(FORMAT_FIELDS[fmt], ()))
    if unknown and not forced:
        raise DataError(
            f"{path}: data.columns names {', '.join(sorted(unknown))}, which format {fmt} does not "
            f"have; its fields are {', '.join(sum(FORMAT_FIELDS[fmt], ()))}"
        )
    mapping = _mapping(fmt, {} if forced else columns)
    missing = [mapping[f] for f in FORMAT_FIELDS[fmt][0] if mapping[f] not in seen]
    if missing and seen:
        raise DataError(
            f"{path}: format {fmt} needs the column(s) {', '.join(missing)}, but the columns seen are "
            f"{', '.join(sorted(seen))}; set data.columns to map {fmt}'s fields to your columns"
        )
    report.format = fmt
    report.columns = {f: c for f, c in mapping.items() if c in seen or f in FORMAT_FIELDS[fmt][0]}
    examples = []
    for unit, position, row in rows:
        report.total += 1
        source = f"{name}:{position}" if unit == "line" else f"{name}:{unit} {position}"
        try:
            if isinstance(row, _RowError):
                raise row
            example = _parse_row(row, fmt, mapping, source)
            _check_size(example)
            examples.append(example)
        except _RowError as exc:
            report.bad_rows.append(BadRow(name, position, str(exc), unit))
    report.kept = len(examples)
    return examples, report


def _check_size(example: Example) -> None:
    """A row whose text is over MAX_ROW_BYTES is skipped before it is rendered or tokenized."""
    size = len(example.prompt) + len(example.completion) + len(example.input)
    size += sum(len(m["content"]) for m in example.messages or [])
    if size > MAX_ROW_BYTES:
        raise _RowError(f"row too large ({size:,} characters; the limit is {MAX_ROW_BYTES:,})")


# ---- Preparing a run's data ------------------------------------------------------------------------


def _check(report: DataReport, path: str, max_bad_fraction: float) -> None:
    first = "; ".join(str(b) for b in report.bad_rows[:5])
    every = " (every bad line is listed in the run's log)" if len(report.bad_rows) > 5 else ""
    if report.kept == 0:
        raise DataError(
            f"no usable rows in {path}: {report.total} rows read, none usable" + (f"; first reasons: {first}{every}" if first else ""),
            report,
        )
    if report.bad_fraction > max_bad_fraction:
        raise DataError(
            f"{path}: {len(report.bad_rows)} of {report.total} rows are unusable ({report.bad_fraction:.0%}), "
            f"more than data.max_bad_fraction ({max_bad_fraction:.0%}); first: {first}{every}. "
            "Fix the rows or raise data.max_bad_fraction.",
            report,
        )


def _features_dataset(features: list[dict]):
    import datasets

    return datasets.Dataset.from_dict({key: [f[key] for f in features] for key in ("input_ids", "attention_mask", "labels")})


def _split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    if fraction <= 0 or n < 2:
        return list(range(n)), []
    n_eval = min(n - 1, max(1, round(n * fraction)))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return [i for i in range(n) if i not in held], sorted(held)


def prepare_data(cfg, tokenizer) -> PreparedData:
    """Load, check, tokenize and split the data of a :class:`~distill_gui.core.config.DataConfig`.

    The eval set is ``cfg.eval`` (read with the train format) when set, else ``cfg.eval_fraction`` of the
    train rows, drawn with ``cfg.seed`` (at least one row when the fraction is above 0 and there are two).

    Raises :class:`DataError` when no row is usable or more than ``cfg.max_bad_fraction`` of the rows
    were skipped (rows dropped at tokenization count as skipped).
    """
    if not cfg.train:
        if getattr(cfg, "mix", None):  # the mix is the whole training set (core.data_mix)
            from distill_gui.core.data_mix import prepare_mixed

            return prepare_mixed(cfg, tokenizer, None)
        raise DataError("data.train: no training data is set")
    examples, report = load_examples(cfg.train, cfg.format, cfg.columns)
    examples, features = _tokenize_all(examples, report, cfg, tokenizer)
    _check(report, cfg.train, cfg.max_bad_fraction)
    eval_report = None
    if cfg.eval:
        eval_examples, eval_report = load_examples(cfg.eval, report.format, cfg.columns)
        eval_examples, eval_features = _tokenize_all(eval_examples, eval_report, cfg, tokenizer)
        _check(eval_report, cfg.eval, cfg.max_bad_fraction)
        train_examples, train_features = examples, features
    else:
        train_idx, eval_idx = _split_indices(len(examples), cfg.eval_fraction, cfg.seed)
        train_examples = [examples[i] for i in train_idx]
        train_features = [features[i] for i in train_idx]
        eval_examples = [examples[i] for i in eval_idx]
        eval_features = [features[i] for i in eval_idx]
        if eval_idx:
            report.notes.append(f"{len(eval_idx)} of {len(examples)} rows held out for evaluation (seed {cfg.seed})")
    prepared = PreparedData(
        train=_features_dataset(train_features),
        eval=_features_dataset(eval_features) if eval_features else None,
        train_examples=train_examples,
        eval_examples=eval_examples,
        report=report,
        eval_report=eval_report,
        format=report.format,
    )
    if getattr(cfg, "mix", None):  # data.mix: more sources, mixed with data.train by weight (core.data_mix)
        from distill_gui.core.data_mix import prepare_mixed

        return prepare_mixed(cfg, tokenizer, prepared)
    return prepared


# ---- Batching --------------------------------------------------------------------------------------


@dataclass
class DataCollator:
    """Right-pads tokenized rows into a batch of tensors; usable as ``data_collator`` of a Trainer.

    input_ids are padded with ``pad_token_id``, attention_mask with 0 and labels with -100; a ``row``
    number is passed on when every feature has one; other keys in the features are ignored.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Iterable[dict]) -> dict:
        import torch

        features = list(features)
        rows = [[int(t) for t in f["input_ids"]] for f in features]
        longest = max((len(r) for r in rows), default=0)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, list] = {
            "input_ids": [r + [self.pad_token_id] * (longest - len(r)) for r in rows],
            "attention_mask": [
                [int(t) for t in f.get("attention_mask", [1] * len(r))] + [0] * (longest - len(r)) for f, r in zip(features, rows)
            ],
        }
        if all("labels" in f for f in features):
            batch["labels"] = [[int(t) for t in f["labels"]] + [-100] * (longest - len(r)) for f, r in zip(features, rows)]
        if all("row" in f for f in features):  # row numbers: where a batch finds its offline teacher cache
            batch["row"] = [int(f["row"]) for f in features]
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}
