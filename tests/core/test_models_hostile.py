"""Hostile models: damaged GGUF headers, tokenizers beyond the vocabulary, chat templates that never end."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest
import tiny_models

from distill_gui.core import chat_templates
from distill_gui.core.chat_templates import BrokenChatTemplate, check_chat_template, render_chat_template
from distill_gui.core.config import ModelConfig
from distill_gui.core.data import Example, render_prompt
from distill_gui.core.gguf_header import check_gguf_header
from distill_gui.core.model_info import describe_model
from distill_gui.core.models import ModelError, load_model


@pytest.fixture(scope="module")
def good_gguf(tmp_path_factory):
    import gguf

    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_token_list(["<s>", "</s>", "a", "b"])
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _damaged(good, tmp_path, edit):
    data = bytearray(good.read_bytes())
    data = edit(data)
    path = tmp_path / "bad.gguf"
    path.write_bytes(bytes(data))
    return path


def _set(offset, fmt, value):
    def edit(data):
        struct.pack_into("<" + fmt, data, offset, value)
        return data

    return edit


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: b"GGML" + d[4:], "does not start with GGUF"),
        (_set(4, "I", 99), "version 99"),
        (_set(8, "Q", 2**40), "tensor count is 1,099,511,627,776"),
        (_set(16, "Q", 2**33), "metadata count"),
        (_set(24, "Q", 2**50), "past the end of the file"),  # the first key's length
        (lambda d: d[:60], "cut short"),
        (lambda d: d[:20], "only 20 bytes"),
    ],
)
def test_a_damaged_gguf_header_names_the_file_and_the_problem(good_gguf, tmp_path, edit, words):
    check_gguf_header(good_gguf)
    bad = _damaged(good_gguf, tmp_path, edit)
    with pytest.raises(ModelError, match=words) as info:
        check_gguf_header(bad)
    assert str(info.value).startswith(f"{bad}: damaged GGUF file")
    with pytest.raises(ModelError, match=words):  # before transformers parses it
        describe_model(ModelConfig(path=str(bad)), "teacher")


def test_tokenizer_ids_beyond_the_vocabulary_name_the_tokenizer(tmp_path):
    tokenizer = tiny_models.build_tokenizer(vocab_size=300)
    small = tiny_models.build_tokenizer(vocab_size=200)
    model_dir = tiny_models.save_pair_member(tmp_path / "model", small, tiny_models.build_llama(small, hidden=16, layers=1))
    tokenizer.save_pretrained(tmp_path / "big-tokenizer")
    cfg = ModelConfig(path=str(model_dir), tokenizer=str(tmp_path / "big-tokenizer"), device="cpu")
    assert len(tokenizer) > len(small)
    for call in (lambda: describe_model(cfg, "student"), lambda: load_model(cfg, "student")):
        with pytest.raises(ModelError, match=r"big-tokenizer: the student tokenizer gives token ids up to \d+, but the model"):
            call()


LOOPING = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}{{ messages[0].content }}"
FLOODING = "{% for a in range(100000) %}{{ messages[0].content * 50 }}{% endfor %}"
RECURSING = "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"


@pytest.mark.parametrize(
    ("template", "words", "limit_s"), [(LOOPING, "loops", 0.5), (FLOODING, "wrote", 10.0), (RECURSING, "calls itself", 10.0)]
)
def test_a_broken_chat_template_is_reported_not_hung_on(template, words, limit_s, monkeypatch):
    monkeypatch.setattr(chat_templates, "TIME_LIMIT_S", limit_s)  # generous where another limit must strike first
    tokenizer = tiny_models.build_tokenizer()
    tokenizer.chat_template = template
    started = time.monotonic()
    with pytest.raises(BrokenChatTemplate, match=f"chat template is broken: .*{words}"):
        render_prompt(Example(prompt="Hi", completion="x"), tokenizer)  # what train, eval and generate call
    with pytest.raises(BrokenChatTemplate):
        check_chat_template(tokenizer)
    assert time.monotonic() - started < 4 * limit_s + 5


def test_a_good_template_renders_as_transformers_does():
    tokenizer = tiny_models.build_tokenizer()
    messages = [{"role": "user", "content": "What is 2 plus 2?"}]
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert render_chat_template(tokenizer, messages, add_generation_prompt=True) == expected
    check_chat_template(tokenizer)
    tokenizer.chat_template = "{{ raise_exception('system message required') }}"
    check_chat_template(tokenizer)  # a template's own refusal is not a broken template
