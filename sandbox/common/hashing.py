"""Hashes of column values that are equal exactly when a join finds the values equal.

The engine partitions joins by them; the catalog numbers people by them (catalog.entities),
so they must stay the same from one version to the next (a test pins some).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def is_time(t: pa.DataType) -> bool:
    return bool(pa.types.is_date(t) or pa.types.is_timestamp(t))


U64 = np.uint64


# splitmix64's finaliser constants, and a multiplier for combining keys and string bytes.
_M1, _M2, K = U64(0xBF58476D1CE4E5B9), U64(0x94D049BB133111EB), U64(0x9E3779B97F4A7C15)


def mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> U64(30))) * _M1
        x = (x ^ (x >> U64(27))) * _M2
    mixed: np.ndarray = x ^ (x >> U64(31))
    return mixed


def key_hash(values: pa.Array) -> np.ndarray:
    """A 64-bit hash per value (no nulls) that is equal for values the join finds equal:
    numbers hash by value as doubles, dates and timestamps as microseconds, text by bytes.
    Entity numbers are assigned by these hashes (catalog.entities), so they must stay the
    same from one version to the next (a test pins some)."""
    t = values.type
    if pa.types.is_boolean(t):
        return mix(values.to_numpy(zero_copy_only=False).astype(np.uint64))
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        doubles = (
            values.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False) + 0.0
        )  # -0.0 → 0.0
        doubles = np.where(np.isnan(doubles), np.nan, doubles)  # one NaN bit pattern
        return mix(np.ascontiguousarray(doubles).view(np.uint64))
    if is_time(t):
        micros = pc.cast(values, pa.timestamp("us")).cast(pa.int64())
        return mix(micros.to_numpy(zero_copy_only=False).view(np.uint64))
    if is_text(t):
        return _text_hash(values)
    raise AssertionError(f"unchecked join key type {t}")


def _text_hash(values: pa.Array) -> np.ndarray:
    """Polynomial hash of each string's UTF-8 bytes, vectorised over the data buffer."""
    offset_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], offset_type)[values.offset : values.offset + n + 1]
    offsets = offsets.astype(np.int64)
    lengths = np.diff(offsets)
    data_buffer = values.buffers()[2]
    data = (
        np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    )[offsets[0] : offsets[-1]]
    h = lengths.astype(np.uint64) * K
    if data.size and (lengths == lengths[0]).all():
        h ^= _fixed_width_sums(data.reshape(n, int(lengths[0])))
    elif data.size:
        data = data.astype(np.uint64)
        starts = offsets[:-1] - offsets[0]
        position = np.arange(data.size) - np.repeat(starts, lengths)
        with np.errstate(over="ignore"):
            powers = np.cumprod(np.full(int(lengths.max()), K, dtype=np.uint64))
            terms = (data + U64(1)) * powers[position]
        nonempty = lengths > 0
        sums = np.add.reduceat(terms, starts[nonempty])
        h[nonempty] ^= sums
    return mix(h)


def _fixed_width_sums(data: np.ndarray) -> np.ndarray:
    """The polynomial sums of `_text_hash` for strings of one width (identifiers, codes),
    one row of bytes each: a pass per byte position instead of per-byte index arithmetic,
    the same sums (addition modulo 2**64 in any order)."""
    sums = np.zeros(len(data), np.uint64)
    power = U64(1)
    with np.errstate(over="ignore"):
        for j in range(data.shape[1]):
            power = power * K
            sums += (data[:, j].astype(np.uint64) + U64(1)) * power
    return sums
