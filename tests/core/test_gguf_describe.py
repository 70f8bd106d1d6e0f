"""A GGUF model is described from its header alone, with the same facts transformers' own reading gives
(config, meta-device model, AutoTokenizer), and its tokenizer is built without the config pass."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tiny_models

from distill_gui.core import model_info
from distill_gui.core.config import ModelConfig
from distill_gui.core.gguf_header import read_gguf_header
from distill_gui.core.model_info import describe_model
from distill_gui.core.models import ModelError, load_tokenizer, resolve_source
from distill_gui.core.vocab import PROBE_TEXTS, check_compatibility


def _smollm_like_tokenizer():
    """A byte-level BPE tokenizer with SmolLM2's special tokens (a GGUF file of a gpt2-type tokenizer is read
    back by transformers with <|endoftext|> as its unknown token, added when the vocabulary lacks it)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(tiny_models.CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>")
    fast.chat_template = tiny_models.CHAT_TEMPLATE
    return fast


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    """A tiny Llama converted by llama.cpp's converter to q8_0, as a user's GGUF file would be."""
    from distill_gui.core.export_gguf import convert

    root = tmp_path_factory.mktemp("gguf")
    tokenizer = _smollm_like_tokenizer()
    folder = tiny_models.save_pair_member(root / "hf", tokenizer, tiny_models.build_llama(tokenizer, hidden=64, layers=2, seed=5))
    return convert(folder, root / "tiny-teacher.Q8_0.gguf", "q8_0")


def _write(path: Path, arch: str, tokens: list[str] | None, **ints: int) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in ints.items():
        writer.add_uint32(key, value)
    if tokens is not None:
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list(tokens)
    writer.add_tensor("token_embd.weight", np.zeros((len(tokens or "ab"), 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_header_gives_the_facts_transformers_gives(tiny_gguf):
    cfg = ModelConfig(path=str(tiny_gguf))
    source = resolve_source(cfg)
    fast = describe_model(cfg, "teacher")
    slow = model_info._describe(cfg, "teacher", source)  # AutoConfig + a meta-device model + AutoTokenizer
    assert fast == slow
    assert (fast.model_type, fast.num_layers, fast.hidden_size, fast.tie_word_embeddings) == ("llama", 2, 64, False)
    assert fast.disk_dtype == "Q8_0" and fast.chat_template is True
    assert "Q8_0" in fast.summary() and "de-quantized (fp32)" in fast.summary()


def test_the_tokenizer_is_the_one_autotokenizer_builds(tiny_gguf):
    from transformers import AutoTokenizer

    cfg = ModelConfig(path=str(tiny_gguf))
    fast = load_tokenizer(cfg, "teacher")
    reference = AutoTokenizer.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name)
    assert type(fast) is type(reference)
    assert fast.get_vocab() == reference.get_vocab() and len(fast) == len(reference)
    for text in PROBE_TEXTS:
        assert fast(text)["input_ids"] == reference(text)["input_ids"]
    for role in ("bos_token", "eos_token", "unk_token", "pad_token"):
        assert str(getattr(fast, role)) == str(getattr(reference, role))
    assert fast.chat_template == reference.chat_template == tiny_models.CHAT_TEMPLATE
    # the pair check's verdict beside the model's own HF folder is the one transformers' own tokenizer gives
    student = AutoTokenizer.from_pretrained(str(tiny_gguf.parent / "hf"))
    info = describe_model(cfg, "teacher")
    verdict = check_compatibility(fast, student, info.vocab_size, info.vocab_size)
    assert verdict == check_compatibility(reference, student, info.vocab_size, info.vocab_size)


def test_the_header_is_read_with_the_arrays_asked_for(tiny_gguf):
    header = read_gguf_header(tiny_gguf, full_arrays=("tokenizer.ggml.tokens",))
    tokens = header.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, list) and tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert header.metadata["tokenizer.ggml.merges"] == len(read_gguf_header(tiny_gguf, ("tokenizer.ggml.merges",)).metadata["tokenizer.ggml.merges"])
    embedding = next(t for t in header.tensors if t.name == "token_embd.weight")
    assert embedding.dims == (64, len(tokens)) and embedding.count == 64 * len(tokens)


def test_an_architecture_transformers_cannot_load_is_named(tmp_path):
    path = _write(tmp_path / "m.gguf", "rwkv6", ["a", "b"], **{"rwkv6.block_count": 1})
    with pytest.raises(ModelError, match=r"architecture 'rwkv6', which transformers cannot load.*teacher.url"):
        describe_model(ModelConfig(path=str(path)), "teacher")


def test_a_gguf_file_without_a_tokenizer_says_to_set_one(tmp_path):
    path = _write(tmp_path / "m.gguf", "llama", None, **{"llama.block_count": 1, "llama.embedding_length": 8})
    with pytest.raises(ModelError, match=r"holds no tokenizer.*set teacher.tokenizer"):
        describe_model(ModelConfig(path=str(path)), "teacher")


def test_a_token_id_past_the_embeddings_is_named_before_loading(tiny_pair, tmp_path):
    """The tests' tiny teacher as a GGUF file: 300 embedding rows, but transformers builds its tokenizer with one
    token more (<|endoftext|>, the gpt2-type tokenizer's default unknown token)."""
    from distill_gui.core.export_gguf import convert

    path = convert(tiny_pair[0], tmp_path / "teacher.gguf", "f16")
    with pytest.raises(ModelError, match=r"gives token ids up to 300, but the model .*teacher.gguf has 300 token embeddings"):
        describe_model(ModelConfig(path=str(path)), "teacher")


def test_the_licence_is_read_from_the_header(tmp_path):
    import gguf

    from distill_gui.core.licences import detect_licence

    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    writer.add_token_list([f"t{i}" for i in range(5000)])  # a vocabulary before the licence key
    writer.add_string("general.license", "apache-2.0")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    found = detect_licence(tmp_path / "m.gguf")
    assert (found.key, found.source) == ("apache-2.0", "GGUF general.license")


def test_describing_a_folder_model_still_loads_its_config(tiny_pair):
    info = describe_model(ModelConfig(path=str(tiny_pair[0])), "teacher")
    assert info.source.kind == "folder" and info.chat_template is True
    assert dataclasses.replace(info, chat_template=None).summary() == info.summary()
