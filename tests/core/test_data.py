"""Data loading, format detection, bad-row reports, rendering, tokenization, splitting and batching."""

from __future__ import annotations

import csv
import json

import pytest
import tiny_models

from distill_gui.core.config import DataConfig
from distill_gui.core.data import (
    DataCollator,
    DataError,
    Example,
    load_examples,
    prepare_data,
    render_prompt,
    tokenize_example,
)

# ---- Helpers ---------------------------------------------------------------------------------------

ROWS = {
    "prompt_completion": [{"prompt": f"What is {i} plus 1?", "completion": f" {i + 1}"} for i in range(4)],
    "alpaca": [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hello.", "input": "", "output": "Hello!"},
        {"instruction": "Count to three.", "output": "1 2 3"},
    ],
    "messages": [
        {"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "What is 2 plus 2?"},
            {"role": "assistant", "content": "4"},
        ]},
        {"messages": [
            {"role": "user", "content": "Name a fox."},
            {"role": "assistant", "content": "The quick brown fox."},
        ]},
    ],
    "sharegpt": [
        {"conversations": [
            {"from": "system", "value": "Be kind."},
            {"from": "human", "value": "Hello!"},
            {"from": "gpt", "value": "Hi, how can I help you today?"},
        ]},
        {"conversations": [{"from": "human", "value": "cat in French?"}, {"from": "gpt", "value": "chat"}]},
    ],
    "question_answer": [
        {"question": "Alice has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = 7. #### 7"},
        {"question": "What is 12 plus 7?", "answer": "12 + 7 = 19.\n#### 19"},
    ],
    "text": [{"text": "The quick brown fox jumps over the lazy dog."}, {"text": "Knowledge distillation."}],
}
NESTED = {"messages", "sharegpt"}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_file(tmp_path, kind, rows):
    if kind == "jsonl":
        return write_jsonl(tmp_path / "data.jsonl", rows)
    if kind == "json":
        path = tmp_path / "data.json"
        path.write_text(json.dumps(rows), encoding="utf-8")
        return path
    if kind == "csv":
        path = tmp_path / "data.csv"
        names = list(dict.fromkeys(k for r in rows for k in r))
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=names)
            writer.writeheader()
            writer.writerows(rows)
        return path
    import datasets

    names = list(dict.fromkeys(k for r in rows for k in r))
    ds = datasets.Dataset.from_list([{k: r.get(k, "") for k in names} for r in rows])
    if kind == "parquet":
        path = tmp_path / "data.parquet"
        ds.to_parquet(str(path))
        return path
    path = tmp_path / "saved"
    ds.save_to_disk(str(path))
    return path


def data_config(train, **kwargs):
    return DataConfig(train=str(train), **kwargs)


# ---- Sources and formats ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet", "saved"])
@pytest.mark.parametrize("fmt", list(ROWS))
def test_every_format_is_detected_from_every_file_type(tmp_path, kind, fmt):
    if kind == "csv" and fmt in NESTED:
        pytest.skip("CSV cells cannot hold lists of turns")
    path = write_file(tmp_path, kind, ROWS[fmt])
    examples, report = load_examples(str(path))
    assert report.format == fmt
    assert report.total == report.kept == len(ROWS[fmt]) and not report.bad_rows
    assert all(e.format == fmt for e in examples)
    assert examples[0].completion.strip()
    first = {"jsonl": "1", "csv": "2", "json": "item 0"}.get(kind, "row 0")  # CSV line 1 is the header
    assert examples[0].source == f"{path.name}:{first}"


def test_format_fields(tmp_path):
    qa, _ = load_examples(str(write_jsonl(tmp_path / "qa.jsonl", ROWS["question_answer"])))
    assert [e.reference for e in qa] == ["7", "19"]
    assert qa[0].prompt.startswith("Alice") and qa[0].messages is None

    alpaca, _ = load_examples(str(write_jsonl(tmp_path / "a.jsonl", ROWS["alpaca"])))
    assert (alpaca[0].prompt, alpaca[0].input, alpaca[0].completion) == ("Add the numbers.", "2 and 3", "5")
    assert alpaca[2].input == ""

    chat, _ = load_examples(str(write_jsonl(tmp_path / "m.jsonl", ROWS["messages"])))
    assert chat[0].completion == "4"  # the last assistant turn is learned, earlier turns are prompt
    assert [m["role"] for m in chat[0].messages] == ["system", "user", "assistant", "user"]
    assert chat[0].prompt.endswith("User: What is 2 plus 2?\nAssistant: ")

    share, _ = load_examples(str(write_jsonl(tmp_path / "s.jsonl", ROWS["sharegpt"])))
    assert share[0].messages == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello!"}]
    assert share[0].completion == "Hi, how can I help you today?"


def test_plain_text_file_is_one_example_per_paragraph(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("First paragraph,\nsecond line.\n\n\nSecond paragraph.\n\n  \nThird.", encoding="utf-8")
    examples, report = load_examples(str(path))
    assert report.format == "text"
    assert [e.completion for e in examples] == ["First paragraph,\nsecond line.", "Second paragraph.", "Third."]
    assert [e.source for e in examples] == ["notes.txt:1", "notes.txt:5", "notes.txt:8"]
    assert all(e.prompt == "" for e in examples)
    with pytest.raises(DataError, match="plain text"):
        load_examples(str(path), format="alpaca")


def test_json_object_with_data_list_and_json_lines_named_json(tmp_path):
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": ROWS["prompt_completion"]}), encoding="utf-8")
    examples, report = load_examples(str(wrapped))
    assert len(examples) == 4 and report.format == "prompt_completion"

    lines = write_jsonl(tmp_path / "lines.json", ROWS["text"])
    examples, report = load_examples(str(lines))
    assert [e.source for e in examples] == ["lines.json:1", "lines.json:2"]
    assert any("JSON lines" in note for note in report.notes)


def test_column_mapping_overrides_detection(tmp_path):
    rows = [{"question": "What is 2 plus 2?", "answer": "four", "solution": "2 + 2 = 4"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    # Without a mapping the question/answer columns win; the mapping points prompt_completion elsewhere.
    assert load_examples(str(path))[1].format == "question_answer"
    examples, report = load_examples(str(path), columns={"prompt": "question", "completion": "solution"})
    assert report.format == "prompt_completion"
    assert report.columns == {"prompt": "question", "completion": "solution"}
    assert (examples[0].prompt, examples[0].completion) == ("What is 2 plus 2?", "2 + 2 = 4")

    mapping = {"prompt": "question", "completion": "answer"}
    examples, _ = load_examples(str(path), format="prompt_completion", columns=mapping)
    assert examples[0].completion == "four"
    with pytest.raises(DataError, match="needs the column"):
        load_examples(str(path), format="alpaca")
    with pytest.raises(DataError, match="does not have"):
        load_examples(str(path), format="alpaca", columns={"prompt": "question"})


# ---- File-level errors -----------------------------------------------------------------------------


def test_file_level_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.jsonl: data file not found"):
        load_examples(str(tmp_path / "missing.jsonl"))
    odd = tmp_path / "data.xlsx"
    odd.write_bytes(b"x")
    with pytest.raises(DataError, match=r"data\.xlsx: unknown file type \.xlsx; supported are .*\.jsonl"):
        load_examples(str(odd))
    unknown = write_jsonl(tmp_path / "cols.jsonl", [{"foo": "a", "bar": "b"}])
    with pytest.raises(DataError) as err:
        load_examples(str(unknown))
    message = str(err.value)
    assert "cols.jsonl" in message and "bar, foo" in message
    assert "alpaca (instruction, output, input?)" in message and "data.format" in message and "data.columns" in message
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(DataError, match="save_to_disk"):
        load_examples(str(folder))


def test_hub_id_offline_fails_quickly_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="nosuch-org/nosuch-data: .*not found locally and no network"):
        load_examples("nosuch-org/nosuch-data")


# ---- Bad rows --------------------------------------------------------------------------------------


def test_bad_jsonl_rows_are_reported_with_line_and_reason(tmp_path):
    good = {"prompt": "What is 1 plus 1?", "completion": "2"}
    lines = [
        json.dumps(good).encode(),
        b'{"prompt": "broken", ',
        json.dumps({"prompt": "no completion"}).encode(),
        json.dumps({"prompt": "number", "completion": 7}).encode(),
        json.dumps({"prompt": "list", "completion": ["a"]}).encode(),
        json.dumps({"prompt": "empty", "completion": "   "}).encode(),
        b'{"prompt": "bad bytes \xff\xfe", "completion": "x"}',
        b"",
        b"[1, 2]",
        json.dumps(good).encode(),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    examples, report = load_examples(str(path))
    assert [e.source for e in examples] == ["bad.jsonl:1", "bad.jsonl:10"]
    assert report.total == 9 and report.kept == 2  # the blank line is not a row
    found = {(b.file, b.line): b.reason for b in report.bad_rows}
    assert set(found) == {("bad.jsonl", n) for n in (2, 3, 4, 5, 6, 7, 9)}
    assert found[("bad.jsonl", 2)].startswith("broken JSON")
    assert found[("bad.jsonl", 3)] == "missing field 'completion'"
    assert found[("bad.jsonl", 4)] == "field 'completion' must be text, got int"
    assert found[("bad.jsonl", 5)] == "field 'completion' must be text, got list"
    assert found[("bad.jsonl", 6)] == "empty 'completion'"
    assert found[("bad.jsonl", 7)] == "invalid UTF-8 bytes"
    assert "expected a JSON object" in found[("bad.jsonl", 9)]
    summary = report.summary()
    assert "9 rows, 2 kept, 7 skipped" in summary and "line 7: invalid UTF-8 bytes" in summary


def test_bom_is_stripped_and_noted_not_dropped(tmp_path):
    for name in ("bom.jsonl", "bom.json", "bom.csv", "bom.txt"):
        path = tmp_path / name
        if name.endswith(".jsonl"):
            body = json.dumps({"prompt": "p", "completion": "c"}) + "\n"
        elif name.endswith(".json"):
            body = json.dumps([{"prompt": "p", "completion": "c"}])
        elif name.endswith(".csv"):
            body = "prompt,completion\np,c\n"
        else:
            body = "c\n"
        path.write_bytes(b"\xef\xbb\xbf" + body.encode())
        examples, report = load_examples(str(path))
        assert report.kept == 1 and not report.bad_rows, name
        assert examples[0].completion == "c"
        assert any("byte order mark" in note for note in report.notes), name
        assert "byte order mark" in report.summary()


def test_csv_rows_report_the_line_where_the_row_starts(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(
        b"prompt,completion\n"
        b'"multi\nline prompt",fine\n'   # lines 2-3
        b"no completion,\n"              # line 4
        b"bad \xff bytes,x\n"            # line 5
        b"one,two,three\n"               # line 6
        b"ok,yes\n"                      # line 7
    )
    examples, report = load_examples(str(path))
    assert [(e.source, e.prompt) for e in examples] == [("d.csv:2", "multi\nline prompt"), ("d.csv:7", "ok")]
    assert [(b.line, b.reason) for b in report.bad_rows] == [
        (4, "empty 'completion'"),
        (5, "invalid UTF-8 bytes"),
        (6, "has 3 fields, the header has 2"),
    ]


def test_json_list_items_and_bad_turns(tmp_path):
    path = tmp_path / "chat.json"
    rows = [
        ROWS["messages"][1],
        {"messages": "not a list"},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 3}]},
        "a string",
    ]
    path.write_text(json.dumps(rows), encoding="utf-8")
    examples, report = load_examples(str(path))
    assert len(examples) == 1
    assert [(b.unit, b.line) for b in report.bad_rows] == [("item", 1), ("item", 2), ("item", 3), ("item", 4)]
    reasons = [b.reason for b in report.bad_rows]
    assert "must be a list" in reasons[0] and "no assistant turn" in reasons[1]
    assert "content must be text, got int" in reasons[2] and "expected a JSON object" in reasons[3]
    assert str(report.bad_rows[0]) == "chat.json item 1: " + reasons[0]


def test_invalid_utf8_in_text_file_skips_only_that_paragraph(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"good one\n\nbad \xc3 para\nmore\n\ngood two\n")
    examples, report = load_examples(str(path))
    assert [e.completion for e in examples] == ["good one", "good two"]
    assert [(b.line, b.reason) for b in report.bad_rows] == [(3, "invalid UTF-8 bytes (line 3)")]


# ---- Refusals --------------------------------------------------------------------------------------


def test_refuses_when_no_row_is_usable(tmp_path, tiny_tokenizer):
    path = tmp_path / "broken.jsonl"
    path.write_text("{not json\n{also not\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no usable rows in .*broken\.jsonl: .*line 1: broken JSON"):
        prepare_data(data_config(path), tiny_tokenizer)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no usable rows"):
        prepare_data(data_config(empty), tiny_tokenizer)


def test_refuses_over_max_bad_fraction(tmp_path, tiny_tokenizer):
    rows = [json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) for i in range(8)] + ["{oops"] * 2
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        prepare_data(data_config(path, max_bad_fraction=0.1), tiny_tokenizer)
    message = str(err.value)
    assert "2 of 10 rows" in message and "data.max_bad_fraction" in message and "line 9: broken JSON" in message
    prepared = prepare_data(data_config(path, max_bad_fraction=0.2), tiny_tokenizer)
    assert len(prepared.train) == 8 and prepared.report.bad_fraction == pytest.approx(0.2)


# ---- Rendering and tokenization --------------------------------------------------------------------


def test_chat_template_is_used_when_the_tokenizer_has_one(tiny_tokenizer):
    example = Example(prompt="What is 2 plus 2?", completion="4", format="question_answer")
    assert render_prompt(example, tiny_tokenizer) == "<|user|>What is 2 plus 2?</s><|assistant|>"
    assert render_prompt(example, tiny_tokenizer, system_prompt="Be brief.") == (
        "<|system|>Be brief.</s><|user|>What is 2 plus 2?</s><|assistant|>"
    )
    assert render_prompt(example, tiny_tokenizer, chat_template="never") == "Question: What is 2 plus 2?\nAnswer: "

    chat = Example(prompt="", completion="4", format="messages",
                   messages=[{"role": "system", "content": "Own."}, {"role": "user", "content": "Hi"}])
    # The row's own system turn wins over data.system_prompt.
    assert render_prompt(chat, tiny_tokenizer, system_prompt="Other") == "<|system|>Own.</s><|user|>Hi</s><|assistant|>"

    alpaca = Example(prompt="Add.", input="2 and 3", completion="5", format="alpaca")
    assert render_prompt(alpaca, tiny_tokenizer) == "<|user|>Add.\n\n2 and 3</s><|assistant|>"
    assert render_prompt(alpaca, tiny_tokenizer, chat_template="never") == (
        "### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n"
    )
    assert render_prompt(Example(prompt="", completion="x", format="text"), tiny_tokenizer) == ""

    plain = tiny_models.build_tokenizer(chat_template=False)
    assert render_prompt(example, plain) == "Question: What is 2 plus 2?\nAnswer: "
    with pytest.raises(DataError, match="no chat template"):
        render_prompt(example, plain, chat_template="always")


def test_labels_mask_exactly_the_prompt(tiny_tokenizer):
    example = Example(prompt="What is 12 plus 7?", completion=" 12 + 7 = 19. #### 19", format="question_answer")
    feature = tokenize_example(example, tiny_tokenizer, max_length=256)
    prompt_ids = tiny_tokenizer(render_prompt(example, tiny_tokenizer), add_special_tokens=False)["input_ids"]
    completion_ids = tiny_tokenizer(example.completion, add_special_tokens=False)["input_ids"]
    eos = tiny_tokenizer.eos_token_id
    assert feature["input_ids"] == prompt_ids + completion_ids + [eos]
    assert feature["labels"] == [-100] * len(prompt_ids) + completion_ids + [eos]
    assert feature["attention_mask"] == [1] * len(feature["input_ids"])
    trained = [t for t in feature["labels"] if t != -100]
    assert tiny_tokenizer.decode(trained) == example.completion + "</s>"

    text = tokenize_example(Example(prompt="", completion="The quick brown fox.", format="text"), tiny_tokenizer, 64)
    assert -100 not in text["labels"] and text["labels"][-1] == eos


def test_bos_is_added_once_when_the_tokenizer_adds_it():
    from tokenizers import processors

    tok = tiny_models.build_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)]
    )
    bos = tok.bos_token_id
    example = Example(prompt="Hi", completion="Hello", format="prompt_completion")
    feature = tokenize_example(example, tok, 64, chat_template="never")
    assert feature["input_ids"][0] == bos and feature["input_ids"].count(bos) == 1
    assert feature["labels"][0] == -100
    tok.chat_template = "<s>" + tiny_models.CHAT_TEMPLATE  # a template that writes BOS itself
    feature = tokenize_example(example, tok, 64)
    assert feature["input_ids"][0] == bos and feature["input_ids"].count(bos) == 1


def test_truncation_keeps_completion_tokens(tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    long_prompt = Example(prompt="The quick brown fox jumps over the lazy dog. " * 40, completion=" 19",
                          format="prompt_completion")
    feature = tokenize_example(long_prompt, tiny_tokenizer, max_length=16)
    trained = [t for t in feature["labels"] if t != -100]
    completion_ids = tiny_tokenizer(" 19", add_special_tokens=False)["input_ids"] + [eos]
    assert len(feature["input_ids"]) == 16 and trained == completion_ids
    full_prompt = tiny_tokenizer(render_prompt(long_prompt, tiny_tokenizer), add_special_tokens=False)["input_ids"]
    assert feature["input_ids"][: 16 - len(completion_ids)] == full_prompt[-(16 - len(completion_ids)):]  # left cut

    both_long = Example(prompt="fox " * 50, completion=" dog" * 50, format="prompt_completion")
    feature = tokenize_example(both_long, tiny_tokenizer, max_length=16)
    trained = [t for t in feature["labels"] if t != -100]
    assert len(feature["input_ids"]) == 16 and len(trained) >= 16 // 4
    assert trained[-1] != eos  # the completion was cut, so it does not end
    short_prompt = Example(prompt="Hi", completion=" dog" * 50, format="prompt_completion")
    feature = tokenize_example(short_prompt, tiny_tokenizer, max_length=16)
    assert feature["labels"][:3].count(-100) >= 1 and len(feature["input_ids"]) == 16  # prompt kept whole


def test_prepare_data_tokenizes_and_uses_the_chat_template(tiny_data, tiny_tokenizer):
    prepared = prepare_data(data_config(tiny_data), tiny_tokenizer)
    assert prepared.format == "prompt_completion" and len(prepared.train) == 40 and prepared.eval is None
    row = prepared.train[0]
    assert set(row) == {"input_ids", "attention_mask", "labels"}
    assert row["input_ids"][0] == tiny_tokenizer.convert_tokens_to_ids("<|user|>")
    assert prepared.train_examples[0].reference == "3"
    plain = prepare_data(data_config(tiny_data, chat_template="never"), tiny_tokenizer)
    assert tiny_tokenizer.decode(plain.train[0]["input_ids"]).startswith("Question: What is 1 plus 2?")


def test_rows_dropped_at_tokenization_are_counted(tmp_path):
    class SilentCompletion:
        """Wraps the tiny tokenizer but turns completions that say 'nothing' into no tokens."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, text, **kwargs):
            out = self.inner(text, **kwargs)
            if isinstance(text, list):
                out["input_ids"] = [[] if t == "nothing" else ids for t, ids in zip(text, out["input_ids"])]
            return out

    rows = [{"prompt": "p", "completion": "nothing"}] + [{"prompt": "p", "completion": "c"}] * 3
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    tok = SilentCompletion(tiny_models.build_tokenizer(chat_template=False))
    with pytest.raises(DataError, match=r"1 of 4 rows.*line 1: no completion tokens"):
        prepare_data(data_config(path), tok)
    prepared = prepare_data(data_config(path, max_bad_fraction=0.5), tok)
    assert len(prepared.train) == 3 and prepared.report.kept == 3
    assert str(prepared.report.bad_rows[0]) == "d.jsonl line 1: no completion tokens"


# ---- Splitting and batching ------------------------------------------------------------------------


def test_eval_split_sizes_and_determinism(tiny_data, tiny_tokenizer):
    a = prepare_data(data_config(tiny_data, eval_fraction=0.25, seed=3), tiny_tokenizer)
    b = prepare_data(data_config(tiny_data, eval_fraction=0.25, seed=3), tiny_tokenizer)
    c = prepare_data(data_config(tiny_data, eval_fraction=0.25, seed=4), tiny_tokenizer)
    assert (len(a.train), len(a.eval)) == (30, 10)
    assert len(a.train_examples) == 30 and len(a.eval_examples) == 10
    sources = lambda p: [e.source for e in p.eval_examples]  # noqa: E731
    assert sources(a) == sources(b) and sources(a) != sources(c)
    assert not set(sources(a)) & {e.source for e in a.train_examples}
    assert a.eval[0]["input_ids"] == tokenize_example(a.eval_examples[0], tiny_tokenizer, 512)["input_ids"]


def test_tiny_eval_fraction_holds_out_one_row(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "two.jsonl", ROWS["question_answer"])
    prepared = prepare_data(data_config(path, eval_fraction=0.01), tiny_tokenizer)
    assert (len(prepared.train), len(prepared.eval)) == (1, 1)
    one = write_jsonl(tmp_path / "one.jsonl", ROWS["question_answer"][:1])
    prepared = prepare_data(data_config(one, eval_fraction=0.5), tiny_tokenizer)
    assert len(prepared.train) == 1 and prepared.eval is None


def test_eval_file_is_read_with_the_train_format(tmp_path, tiny_tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", ROWS["question_answer"])
    evalf = write_file(tmp_path, "csv", ROWS["question_answer"])
    prepared = prepare_data(data_config(train, eval=str(evalf), eval_fraction=0.5), tiny_tokenizer)
    assert len(prepared.train) == 2 and len(prepared.eval) == 2
    assert prepared.eval_report.format == "question_answer" and prepared.eval_examples[1].reference == "19"


def test_collator_right_pads_and_ignores_extra_keys():
    features = [
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7], "source": "x"},
        {"input_ids": [8], "attention_mask": [1], "labels": [8], "source": "y"},
    ]
    batch = DataCollator(pad_token_id=0)(features)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert str(batch["input_ids"].dtype) == "torch.int64"


def test_collator_batches_a_prepared_dataset(tiny_data, tiny_tokenizer):
    prepared = prepare_data(data_config(tiny_data), tiny_tokenizer)
    rows = [prepared.train[i] for i in range(4)]
    batch = DataCollator(tiny_tokenizer.pad_token_id)(rows)
    longest = max(len(r["input_ids"]) for r in rows)
    assert batch["input_ids"].shape == (4, longest)
    assert batch["attention_mask"].sum().item() == sum(len(r["input_ids"]) for r in rows)


def test_saved_dataset_dict_reads_the_train_split(tmp_path):
    import datasets

    splits = datasets.DatasetDict({
        "train": datasets.Dataset.from_list(ROWS["question_answer"]),
        "test": datasets.Dataset.from_list(ROWS["question_answer"][:1]),
    })
    splits.save_to_disk(str(tmp_path / "gsm"))
    examples, report = load_examples(str(tmp_path / "gsm"))
    assert len(examples) == 2 and report.format == "question_answer"
    assert [e.source for e in examples] == ["gsm:row 0", "gsm:row 1"]
    assert any("'train' split" in note for note in report.notes)


# ---- The trained turn ends as the chat template ends it (issue 9) ------------------------------------

PHI_LIKE = (  # an end-of-turn token of its own (<|end|>), no EOS: like ChatML's <|im_end|>, Llama-3's <|eot_id|>
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _turn_tokenizer(template: str):
    tok = tiny_models.build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|end|>"]})
    tok.chat_template = template
    return tok


def _trained(feature) -> list[int]:
    return [t for t in feature["labels"] if t != -100]


def test_the_trained_turn_ends_with_the_templates_end_of_turn_not_eos():
    tok = _turn_tokenizer(PHI_LIKE)
    end = tok.convert_tokens_to_ids("<|end|>")
    example = Example(prompt="What is 2 plus 2?", completion="4", format="prompt_completion")
    feature = tokenize_example(example, tok, 64)
    completion_ids = tok("4", add_special_tokens=False)["input_ids"]
    assert _trained(feature) == completion_ids + [end]
    assert tok.eos_token_id not in feature["input_ids"]
    # A completion that already carries the end-of-turn does not get a second one.
    again = tokenize_example(Example(prompt="Hi", completion="4<|end|>", format="prompt_completion"), tok, 64)
    assert _trained(again) == completion_ids + [end]
    # Without the chat template the completion still ends with EOS.
    plain = tokenize_example(example, tok, 64, chat_template="never")
    assert _trained(plain) == completion_ids + [tok.eos_token_id]


def test_eos_is_trained_where_the_template_writes_it():
    tok = _turn_tokenizer(PHI_LIKE.replace("<|end|>\n", "<|end|>{{ eos_token }}\n"))
    feature = tokenize_example(Example(prompt="Hi", completion="Hello", format="prompt_completion"), tok, 64)
    assert tok.decode(_trained(feature)) == "Hello<|end|></s>"
    eos_template = tokenize_example(Example(prompt="Hi", completion="Hello", format="prompt_completion"),
                                    tiny_models.build_tokenizer(), 64)  # the tiny template ends a turn with EOS
    assert _trained(eos_template)[-1] == tiny_models.build_tokenizer().eos_token_id
    assert _trained(eos_template).count(tiny_models.build_tokenizer().eos_token_id) == 1


def test_prepare_data_trains_the_templates_end_of_turn(tiny_data):
    tok = _turn_tokenizer(PHI_LIKE)
    end = tok.convert_tokens_to_ids("<|end|>")
    prepared = prepare_data(data_config(tiny_data), tok)
    for row in prepared.train:
        trained = _trained(row)
        assert trained[-1] == end and trained.count(end) == 1 and tok.eos_token_id not in row["input_ids"]


def test_generation_stops_at_the_templates_end_of_turn():
    from distill_gui.core.generation import _stop_ids

    tok = _turn_tokenizer(PHI_LIKE)
    model = tiny_models.build_llama(tok)
    assert tok.convert_tokens_to_ids("<|end|>") in _stop_ids(tok, model)
    assert tok.eos_token_id in _stop_ids(tok, model)
