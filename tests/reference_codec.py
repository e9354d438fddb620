"""A deliberately plain re-implementation of docs/format.md with Python integers and bit
strings, used as an independent oracle for the container layout and sizes."""
import numpy as np

SEGMENT = 32


def chunk_values(row_bytes: bytes, w: int) -> list[int]:
    cb = w // 8
    padded = row_bytes + b"\0" * (-len(row_bytes) % cb)
    return [int.from_bytes(padded[i:i + cb], "little") for i in range(0, len(padded), cb)]


def free_bits(x: int, mask: int, w: int) -> str:
    return "".join(str((x >> b) & 1) for b in range(w - 1, -1, -1) if not (mask >> b) & 1)


def pick(x: int, alts: list[tuple[int, int]], w: int) -> int:
    """The matching alternative with the fewest free bits, lowest slot on ties."""
    best = None
    for v, (m, b) in enumerate(alts):
        if x & m == b and (best is None or bin(m).count("1") > bin(alts[best][0]).count("1")):
            best = v
    return best


def encode_row(chunks, mask, bitval, w, select_bits=None, alts=None, list_header=False,
               group=0, group_bits=0, selectors_by_segment=False):
    """``alts[j]``: the ``2**select_bits[j]`` alternative ``(mask, bitval)`` pairs of column j
    (default: one empty mask). ``group``: the row group id written first (``group_bits``).
    ``selectors_by_segment``: the layout of format versions 2 to 4, each segment's selectors
    before its free bits, instead of all of them at the row's end."""
    c = len(chunks)
    select_bits = select_bits or [0] * c
    alts = alts or [[(0, 0)]] * c
    base = [x & mask[j] == bitval[j] for j, x in enumerate(chunks)]
    stream = format(group, f"0{group_bits}b") if group_bits else ""
    words = []
    if list_header:
        listed = [j for j in range(c) if not base[j]]
        count_bits, pos_bits = c.bit_length(), max(1, (c - 1).bit_length())
        stream += format(len(listed), f"0{count_bits}b")
        stream += "".join(format(j, f"0{pos_bits}b") for j in listed)
    else:
        header_bits = ["0"] * (-(-c // w) * w)
        for j in range(c):
            if base[j]:
                header_bits[j] = "1"
        for h in range(0, len(header_bits), w):  # header bit j is bit j % w of word j // w
            words.append(sum(1 << b for b in range(w) if header_bits[h + b] == "1"))
    selectors = []  # one bit string per non-base chunk, in chunk order
    for c0 in range(0, c, SEGMENT):
        seg = range(c0, min(c0 + SEGMENT, c))
        chosen = {}
        for j in seg:
            if not base[j]:
                v = pick(chunks[j], alts[j], w)
                if v is None:
                    raise ValueError(f"no pattern of column {j} matches chunk {chunks[j]:#x}")
                chosen[j] = v
                if select_bits[j]:
                    selectors.append(format(v, f"0{select_bits[j]}b"))
        if selectors_by_segment:
            stream += "".join(selectors)
            selectors = []
        for j in seg:
            m = mask[j] if base[j] else alts[j][chosen[j]][0]
            stream += free_bits(chunks[j], m, w)
    # the first selector ends at the stream's last bit, each next one ends where it starts
    tail = "".join(reversed(selectors))
    stream += "0" * (-(len(stream) + len(tail)) % w) + tail
    words += [int(stream[i:i + w], 2) for i in range(0, len(stream), w)]
    return chunks if len(words) >= c else words


def plan_columns(plan, group=0):
    """Per-column pattern lists of row group ``group`` of a ``Plan`` for :func:`encode_row`."""
    c = plan.num_chunks
    cols = range(group * c, (group + 1) * c)
    sel = [int(plan.select_bits[j]) for j in cols]
    alts = [[(int(plan.alt_masks[j, v]), int(plan.alt_bitvals[j, v]))
             for v in range(1 << int(plan.select_bits[j]))] for j in cols]
    return [int(plan.mask[j]) for j in cols], [int(plan.bitval[j]) for j in cols], sel, alts


def encode(byte_rows: np.ndarray, plan, selectors_by_segment=False) -> list[list[int]]:
    """Every row in the row group that stores it in the fewest words (the lowest on ties)."""
    w = plan.chunk_bits
    c = plan.num_chunks
    group_bits = (plan.num_groups - 1).bit_length()
    groups = [plan_columns(plan, g) for g in range(plan.num_groups)]
    out = []
    for r in byte_rows:
        chunks = chunk_values(bytes(r), w)
        best = None
        for g, (mask, bitval, sel, alts) in enumerate(groups):
            try:
                words = encode_row(chunks, mask, bitval, w, sel, alts, plan.list_header, g,
                                   group_bits, selectors_by_segment)
            except ValueError:  # a chunk no pattern of this group matches
                continue
            if best is None or min(len(words), c) < min(len(best), c):
                best = words
        out.append(best)
    return out
