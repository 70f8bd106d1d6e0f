"""Cost of an export of the demo teacher: hf, gguf f16 and gguf q8_0 (with the load-back check) against
the reference of loading the model and saving it with ``save_pretrained`` (what any export must do).

Each way runs in this process, best of ``--rounds``; the GGUF times include llama.cpp's converter and the
verification (the file loaded back with transformers, three probe prompts answered by both models).
Prints each time, the file sizes, and last ``gguf_q8_0_ratio: X`` (q8_0 export / reference).

    python benchmarks/bench_export.py [--rounds 2] [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from distill_gui.core.export import export_model  # noqa: E402


def reference(model: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).save_pretrained(out)
    AutoTokenizer.from_pretrained(model).save_pretrained(out)


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def size_mb(folder: Path, pattern: str) -> float:
    return sum(p.stat().st_size for p in folder.glob(pattern)) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default=str(ROOT / "distill_gui" / "assets" / "demo" / "teacher"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        export_model(args.model, "gguf", "f16", out=work / "warm")  # imports and caches warmed once
        ref = best(lambda: reference(args.model, work / "ref"), args.rounds)
        hf = best(lambda: export_model(args.model, "hf", out=work / "hf", force=True), args.rounds)
        f16 = best(lambda: export_model(args.model, "gguf", "f16", out=work / "f16", force=True), args.rounds)
        q8 = best(lambda: export_model(args.model, "gguf", "q8_0", out=work / "q8", force=True), args.rounds)
        print(f"reference load+save_pretrained: {ref:.2f} s ({size_mb(work / 'ref', '*.safetensors'):.1f} MB safetensors)")
        print(f"export hf:        {hf:.2f} s ({hf / ref:.2f}x)")
        print(f"export gguf f16:  {f16:.2f} s ({f16 / ref:.2f}x), {size_mb(work / 'f16', '*.gguf'):.1f} MB")
        print(f"export gguf q8_0: {q8:.2f} s, {size_mb(work / 'q8', '*.gguf'):.1f} MB")
        print(f"gguf_q8_0_ratio: {q8 / ref:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
