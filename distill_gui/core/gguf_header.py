"""Checking a GGUF file's header before transformers parses it.

A damaged or hostile header (wrong magic, a count of billions of entries, a string length past the end
of the file, an unknown value type) makes the parsers fail deep inside with an IndexError, a
MemoryError or a numpy error. :func:`check_gguf_header` walks the header (magic, version, metadata
and tensor table) against the file's size and says in one line what is wrong and where. It reads
only the header: the tensor data, most of the file, is not touched.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

from distill_gui.core.models import ModelError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_COUNT = 1 << 24
"""No real model has more than 16 M tensors, metadata entries or array items in its header."""
MAX_DIMS = 8
SMALL_ARRAY = 4096
"""Number arrays up to this length (per-layer head counts, rope sections) are read in full by read_gguf_header."""
# value type -> struct format of one item (strings and arrays are handled apart)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class _Damaged(Exception):
    pass


class _Reader:
    def __init__(self, data: mmap.mmap | bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> int | float:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise _Damaged(f"the header ends early (at byte {self.pos:,} of {len(self.data):,}; the file is cut short)")
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return value

    def count(self, what: str) -> int:
        value = int(self.take("Q"))
        if value > MAX_COUNT:
            raise _Damaged(f"{what} is {value:,} at byte {self.pos - 8:,}, which no model has (the header is damaged)")
        return value

    def string(self, what: str) -> str:
        length = int(self.take("Q"))
        if self.pos + length > len(self.data):
            raise _Damaged(f"{what} at byte {self.pos - 8:,} claims {length:,} bytes, past the end of the file")
        raw = bytes(self.data[self.pos : self.pos + length])
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Damaged(f"{what} at byte {self.pos - length:,} is not UTF-8 text") from None

    def skip_value(self, kind: int, key: str) -> None:
        if kind in _SCALARS:
            self.take(_SCALARS[kind])
        elif kind == _STRING:
            self.string(f"the value of {key}")
        elif kind == _ARRAY:
            item_kind = int(self.take("I"))
            n = self.count(f"the length of {key}")
            if item_kind in _SCALARS:
                size = struct.calcsize("<" + _SCALARS[item_kind]) * n
                if self.pos + size > len(self.data):
                    raise _Damaged(f"{key} ({n:,} items) runs past the end of the file")
                self.pos += size
            elif item_kind == _STRING:
                for _ in range(n):
                    self.string(f"an item of {key}")
            else:
                raise _Damaged(f"{key} is an array of unknown type {item_kind}")
        else:
            raise _Damaged(f"{key} has unknown value type {kind}")


def _walk(data: mmap.mmap | bytes) -> None:
    reader = _Reader(data)
    if bytes(data[:4]) != MAGIC:
        raise _Damaged(f"it does not start with GGUF (starts with {bytes(data[:4])!r}); not a GGUF file or damaged")
    reader.pos = 4
    version = int(reader.take("I"))
    if version not in VERSIONS:
        raise _Damaged(f"GGUF version {version} is not one of {', '.join(map(str, VERSIONS))} (damaged or too new)")
    n_tensors = reader.count("the tensor count")
    n_keys = reader.count("the metadata count")
    for _ in range(n_keys):
        key = reader.string("a metadata key")
        reader.skip_value(int(reader.take("I")), key)
    for _ in range(n_tensors):
        name = reader.string("a tensor name")
        dims = int(reader.take("I"))
        if dims > MAX_DIMS:
            raise _Damaged(f"tensor {name} has {dims} dimensions (the header is damaged)")
        for _ in range(dims):
            reader.take("Q")
        reader.take("I")  # quantization type
        offset = int(reader.take("Q"))
        if offset >= len(data):
            raise _Damaged(f"tensor {name} starts at byte {offset:,}, past the end of the file ({len(data):,} bytes)")


def check_gguf_header(path: str | Path) -> None:
    """Raise :class:`ModelError` naming the file and the problem when its GGUF header is damaged."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = path.stat().st_size
            if size < 24:
                raise _Damaged(f"it has only {size} bytes; a GGUF header needs at least 24")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                _walk(data)
    except _Damaged as exc:
        raise ModelError(f"{path}: damaged GGUF file: {exc}") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the GGUF file ({exc.strerror or exc})") from None


def gguf_metadata(path: str | Path, keys: tuple[str, ...]) -> dict[str, object]:
    """The values of metadata ``keys`` (strings and numbers) from a GGUF file's header, read without
    touching its tensors; {} for a file that is not a readable GGUF file."""
    wanted = set(keys)
    found: dict[str, object] = {}
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if bytes(data[:4]) != MAGIC:
                return {}
            reader = _Reader(data)
            reader.pos = 4
            if int(reader.take("I")) not in VERSIONS:
                return {}
            reader.count("the tensor count")
            for _ in range(reader.count("the metadata count")):
                key = reader.string("a metadata key")
                kind = int(reader.take("I"))
                if key in wanted and kind == _STRING:
                    found[key] = reader.string(key)
                elif key in wanted and kind in _SCALARS:
                    found[key] = reader.take(_SCALARS[kind])
                else:
                    reader.skip_value(kind, key)
                if len(found) == len(wanted):
                    break
    except (OSError, ValueError, _Damaged):
        return {}
    return found


@dataclass(frozen=True)
class GgufTensor:
    """One entry of a GGUF file's tensor table."""

    name: str
    dims: tuple[int, ...]
    """In GGUF order: the fastest-moving first (a linear layer's weight is (in_features, out_features))."""
    ggml_type: int

    @property
    def count(self) -> int:
        n = 1
        for dim in self.dims:
            n *= dim
        return n


@dataclass(frozen=True)
class GgufHeader:
    """A GGUF file's metadata and tensor table, read without touching the tensor data."""

    metadata: dict[str, object]
    """Strings and numbers as values; an array is a list for the keys asked for in full and for short number
    arrays, else its length (as transformers' GGUF reader leaves them)."""
    tensors: tuple[GgufTensor, ...] = field(default=())


def _read_value(reader: _Reader, kind: int, key: str, full: bool) -> object:
    if kind in _SCALARS:
        return reader.take(_SCALARS[kind])
    if kind == _STRING:
        return reader.string(f"the value of {key}")
    if kind != _ARRAY:
        raise _Damaged(f"{key} has unknown value type {kind}")
    item_kind = int(reader.take("I"))
    n = reader.count(f"the length of {key}")
    if item_kind == _STRING:
        if full:
            return [reader.string(f"an item of {key}") for _ in range(n)]
        for _ in range(n):  # lengths only: not decoded
            length = int(reader.take("Q"))
            if reader.pos + length > len(reader.data):
                raise _Damaged(f"an item of {key} at byte {reader.pos - 8:,} claims {length:,} bytes, past the end of the file")
            reader.pos += length
        return n
    if item_kind not in _SCALARS:
        raise _Damaged(f"{key} is an array of unknown type {item_kind}")
    fmt = _SCALARS[item_kind]
    size = struct.calcsize("<" + fmt) * n
    if reader.pos + size > len(reader.data):
        raise _Damaged(f"{key} ({n:,} items) runs past the end of the file")
    values = list(struct.unpack_from(f"<{n}{fmt}", reader.data, reader.pos)) if full or n <= SMALL_ARRAY else n
    reader.pos += size
    return values


def read_gguf_header(path: str | Path, full_arrays: tuple[str, ...] = ()) -> GgufHeader:
    """Every metadata entry and the tensor table of a GGUF file (arrays in full only for ``full_arrays``,
    e.g. the tokenizer's tokens and merges); a damaged header raises :class:`ModelError` naming the file."""
    path = Path(path)
    wanted = set(full_arrays)
    metadata: dict[str, object] = {}
    tensors = []
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if bytes(data[:4]) != MAGIC:
                raise _Damaged(f"it does not start with GGUF (starts with {bytes(data[:4])!r}); not a GGUF file or damaged")
            reader = _Reader(data)
            reader.pos = 4
            version = int(reader.take("I"))
            if version not in VERSIONS:
                raise _Damaged(f"GGUF version {version} is not one of {', '.join(map(str, VERSIONS))} (damaged or too new)")
            n_tensors = reader.count("the tensor count")
            for _ in range(reader.count("the metadata count")):
                key = reader.string("a metadata key")
                metadata[key] = _read_value(reader, int(reader.take("I")), key, key in wanted)
            for _ in range(n_tensors):
                name = reader.string("a tensor name")
                n_dims = int(reader.take("I"))
                if n_dims > MAX_DIMS:
                    raise _Damaged(f"tensor {name} has {n_dims} dimensions (the header is damaged)")
                dims = tuple(int(reader.take("Q")) for _ in range(n_dims))
                ggml_type = int(reader.take("I"))
                reader.take("Q")  # offset in the data section
                tensors.append(GgufTensor(name, dims, ggml_type))
    except _Damaged as exc:
        raise ModelError(f"{path}: damaged GGUF file: {exc}") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read the GGUF file ({getattr(exc, 'strerror', None) or exc})") from None
    return GgufHeader(metadata, tuple(tensors))
