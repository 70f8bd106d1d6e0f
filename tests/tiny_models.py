"""Tiny real models and tokenizers built on the spot (no network), shared by the tests."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: What is 12 plus 7? Answer: 12 + 7 = 19. #### 19",
    "Alice has 3 apples and buys 4 more, so she has 7 apples.",
    "Knowledge distillation moves what a large teacher knows into a small student.",
    "User: Hello! Assistant: Hi, how can I help you today?",
    "Translate to French: cat -> chat, dog -> chien.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 + - * / = ( ) , . ? !",
] * 20

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(vocab_size: int = 300, chat_template: bool = True, digits: bool = True):
    """A byte-level BPE tokenizer trained on CORPUS, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    pre = [pre_tokenizers.ByteLevel(add_prefix_space=False)]
    if digits:
        pre.insert(0, pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(pre)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_llama(tokenizer, hidden: int = 32, layers: int = 2, heads: int = 2, vocab_pad: int = 0, seed: int = 0):
    """A randomly initialised tiny Llama whose vocab matches ``tokenizer`` (plus ``vocab_pad`` rows)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer) + vocab_pad,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def save_pair_member(folder: Path, tokenizer, model) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
