"""Readers of data sources (JSON lines, JSON, CSV/TSV, text, Parquet, saved datasets, the hub): each yields
(unit, position, row dict or _RowError), file-level problems raised as DataError."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distill_gui.core.data_formats import _BOM, _BOM_NOTE, SUPPORTED_EXTENSIONS, _RowError
from distill_gui.core.data_types import MAX_ROW_BYTES, DataError, DataReport

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
