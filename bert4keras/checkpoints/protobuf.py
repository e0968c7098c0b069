"""Varints and the protobuf wire format, enough for the messages of a TF tensor bundle."""

from __future__ import annotations


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The base-128 varint at ``buf[pos:]`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, pos


def varint(n: int) -> bytes:
    """``n`` (>= 0) as a base-128 varint."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: ints, or bytes for nested data."""
    fields = []
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            value = buf[pos : pos + n]
            pos += n
        elif wire == 5:
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated protobuf field")
        fields.append((number, value))
    return fields


def proto_varint_field(number: int, value: int) -> bytes:
    """An int field; a zero is left out, as protobuf writers do."""
    return varint(number << 3) + varint(value) if value else b""


def proto_bytes_field(number: int, value: bytes) -> bytes:
    """A length-delimited field (bytes or a nested message)."""
    return varint((number << 3) | 2) + varint(len(value)) + value
