"""The recovery table: numbers from the rows, teacher first, the CSV header the issue fixes."""

from __future__ import annotations

import csv

import pytest

from distill_gui.demo.recovery import CSV_HEADER, RecoveryRow, to_markdown, to_text, with_recovery, write_all


def _rows():
    return with_recovery([
        RecoveryRow("teacher", 3_500_000, "teacher", 0.8, 900.0),
        RecoveryRow("student-L", 900_000, "answer_sft", 0.2, 2000.0),
        RecoveryRow("student-L", 900_000, "trace_sft", 0.6, 2000.0),
        RecoveryRow("student-L", 900_000, "trace_sft_kd", 0.64, 2000.0),
        RecoveryRow("student-S", 115_000, "trace_sft", 0.4, 3000.0),
    ])


def test_recovery_is_student_over_teacher():
    rows = _rows()
    assert [r.recovery_pct for r in rows] == [100.0, 25.0, 75.0, 80.0, 50.0]
    with pytest.raises(ValueError):
        with_recovery(rows[1:])
    zero = with_recovery([RecoveryRow("teacher", 1, "teacher", 0.0, 1.0), RecoveryRow("s", 1, "trace_sft", 0.0, 1.0)])
    assert zero[1].recovery_pct == 0.0


def test_files(tmp_path):
    paths = write_all(_rows(), tmp_path, "title")
    with open(paths["csv"], newline="") as fh:
        table = list(csv.reader(fh))
    assert tuple(table[0]) == CSV_HEADER == ("model", "params", "method", "accuracy", "recovery_pct", "tokens_per_s")
    assert table[1] == ["teacher", "3500000", "teacher", "0.8000", "100.0", "900.0"]
    assert [r[2] for r in table[1:]] == ["teacher", "answer_sft", "trace_sft", "trace_sft_kd", "trace_sft"]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["md"].read_text()
    assert "| student-L | 0.90M (1/4) | trace SFT + logit KD | 64.0% | 80.0% | 2000 |" in md


def test_text_table_lines_up():
    text = to_text(_rows()).splitlines()
    assert text[0].startswith("model") and set(text[1]) <= {"-", " "}
    assert len(text) == 2 + 5
    assert "teacher" in text[2] and "100.0%" in text[2]
    assert to_markdown(_rows()).count("\n") == 2 + 5
