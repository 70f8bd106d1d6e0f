"""The offline teacher cache: the teacher's top-k log-probs on every trained position, computed once.

With ``method.cache_teacher: true`` a KD run first runs the teacher over its tokenized rows (batched,
under the run's mixed precision) and keeps, for every position whose label counts, the teacher's
``method.top_k`` most likely tokens and the log-probs at ``method.temperature`` of those tokens and of
all the others together (a tail bucket): exactly what the top-k KD loss reads
(:func:`distill_gui.core.losses.kd_loss_from_cache`). Training then runs no teacher forward pass, and
the teacher is freed before the first step, so only the student is in memory while it trains.

The cache is one safetensors file (``teacher_cache.safetensors`` in the run folder, or the path in
``method.teacher_cache``) with a fingerprint of the teacher, the tokenized rows and the KD settings. A
file with the same fingerprint is reused (a resumed run, or several students distilled from one
teacher on the same data); a file made for something else is never overwritten: the run refuses and
says so.

Two encodings (format 2): ``compact``, the default of the builders here (sorted delta-coded ids, one
byte per top-k log-prob, the tail exact, zlib per data row: about 190 to 240 bytes per position at
top-128 instead of 1,029; :mod:`distill_gui.core.teacher_cache_encoding` states its tolerance), and ``exact``
(int32 ids and float32 log-probs, bit for bit what the live top-k loss sees). A compact cache holds in
memory exactly the values its file holds, so a run that builds the cache and a run that reuses it
train the same. A format-1 file (exact, from before format 2) is refused with what to do, never read
as something else.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Callable, Sequence, cast

from distill_gui.core import atomic_files
from distill_gui.core import teacher_cache_encoding as enc
from distill_gui.core.errors import UserError

FORMAT_VERSION = 2
DEFAULT_FILE_NAME = "teacher_cache.safetensors"
DEFAULT_ENCODING = enc.COMPACT
DECODED_LIMIT_BYTES = 2 << 30
"""A compact cache whose decoded ids and log-probs take at most this is decoded once, when it is made or loaded, and
batches read it as fast as an exact one; a larger one stays compressed in memory and each batch decodes its own
rows (measured: 7.6 ms for 2,048 top-128 positions on one core, against well under 1 ms from decoded tensors)."""
"""What :func:`build_teacher_cache` and :func:`build_teacher_cache_from_served` write unless told otherwise."""


class TeacherCacheError(UserError, RuntimeError):
    """A cache file cannot be used for this run; the message says why and what to do."""


class TeacherCache:
    """Top-k teacher ids ``[M, k]`` and bucket log-probs ``[M, k + 1]`` of M counted positions.

    Row ``r`` of the tokenized data owns positions ``offsets[r]:offsets[r + 1]``, in the order of its
    counted labels (label not -100, after the one-token shift of causal LM training).

    With ``encoding="compact"`` the cache holds what its file holds: one compressed block per row (about
    1/5 of float32 ids and log-probs); given ids and log-probs are encoded when the cache is made, so a
    cache that was built and one that was loaded give the same values (ids sorted ascending per position,
    log-probs within :data:`~distill_gui.core.teacher_cache_encoding.LOG_PROB_TOLERANCE`). Decoded, it
    would take ``decoded_limit`` bytes or less (:data:`DECODED_LIMIT_BYTES`): it is decoded once, and
    batches read tensors; more: it stays compressed in memory and :meth:`for_rows` decodes a batch's
    rows. ``exact`` keeps the given tensors as they are. ``ids`` and ``log_probs`` give every position
    at once (for tests and tools, not for training).
    """

    def __init__(
        self,
        ids: Any,
        log_probs: Any,
        offsets: Any,
        top_k: int,
        temperature: float,
        fingerprint: str,
        encoding: str = enc.EXACT,
        *,
        blocks: bytes | None = None,
        block_ends: Any = None,
        id_dtype: str = "",
        decoded_limit: int | None = None,
    ) -> None:
        import torch

        if encoding not in enc.ENCODINGS:
            raise TeacherCacheError(f"teacher cache encoding {encoding!r}: choose {' or '.join(enc.ENCODINGS)}")
        self.offsets = torch.as_tensor(offsets, dtype=torch.long)
        self.top_k, self.temperature, self.fingerprint, self.encoding = int(top_k), float(temperature), fingerprint, encoding
        self._ids, self._log_probs = ids, log_probs
        self._blocks, self._ends, self._id_dtype = blocks, block_ends, id_dtype
        if encoding == enc.COMPACT and blocks is None:
            self._id_dtype = enc.id_dtype_for(ids) if int(ids.shape[0]) else "uint16"
            bounds = self.offsets.tolist()
            encoded = [enc.encode_block(ids[a:b], log_probs[a:b], self._id_dtype) for a, b in zip(bounds[:-1], bounds[1:])]
            self._blocks = b"".join(encoded)
            self._ends = [0, *itertools.accumulate(len(b) for b in encoded)]
            self._ids = self._log_probs = None  # the blocks stand for them from here on
        if self._ends is not None:
            self._ends = [int(e) for e in self._ends]
        self._decode_within(decoded_limit)

    def _decode_within(self, limit: int | None, source: str | Path = "teacher cache") -> bool:
        """Decode a compact cache once when its decoded values take ``limit`` bytes or less (None: the default);
        the blocks stay, for :meth:`save`. Whether batches read decoded tensors now."""
        limit = DECODED_LIMIT_BYTES if limit is None else limit
        if self._blocks is not None and self._ids is None and self.decoded_bytes <= limit:
            self._ids, self._log_probs = self._decode(range(self.rows), source)
        return self._ids is not None

    @property
    def decoded_bytes(self) -> int:
        """What the cache's ids (int32) and log-probs (float32) take decoded."""
        return self.positions * (self.top_k * 4 + (self.top_k + 1) * 4)

    @property
    def decoded(self) -> bool:
        """Whether batches read decoded tensors (an exact cache, or a compact one within the limit)."""
        return self._ids is not None

    @property
    def rows(self) -> int:
        return int(self.offsets.shape[0]) - 1

    @property
    def positions(self) -> int:
        return int(self.offsets[-1]) if self.offsets.numel() else 0

    @property
    def memory_bytes(self) -> int:
        """What the cache's values take in memory (compressed blocks and decoded tensors, whichever it holds)."""
        size = len(self._blocks) if self._blocks is not None else 0
        if self._ids is not None:
            size += int(self._ids.numel() * self._ids.element_size() + self._log_probs.numel() * self._log_probs.element_size())
        return size

    @property
    def ids(self) -> Any:
        return self._ids if self._ids is not None else self._decode(range(self.rows))[0]

    @property
    def log_probs(self) -> Any:
        return self._log_probs if self._log_probs is not None else self._decode(range(self.rows))[1]

    def for_rows(self, rows: Sequence[int]):
        """(ids, log-probs) of ``rows`` concatenated in the given order (a batch's counted positions)."""
        import torch

        if self._ids is None:
            return self._decode(rows)
        spans = [(int(self.offsets[r]), int(self.offsets[r + 1])) for r in rows]
        index = torch.cat([torch.arange(a, b) for a, b in spans]) if spans else torch.zeros(0, dtype=torch.long)
        return self._ids.index_select(0, index), self._log_probs.index_select(0, index)

    def _decode(self, rows: Sequence[int], source: str | Path = "teacher cache") -> tuple[Any, Any]:
        """The ids and log-probs of ``rows``' blocks, in that order; a block that does not decode is named (row and
        ``source``) in a :class:`TeacherCacheError`."""
        import zlib

        import torch

        blocks, ends = cast(bytes, self._blocks), cast(list, self._ends)
        ids, log_probs = [], []
        for r in rows:
            n = int(self.offsets[r + 1]) - int(self.offsets[r])
            try:
                i, lp = enc.decode_block(blocks[ends[r] : ends[r + 1]], n, self.top_k, self._id_dtype)
            except (zlib.error, ValueError) as exc:
                raise TeacherCacheError(f"{source}: a damaged teacher cache (row {r}: {exc}); delete it to rebuild it") from None
            ids.append(i)
            log_probs.append(lp)
        if not ids:
            return torch.zeros((0, self.top_k), dtype=torch.int32), torch.zeros((0, self.top_k + 1))
        return torch.cat(ids), torch.cat(log_probs)

    def _tensors(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The file's tensors and the encoding's own metadata."""
        import numpy as np
        import torch

        offsets = self.offsets.contiguous()
        if self._blocks is None:
            return {"ids": self._ids.contiguous(), "log_probs": self._log_probs.contiguous(), "offsets": offsets}, {}
        ends = torch.tensor(self._ends, dtype=torch.long)
        payload = torch.from_numpy(np.frombuffer(self._blocks, dtype=np.uint8).copy())
        return {"blocks": payload, "block_offsets": ends, "offsets": offsets}, {"id_dtype": self._id_dtype}

    def save(self, path: str | Path) -> Path:
        """Write atomically (a temporary file renamed into place), in the cache's encoding."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors, extra = self._tensors()
        meta = {
            "format": str(FORMAT_VERSION),
            "encoding": self.encoding,
            "fingerprint": self.fingerprint,
            "top_k": str(self.top_k),
            "temperature": repr(self.temperature),
            **extra,
        }
        with atomic_files.atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path, decoded_limit: int | None = None) -> "TeacherCache":
        """The cache in ``path``; a compact one is decoded once when it fits ``decoded_limit`` (see the class)."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                names = set(fh.keys())
                tensors = {name: fh.get_tensor(name) for name in names}
        except (SafetensorError, OSError) as exc:
            raise TeacherCacheError(f"{path}: not a readable teacher cache ({exc}); delete it to rebuild it") from None
        if meta.get("format") != str(FORMAT_VERSION):
            raise TeacherCacheError(
                f"{path}: teacher cache format {meta.get('format')!r} (written by another version of distill-gui), "
                f"expected {FORMAT_VERSION}; delete it to rebuild it"
            )
        encoding = meta.get("encoding")
        wanted = {enc.EXACT: {"ids", "log_probs", "offsets"}, enc.COMPACT: {"blocks", "block_offsets", "offsets"}}.get(str(encoding))
        if wanted is None or not wanted <= names or not {"top_k", "temperature", "fingerprint"} <= set(meta):
            raise TeacherCacheError(
                f"{path}: not a readable teacher cache (encoding {encoding!r}, tensors {sorted(names)}); delete it to rebuild it"
            )
        top_k, offsets, temperature = int(meta["top_k"]), tensors["offsets"], float(meta["temperature"])
        if encoding == enc.EXACT:
            return cls(tensors["ids"], tensors["log_probs"], offsets, top_k, temperature, meta["fingerprint"], encoding=enc.EXACT)
        id_dtype, ends = meta.get("id_dtype", ""), tensors["block_offsets"]
        if id_dtype not in ("uint16", "int32") or ends.shape != offsets.shape or int(ends[-1]) != tensors["blocks"].numel():
            raise TeacherCacheError(f"{path}: not a readable teacher cache (id dtype {id_dtype!r}, block offsets); delete it to rebuild it")
        cache = cls(
            None,
            None,
            offsets,
            top_k,
            temperature,
            meta["fingerprint"],
            encoding=enc.COMPACT,
            blocks=tensors["blocks"].numpy().tobytes(),
            block_ends=ends.tolist(),
            id_dtype=id_dtype,
            decoded_limit=-1,
        )
        if not cache._decode_within(decoded_limit, path):  # decoding names a damaged block;
            cache._check_blocks(path)  # a cache left compressed is checked before training reads it
        return cache

    def _check_blocks(self, path: str | Path) -> None:
        """Every row's block decompresses to its positions (a damaged file is named now, not at a later step)."""
        import zlib

        blocks, ends = cast(bytes, self._blocks), cast(list, self._ends)
        width = 4 if self._id_dtype == "int32" else 2
        for r in range(self.rows):
            n = int(self.offsets[r + 1]) - int(self.offsets[r])
            try:
                size = len(zlib.decompress(blocks[ends[r] : ends[r + 1]]))
            except zlib.error as exc:
                raise TeacherCacheError(f"{path}: a damaged teacher cache (row {r}: {exc}); delete it to rebuild it") from None
            if size != n * self.top_k * (width + 1) + 4 * n:
                raise TeacherCacheError(
                    f"{path}: a damaged teacher cache (row {r}: a block of {size} bytes for {n} positions); delete it to rebuild it"
                )


# ---- Fingerprint --------------------------------------------------------------------------------


def _model_identity(path: str) -> dict:
    """What identifies a model on disk: its config and the size and time of its weight files."""
    folder = Path(path).expanduser()
    if folder.is_file():  # a GGUF file
        stat = folder.stat()
        return {"file": str(folder.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)}
    if not folder.is_dir():
        return {"id": path}
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".gguf"))
    config = folder / "config.json"
    return {
        "config": config.read_text(encoding="utf-8") if config.is_file() else "",
        "weights": [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in weights],
    }


def _post_processed_head(identity: dict) -> bool:
    """Whether the teacher's config names an architecture that scales or soft-caps its logits."""
    from distill_gui.core.heads import POST_PROCESSED_MODEL_TYPES

    try:
        model_type = json.loads(identity.get("config") or "{}").get("model_type")
    except (ValueError, AttributeError):
        return False
    return model_type in POST_PROCESSED_MODEL_TYPES


def fingerprint(
    teacher_path: str,
    rows: Sequence[dict],
    top_k: int,
    temperature: float,
    vocab_size: int,
    *,
    teacher_revision: str | None = None,
    teacher_gguf_file: str | None = None,
    teacher_quantization: str | None = None,
    teacher_dtype: str | None = None,
    autocast_dtype: str | None = None,
) -> str:
    """A digest of everything the cached values depend on: the teacher, every row's tokens and labels, the settings.

    The keywords name how the teacher was loaded and run: its hub revision and GGUF file, its
    quantization (``config.teacher.quantization``), the dtype its weights were loaded in and the
    autocast dtype of its forward pass (as resolved for the device: ``"torch.bfloat16"``, or None for
    none). A cache made by a teacher loaded or run otherwise is not reused. Keywords left at None
    are not part of the digest (the digest of a call without them is unchanged).
    """
    import numpy as np

    identity: dict[str, Any] = {
        "teacher": _model_identity(teacher_path),
        "top_k": top_k,
        "temperature": temperature,
        "vocab": vocab_size,
        "format": FORMAT_VERSION,
    }
    loading = {
        "revision": teacher_revision,
        "gguf_file": teacher_gguf_file,
        "quantization": teacher_quantization,
        "dtype": teacher_dtype,
        "autocast": autocast_dtype,
    }
    identity.update({key: str(value) for key, value in loading.items() if value is not None})
    if _post_processed_head(identity["teacher"]):
        # Caches from before the head's scale / soft cap was applied hold wrong log-probs: never reuse them.
        identity["head"] = "post-processed"
    digest = hashlib.sha256()
    digest.update(json.dumps(identity, sort_keys=True).encode())
    for row in rows:
        digest.update(np.asarray(row["input_ids"], dtype=np.int64).tobytes())
        digest.update(np.asarray(row["labels"], dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


# ---- Building ----------------------------------------------------------------------------------


class _RowCollector:
    """A cache's rows as a builder makes them (in any order): a compact cache's rows are encoded at once, so the
    build holds the compressed blocks, not float32 ids and log-probs of every position."""

    def __init__(self, count: int, top_k: int, encoding: str, vocab_size: int) -> None:
        self.top_k, self.encoding = top_k, encoding
        self.id_dtype = "uint16" if vocab_size <= 65536 else "int32"  # a sorted id's gap is below the vocabulary size
        self.parts: list[Any] = [None] * count
        self.lengths = [0] * count

    def put(self, row: int, ids: Any, log_probs: Any) -> None:
        import torch

        self.lengths[row] = int(ids.shape[0])
        if self.encoding == enc.COMPACT:
            self.parts[row] = enc.encode_block(ids, log_probs, self.id_dtype)
        else:
            self.parts[row] = (ids.to(torch.int32), log_probs.float())

    def cache(self, temperature: float, fingerprint: str) -> "TeacherCache":
        import torch

        offsets = torch.tensor([0, *itertools.accumulate(self.lengths)], dtype=torch.long)
        if self.encoding == enc.COMPACT:
            ends = [0, *itertools.accumulate(len(b) for b in self.parts)]
            return TeacherCache(
                None,
                None,
                offsets,
                self.top_k,
                temperature,
                fingerprint,
                encoding=enc.COMPACT,
                blocks=b"".join(self.parts),
                block_ends=ends,
                id_dtype=self.id_dtype,
            )
        ids = torch.cat([p[0] for p in self.parts]) if self.parts else torch.zeros((0, self.top_k), dtype=torch.int32)
        log_probs = torch.cat([p[1] for p in self.parts]) if self.parts else torch.zeros((0, self.top_k + 1))
        return TeacherCache(ids, log_probs, offsets, self.top_k, temperature, fingerprint, encoding=enc.EXACT)


def build_teacher_cache(
    decoder,
    head,
    rows: Sequence[dict],
    *,
    top_k: int,
    temperature: float,
    vocab_size: int,
    fingerprint: str,
    batch_size: int = 32,
    pad_token_id: int = 0,
    autocast: Callable | None = None,
    progress: Callable[[int, int], None] | None = None,
    encoding: str | None = None,
) -> TeacherCache:
    """Run the teacher over tokenized ``rows`` (input_ids, labels) and keep its top-k buckets.

    ``decoder`` is the teacher's module that gives the final hidden states and ``head`` its output head:
    an :class:`~distill_gui.core.heads.OutputHead` (from :func:`~distill_gui.core.heads.output_head`,
    which carries the logit scale and soft cap of Gemma-2, Granite, Cohere ...) or a plain linear
    output embedding; logits are made only at the counted positions, exactly as the teacher's
    ``forward`` makes them.

    Rows are batched by similar length (less padding) and the results put back in row order.
    ``autocast`` is a context-manager factory for mixed precision (e.g. ``accelerator.autocast``).
    ``encoding``: ``compact`` or ``exact`` (None: :data:`DEFAULT_ENCODING`).
    """
    import contextlib

    import torch

    from distill_gui.core.heads import OutputHead
    from distill_gui.core.losses import teacher_top_k

    if not 0 < top_k < vocab_size:
        raise TeacherCacheError(f"method.top_k: {top_k}; a teacher cache needs 1 <= top_k < {vocab_size} (e.g. 32)")
    if not isinstance(head, OutputHead):
        head = OutputHead(weight=head.weight, bias=getattr(head, "bias", None))
    head = head.detach()
    device = head.weight.device
    collected = _RowCollector(len(rows), top_k, encoding or DEFAULT_ENCODING, vocab_size)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    ctx = autocast or contextlib.nullcontext
    done = 0
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(rows[i]["input_ids"]) for i in batch)
            ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for j, i in enumerate(batch):
                n = len(rows[i]["input_ids"])
                ids[j, :n] = torch.as_tensor(rows[i]["input_ids"])
                mask[j, :n] = 1
                labels[j, :n] = torch.as_tensor(rows[i]["labels"])
            with ctx():
                hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            counted = labels[:, 1:] != -100
            for j, i in enumerate(batch):
                h = hidden[j, :-1][counted[j].to(device)].float()
                logits = head.logits(h, vocab_size)
                top_ids, log_probs = teacher_top_k(logits, top_k, temperature)
                collected.put(i, top_ids.to("cpu", torch.int32), log_probs.float().cpu())
            done += len(batch)
            if progress is not None:
                progress(done, len(rows))
    return collected.cache(float(temperature), fingerprint)


def token_pieces(tokenizer) -> dict[str, int]:
    """Each token id by the text it decodes to, as OpenAI-compatible servers name tokens in ``top_logprobs``
    (pieces several ids decode to, e.g. parts of one character, are left out: they cannot be told apart)."""
    seen: dict[str, int] = {}
    clash: set[str] = set()
    for i in range(len(tokenizer)):
        piece = tokenizer.decode([i])
        if piece in seen:
            clash.add(piece)
        else:
            seen[piece] = i
    return {piece: i for piece, i in seen.items() if piece not in clash}


def build_teacher_cache_from_served(
    served,
    tokenizer,
    rows: Sequence[dict],
    *,
    top_k: int,
    temperature: float,
    fingerprint: str,
    progress: Callable[[int, int], None] | None = None,
    encoding: str | None = None,
) -> TeacherCache:
    """The teacher cache from a served teacher's ``top_logprobs`` (:meth:`ServedTeacher.score`), for a server whose
    tokenizer is the student's ``tokenizer``.

    Each row's text is scored by the server; its tokens must be the row's own ids (else the tokenizers differ
    and logit KD is refused, naming the first difference). The server's alternatives become the top-k ids
    (those it names by a piece of the student's vocabulary; missing ones get log-prob -1e4) and the tail bucket
    is the probability left. The server's log-probs are at temperature 1, so ``temperature`` must be 1.
    ``encoding``: ``compact`` or ``exact`` (None: :data:`DEFAULT_ENCODING`; compact keeps the -1e4 of a missing
    token as 59.5 nats under the position's top).
    """
    import math

    import torch

    if temperature != 1.0:
        raise TeacherCacheError(
            f"method.temperature: {temperature}; a served teacher's top_logprobs are at temperature 1, so a cache from it needs temperature 1"
        )
    if top_k < 1:
        raise TeacherCacheError(f"method.top_k: {top_k}; a teacher cache needs top_k >= 1 (a server gives at most about 20)")
    pieces = token_pieces(tokenizer)
    collected = _RowCollector(len(rows), top_k, encoding or DEFAULT_ENCODING, len(tokenizer))
    for n, row in enumerate(rows):
        ids, labels = [int(i) for i in row["input_ids"]], [int(v) for v in row["labels"]]
        scored = served.score(tokenizer.decode(ids), top_k)
        got = [pieces.get(token, -1) for token, _, _ in scored]
        if got != ids:
            first = next((j for j, (a, b) in enumerate(zip(got, ids)) if a != b), min(len(got), len(ids)))
            raise TeacherCacheError(
                f"teacher.url: the served model splits row {n} differently from the student's tokenizer (token {first}: "
                f"{scored[first][0] if first < len(scored) else 'nothing'!r} vs {tokenizer.decode([ids[first]]) if first < len(ids) else 'nothing'!r}), "
                "so its log-probs cannot teach the student token by token: logit KD is refused; a served teacher can still "
                "write text for SFT (generate-data --teacher-url)"
            )
        top_ids, top_lp = [], []
        for pos in range(len(ids) - 1):
            if labels[pos + 1] == -100:
                continue
            alts = [(pieces[t], lp) for t, lp in scored[pos + 1][2] if t in pieces][:top_k]
            chosen = [i for i, _ in alts]
            lps = [lp for _, lp in alts]
            filler = (i for i in range(len(tokenizer)) if i not in set(chosen))
            while len(chosen) < top_k:
                chosen.append(next(filler))
                lps.append(-1e4)
            mass = sum(math.exp(lp) for lp in lps)
            top_ids.append(chosen)
            top_lp.append(lps + [math.log(max(1.0 - mass, 1e-12))])
        collected.put(
            n, torch.tensor(top_ids, dtype=torch.int32).reshape(-1, top_k), torch.tensor(top_lp, dtype=torch.float32).reshape(-1, top_k + 1)
        )
        if progress is not None:
            progress(n + 1, len(rows))
    return collected.cache(1.0, fingerprint)


def load_or_build(
    path: str | Path, expected_fingerprint: str, build: Callable[[], TeacherCache], log: Callable[[str], None] = lambda _s: None
) -> tuple[TeacherCache, bool]:
    """The cache at ``path`` when it was made for the same teacher, rows and settings, else a new one
    written there; returns (cache, reused). A file made for something else raises (never overwritten).

    Runs that share one cache file (the demo's students trained side by side, two runs started together)
    take turns: the first builds it under a lock next to the file, the others wait and reuse it.
    """
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        return _load_or_build_locked(path, expected_fingerprint, build, log)


def _load_or_build_locked(
    path: Path, expected_fingerprint: str, build: Callable[[], TeacherCache], log: Callable[[str], None]
) -> tuple[TeacherCache, bool]:
    if path.is_file():
        cache = TeacherCache.load(path)
        if cache.fingerprint != expected_fingerprint:
            raise TeacherCacheError(
                f"{path}: this teacher cache was made for another teacher, other data or other KD settings "
                "(top_k, temperature, the teacher's quantization, dtype, revision or the run's precision); "
                "delete it or set method.teacher_cache to another file"
            )
        log(f"teacher cache: reusing {path} ({cache.positions:,} positions, top-{cache.top_k})")
        return cache, True
    cache = build()
    size = cache.save(path).stat().st_size
    per = f", {size / cache.positions:,.0f} bytes each" if cache.positions else ""
    log(f"teacher cache: wrote {path} ({cache.positions:,} positions, top-{cache.top_k}, {cache.encoding}{per})")
    return cache, False
