"""The demo tokenizer: a small byte-level BPE that gives every digit its own token.

Splitting digits (``pre_tokenizers.Digits(individual_digits=True)``) makes arithmetic learnable for a
tiny model: ``"335"`` is always ``3 3 5``, never an arbitrary merged chunk. The tokenizer adds no BOS
or EOS by itself and has no chat template: the demo's prompts are plain text
(``"Question: ...\\nAnswer:"``), and training appends ``</s>`` after each completion.

Run ``python -m distill_gui.demo.tokenizer --out DIR`` to rebuild it from the task's seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")
VOCAB_SIZE = 512


def build_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE):
    """Train a byte-level BPE (digits split one by one) on ``texts``; returns a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", model_max_length=512
    )


def corpus(seed: int = 0, n: int = 5000) -> list[str]:
    """Rendered prompts and solutions of the train split (what the tokenizer is trained on)."""
    from distill_gui.demo.task import make_splits

    train, _ = make_splits(seed, n_train=n)
    return [f"{p.prompt()} {p.solution}" for p in train]


def train_tokenizer(out: str | Path, seed: int = 0, vocab_size: int = VOCAB_SIZE):
    """Build the demo tokenizer from the task's train split and save it to ``out``."""
    tokenizer = build_tokenizer(corpus(seed), vocab_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    return tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to save the tokenizer in")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    args = parser.parse_args(argv)
    tok = train_tokenizer(args.out, args.seed, args.vocab_size)
    print(f"tokenizer with {len(tok)} tokens saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
