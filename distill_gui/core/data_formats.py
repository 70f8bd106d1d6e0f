"""The data formats: their fields, detecting one from the columns, and parsing a row into an Example."""

from __future__ import annotations

from distill_gui.core.data_types import Example

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
