"""Training data: read rows from files, detect their format, render prompts and tokenize them.

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

import csv
import json
import os
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill_gui.core.config import CHAT_TEMPLATE_CHOICES
from distill_gui.core.errors import UserError

# ---- Public types ----------------------------------------------------------------------------------


class DataError(UserError, ValueError):
    """The data cannot be used; the message names the file and what to change.

    ``report`` is the :class:`DataReport` behind a refusal for bad rows (None for other errors): its
    ``summary(max_rows=None)`` lists every bad line, for the run's log.
    """

    def __init__(self, message: str, report: "DataReport | None" = None):
        super().__init__(message)
        self.report = report


MAX_ROW_BYTES = 1 << 20
"""A row over 1 MiB of text is skipped as a bad row (about 250k tokens, far beyond any max_length),
checked before it is parsed or tokenized."""


@dataclass
class Example:
    """One training example, independent of the file format it came from."""

    prompt: str
    """Plain prompt text ('' for the text format). For alpaca the instruction; for messages/sharegpt a
    plain ``Role: content`` transcript of the prompt turns ending in ``Assistant: ``."""
    completion: str
    """What the model learns to write (the EOS token is appended at tokenization)."""
    messages: list[dict] | None = None
    """Chat prompt turns ({role, content}, system included) when the format had them."""
    reference: str | None = None
    """The final answer after ``####`` in the completion, when there is one."""
    source: str = ""
    """Where the row came from: ``file.jsonl:12``, ``file.json:item 3`` or ``file.parquet:row 7``."""
    format: str = "prompt_completion"
    """The format the row was read as (decides the plain prompt template)."""
    input: str = ""
    """Alpaca's optional input (context) field; the instruction is in ``prompt``."""


@dataclass
class BadRow:
    """A row that was skipped, and why."""

    file: str
    line: int
    reason: str
    unit: str = "line"
    """``line`` for text files (1-based), ``item`` for JSON lists and ``row`` for tables (0-based)."""

    def __str__(self) -> str:
        return f"{self.file} {self.unit} {self.line}: {self.reason}"


@dataclass
class DataReport:
    """What was read from one source: format, columns, counts, skipped rows and notes."""

    file: str
    format: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    """Format field -> column actually read."""
    total: int = 0
    """Rows seen in the source (blank lines are not rows)."""
    kept: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    truncated_rows: list[BadRow] = field(default_factory=list)
    """Rows kept but cut to max_length (the reason says from how many tokens)."""
    notes: list[str] = field(default_factory=list)

    @property
    def bad_fraction(self) -> float:
        return len(self.bad_rows) / self.total if self.total else 0.0

    def summary(self, max_rows: int | None = 10) -> str:
        """Lines of text for a log or a dialog; ``max_rows=None`` lists every skipped and truncated row."""
        fields = ", ".join(f"{k} <- {v}" if k != v else k for k, v in self.columns.items())
        head = f"{self.file}: format {self.format or '?'} ({fields}); {self.total} rows, {self.kept} kept, {len(self.bad_rows)} skipped"
        lines = [head + (f", {len(self.truncated_rows)} truncated" if self.truncated_rows else "")]
        for title, rows in (("skipped", self.bad_rows), ("truncated", self.truncated_rows)):
            shown = rows if max_rows is None else rows[:max_rows]
            if rows and title == "truncated":
                lines.append(f"  {len(rows)} rows truncated to data.max_length:")
            lines += [f"  {row.unit} {row.line}: {row.reason}" for row in shown]
            if len(rows) > len(shown):
                lines.append(f"  ... and {len(rows) - len(shown)} more {title} rows")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class PreparedData:
    """Tokenized train (and eval) sets plus the examples behind them."""

    train: Any
    """``datasets.Dataset`` with input_ids, attention_mask and labels."""
    eval: Any | None
    train_examples: list[Example]
    eval_examples: list[Example]
    report: DataReport
    eval_report: DataReport | None
    format: str


# ---- Formats ---------------------------------------------------------------------------------------

FORMAT_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # format: (required fields, optional fields), in detection order
    "messages": (("messages",), ()),
    "sharegpt": (("conversations",), ()),
    "alpaca": (("instruction", "output"), ("input",)),
    "question_answer": (("question", "answer"), ()),
    "prompt_completion": (("prompt", "completion"), ()),
    "text": (("text",), ()),
}

SUPPORTED_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt")

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant", "system": "system"}
_BOM = b"\xef\xbb\xbf"
_BOM_NOTE = "a UTF-8 byte order mark at the start of the file was removed"


class _RowError(Exception):
    """A row-level problem: the row is skipped with this reason."""


def _formats_help() -> str:
    parts = []
    for name, (required, optional) in FORMAT_FIELDS.items():
        parts.append(f"{name} ({', '.join(list(required) + [f + '?' for f in optional])})")
    return "; ".join(parts)


def _mapping(fmt: str, columns: dict[str, str]) -> dict[str, str]:
    required, optional = FORMAT_FIELDS[fmt]
    return {f: columns.get(f, f) for f in required + optional}


def _detect_format(seen: set[str], columns: dict[str, str]) -> str | None:
    order = list(FORMAT_FIELDS)
    # Formats whose fields the user mapped are tried first: {prompt: question} means prompt_completion.
    order.sort(key=lambda f: not set(columns) & set(sum(FORMAT_FIELDS[f], ())))
    for fmt in order:
        if all(columns.get(f, f) in seen for f in FORMAT_FIELDS[fmt][0]):
            return fmt
    return None


def _text(row: dict, column: str, name: str, required: bool = True) -> str:
    value = row.get(column)
    if value is None:
        if required:
            raise _RowError(f"missing field {column!r}" + (f" ({name})" if column != name else ""))
        return ""
    if not isinstance(value, str):
        raise _RowError(f"field {column!r} must be text, got {type(value).__name__}")
    if required and not value.strip():
        raise _RowError(f"empty {column!r}")
    return value


def _reference(completion: str) -> str | None:
    if "####" not in completion:
        return None
    answer = completion.rsplit("####", 1)[1].strip()
    return answer or None


def _turns(row: dict, column: str, sharegpt: bool) -> list[dict]:
    turns = row.get(column)
    if turns is None:
        raise _RowError(f"missing field {column!r}")
    if not isinstance(turns, (list, tuple)):
        raise _RowError(f"field {column!r} must be a list of turns, got {type(turns).__name__}")
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise _RowError(f"{column!r} turn {i} must be an object, got {type(turn).__name__}")
        role = turn.get("role") if turn.get("role") is not None else turn.get("from")
        content = turn.get("content") if turn.get("content") is not None else turn.get("value")
        if not isinstance(role, str) or not role:
            raise _RowError(f"{column!r} turn {i} has no role ('role' or 'from')")
        if not isinstance(content, str):
            got = "nothing" if content is None else type(content).__name__
            raise _RowError(f"{column!r} turn {i} content must be text, got {got}")
        role = role.strip().lower()
        if sharegpt or role in ("human", "gpt"):
            if role not in _SHAREGPT_ROLES:
                raise _RowError(f"{column!r} turn {i} has unknown role {role!r} (expected human, gpt or system)")
            role = _SHAREGPT_ROLES[role]
        out.append({"role": role, "content": content})
    last = max((i for i, t in enumerate(out) if t["role"] == "assistant"), default=None)
    if last is None:
        raise _RowError(f"{column!r} has no assistant turn to learn")
    if not out[last]["content"].strip():
        raise _RowError(f"{column!r} last assistant turn is empty")
    if not any(t["role"] != "system" for t in out[:last]):
        raise _RowError(f"{column!r} has no user turn before the last assistant turn")
    return out[: last + 1]


def _transcript(messages: list[dict]) -> str:
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant: "


def _parse_row(row: dict, fmt: str, mapping: dict[str, str], source: str) -> Example:
    if fmt in ("messages", "sharegpt"):
        turns = _turns(row, mapping[FORMAT_FIELDS[fmt][0][0]], fmt == "sharegpt")
        prompt_turns, completion = turns[:-1], turns[-1]["content"]
        return Example(
            prompt=_transcript(prompt_turns),
            completion=completion,
            messages=prompt_turns,
            reference=_reference(completion),
            source=source,
            format=fmt,
        )
    if fmt == "text":
        return Example(prompt="", completion=_text(row, mapping["text"], "text"), source=source, format=fmt)
    if fmt == "alpaca":
        prompt = _text(row, mapping["instruction"], "instruction")
        extra = _text(row, mapping["input"], "input", required=False)
        completion = _text(row, mapping["output"], "output")
        return Example(prompt=prompt, completion=completion, input=extra, reference=_reference(completion), source=source, format=fmt)
    names = ("question", "answer") if fmt == "question_answer" else ("prompt", "completion")
    prompt = _text(row, mapping[names[0]], names[0])
    completion = _text(row, mapping[names[1]], names[1])
    return Example(prompt=prompt, completion=completion, reference=_reference(completion), source=source, format=fmt)


# ---- Readers: each yields (unit, position, row dict | _RowError) ------------------------------------


def _decode_lines(raw: bytes, report: DataReport) -> list[tuple[int, str | None]]:
    """Split bytes into (1-based line number, text or None when the line is not valid UTF-8)."""
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
        report.notes.append(_BOM_NOTE)
    out: list[tuple[int, str | None]] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            out.append((number, line.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError:
            out.append((number, None))
    if out and out[-1][1] == "":
        out.pop()
    return out


def _raw_lines(path: Path, raw: bytes | None) -> Iterator[tuple[int, bytes | None]]:
    """(1-based number, bytes) per line, read one line at a time; None for a line over MAX_ROW_BYTES,
    whose bytes are skipped without being kept."""
    if raw is not None:
        for number, line in enumerate(raw.split(b"\n"), start=1):
            yield number, (line if len(line) <= MAX_ROW_BYTES else None)
        return
    with open(path, "rb") as fh:
        number = 0
        while True:
            line = fh.readline(MAX_ROW_BYTES + 2)
            if not line:
                return
            number += 1
            if len(line) > MAX_ROW_BYTES + 1 or (len(line) == MAX_ROW_BYTES + 1 and not line.endswith(b"\n")):
                while line and not line.endswith(b"\n"):
                    line = fh.readline(MAX_ROW_BYTES)
                yield number, None
                continue
            yield number, line.rstrip(b"\n")


def _read_jsonl(path: Path, report: DataReport, raw: bytes | None = None) -> Iterator[tuple]:
    for number, line in _raw_lines(path, raw):
        if number == 1 and line is not None and line.startswith(_BOM):
            line = line[len(_BOM) :]
            report.notes.append(_BOM_NOTE)
        if line is None:
            yield "line", number, _RowError(f"row too large (over {MAX_ROW_BYTES // 1024} KiB); it was not read")
            continue
        try:
            text = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            yield "line", number, _RowError("invalid UTF-8 bytes")
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield "line", number, _RowError(f"broken JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            yield "line", number, _RowError("JSON nested too deeply")
            continue
        if not isinstance(value, dict):
            yield "line", number, _RowError(f"expected a JSON object, got {type(value).__name__}")
            continue
        yield "line", number, value


def _read_json(path: Path, report: DataReport) -> Iterator[tuple]:
    raw = path.read_bytes()
    body = raw[len(_BOM) :] if raw.startswith(_BOM) else raw
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 (bad bytes at offset {exc.start})") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be a list of rows") from None
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several documents: the file is JSON lines named .json
            report.notes.append("the .json file holds one JSON object per line; read as JSON lines")
            yield from _read_jsonl(path, report, raw)
            return
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if body is not raw:
        report.notes.append(_BOM_NOTE)
    if isinstance(value, dict):
        for key in ("data", "train", "rows"):
            if isinstance(value.get(key), list):
                report.notes.append(f"rows read from the {key!r} list")
                value = value[key]
                break
        else:
            raise DataError(
                f"{path}: expected a list of objects, or an object with a 'data', 'train' or "
                f"'rows' list; found an object with keys {', '.join(map(str, value)) or 'none'}"
            )
    if not isinstance(value, list):
        raise DataError(f"{path}: expected a list of objects, got {type(value).__name__}")
    for index, item in enumerate(value):
        if isinstance(item, dict):
            yield "item", index, item
        else:
            yield "item", index, _RowError(f"expected a JSON object, got {type(item).__name__}")


def _read_csv(path: Path, report: DataReport) -> Iterator[tuple]:
    lines = _decode_lines(path.read_bytes(), report)
    bad_lines = {number for number, text in lines if text is None}
    big_lines = {number for number, text in lines if text is not None and len(text) > MAX_ROW_BYTES}
    if csv.field_size_limit() < MAX_ROW_BYTES * len(lines):  # over-long lines are blanked below; a quoted
        csv.field_size_limit(min(sys.maxsize, MAX_ROW_BYTES * len(lines)))  # field may still span many lines
    reader = csv.reader(
        ((text if text is not None and number not in big_lines else "") + "\n" for number, text in lines),
        delimiter="\t" if path.suffix.lower() == ".tsv" else ",",
    )
    header: list[str] | None = None
    end = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(f"{path} line {reader.line_num}: not readable as CSV ({exc})") from None
        start, end = end + 1, reader.line_num
        if header is None:
            if start in bad_lines:
                raise DataError(f"{path}: the header line is not valid UTF-8")
            header = [name.strip() for name in record]
            continue
        if big_lines.intersection(range(start, end + 1)):
            yield "line", start, _RowError(f"row too large (a line over {MAX_ROW_BYTES:,} characters)")
        elif bad_lines.intersection(range(start, end + 1)):
            yield "line", start, _RowError("invalid UTF-8 bytes")
        elif not record:
            continue  # a blank line is not a row
        elif not any(cell.strip() for cell in record):
            yield "line", start, _RowError("empty row")
        elif len(record) != len(header):
            yield "line", start, _RowError(f"has {len(record)} fields, the header has {len(header)}")
        else:
            yield "line", start, dict(zip(header, record))
    if header is None:
        raise DataError(f"{path}: the CSV file is empty (no header row)")


def _read_txt(path: Path, report: DataReport) -> Iterator[tuple]:
    paragraph: list[str] = []
    start, broken = 0, 0  # first line of the paragraph; first line with invalid UTF-8 in it (0: none)
    for number, text in _decode_lines(path.read_bytes(), report) + [(0, "")]:
        if text is not None and not text.strip():
            if broken:
                yield "line", start, _RowError(f"invalid UTF-8 bytes (line {broken})")
            elif paragraph:
                yield "line", start, {"text": "\n".join(paragraph)}
            paragraph, broken = [], 0
            continue
        if not paragraph and not broken:
            start = number
        if text is None:
            broken = broken or number
        else:
            paragraph.append(text)


def _read_parquet(path: Path, report: DataReport) -> Iterator[tuple]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    for index, row in enumerate(rows):
        yield "row", index, row


def _read_dataset(ds: Any, path: str, report: DataReport) -> Iterator[tuple]:
    if isinstance(ds, dict):  # a DatasetDict
        splits = list(ds.keys())
        split = "train" if "train" in splits else splits[0] if len(splits) == 1 else None
        if split is None:
            raise DataError(f"{path}: holds the splits {', '.join(splits)} and none is called 'train'")
        if len(splits) > 1:
            others = ", ".join(s for s in splits if s != "train")
            report.notes.append(f"read the 'train' split (the source also has {others})")
        ds = ds[split]
    for index, row in enumerate(ds):
        yield "row", index, row


def _read_saved(path: Path, report: DataReport) -> Iterator[tuple]:
    import datasets

    if not any((path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json")):
        raise DataError(
            f"{path}: a folder, but not one written by datasets' save_to_disk; give a data file ({', '.join(SUPPORTED_EXTENSIONS)}) instead"
        )
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(f"{path}: could not load the saved dataset ({exc})") from None
    yield from _read_dataset(ds, str(path), report)


def _looks_like_path(value: str) -> bool:
    return (
        value.startswith((".", "/", "~", "\\"))
        or os.path.isabs(value)
        or Path(value).suffix.lower() in SUPPORTED_EXTENSIONS
        or value.count("/") > 1
    )


def _read_hub(name: str, report: DataReport) -> Iterator[tuple]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as exc:
        from distill_gui.core.hub import hub_offline

        if hub_offline():
            raise DataError(
                f"{name}: not a file or folder, and not found locally and no network "
                "(HF_HUB_OFFLINE is set); give a data file or a saved dataset folder"
            ) from None
        raise DataError(f"{name}: not a file or folder, and loading it as a hub dataset failed: {exc}") from None
    report.notes.append("loaded the 'train' split from the hub")
    yield from _read_dataset(ds, name, report)


def _rows(path_str: str, report: DataReport) -> tuple[str, Iterator[tuple]]:
    path = Path(path_str).expanduser()
    if path.is_dir():
        return "", _read_saved(path, report)
    if path.is_file():
        suffix = path.suffix.lower()
        readers = {
            ".jsonl": _read_jsonl,
            ".ndjson": _read_jsonl,
            ".json": _read_json,
            ".csv": _read_csv,
            ".tsv": _read_csv,
            ".parquet": _read_parquet,
            ".txt": _read_txt,
        }
        if suffix not in readers:
            raise DataError(
                f"{path}: unknown file type {suffix or '(no extension)'}; supported are "
                f"{', '.join(SUPPORTED_EXTENSIONS)} and folders saved with datasets' save_to_disk"
            )
        return ("text" if suffix == ".txt" else ""), readers[suffix](path, report)
    if not path_str or _looks_like_path(path_str):
        raise DataError(f"{path_str or '(empty path)'}: data file not found")
    return "", _read_hub(path_str, report)


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


# ---- Rendering and tokenization --------------------------------------------------------------------


def _use_chat_template(tokenizer, chat_template: str) -> bool:
    if chat_template not in CHAT_TEMPLATE_CHOICES:
        raise DataError(f"data.chat_template: {chat_template!r} is not allowed; choose auto, always or never")
    has = bool(getattr(tokenizer, "chat_template", None))
    if chat_template == "always" and not has:
        raise DataError("data.chat_template is 'always' but the tokenizer has no chat template; use auto or never")
    return has and chat_template != "never"


def render_prompt(example: Example, tokenizer, chat_template: str = "auto", system_prompt: str | None = None) -> str:
    """The text the model sees before the completion.

    With the chat template: ``system_prompt`` (unless the row brings its own system turn), then the row's
    messages or one user message, rendered with ``add_generation_prompt=True``. Without it:
    alpaca uses ``### Instruction:`` / ``### Input:`` / ``### Response:`` sections, question_answer
    ``Question: ...\\nAnswer: ``, others the prompt as it is; ``system_prompt`` then comes first, followed
    by a blank line. The text format has no prompt and renders as ''.
    """
    if example.format == "text":
        return ""
    if _use_chat_template(tokenizer, chat_template):
        if example.messages is not None:
            messages = [dict(m) for m in example.messages]
        else:
            user = example.prompt + (f"\n\n{example.input}" if example.input.strip() else "")
            messages = [{"role": "user", "content": user}]
        if system_prompt and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system_prompt})
        from distill_gui.core.chat_templates import render_chat_template  # time- and size-limited (a template may loop)

        return render_chat_template(tokenizer, messages, add_generation_prompt=True)
    if example.format == "alpaca":
        text = f"### Instruction:\n{example.prompt}\n\n"
        if example.input.strip():
            text += f"### Input:\n{example.input}\n\n"
        text += "### Response:\n"
    elif example.format == "question_answer":
        text = f"Question: {example.prompt}\nAnswer: "
    else:
        text = example.prompt
    own_system = any(m["role"] == "system" for m in example.messages or [])
    return f"{system_prompt}\n\n{text}" if system_prompt and not own_system else text


_TURN_PROBE = "DISTILLGUIANSWERPROBE"
_TURN_END_TEXT: dict[tuple, str | None] = {}


def turn_end_text(tokenizer) -> str | None:
    """What the chat template writes after an assistant message (its end-of-turn, e.g. ``<|im_end|>``,
    ``<|eot_id|>``, or EOS), stripped of whitespace; None when it writes nothing there or cannot render."""
    key = (getattr(tokenizer, "chat_template", None), tokenizer.eos_token, tokenizer.bos_token)
    if key not in _TURN_END_TEXT:
        from distill_gui.core.chat_templates import BrokenChatTemplate, render_chat_template

        messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _TURN_PROBE}]
        try:
            rendered = render_chat_template(tokenizer, messages, add_generation_prompt=False)
        except BrokenChatTemplate:
            raise
        except Exception:  # noqa: BLE001 - a template refusing the probe: fall back to EOS
            rendered = ""
        at = rendered.rfind(_TURN_PROBE)
        _TURN_END_TEXT[key] = (rendered[at + len(_TURN_PROBE) :].strip() or None) if at >= 0 else None
    return _TURN_END_TEXT[key]


def _turn_end_ids(example: Example, tokenizer, chat_template: str, known: dict | None = None) -> list[int] | None:
    """Token ids that end the trained turn under the chat template (None: end it with EOS).

    ``known`` (a dict kept by the caller) saves tokenizing the end-of-turn again for every row."""
    if example.format == "text" or not _use_chat_template(tokenizer, chat_template):
        return None
    known = {} if known is None else known
    if "ids" not in known:
        text = turn_end_text(tokenizer)
        known["ids"] = tokenizer(text, add_special_tokens=False)["input_ids"] if text else None
    return known["ids"]


def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def _assemble(
    prompt_ids: list[int],
    completion_ids: list[int],
    tokenizer,
    max_length: int,
    adds_bos: bool,
    end_ids: list[int] | None = None,
) -> dict | None:
    if not completion_ids:
        return None
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    prompt_ids = list(prompt_ids)
    if adds_bos and (not prompt_ids or prompt_ids[0] != bos):
        prompt_ids.insert(0, bos)
    completion_ids = list(completion_ids)
    if end_ids:  # the chat template's own end-of-turn (with EOS only where the template writes it)
        if completion_ids[-len(end_ids) :] != end_ids:
            completion_ids.extend(end_ids)
    elif eos is not None and completion_ids[-1] != eos:
        completion_ids.append(eos)
    if len(prompt_ids) + len(completion_ids) > max_length:
        keep_completion = min(len(completion_ids), max(1, max_length // 4))
        room = max_length - keep_completion
        if len(prompt_ids) > room:
            # Cut the prompt from the left, keeping a leading BOS when there is room for it.
            head = [prompt_ids[0]] if adds_bos and room > 1 and prompt_ids[0] == bos else []
            tail = room - len(head)
            prompt_ids = head + (prompt_ids[-tail:] if tail > 0 else [])
        completion_ids = completion_ids[: max_length - len(prompt_ids)]
    input_ids = prompt_ids + completion_ids
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [-100] * len(prompt_ids) + completion_ids,
    }


def tokenize_example(
    example: Example, tokenizer, max_length: int, chat_template: str = "auto", system_prompt: str | None = None
) -> dict | None:
    """``input_ids``, ``attention_mask`` and ``labels`` (-100 on the prompt) for one example.

    Prompt and completion are tokenized separately and joined, so the boundary is exact; BOS is added
    once when the tokenizer normally adds it. The completion ends as the chat template ends an assistant
    turn (its end-of-turn token, e.g. ``<|im_end|>``, and EOS only where the template writes it), or
    with EOS when no chat template is used. Rows longer than ``max_length``
    lose the start of the prompt first (keeping at least ``max(1, max_length // 4)`` completion tokens,
    or all of them when fewer), then the end of the completion. None when the completion has no tokens.
    """
    prompt = render_prompt(example, tokenizer, chat_template, system_prompt)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    completion_ids = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
    end_ids = _turn_end_ids(example, tokenizer, chat_template)
    return _assemble(prompt_ids, completion_ids, tokenizer, max_length, _adds_bos(tokenizer), end_ids)


def _tokenize_all(examples: list[Example], report: DataReport, cfg, tokenizer) -> tuple[list[Example], list[dict]]:
    prompts = [render_prompt(e, tokenizer, cfg.chat_template, cfg.system_prompt) for e in examples]
    adds_bos = _adds_bos(tokenizer)
    turn_end: dict = {}
    kept, features = [], []
    batch = 1000
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        p_ids = tokenizer(prompts[start : start + batch], add_special_tokens=False)["input_ids"]
        c_ids = tokenizer([e.completion for e in chunk], add_special_tokens=False)["input_ids"]
        for example, p, c in zip(chunk, p_ids, c_ids):
            feature = _assemble(p, c, tokenizer, cfg.max_length, adds_bos, _turn_end_ids(example, tokenizer, cfg.chat_template, turn_end))
            if feature is None:
                file, unit, position = _split_source(example.source)
                report.bad_rows.append(BadRow(file, position, "no completion tokens", unit))
                continue
            if len(feature["input_ids"]) < len(p) + len(c):  # _assemble only adds (BOS, EOS) unless it cuts
                file, unit, position = _split_source(example.source)
                report.truncated_rows.append(BadRow(file, position, f"{len(p) + len(c)} tokens cut to {len(feature['input_ids'])}", unit))
            kept.append(example)
            features.append(feature)
    report.kept = len(kept)
    return kept, features


def _split_source(source: str) -> tuple[str, str, int]:
    file, _, where = source.rpartition(":")
    unit, _, number = where.rpartition(" ")
    return file, unit or "line", int(number)


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
