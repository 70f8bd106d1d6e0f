"""Asking the teacher and the student the same prompt, in a child process of the app
(``python -m distill_gui.core.ask_service``): loading models and generating never hold the app's
interpreter lock, and Cancel ends the child (the models load again on the next question).

One JSON request a line on stdin (``{"id": N, "prompt": ..., "teacher": ..., "student": ..., "device":
..., "chat_template": ..., "data_format": ..., "system_prompt": ..., "max_new_tokens": ...}``); JSON
answers on stdout: ``{"id": N, "kind": "status", "text": ...}``, then ``"answered"`` (``teacher``,
``student``: the texts, or null for a model not given) or ``"failed"`` (``message``). A request with
``"kind": "disagreement"`` and ``samples`` ([{prompt, answer}]) is answered with ``"disagreement"``:
each answer's token scores and the hardest tokens (core.token_disagreement). Models stay loaded
between questions; the child ends when stdin closes.
"""

from __future__ import annotations

import json
import sys
from typing import Callable


def answer_request(pair, request: dict, emit: Callable[[dict], None]) -> None:
    """Answer one request with ``pair`` (a :class:`~distill_gui.core.side_by_side.SideBySide`)."""
    from distill_gui.core.errors import describe
    from distill_gui.core.side_by_side import PromptStyle

    request_id = request.get("id")
    pair.status = lambda text: emit({"id": request_id, "kind": "status", "text": text})
    pair.paths = {"teacher": request.get("teacher") or None, "student": request.get("student") or None}
    pair.device = request.get("device") or "auto"
    style = PromptStyle(
        chat_template=request.get("chat_template") or "auto",
        system_prompt=request.get("system_prompt"),
        data_format=request.get("data_format") or "prompt_completion",
    )
    try:
        answer = pair.answer([str(request["prompt"])], int(request.get("max_new_tokens") or 64), style=style)[0]
    except Exception as exc:  # noqa: BLE001 - shown to the user as text
        emit({"id": request_id, "kind": "failed", "message": describe(exc)})
        return
    emit({"id": request_id, "kind": "answered", "teacher": answer.teacher, "student": answer.student})


def disagreement_request(pair, request: dict, emit: Callable[[dict], None]) -> None:
    """Score answers token by token (core.token_disagreement): ``samples`` [{prompt, answer}] → per-answer
    token scores and the hardest tokens over all of them."""
    import dataclasses

    from distill_gui.core.errors import describe
    from distill_gui.core.token_disagreement import hardest_tokens, score_answer

    request_id = request.get("id")
    pair.status = lambda text: emit({"id": request_id, "kind": "status", "text": text})
    pair.paths = {"teacher": request.get("teacher") or None, "student": request.get("student") or None}
    pair.device = request.get("device") or "auto"
    try:
        teacher, student = pair.model("teacher"), pair.model("student")
        pair.status("comparing the two models token by token…")
        answers = [
            score_answer(
                teacher.model, student.model, teacher.tokenizer, str(s["prompt"]), str(s["answer"]), student_tokenizer=student.tokenizer
            )
            for s in request.get("samples", [])
        ]
    except Exception as exc:  # noqa: BLE001 - shown to the user as text
        emit({"id": request_id, "kind": "failed", "message": describe(exc)})
        return
    emit(
        {
            "id": request_id,
            "kind": "disagreement",
            "answers": [[dataclasses.asdict(t) for t in a] for a in answers],
            "hardest": hardest_tokens(answers),
        }
    )


def serve(stdin=None, stdout=None) -> int:
    """Answer requests until stdin ends."""
    from distill_gui.core.side_by_side import SideBySide

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    def emit(answer: dict) -> None:
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()

    pair = SideBySide()
    for line in stdin:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if isinstance(request, dict) and request.get("kind") == "disagreement":
            disagreement_request(pair, request, emit)
        elif isinstance(request, dict) and "prompt" in request:
            answer_request(pair, request, emit)
    return 0


if __name__ == "__main__":
    raise SystemExit(serve())
