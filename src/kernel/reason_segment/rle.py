"""COCO run-length encoding (the compressed string form pycocotools writes), in pure Python.

The host sends every mask as ``{"size": [height, width], "counts": "<string>"}``: column-major runs that alternate
0 and 1, starting with 0, each run length written as LEB128-like 5-bit groups offset by 48 (``'0'``), and every run
from the third on stored as the difference to the run two before it. This module decodes (and encodes) that form
without pycocotools or numpy; `decode_numpy` returns a numpy boolean array when numpy is installed.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Sequence

__all__ = ["counts_from_string", "counts_to_string", "decode", "decode_rows", "decode_numpy", "encode", "area"]


def counts_from_string(s: str) -> List[int]:
    """Run lengths from pycocotools' compressed string (its ``rleFrString``)."""
    data = s.encode("ascii") if isinstance(s, str) else bytes(s)
    counts: List[int] = []
    p, n = 0, len(data)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("COCO RLE string ends in the middle of a run length")
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        if x < 0:
            raise ValueError("COCO RLE string decodes to a negative run length")
        counts.append(x)
    return counts


def counts_to_string(counts: Sequence[int]) -> str:
    """pycocotools' compressed string for run lengths (its ``rleToString``)."""
    out = bytearray()
    for i, c in enumerate(counts):
        x = int(c)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(ch + 48)
    return out.decode("ascii")


def _size_counts(rle: Mapping[str, Any]):
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    runs = counts_from_string(counts) if isinstance(counts, (str, bytes)) else [int(c) for c in counts]
    if sum(runs) != h * w:
        raise ValueError(f"COCO RLE runs cover {sum(runs)} pixels but the size is {h}x{w}")
    return h, w, runs


def decode(rle: Mapping[str, Any]) -> bytearray:
    """The mask as ``height*width`` bytes of 0/1 in column-major (Fortran) order, as COCO stores it."""
    h, w, runs = _size_counts(rle)
    out = bytearray(h * w)
    pos, value = 0, 0
    one = b"\x01"
    for r in runs:
        if value and r:
            out[pos : pos + r] = one * r
        pos += r
        value ^= 1
    return out


def decode_rows(rle: Mapping[str, Any]) -> List[bytearray]:
    """The mask as ``height`` rows of ``width`` bytes (0 or 1): row-major, for code without numpy."""
    h, _w, _ = _size_counts(rle)
    col = decode(rle)
    return [col[y::h] for y in range(h)]


def decode_numpy(rle: Mapping[str, Any]):
    """The mask as a numpy ``bool`` array of shape (height, width). Needs numpy."""
    import numpy as np

    h, w, runs = _size_counts(rle)
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, np.asarray(runs, dtype=np.int64))
    return flat.reshape((w, h)).T.copy()


def encode(rows: Sequence[Sequence[Any]]) -> dict:
    """COCO RLE of a row-major mask (a sequence of rows, or a 2-D numpy array); truthy pixels are foreground."""
    h = len(rows)
    w = len(rows[0]) if h else 0
    runs: List[int] = []
    current, run = 0, 0
    for x in range(w):
        for y in range(h):
            v = 1 if rows[y][x] else 0
            if v != current:
                runs.append(run)
                current, run = v, 0
            run += 1
    runs.append(run)
    return {"size": [h, w], "counts": counts_to_string(runs)}


def area(rle: Mapping[str, Any]) -> int:
    """Foreground pixel count."""
    _h, _w, runs = _size_counts(rle)
    return sum(runs[1::2])
