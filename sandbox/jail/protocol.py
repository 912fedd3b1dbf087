"""Length-prefixed JSON frames between the job driver and the jail process."""

from __future__ import annotations

import json
import struct
from typing import IO, Any

MAX_FRAME_BYTES = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """The peer sent something that is not a well-formed frame."""


def encode_frame(message: Any) -> bytes:
    data = json.dumps(message, ensure_ascii=False, allow_nan=False).encode("utf-8")
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(f"message larger than {MAX_FRAME_BYTES} bytes")
    return data


def write_frame(stream: IO[bytes], message: Any) -> None:
    data = encode_frame(message)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def as_sent(message: Any) -> Any:
    """`message` as its reader gets it: through a frame's JSON, without a stream."""
    return decode_frame(encode_frame(message))


def decode_frame(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise FrameError("frame is not UTF-8 JSON") from e


def read_frame(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("peer closed the channel")
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("peer closed the channel mid-frame")
    return decode_frame(data)
