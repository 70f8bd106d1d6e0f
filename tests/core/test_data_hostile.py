"""Hostile data: every bad line reported, truncation never silent, memory bounded by the row limit."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from distill_gui.core import data as data_module
from distill_gui.core.config import DataConfig
from distill_gui.core.data import DataError, load_examples, prepare_data


def _row(i: int, prompt: str | None = None) -> str:
    return json.dumps({"prompt": prompt or f"What is {i} plus 1?", "completion": f" {i + 1}"})


def test_a_refusal_for_bad_rows_carries_every_bad_line(tmp_path, tiny_tokenizer):
    path = tmp_path / "train.jsonl"
    lines = [_row(i).encode() for i in range(4)]
    lines += [b"{broken"] * 5 + [b'{"prompt": "caf\xe9", "completion": "x"}', b"[1, 2]", b"{\"a\": " * 50_000 + b"1" + b"}" * 50_000]
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match="every bad line is listed") as info:
        prepare_data(DataConfig(train=str(path), max_bad_fraction=0.1), tiny_tokenizer)
    assert "\n" not in str(info.value)
    full = info.value.report.summary(max_rows=None)
    for number, reason in ((5, "broken JSON"), (9, "broken JSON"), (10, "invalid UTF-8"), (11, "expected a JSON object"), (12, "JSON nested too deeply")):
        assert f"line {number}: {reason}" in full
    assert "more skipped rows" not in full


def test_rows_cut_to_max_length_are_counted_with_their_lines(tmp_path, tiny_tokenizer):
    path = tmp_path / "train.jsonl"
    long_prompt = "word " * 200
    path.write_text("\n".join([_row(0), _row(1, long_prompt), _row(2), _row(3, long_prompt)]) + "\n")
    prepared = prepare_data(DataConfig(train=str(path), max_length=32), tiny_tokenizer)
    report = prepared.report
    assert report.kept == 4 and [row.line for row in report.truncated_rows] == [2, 4]
    assert all("cut to 32" in row.reason for row in report.truncated_rows)
    assert "2 truncated" in report.summary() and "line 2:" in report.summary()


def test_an_over_long_row_is_skipped_unread_and_memory_stays_bounded(tmp_path, monkeypatch):
    path = tmp_path / "train.jsonl"
    huge = 40 * data_module.MAX_ROW_BYTES  # stands for the 200 MB row: 40 times the limit
    with open(path, "wb") as fh:
        fh.write(_row(0).encode() + b"\n")
        fh.write(b'{"prompt": "' + b"a" * huge + b'", "completion": "x"}\n')
        fh.write(_row(2).encode() + b"\n")
    tracemalloc.start()
    try:
        examples, report = load_examples(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e.source for e in examples] == ["train.jsonl:1", "train.jsonl:3"]
    assert len(report.bad_rows) == 1 and report.bad_rows[0].line == 2 and "too large" in report.bad_rows[0].reason
    assert peak < 4 * data_module.MAX_ROW_BYTES, f"reading used {peak:,} bytes for a {huge:,}-byte row"


def test_a_big_row_in_other_formats_is_a_bad_row_before_tokenizing(tmp_path):
    path = tmp_path / "train.json"
    rows = [{"prompt": "p", "completion": "c"}, {"prompt": "p" * (data_module.MAX_ROW_BYTES + 1), "completion": "c"}]
    path.write_text(json.dumps(rows))
    examples, report = load_examples(str(path))
    assert len(examples) == 1 and report.bad_rows[0].line == 1 and "too large" in report.bad_rows[0].reason


def test_an_over_long_csv_line_is_a_bad_row_not_a_crash(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("prompt,completion\nhi,there\n" + "a" * (data_module.MAX_ROW_BYTES + 1) + ",x\nok,fine\n"
                    + '"a quoted\n' + "b" * 200_000 + '",y\n')
    examples, report = load_examples(str(path))
    assert [e.source for e in examples] == ["train.csv:2", "train.csv:4", "train.csv:5"]
    assert [(b.line, "too large" in b.reason) for b in report.bad_rows] == [(3, True)]
