"""The small PNG of a result for frontends without the renderer: the host's overlay, downscaled to at most
``MAX_SIDE`` pixels on its longer side, with "NO MASK" written on it when the model gave no mask.

Standard library only (numpy is optional in the kernel). The host writes 8-bit RGB PNGs without row filters (sharp's
default); any other non-interlaced 8-bit PNG decodes too, a little slower.
"""

from __future__ import annotations

import struct
import zlib
from typing import List, Tuple

MAX_SIDE = 640
_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel

# 5x7 glyphs of the label, one string of 5 bits a row.
_GLYPHS = {
    "N": ["10001", "11001", "10101", "10011", "10001", "10001", "10001"],
    "O": ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
    "M": ["10001", "11011", "10101", "10101", "10001", "10001", "10001"],
    "A": ["01110", "10001", "10001", "11111", "10001", "10001", "10001"],
    "S": ["01111", "10000", "10000", "01110", "00001", "00001", "11110"],
    "K": ["10001", "10010", "10100", "11000", "10100", "10010", "10001"],
    " ": ["00000"] * 7,
}


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def decode_rgb(data: bytes) -> Tuple[int, int, List[bytearray]]:
    """(width, height, rows of RGB bytes) of an 8-bit, non-interlaced PNG."""
    if not data.startswith(_SIG):
        raise ValueError("not a PNG")
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if ihdr is None:
        raise ValueError("PNG without IHDR")
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or interlace or ctype not in _CHANNELS:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {ctype}, interlace {interlace})")
    bpp = _CHANNELS[ctype]
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(h):
        start = y * (stride + 1)
        f, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upleft = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, prev[i], upleft)) & 255
        prev = line
        if ctype == 2:
            rows.append(line)
        elif ctype == 6:
            rows.append(bytearray(b for i, b in enumerate(line) if i % 4 != 3))
        else:  # grey, grey + alpha
            rows.append(bytearray(v for g in line[::bpp] for v in (g, g, g)))
    return w, h, rows


def encode_rgb(w: int, h: int, rows: List[bytearray]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    return (
        _SIG
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def downscale(w: int, h: int, rows: List[bytearray], max_side: int) -> Tuple[int, int, List[bytearray]]:
    """Nearest-pixel resize so that the longer side is at most ``max_side``; unchanged when already small enough."""
    scale = max(w, h) / max_side
    if scale <= 1:
        return w, h, rows
    nw, nh = max(1, int(w / scale + 0.5)), max(1, int(h / scale + 0.5))  # half up, as Math.round in notebookPng.ts
    xs = [min(w - 1, int((x + 0.5) * w / nw)) * 3 for x in range(nw)]
    out = []
    for y in range(nh):
        src = rows[min(h - 1, int((y + 0.5) * h / nh))]
        out.append(bytearray(b"".join([src[x : x + 3] for x in xs])))
    return nw, nh, out


def stamp_label(w: int, h: int, rows: List[bytearray], text: str = "NO MASK") -> None:
    """Writes ``text`` in white on a black band across the top-left corner, as large as the image allows."""
    cols = 6 * len(text) + 1  # 5 pixels a glyph, 1 between, 1 margin
    k = max(1, min(w // (cols + 2), h // 24, 6))
    band_w, band_h = min(w, (cols + 1) * k), min(h, 9 * k)
    for y in range(band_h):
        rows[y][: band_w * 3] = bytes(band_w * 3)
    for n, ch in enumerate(text):
        glyph = _GLYPHS[ch]
        for gy, bits in enumerate(glyph):
            for gx, bit in enumerate(bits):
                if bit != "1":
                    continue
                x0, y0 = (1 + 6 * n + gx) * k, (1 + gy) * k
                for y in range(y0, min(y0 + k, band_h)):
                    for x in range(x0, min(x0 + k, band_w)):
                        rows[y][3 * x : 3 * x + 3] = b"\xff\xff\xff"


def fallback_png(overlay_png: bytes, no_mask: bool, max_side: int = MAX_SIDE) -> bytes:
    w, h, rows = decode_rgb(overlay_png)
    w, h, rows = downscale(w, h, rows, max_side)
    if no_mask:
        stamp_label(w, h, rows)
    return encode_rgb(w, h, rows)
