"""Raw snappy block decoding, for table blocks a TensorFlow writer chose to compress."""

from __future__ import annotations

from bert4keras.checkpoints.base import CheckpointError
from bert4keras.checkpoints.protobuf import read_varint


def snappy_decompress(data: bytes, where: str) -> bytes:
    """Decode one raw snappy block; raises CheckpointError naming ``where`` on malformed input."""
    try:
        size, pos = read_varint(data, 0)
        out = bytearray()
        while pos < len(data):
            tag = data[pos]
            pos += 1
            kind = tag & 3
            if kind == 0:  # literal
                n = tag >> 2
                if n >= 60:
                    extra = n - 59
                    n = int.from_bytes(data[pos : pos + extra], "little")
                    pos += extra
                n += 1
                if pos + n > len(data):
                    raise ValueError("literal runs past the end")
                out += data[pos : pos + n]
                pos += n
                continue
            if kind == 1:
                n = 4 + ((tag >> 2) & 7)
                offset = ((tag >> 5) << 8) | data[pos]
                pos += 1
            else:
                width = 2 if kind == 2 else 4
                n = (tag >> 2) + 1
                offset = int.from_bytes(data[pos : pos + width], "little")
                pos += width
            if offset == 0 or offset > len(out):
                raise ValueError(f"copy offset {offset} outside the {len(out)} bytes decoded")
            for _ in range(n):  # copies may overlap their own output
                out.append(out[-offset])
        if len(out) != size:
            raise ValueError(f"decoded {len(out)} bytes, header says {size}")
        return bytes(out)
    except (ValueError, IndexError) as e:
        raise CheckpointError(f"{where}: corrupt snappy-compressed block ({e})") from e
