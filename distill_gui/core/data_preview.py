"""The Data page's preview — the parsed rows, the detected format and the skipped rows of the training
file — read in a child process of the app (``python -m distill_gui.core.data_preview``).

Parsing a large JSON, CSV or parquet file is interpreter work for seconds: in a thread of the app it held
the interpreter lock and the window waited. The child reads one JSON request a line on stdin
(``{"id": N, "path": ..., "format": ..., "columns": {...}}``) and answers each with one JSON line on
stdout: ``{"id": N, "kind": "loaded", "examples": [...], "report": {...}, "count": N}`` (the first
:data:`PREVIEW_ROWS` examples) or ``{"id": N, "kind": "failed", "message": ...}``. Requests not yet read
when a newer one comes are dropped; the child ends when stdin closes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from typing import Any

PREVIEW_ROWS = 500
"""Rows shown in the preview table (the report counts all of them)."""


def preview(path: str, fmt: str, columns: dict) -> dict:
    """The answer for one file: its first rows, its report and its number of usable rows."""
    from distill_gui.core.data import load_examples

    examples, report = load_examples(path, fmt, dict(columns or {}))
    return {
        "kind": "loaded",
        "examples": [dataclasses.asdict(e) for e in examples[:PREVIEW_ROWS]],
        "report": dataclasses.asdict(report),
        "count": len(examples),
    }


def decode_examples(rows: list[dict]) -> list[Any]:
    from distill_gui.core.data import Example

    return [Example(**row) for row in rows]


def decode_report(data: dict) -> Any:
    from distill_gui.core.data import BadRow, DataReport

    rows = {key: [BadRow(**row) for row in data.get(key) or []] for key in ("bad_rows", "truncated_rows")}
    return DataReport(**{**data, **rows})


def serve(stdin=None, stdout=None) -> int:
    """Answer requests until stdin ends (the app closed it or ended)."""
    from distill_gui.core.errors import describe
    from distill_gui.core.pair_check import LatestRequests

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    requests = LatestRequests()
    threading.Thread(target=requests.read, args=(stdin,), daemon=True, name="data-preview-requests").start()
    while True:
        request = requests.next()
        if request is None:
            return 0
        request_id, body = request
        try:
            answer = preview(str(body.get("path") or ""), str(body.get("format") or "auto"), body.get("columns") or {})
        except Exception as exc:  # noqa: BLE001 - the file cannot be used: the message says why
            answer = {"kind": "failed", "message": describe(exc)}
        stdout.write(json.dumps({"id": request_id, **answer}) + "\n")
        stdout.flush()


if __name__ == "__main__":
    raise SystemExit(serve())
