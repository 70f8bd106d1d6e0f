"""Rendering an example's prompt (chat template or plain) and tokenizing it with its completion for training."""

from __future__ import annotations

from distill_gui.core.config import CHAT_TEMPLATE_CHOICES
from distill_gui.core.data_types import BadRow, DataError, DataReport, Example

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
