"""KD's offline teacher cache in a run: run the teacher once over the rows, keep its top-k log-probs,
free the teacher (``method.kd.cache_teacher``). The cache itself is :mod:`distill_gui.core.teacher_cache`.

A served teacher (``teacher.url``) fills the cache from its ``top_logprobs`` instead
(:mod:`distill_gui.core.methods.kd_served_teacher`); it was never loaded, so there is nothing to free.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable


def cache_path(setup: Any) -> Path:
    """The run's teacher cache file: ``method.kd.teacher_cache``, or the default name in the run folder."""
    from distill_gui.core import teacher_cache as tc

    kd = setup.config.method.kd
    return Path(kd.teacher_cache) if kd.teacher_cache else setup.run.path / tc.DEFAULT_FILE_NAME


def attach_teacher_cache(setup: Any, prepared: Any) -> None:
    """Give ``setup`` the teacher cache for the train (and eval) rows, building or reusing the file.

    Rows get a ``row`` column so each batch finds its cached positions; eval rows follow the train rows.
    The teacher answers the probe prompts first (for the side-by-side samples), then is freed.
    """
    import torch

    from distill_gui.core import teacher_cache as tc
    from distill_gui.core.devices import autocast_dtype
    from distill_gui.core.heads import output_head
    from distill_gui.core.hidden_states import decoder_of

    config = setup.config
    kd = config.method.kd
    rows = list(prepared.train) + (list(prepared.eval) if prepared.eval is not None else [])
    path = cache_path(setup)
    if setup.served_teacher is not None:
        from distill_gui.core.methods.kd_served_teacher import build_served_cache, served_fingerprint

        served_print = served_fingerprint(setup, rows)
        _finish(setup, prepared, path, served_print, lambda: build_served_cache(setup, rows, served_print))
        return
    vocab = setup.shared_vocab_size or setup.teacher.get_output_embeddings().weight.shape[0]
    dtype = autocast_dtype(config.training.precision, setup.teacher_device)
    fingerprint = tc.fingerprint(
        config.teacher.path,
        rows,
        kd.top_k,
        kd.temperature,
        vocab,
        teacher_revision=config.teacher.revision,
        teacher_gguf_file=config.teacher.gguf_file,
        teacher_quantization=config.teacher.quantization,
        teacher_dtype=str(setup.teacher.dtype),
        autocast_dtype=str(dtype),
    )

    def build() -> "tc.TeacherCache":
        setup.log(f"teacher cache: running the teacher over {len(rows):,} rows (top-{kd.top_k})")
        autocast = functools.partial(torch.autocast, setup.teacher_device.type, dtype=dtype) if dtype is not None else None
        _, decoder = decoder_of(setup.teacher)
        return tc.build_teacher_cache(
            decoder,
            output_head(setup.teacher),
            rows,
            top_k=kd.top_k,
            temperature=kd.temperature,
            vocab_size=vocab,
            fingerprint=fingerprint,
            batch_size=max(8, config.training.batch_size),
            pad_token_id=setup.tokenizer.pad_token_id or 0,
            autocast=autocast,
        )

    _finish(setup, prepared, path, fingerprint, build)


def _finish(setup: Any, prepared: Any, path: Path, fingerprint: str, build: Callable[[], Any]) -> None:
    """Reuse or build the cache (the main process), share it, answer the probes, free the teacher, number the rows."""
    import gc

    from distill_gui.core import teacher_cache as tc

    config, procs = setup.config, setup.procs
    cache = None
    if procs.is_main:
        cache, _ = tc.load_or_build(path, fingerprint, build, setup.log)
    procs.barrier()
    if not procs.is_main:
        cache = tc.TeacherCache.load(path)
    setup.teacher_cache = cache
    if config.training.sample_steps and setup.probe_prompts and procs.is_main:
        setup.answer_probes_with_teacher()
    setup.teacher = None  # training needs only the cache from here on
    gc.collect()
    prepared.train = prepared.train.add_column("row", list(range(len(prepared.train))))
    if prepared.eval is not None:
        start = len(prepared.train)
        prepared.eval = prepared.eval.add_column("row", list(range(start, start + len(prepared.eval))))
