"""A deliberately plain re-implementation of docs/format.md with Python integers and bit
strings, used as an independent oracle for the container layout and sizes."""
import numpy as np


def chunk_values(row_bytes: bytes, w: int) -> list[int]:
    cb = w // 8
    padded = row_bytes + b"\0" * (-len(row_bytes) % cb)
    return [int.from_bytes(padded[i:i + cb], "little") for i in range(0, len(padded), cb)]


def encode_row(chunks: list[int], mask: list[int], bitval: list[int], w: int) -> list[int]:
    c = len(chunks)
    header_bits = ["0"] * (-(-c // w) * w)
    stream = ""
    for j, x in enumerate(chunks):
        if x & mask[j] == bitval[j]:
            header_bits[j] = "1"
            stream += "".join(str((x >> b) & 1) for b in range(w - 1, -1, -1)
                              if not (mask[j] >> b) & 1)
        else:
            stream += format(x, f"0{w}b")
    words = []
    for h in range(0, len(header_bits), w):  # bit j of the header is bit j % w of word j // w
        words.append(sum(1 << b for b in range(w) if header_bits[h + b] == "1"))
    stream += "0" * (-len(stream) % w)
    words += [int(stream[i:i + w], 2) for i in range(0, len(stream), w)]
    return chunks if len(words) >= c else words


def encode(byte_rows: np.ndarray, mask, bitval, w: int) -> list[list[int]]:
    mask = [int(m) for m in mask]
    bitval = [int(v) for v in bitval]
    return [encode_row(chunk_values(bytes(r), w), mask, bitval, w) for r in byte_rows]
