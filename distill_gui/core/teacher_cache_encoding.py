"""The compact encoding of a teacher cache: about 1/6 of float32 ids and log-probs, within a stated tolerance.

One block per data row (so a row is read without the others), zlib-compressed, holding for each of the
row's ``n`` counted positions:

- the top-k token ids sorted ascending, delta-coded (the first id as it is, then the gaps): uint16
  when every gap fits (always for a vocabulary of at most 65,536 tokens), else int32;
- each top-k log-prob as one byte: its gap below the position's largest top-k log-prob, ``d >= 0``,
  rounded to the nearest point of :data:`GAP_GRID` (steps of 1/32 nat up to 4 nats below the top,
  1/4 nat up to 12, 1/2 nat up to 59.5; gaps past 59.5 nats are kept as 59.5: at that distance a
  token's probability is under 1e-25 of the top one's). The largest log-prob itself is not stored;
- the tail bucket's log-prob as float32, exactly.

Decoding rebuilds the top-k log-probs from the gaps and renormalises them so that the top-k mass is
exactly ``1 - p_tail``: the tail is exact and the buckets sum to 1. A top-k log-prob is then within
1/64 nat of the exact value for tokens within 4 nats of the top (1.6% of its probability), 1/8 nat
within 12 nats (probabilities under 2% of the top's), plus the shared shift of the renormalisation
(a probability-weighted mean of those errors): :data:`LOG_PROB_TOLERANCE`. :data:`KD_RTOL` and
:data:`GRAD_RTOL` state how close the top-k KD loss and its gradients stay to the exact cache's.

The grid's points are exact in float32, so encoding decoded values again gives the same codes.
"""

from __future__ import annotations

import zlib
from typing import Any

COMPACT = "compact"
EXACT = "exact"
ENCODINGS = (COMPACT, EXACT)

LOG_PROB_TOLERANCE = 1.0 / 32
"""Largest error (nats) of a decoded top-k log-prob within 4 nats of its position's top: 1/64 from the grid plus
at most 1/64 from the renormalisation (1/8 + 1/64 up to 12 nats, 1/4 + 1/64 beyond)."""

KD_RTOL = 5e-3
"""Stated tolerance of the top-k KD loss (and the total) from a compact cache against the exact top-k: relative.
Measured on random logits with forward KL, reverse KL and JSD: at most 1.3e-3 (tests/core/test_losses.py)."""
GRAD_RTOL = 2e-2
"""Stated tolerance of the loss's gradients (relative norm of the difference); measured at most 8.4e-3."""

ZLIB_LEVEL = 6


def _gap_grid() -> Any:
    import torch

    fine = torch.arange(128, dtype=torch.float32) / 32  # 0 .. 3.97 nats, steps of 1/32
    mid = 4 + torch.arange(32, dtype=torch.float32) / 4  # 4 .. 11.75, steps of 1/4
    far = 12 + torch.arange(96, dtype=torch.float32) / 2  # 12 .. 59.5 nats, steps of 1/2
    return torch.cat([fine, mid, far])


GAP_GRID = _gap_grid()
"""The 256 gaps (nats below the position's top log-prob) a code stands for; code c means GAP_GRID[c]."""
_BOUNDS = (GAP_GRID[1:] + GAP_GRID[:-1]) / 2


def gap_codes(log_probs: Any) -> Any:
    """uint8 codes ``[n, k]`` of the top-k log-probs ``[n, k]``: each one's gap below its row's largest."""
    import torch

    gaps = log_probs.amax(1, keepdim=True) - log_probs
    return torch.bucketize(gaps.float(), _BOUNDS).to(torch.uint8)


def decode_log_probs(codes: Any, tail: Any) -> Any:
    """Top-k log-probs and tail ``[n, k + 1]`` (float32) from the codes ``[n, k]`` and the exact tail ``[n]``."""
    import torch

    rel = -GAP_GRID[codes.long()].double()
    tail64 = tail.double()
    # log of the top-k mass 1 - p_tail; a tail of (almost) all the mass leaves the top-k at about e^-69.
    mass = torch.log(torch.clamp(-torch.expm1(tail64), min=1e-30))
    top = rel - torch.logsumexp(rel, 1, keepdim=True) + mass[:, None]
    return torch.cat([top, tail64[:, None]], 1).float()


def canonical(ids: Any, log_probs: Any) -> tuple[Any, Any]:
    """What the compact encoding keeps of ``ids [n, k]`` and ``log_probs [n, k + 1]``: ids sorted ascending per
    position (int32), log-probs decoded from their codes (float32). Applying it twice changes nothing."""
    import torch

    order = ids.long().sort(1)
    top = log_probs[:, :-1].gather(1, order.indices)
    return order.values.to(torch.int32), decode_log_probs(gap_codes(top), log_probs[:, -1].float())


def id_dtype_for(ids: Any) -> str:
    """``uint16`` when every delta of the sorted ids fits in 16 bits, else ``int32``."""
    import torch

    if ids.numel() == 0:
        return "uint16"
    s = ids.long().sort(1).values
    gaps = torch.diff(s, dim=1, prepend=torch.zeros_like(s[:, :1]))
    return "uint16" if int(gaps.max()) < 65536 else "int32"


def encode_block(ids: Any, log_probs: Any, id_dtype: str) -> bytes:
    """One row's positions (ids ``[n, k]``, log-probs ``[n, k + 1]``) as one compressed block.

    Byte planes are stored apart (low bytes of every id gap, then the high bytes, ...), which zlib
    compresses better than interleaved integers.
    """
    import numpy as np
    import torch

    s = ids.long().sort(1)
    gaps = torch.diff(s.values, dim=1, prepend=torch.zeros_like(s.values[:, :1])).numpy()
    codes = gap_codes(log_probs[:, :-1].gather(1, s.indices)).numpy()
    tail = log_probs[:, -1].float().numpy()
    little = np.dtype(id_dtype).newbyteorder("<")
    planes = gaps.astype(little).reshape(-1).view(np.uint8).reshape(-1, little.itemsize)
    raw = b"".join([planes.T.tobytes(), codes.tobytes(), tail.astype("<f4").tobytes()])
    return zlib.compress(raw, ZLIB_LEVEL)


def decode_block(block: bytes, n: int, k: int, id_dtype: str) -> tuple[Any, Any]:
    """(ids ``[n, k]`` int32 sorted ascending per position, log-probs ``[n, k + 1]`` float32) of one block."""
    import numpy as np
    import torch

    raw = zlib.decompress(block)
    width = np.dtype(id_dtype).itemsize
    id_bytes, code_bytes = n * k * width, n * k
    if len(raw) != id_bytes + code_bytes + 4 * n:
        raise ValueError(f"a block of {len(raw)} bytes, expected {id_bytes + code_bytes + 4 * n} for {n} positions of top-{k}")
    planes = np.frombuffer(raw, np.uint8, id_bytes).reshape(width, -1).T.copy()
    gaps = planes.view(np.dtype(id_dtype).newbyteorder("<")).reshape(n, k).astype(np.int64)
    codes = np.frombuffer(raw, np.uint8, code_bytes, offset=id_bytes).reshape(n, k)
    tail = np.frombuffer(raw, "<f4", n, offset=id_bytes + code_bytes)
    ids = torch.from_numpy(np.cumsum(gaps, axis=1)).to(torch.int32)
    return ids, decode_log_probs(torch.from_numpy(codes.copy()), torch.from_numpy(tail.copy()))
