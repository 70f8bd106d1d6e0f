"""Peak memory of the KD loss, forward and backward: chunked (from hidden states) vs plain (full logits).

Qwen2.5-0.5B-like sizes by default: vocabulary 151936, hidden 896, 2048 positions. Each variant runs
in a fresh process of this script, so one variant's allocations never hide the other's. On CUDA the
peak is ``torch.cuda.max_memory_allocated`` above the inputs; on CPU it is the rise of the process's
peak resident set (``VmHWM`` in ``/proc/self/status``, reset through ``clear_refs`` after the inputs
are allocated; ``ru_maxrss`` where ``/proc`` is missing).

    python benchmarks/bench_kd_memory.py [--positions 2048] [--vocab 151936] [--hidden 896] [--chunk-size 512]

The last line printed is ``kd_loss_memory_ratio: Z`` (chunked peak / plain peak).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# ---- Memory probes -------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_kib() -> int:
    hwm = _status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ---- One variant, in its own process ---------------------------------------------------------------


def _run_variant(variant: str, args: argparse.Namespace) -> dict:
    import torch

    from distill_gui.core.losses import kd_loss_from_hidden, kd_loss_from_logits

    torch.manual_seed(0)
    device = torch.device(args.device)
    n, v, h = args.positions, args.vocab, args.hidden
    options = dict(loss=args.loss, temperature=args.temperature, alpha=args.alpha, top_k=args.top_k)
    # Teacher with a slightly larger padded vocabulary, as in real pairs (151936 vs 152064).
    student_hidden = torch.randn(n, h, device=device, requires_grad=True)
    student_head = (torch.randn(v, h, device=device) * h**-0.5).requires_grad_()
    teacher_hidden = torch.randn(n, h, device=device)
    teacher_head = torch.randn(v + 128, h, device=device) * h**-0.5
    labels = torch.randint(0, v, (n,), device=device)
    labels[: n // 8] = -100  # a prompt that does not count

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        current = _status_kib("VmRSS") if _reset_peak() else None
        base = current if current is not None else _peak_kib()

    start = time.perf_counter()
    if variant == "chunked":
        parts = kd_loss_from_hidden(
            student_hidden, student_head, teacher_hidden, teacher_head, labels,
            chunk_size=args.chunk_size, vocab_size=v, **options,
        )
    else:
        student_logits = student_hidden @ student_head.T
        with torch.no_grad():
            teacher_logits = teacher_hidden @ teacher_head.T
        parts = kd_loss_from_logits(student_logits, teacher_logits, labels, vocab_size=v, **options)
    parts.total.backward()
    seconds = time.perf_counter() - start

    if device.type == "cuda":
        torch.cuda.synchronize()
        peak_bytes = torch.cuda.max_memory_allocated() - base
    else:
        peak_bytes = (_peak_kib() - base) * 1024
    return {
        "variant": variant,
        "peak_bytes": int(peak_bytes),
        "seconds": seconds,
        "total": parts.total.item(),
        "kd": parts.kd.item(),
        "ce": parts.ce.item(),
        "grad_hidden_norm": student_hidden.grad.norm().item(),
        "grad_head_norm": student_head.grad.norm().item(),
    }


def _spawn(variant: str, argv: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--variant", variant, *argv], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{variant} run failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- Main ------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--positions", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--hidden", type=int, default=896)
    p.add_argument("--chunk-size", type=int, default=512)
    p.add_argument("--loss", default="forward_kl", choices=("forward_kl", "reverse_kl", "jsd"))
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--variant", choices=("chunked", "plain"), help=argparse.SUPPRESS)
    return p


def main() -> None:
    args = _parser().parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.variant:
        print(json.dumps(_run_variant(args.variant, args)))
        return

    argv = list(sys.argv[1:])
    if "--device" not in argv:
        argv += ["--device", args.device]
    print(
        f"KD loss forward+backward on {args.device}: positions={args.positions} vocab={args.vocab} "
        f"hidden={args.hidden} loss={args.loss} T={args.temperature} alpha={args.alpha} top_k={args.top_k} "
        f"chunk_size={args.chunk_size}",
        flush=True,
    )
    results = {variant: _spawn(variant, argv) for variant in ("plain", "chunked")}
    plain, chunked = results["plain"], results["chunked"]

    print(f"{'variant':<8} {'peak MiB':>10} {'seconds':>8} {'total':>12} {'kd':>12} {'ce':>12} {'|grad h|':>10} {'|grad W|':>10}")
    for r in (plain, chunked):
        print(
            f"{r['variant']:<8} {r['peak_bytes'] / 2**20:>10.1f} {r['seconds']:>8.2f} {r['total']:>12.6f} "
            f"{r['kd']:>12.6f} {r['ce']:>12.6f} {r['grad_hidden_norm']:>10.6f} {r['grad_head_norm']:>10.6f}"
        )
    for key in ("total", "kd", "ce", "grad_hidden_norm", "grad_head_norm"):
        a, b = plain[key], chunked[key]
        if abs(a - b) > 1e-4 * max(1.0, abs(a)):
            raise SystemExit(f"chunked and plain {key} differ: {b} vs {a}")
    print("values match (relative tolerance 1e-4)")
    print(f"kd_loss_memory_ratio: {chunked['peak_bytes'] / plain['peak_bytes']:.3f}")


if __name__ == "__main__":
    main()
